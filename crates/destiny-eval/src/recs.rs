//! Recommendation files in DSSTNE's format: `user<TAB>item,score:item,score:...`, best
//! first, with the original ids.

use destiny_core::atomic;
use destiny_core::error::{Error, Result};
use destiny_core::predict::TopK;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// Users formatted by one task: enough to make a task worth its overhead.
const CHUNK_USERS: usize = 2048;
/// Chunks formatted before they are written, so that memory stays bounded.
const WINDOW_CHUNKS: usize = 64;

/// Ranked recommendations per user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recommendations {
    pub users: Vec<String>,
    /// Per user, `(item, score)` best first.
    pub lists: Vec<Vec<(String, f32)>>,
}

impl Recommendations {
    /// Turns top-K columns into recommendations with the original ids: `samples` name the
    /// rows of `top`, `features` its columns.
    pub fn from_top_k(samples: &[String], top: &TopK, features: &[String]) -> Result<Self> {
        let mut lists = Vec::with_capacity(samples.len());
        for row in 0..samples.len() {
            let list = top
                .row(row)
                .map(|(column, score)| {
                    features
                        .get(column as usize)
                        .map(|id| (id.clone(), score))
                        .ok_or_else(|| {
                            Error::Data(format!(
                                "column {column} is outside the feature index of {} items",
                                features.len()
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            lists.push(list);
        }
        Ok(Recommendations {
            users: samples.to_vec(),
            lists,
        })
    }
}

/// Refuses ids that hold the format's separators.
fn check_ids<'a>(ids: impl Iterator<Item = &'a String>) -> Result<()> {
    let bad = ids
        .into_iter()
        .find(|id| id.contains(['\t', '\n', ':', ',']));
    match bad {
        Some(id) => Err(Error::Data(format!(
            "id '{id}' contains a tab, newline, ':' or ',', which the recs format cannot hold"
        ))),
        None => Ok(()),
    }
}

/// Refuses a top-K column outside `features`, before anything is written or built from it.
pub(crate) fn check_columns(top: &TopK, features: &[String]) -> Result<()> {
    match top
        .columns
        .iter()
        .find(|&&c| c != u32::MAX && c as usize >= features.len())
    {
        Some(column) => Err(Error::Data(format!(
            "column {column} is outside the feature index of {} items",
            features.len()
        ))),
        None => Ok(()),
    }
}

/// Writes recommendations atomically. Ids must not contain the format's separators.
pub fn write_recommendations(path: &Path, recommendations: &Recommendations) -> Result<()> {
    let lists = &recommendations.lists;
    check_ids(
        recommendations
            .users
            .iter()
            .chain(lists.iter().flatten().map(|(i, _)| i)),
    )?;
    write_lines(path, recommendations.users.len(), |u, out| {
        let items = lists[u].iter().map(|(item, score)| (item.as_str(), *score));
        push_line(out, &recommendations.users[u], items);
    })
}

/// Writes top-K columns as recommendations with the original ids (`samples` name the rows
/// of `top`, `features` its columns), as [`write_recommendations`] writes them, without
/// making the lists first.
pub fn write_top_k(path: &Path, samples: &[String], top: &TopK, features: &[String]) -> Result<()> {
    check_ids(samples.iter().chain(features))?;
    check_columns(top, features)?;
    write_lines(path, samples.len(), |u, out| {
        let items = top
            .row(u)
            .map(|(c, score)| (features[c as usize].as_str(), score));
        push_line(out, &samples[u], items);
    })
}

/// Writes the lines of `users` users atomically, formatted in chunks on every core and
/// written in order; `line` appends user `u`'s line.
fn write_lines(path: &Path, users: usize, line: impl Fn(usize, &mut Vec<u8>) + Sync) -> Result<()> {
    let chunks: Vec<usize> = (0..users).step_by(CHUNK_USERS).collect();
    atomic::write_file(path, |out| {
        for window in chunks.chunks(WINDOW_CHUNKS) {
            let formatted: Vec<Vec<u8>> = window
                .par_iter()
                .map(|&first| {
                    let mut buffer = Vec::new();
                    for u in first..(first + CHUNK_USERS).min(users) {
                        line(u, &mut buffer);
                    }
                    buffer
                })
                .collect();
            for buffer in formatted {
                out.write_all(&buffer)?;
            }
        }
        Ok(())
    })
}

/// Appends `user<TAB>item,score:item,score...` and a newline.
fn push_line<'a>(out: &mut Vec<u8>, user: &str, items: impl Iterator<Item = (&'a str, f32)>) {
    out.extend_from_slice(user.as_bytes());
    out.push(b'\t');
    for (n, (item, score)) in items.enumerate() {
        if n > 0 {
            out.push(b':');
        }
        out.extend_from_slice(item.as_bytes());
        out.push(b',');
        push_score(out, score);
    }
    out.push(b'\n');
}

/// Appends `score` with six decimals, the bytes `format!("{score:.6}")` gives, faster: the
/// score in millionths is exact in f64 (24 bits of mantissa times 1e6's 20), rounded half to
/// even as the formatter rounds.
fn push_score(out: &mut Vec<u8>, score: f32) {
    let millionths = f64::from(score.abs()) * 1e6;
    if millionths.is_nan() || millionths >= 1e18 {
        // Huge, infinite or NaN: the formatter's way.
        let _ = write!(out, "{score:.6}");
        return;
    }
    let millionths = millionths.round_ties_even() as u64;
    if score.is_sign_negative() {
        out.push(b'-');
    }
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(millionths / 1_000_000).as_bytes());
    out.push(b'.');
    let fraction = digits.format(millionths % 1_000_000);
    out.extend(std::iter::repeat_n(b'0', 6 - fraction.len()));
    out.extend_from_slice(fraction.as_bytes());
}

/// Reads a recommendations file; malformed lines name the file and line.
pub fn read_recommendations(path: &Path) -> Result<Recommendations> {
    let mut recommendations = Recommendations::default();
    for line in destiny_data::text::lines(path)? {
        let (number, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{number}", path.display());
        let (user, list) = line
            .split_once('\t')
            .ok_or_else(|| Error::Data(format!("{}: no tab after the user id", at())))?;
        let mut items = Vec::new();
        for entry in list.split(':').filter(|e| !e.is_empty()) {
            let (item, score) = match entry.split_once(',') {
                Some((item, score)) => {
                    let score = score.parse::<f32>().map_err(|_| {
                        Error::Data(format!("{}: score '{score}' is not a number", at()))
                    })?;
                    (item, score)
                }
                None => (entry, f32::NAN),
            };
            items.push((item.to_string(), score));
        }
        recommendations.users.push(user.to_string());
        recommendations.lists.push(items);
    }
    Ok(recommendations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("recs");
        let recs = Recommendations {
            users: vec!["u1".into(), "u 2".into()],
            lists: vec![vec![("i9".into(), 0.5), ("i1".into(), 0.25)], vec![]],
        };
        write_recommendations(&path, &recs).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "u1\ti9,0.500000:i1,0.250000\nu 2\t\n"
        );
        assert_eq!(read_recommendations(&path).unwrap(), recs);
        std::fs::write(&path, "u1\ti1,0.5\nu2\ti2,high\n").unwrap();
        let error = read_recommendations(&path).unwrap_err().to_string();
        assert!(
            error.contains("recs:2:") && error.contains("'high'"),
            "{error}"
        );
        let bad = Recommendations {
            users: vec!["a:b".into()],
            lists: vec![vec![]],
        };
        assert!(write_recommendations(&path, &bad).is_err());
    }

    #[test]
    fn scores_are_the_formatters_bytes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let special = [
            0.0,
            -0.0,
            0.0078125,
            -0.0078125,
            1.0 / 64.0,
            0.5,
            1e-7,
            -1e-9,
            0.9999995,
            0.99999994,
            1.0,
            123456.79,
            1e12,
            3e20,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let mut drawn: Vec<f32> = (0..2_000_000)
            .map(|_| f32::from_bits(rng.random()))
            .collect();
        drawn.extend((0..2_000_000).map(|_| rng.random_range(-2.0f32..2.0)));
        for score in special.into_iter().chain(drawn) {
            let mut fast = Vec::new();
            push_score(&mut fast, score);
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                format!("{score:.6}"),
                "{score:e} ({:#x})",
                score.to_bits()
            );
        }
    }

    #[test]
    fn top_k_is_written_as_its_recommendations_across_chunks() {
        let users = 2 * CHUNK_USERS + 17;
        let features: Vec<String> = (0..50).map(|i| format!("item{i}")).collect();
        let samples: Vec<String> = (0..users).map(|u| format!("user {u}")).collect();
        let k = 3;
        let mut top = TopK {
            k,
            columns: Vec::new(),
            scores: Vec::new(),
        };
        for u in 0..users {
            for r in 0..k {
                // Some rows padded, as when a user has fewer candidates than k.
                let padded = u % 5 == 0 && r == 2;
                top.columns.push(if padded {
                    u32::MAX
                } else {
                    ((u * 7 + r) % 50) as u32
                });
                top.scores.push(if padded {
                    f32::NEG_INFINITY
                } else {
                    1.0 / (u + r + 1) as f32
                });
            }
        }
        let folder = tempfile::tempdir().unwrap();
        let (direct, listed) = (folder.path().join("direct"), folder.path().join("listed"));
        write_top_k(&direct, &samples, &top, &features).unwrap();
        let recs = Recommendations::from_top_k(&samples, &top, &features).unwrap();
        // The lists written one write! at a time, as before: the same bytes.
        let mut expected = String::new();
        for (user, list) in recs.users.iter().zip(&recs.lists) {
            expected += &format!("{user}\t");
            for (n, (item, score)) in list.iter().enumerate() {
                expected += &format!("{}{item},{score:.6}", if n == 0 { "" } else { ":" });
            }
            expected += "\n";
        }
        write_recommendations(&listed, &recs).unwrap();
        assert_eq!(std::fs::read_to_string(&direct).unwrap(), expected);
        assert_eq!(std::fs::read_to_string(&listed).unwrap(), expected);
        top.columns[4] = 50;
        let error = write_top_k(&direct, &samples, &top, &features).unwrap_err();
        assert!(
            error.to_string().contains("column 50 is outside"),
            "{error}"
        );
        let bad: Vec<String> = vec!["a,b".into(); 50];
        assert!(write_top_k(&direct, &samples, &top, &bad).is_err());
    }
}
