//! Held-out interactions and the scoring of recommendation lists against them, user by user.

use crate::{evaluate, Metrics, Recommendations};
use destiny_core::data::Rows;
use destiny_core::error::{Error, Result};
use destiny_data::read::{read_interactions, Format, ReadOptions};
use std::collections::HashMap;
use std::path::Path;

/// Held-out items per user id.
pub type Truth = HashMap<String, Vec<String>>;

/// Reads held-out interactions: a dataset file (with `features`, else `features.idx` beside
/// it) or DSSTNE text (`user<TAB>item,...:item,...`).
pub fn read_truth(path: &Path, features: Option<&Path>) -> Result<Truth> {
    if destiny_data::is_dataset_file(path)? {
        let file = destiny_data::read_dataset(path)?;
        let ids = destiny_data::feature_ids(path, features)?;
        let Rows::Sparse(rows) = file.dataset.rows else {
            return Err(Error::Data(format!("{} is not sparse", path.display())));
        };
        if rows.width() != ids.len() {
            return Err(Error::Data(format!(
                "{} is {} wide but its feature index has {} items",
                path.display(),
                rows.width(),
                ids.len()
            )));
        }
        let mut truth = Truth::with_capacity(file.samples.len());
        for (r, user) in file.samples.into_iter().enumerate() {
            let items = rows.row_indices(r).iter();
            let items = items.map(|&c| ids[c as usize].clone()).collect();
            if truth.insert(user.clone(), items).is_some() {
                return Err(Error::Data(format!(
                    "{}: user '{user}' has more than one row",
                    path.display()
                )));
            }
        }
        Ok(truth)
    } else {
        let options = ReadOptions {
            format: Format::Dsstne,
            ..Default::default()
        };
        let table = read_interactions(path, &options)?;
        let mut truth = Truth::new();
        for (&u, &i) in table.user.iter().zip(&table.item) {
            truth
                .entry(table.users.id(u).to_string())
                .or_default()
                .push(table.items.id(i).to_string());
        }
        Ok(truth)
    }
}

/// Scores `recommendations` against `truth` at each K of `ks`, over the users of `truth`
/// (a user without recommendations scores 0; recommendations for other users are ignored).
/// Recommendations that could only give misleading figures are errors: a user listed
/// twice, an item repeated in a user's list (it would count as several hits), no user in
/// common with the truth (every figure would be 0).
pub fn evaluate_recommendations(
    truth: &Truth,
    recommendations: &Recommendations,
    ks: &[usize],
) -> Result<Vec<Metrics>> {
    if ks.is_empty() || ks.contains(&0) {
        return Err(Error::Data("every K must be at least 1".into()));
    }
    let lists = lists_by_user(recommendations)?;
    let mut users: Vec<&String> = truth.keys().collect();
    users.sort();
    if !users.iter().any(|u| lists.contains_key(u)) {
        return Err(Error::Data(if recommendations.users.is_empty() {
            "there are no recommendations".into()
        } else {
            format!(
                "none of the {} users recommended for is among the {} users of the truth",
                recommendations.users.len(),
                truth.len()
            )
        }));
    }
    let relevant: Vec<Vec<&String>> = users.iter().map(|u| truth[*u].iter().collect()).collect();
    let ranked: Vec<Vec<&String>> = users
        .iter()
        .map(|u| {
            lists
                .get(*u)
                .map(|l| l.iter().map(|(item, _)| item).collect())
                .unwrap_or_default()
        })
        .collect();
    Ok(evaluate(&ranked, &relevant, ks))
}

/// Each user's list, checking that no user is listed twice and no list repeats an item.
fn lists_by_user(
    recommendations: &Recommendations,
) -> Result<HashMap<&String, &Vec<(String, f32)>>> {
    let mut lists = HashMap::with_capacity(recommendations.users.len());
    for (user, list) in recommendations.users.iter().zip(&recommendations.lists) {
        if lists.insert(user, list).is_some() {
            return Err(Error::Data(format!("user '{user}' is listed twice")));
        }
        let mut ranks: HashMap<&str, usize> = HashMap::with_capacity(list.len());
        for (rank, (item, _)) in list.iter().enumerate() {
            if let Some(first) = ranks.insert(item, rank + 1) {
                return Err(Error::Data(format!(
                    "user '{user}' has item '{item}' at ranks {first} and {}",
                    rank + 1
                )));
            }
        }
    }
    Ok(lists)
}

#[cfg(test)]
mod tests;
