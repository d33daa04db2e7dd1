//! Cleaning raw interactions into one list per user: a rating threshold for positives,
//! duplicates merged, and users and items with too few interactions dropped.

use crate::interactions::{IdMap, Interactions, UserItems, NO_TIMESTAMP};
use destiny_core::error::{Error, Result};
use std::collections::HashMap;

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
/// the highest rating and the latest timestamp.
pub fn clean(interactions: &Interactions, options: &CleanOptions) -> Result<UserTable> {
    if options.min_rating.is_some() && !interactions.has_ratings() {
        return Err(Error::Data(
            "a minimum rating was asked for but the input has no ratings".into(),
        ));
    }
    // Merge duplicates, per user in order of first appearance.
    let mut merged: Vec<HashMap<u32, (f32, i64)>> = vec![HashMap::new(); interactions.users.len()];
    for k in 0..interactions.len() {
        let (rating, timestamp) = (interactions.rating[k], interactions.timestamp[k]);
        let entry = merged[interactions.user[k] as usize]
            .entry(interactions.item[k])
            .or_insert((f32::NAN, NO_TIMESTAMP));
        entry.0 = if entry.0.is_nan() {
            rating
        } else {
            entry.0.max(rating)
        };
        entry.1 = entry.1.max(timestamp);
    }
    let positive = |rating: f32| match options.min_rating {
        Some(min) => rating >= min,
        None => true,
    };
    let mut item_counts = vec![0usize; interactions.items.len()];
    for user in &merged {
        for (&item, &(rating, _)) in user {
            if positive(rating) {
                item_counts[item as usize] += 1;
            }
        }
    }
    let mut users = Vec::new();
    let mut items = IdMap::default();
    let mut rows = Vec::new();
    // Items are numbered in order of first appearance in the input, for stable indices.
    let mut item_order: Vec<u32> = Vec::with_capacity(interactions.items.len());
    let mut seen = vec![false; interactions.items.len()];
    for &item in &interactions.item {
        if !seen[item as usize] {
            seen[item as usize] = true;
            item_order.push(item);
        }
    }
    let mut kept_number = vec![u32::MAX; interactions.items.len()];
    for user in 0..merged.len() {
        let kept: Vec<(u32, (f32, i64))> = merged[user]
            .iter()
            .filter(|(&item, &(rating, _))| {
                positive(rating) && item_counts[item as usize] >= options.min_item_interactions
            })
            .map(|(&item, &value)| (item, value))
            .collect();
        if kept.is_empty() || kept.len() < options.min_user_interactions {
            continue;
        }
        for &(item, _) in &kept {
            kept_number[item as usize] = 0;
        }
        users.push(interactions.users.id(user as u32).to_string());
        rows.push(kept);
    }
    for &item in &item_order {
        if kept_number[item as usize] == 0 {
            kept_number[item as usize] = items.intern(interactions.items.id(item));
        }
    }
    let rows = rows
        .into_iter()
        .map(|kept| {
            let mut row: UserItems = kept
                .into_iter()
                .map(|(item, (rating, timestamp))| {
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
    if users.is_empty() {
        return Err(Error::Data("no user is left after filtering".into()));
    }
    Ok(UserTable { users, items, rows })
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
