//! Cleaning raw interactions into one list per user: a rating threshold for positives,
//! duplicates merged, and users and items with too few interactions dropped.

use crate::interactions::{IdMap, Interactions, UserItems};
use destiny_core::error::{Error, Result};
use rayon::prelude::*;

/// What to keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanOptions {
    /// Keep interactions rated at least this (they become positives).
    pub min_rating: Option<f32>,
    /// Drop users with fewer interactions (after the threshold and merging).
    pub min_user_interactions: usize,
    /// Drop items with fewer interactions (counted before users are dropped).
    pub min_item_interactions: usize,
    /// Use the rating as each entry's value instead of 1.
    pub keep_ratings: bool,
}

/// Users with their items; item numbers refer to `items`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserTable {
    pub users: Vec<String>,
    pub items: IdMap,
    /// Each user's `(item, value, timestamp)`, sorted by item.
    pub rows: Vec<UserItems>,
}

impl UserTable {
    /// Number of interactions.
    pub fn interactions(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }
}

/// Applies `options`. A user's repeated interactions with an item merge into one that keeps
/// the highest rating and the latest timestamp. Users are grouped by a counting sort and
/// cleaned in parallel.
pub fn clean(interactions: &Interactions, options: &CleanOptions) -> Result<UserTable> {
    if options.min_rating.is_some() && !interactions.has_ratings() {
        return Err(Error::Data(
            "a minimum rating was asked for but the input has no ratings".into(),
        ));
    }
    let merged = merge_by_user(interactions);
    let positive = |rating: f32| match options.min_rating {
        Some(min) => rating >= min,
        None => true,
    };
    let mut item_counts = vec![0usize; interactions.items.len()];
    for &(item, rating, _) in merged.iter().flatten() {
        if positive(rating) {
            item_counts[item as usize] += 1;
        }
    }
    let kept: Vec<Option<UserItems>> = merged
        .into_par_iter()
        .map(|mut row| {
            row.retain(|&(item, rating, _)| {
                positive(rating) && item_counts[item as usize] >= options.min_item_interactions
            });
            (!row.is_empty() && row.len() >= options.min_user_interactions).then_some(row)
        })
        .collect();
    // Items are numbered in order of first appearance in the input, for stable indices.
    let mut kept_number = vec![u32::MAX; interactions.items.len()];
    for &(item, _, _) in kept.iter().flatten().flatten() {
        kept_number[item as usize] = 0;
    }
    let mut items = IdMap::default();
    for &item in &interactions.item {
        if kept_number[item as usize] == 0 {
            kept_number[item as usize] = items.intern(interactions.items.id(item));
        }
    }
    let users: Vec<String> = (kept.iter().enumerate())
        .filter(|(_, row)| row.is_some())
        .map(|(user, _)| interactions.users.id(user as u32).to_string())
        .collect();
    if users.is_empty() {
        return Err(Error::Data("no user is left after filtering".into()));
    }
    let rows = kept
        .into_par_iter()
        .flatten()
        .map(|row| {
            let mut row: UserItems = row
                .into_iter()
                .map(|(item, rating, timestamp)| {
                    let value = if options.keep_ratings && !rating.is_nan() {
                        rating
                    } else {
                        1.0
                    };
                    (kept_number[item as usize], value, timestamp)
                })
                .collect();
            row.sort_unstable_by_key(|e| e.0);
            row
        })
        .collect();
    Ok(UserTable { users, items, rows })
}

/// Each user's interactions (users by number), one per item: the highest rating (NaN only
/// when none has one) and the latest timestamp, sorted by item.
fn merge_by_user(interactions: &Interactions) -> Vec<UserItems> {
    let users = interactions.users.len();
    // A counting sort of the interactions by user, into one array.
    let mut starts = vec![0usize; users + 1];
    for &user in &interactions.user {
        starts[user as usize + 1] += 1;
    }
    for u in 0..users {
        starts[u + 1] += starts[u];
    }
    let mut next = starts.clone();
    let mut sorted = vec![(0u32, 0.0f32, 0i64); interactions.len()];
    for (k, &user) in interactions.user.iter().enumerate() {
        let at = &mut next[user as usize];
        sorted[*at] = (
            interactions.item[k],
            interactions.rating[k],
            interactions.timestamp[k],
        );
        *at += 1;
    }
    let mut rows: Vec<&mut [(u32, f32, i64)]> = Vec::with_capacity(users);
    let mut rest = sorted.as_mut_slice();
    for u in 0..users {
        let (row, tail) = rest.split_at_mut(starts[u + 1] - starts[u]);
        rows.push(row);
        rest = tail;
    }
    rows.into_par_iter()
        .map(|row| {
            row.sort_unstable_by_key(|e| e.0);
            let mut merged: UserItems = Vec::with_capacity(row.len());
            for &entry in row.iter() {
                match merged.last_mut() {
                    // f32::max keeps the rating that is not NaN.
                    Some(kept) if kept.0 == entry.0 => {
                        kept.1 = kept.1.max(entry.1);
                        kept.2 = kept.2.max(entry.2);
                    }
                    _ => merged.push(entry),
                }
            }
            merged
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_duplicates_and_minimums() {
        let mut table = Interactions::default();
        for (u, i, r, t) in [
            ("u1", "a", 5.0, 1),
            ("u1", "b", 2.0, 2),
            ("u1", "a", 3.0, 9),
            ("u1", "c", 4.0, 3),
            ("u2", "a", 4.0, 1),
            ("u3", "c", 5.0, 1),
            ("u3", "d", 4.5, 2),
            ("u3", "a", 4.0, 3),
        ] {
            table.push(u, i, Some(r), Some(t));
        }
        let options = CleanOptions {
            min_rating: Some(4.0),
            min_user_interactions: 2,
            ..CleanOptions::default()
        };
        let cleaned = clean(&table, &options).unwrap();
        assert_eq!(cleaned.users, vec!["u1".to_string(), "u3".to_string()]);
        // u1 keeps a (merged: max rating 5, latest time 9) and c; b is below the threshold.
        assert_eq!(
            cleaned.items.ids(),
            &["a".to_string(), "c".to_string(), "d".to_string()]
        );
        assert_eq!(cleaned.rows[0], vec![(0, 1.0, 9), (1, 1.0, 3)]);
        assert_eq!(cleaned.rows[1].len(), 3);
        let options = CleanOptions {
            min_item_interactions: 3,
            ..CleanOptions::default()
        };
        let cleaned = clean(&table, &options).unwrap();
        assert_eq!(cleaned.items.ids(), &["a".to_string()]);
        assert!(clean(
            &table,
            &CleanOptions {
                min_user_interactions: 10,
                ..CleanOptions::default()
            }
        )
        .is_err());
    }
}
