//! Train/test splits, all seeded: held-out users with a fold-in (Liang et al. 2018), a random
//! hold-out of each user's items, and a hold-out of each user's latest items.

use crate::clean::UserTable;
use destiny_core::error::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A user's entries, `(column, value)`.
type Entries = Vec<(u32, f32)>;

/// How to split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    /// Every user in one dataset.
    None,
    /// `test_users` (and `validation_users`) users are held out of training; each one's
    /// items are split into a fold-in input and a held-out target of `holdout_fraction`.
    HeldOutUsers {
        test_users: usize,
        validation_users: usize,
        holdout_fraction: f64,
    },
    /// Every user keeps a random `holdout_fraction` of its items as target.
    Random { holdout_fraction: f64 },
    /// Every user keeps its latest `holdout_fraction` of items (by timestamp) as target.
    Time { holdout_fraction: f64 },
}

impl Split {
    /// The split a user chose by name (`none`, `heldout-users`, `random` or `time`) with its
    /// settings; those a kind does not use are ignored.
    pub fn choose(
        kind: &str,
        test_users: usize,
        validation_users: usize,
        holdout_fraction: f64,
    ) -> Result<Split> {
        Ok(match kind {
            "none" => Split::None,
            "heldout-users" => Split::HeldOutUsers {
                test_users,
                validation_users,
                holdout_fraction,
            },
            "random" => Split::Random { holdout_fraction },
            "time" => Split::Time { holdout_fraction },
            _ => {
                return Err(Error::Data(format!(
                    "unknown split '{kind}': none, heldout-users, random or time"
                )))
            }
        })
    }
}

/// A set of rows: sample ids and each sample's `(column, value)` entries.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSet {
    /// File stem of the dataset ("train", "test_input", ...).
    pub name: String,
    pub samples: Vec<String>,
    pub rows: Vec<Vec<(u32, f32)>>,
}

/// How many of `n` items go to the target: `fraction` of them, rounded, at least one, and at
/// least one left for the input when there are two or more.
fn target_count(n: usize, fraction: f64) -> usize {
    if n < 2 {
        return 0;
    }
    ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
}

fn rowset(
    name: &str,
    table: &UserTable,
    users: &[usize],
    pick: impl Fn(usize) -> Vec<(u32, f32)>,
) -> RowSet {
    RowSet {
        name: name.into(),
        samples: users.iter().map(|&u| table.users[u].clone()).collect(),
        rows: users.iter().map(|&u| pick(u)).collect(),
    }
}

/// Splits one user's items into (input, target): a seeded random choice, or the latest by
/// timestamp. `row` holds the user's `(column, value, timestamp)` sorted by column, and
/// `user` is the user's position among the cleaned users (it seeds the choice).
pub fn fold_user(
    row: &[(u32, f32, i64)],
    user: usize,
    fraction: f64,
    seed: u64,
    by_time: bool,
) -> (Entries, Entries) {
    let mut order: Vec<usize> = (0..row.len()).collect();
    if by_time {
        order.sort_by_key(|&k| (row[k].2, row[k].0));
    } else {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            seed ^ (user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
    }
    let cut = row.len() - target_count(row.len(), fraction);
    let mut input: Vec<(u32, f32)> = order[..cut].iter().map(|&k| (row[k].0, row[k].1)).collect();
    let mut target: Vec<(u32, f32)> = order[cut..].iter().map(|&k| (row[k].0, row[k].1)).collect();
    input.sort_unstable_by_key(|e| e.0);
    target.sort_unstable_by_key(|e| e.0);
    (input, target)
}

fn fold(
    table: &UserTable,
    user: usize,
    fraction: f64,
    seed: u64,
    by_time: bool,
) -> (Entries, Entries) {
    fold_user(&table.rows[user], user, fraction, seed, by_time)
}

/// Which of `users` cleaned users (by position) are held out: `(test, validation, train)`,
/// each sorted, chosen by a seeded shuffle.
pub fn held_out_users(
    users: usize,
    test_users: usize,
    validation_users: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    if test_users + validation_users >= users {
        return Err(Error::Data(format!(
            "{test_users} test and {validation_users} validation users leave none of the {users} users for training"
        )));
    }
    let mut shuffled: Vec<usize> = (0..users).collect();
    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut test = shuffled[..test_users].to_vec();
    let mut validation = shuffled[test_users..test_users + validation_users].to_vec();
    let mut train = shuffled[test_users + validation_users..].to_vec();
    for users in [&mut test, &mut validation, &mut train] {
        users.sort_unstable();
    }
    Ok((test, validation, train))
}

/// Checks a hold-out fraction: strictly between 0 and 1.
pub fn check_fraction(fraction: f64) -> Result<()> {
    if fraction > 0.0 && fraction < 1.0 {
        Ok(())
    } else {
        Err(Error::Data(format!(
            "the hold-out fraction must be between 0 and 1, not {fraction}"
        )))
    }
}

/// The error of a split by time over interactions that lack timestamps.
pub fn missing_timestamps() -> Error {
    Error::Data("a split by time needs a timestamp on every interaction".into())
}

/// Splits `table` into the row sets of `split`.
pub fn split(table: &UserTable, split: Split, seed: u64) -> Result<Vec<RowSet>> {
    let all: Vec<usize> = (0..table.users.len()).collect();
    let whole = |u: usize| table.rows[u].iter().map(|&(i, v, _)| (i, v)).collect();
    let check = check_fraction;
    Ok(match split {
        Split::None => vec![rowset("data", table, &all, whole)],
        Split::HeldOutUsers {
            test_users,
            validation_users,
            holdout_fraction,
        } => {
            check(holdout_fraction)?;
            let (test, validation, train) =
                held_out_users(table.users.len(), test_users, validation_users, seed)?;
            let mut sets = vec![rowset("train", table, &train, whole)];
            for (name, users) in [("validation", &validation), ("test", &test)] {
                if users.is_empty() {
                    continue;
                }
                let folds: Vec<_> = users
                    .iter()
                    .map(|&u| fold(table, u, holdout_fraction, seed, false))
                    .collect();
                sets.push(rowset(&format!("{name}_input"), table, users, |u| {
                    folds[users.binary_search(&u).unwrap()].0.clone()
                }));
                sets.push(rowset(&format!("{name}_target"), table, users, |u| {
                    folds[users.binary_search(&u).unwrap()].1.clone()
                }));
            }
            sets
        }
        Split::Random { holdout_fraction } | Split::Time { holdout_fraction } => {
            check(holdout_fraction)?;
            let by_time = matches!(split, Split::Time { .. });
            if by_time
                && table
                    .rows
                    .iter()
                    .flatten()
                    .any(|e| e.2 == crate::interactions::NO_TIMESTAMP)
            {
                return Err(missing_timestamps());
            }
            let folds: Vec<_> = all
                .iter()
                .map(|&u| fold(table, u, holdout_fraction, seed, by_time))
                .collect();
            vec![
                rowset("input", table, &all, |u| folds[u].0.clone()),
                rowset("target", table, &all, |u| folds[u].1.clone()),
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interactions::IdMap;

    fn table(users: usize, items_per_user: usize) -> UserTable {
        let mut items = IdMap::default();
        for i in 0..50 {
            items.intern(&format!("i{i}"));
        }
        UserTable {
            users: (0..users).map(|u| format!("u{u}")).collect(),
            items,
            rows: (0..users)
                .map(|u| {
                    (0..items_per_user)
                        .map(|k| (((u * 7 + k * 3) % 50) as u32, 1.0, (100 - k) as i64))
                        .collect::<Vec<_>>()
                })
                .map(|mut r: Vec<(u32, f32, i64)>| {
                    r.sort_unstable_by_key(|e| e.0);
                    r.dedup_by_key(|e| e.0);
                    r
                })
                .collect(),
        }
    }

    #[test]
    fn held_out_users_do_not_leak() {
        let t = table(100, 10);
        let sets = split(
            &t,
            Split::HeldOutUsers {
                test_users: 15,
                validation_users: 5,
                holdout_fraction: 0.2,
            },
            3,
        )
        .unwrap();
        let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "train",
                "validation_input",
                "validation_target",
                "test_input",
                "test_target"
            ]
        );
        let (train, input, target) = (&sets[0], &sets[3], &sets[4]);
        assert_eq!((train.samples.len(), input.samples.len()), (80, 15));
        assert!(input
            .samples
            .iter()
            .all(|s| !train.samples.contains(s) && !sets[1].samples.contains(s)));
        assert_eq!(input.samples, target.samples);
        for (i, (x, y)) in input.rows.iter().zip(&target.rows).enumerate() {
            assert_eq!((x.len(), y.len()), (8, 2), "user {i}");
            assert!(
                x.iter().all(|a| !y.iter().any(|b| a.0 == b.0)),
                "an item is in both input and target"
            );
        }
        let again = split(
            &t,
            Split::HeldOutUsers {
                test_users: 15,
                validation_users: 5,
                holdout_fraction: 0.2,
            },
            3,
        )
        .unwrap();
        assert_eq!(again, sets);
        let other = split(
            &t,
            Split::HeldOutUsers {
                test_users: 15,
                validation_users: 5,
                holdout_fraction: 0.2,
            },
            4,
        )
        .unwrap();
        assert_ne!(other[3].samples, sets[3].samples);
        assert!(split(
            &t,
            Split::HeldOutUsers {
                test_users: 100,
                validation_users: 0,
                holdout_fraction: 0.2
            },
            1
        )
        .is_err());
    }

    #[test]
    fn random_and_time_hold_outs() {
        let t = table(10, 10);
        let sets = split(
            &t,
            Split::Time {
                holdout_fraction: 0.3,
            },
            1,
        )
        .unwrap();
        for u in 0..10 {
            let (input, target) = (&sets[0].rows[u], &sets[1].rows[u]);
            assert_eq!((input.len(), target.len()), (7, 3));
            let time = |item: u32| t.rows[u].iter().find(|e| e.0 == item).unwrap().2;
            let latest_input = input.iter().map(|e| time(e.0)).max().unwrap();
            assert!(
                target.iter().all(|e| time(e.0) >= latest_input),
                "the target holds the latest items"
            );
        }
        let random = split(
            &t,
            Split::Random {
                holdout_fraction: 0.3,
            },
            1,
        )
        .unwrap();
        assert_ne!(random[1].rows, sets[1].rows);
        assert!(split(
            &t,
            Split::Random {
                holdout_fraction: 1.5
            },
            1
        )
        .is_err());
    }
}
