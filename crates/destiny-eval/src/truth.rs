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
        Ok(file
            .samples
            .into_iter()
            .enumerate()
            .map(|(r, user)| {
                let items = rows.row_indices(r).iter();
                (user, items.map(|&c| ids[c as usize].clone()).collect())
            })
            .collect())
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
pub fn evaluate_recommendations(
    truth: &Truth,
    recommendations: &Recommendations,
    ks: &[usize],
) -> Result<Vec<Metrics>> {
    if ks.contains(&0) {
        return Err(Error::Data("every K must be at least 1".into()));
    }
    let mut users: Vec<&String> = truth.keys().collect();
    users.sort();
    let relevant: Vec<&Vec<String>> = users.iter().map(|u| &truth[*u]).collect();
    let lists: HashMap<&String, &Vec<(String, f32)>> = recommendations
        .users
        .iter()
        .zip(&recommendations.lists)
        .collect();
    let ranked: Vec<Vec<&String>> = users
        .iter()
        .map(|u| {
            lists
                .get(*u)
                .map(|l| l.iter().map(|(item, _)| item).collect())
                .unwrap_or_default()
        })
        .collect();
    let relevant: Vec<Vec<&String>> = relevant.iter().map(|r| r.iter().collect()).collect();
    Ok(evaluate(&ranked, &relevant, ks))
}
