//! Delimited text: `user,item[,rating][,timestamp]` per line, with tab, comma, semicolon or
//! `::` (MovieLens 1M) between fields, and an optional header.

use super::{Columns, ReadOptions};
use crate::interactions::Interactions;
use destiny_core::error::{Error, Result};
use std::path::Path;

/// Header names that identify each column (after lower-casing and dropping a `:type`
/// suffix, as in RecBole's `user_id:token`).
const USER_NAMES: &[&str] = &["user", "user_id", "userid", "customer", "customer_id"];
const ITEM_NAMES: &[&str] = &[
    "item",
    "item_id",
    "itemid",
    "movie",
    "movie_id",
    "movieid",
    "product",
    "product_id",
];
const RATING_NAMES: &[&str] = &["rating", "ratings", "score", "value"];
const TIMESTAMP_NAMES: &[&str] = &["timestamp", "time", "ts", "date"];

fn normalise(name: &str) -> String {
    name.split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

/// Where each column is, 0-based.
struct Layout {
    user: usize,
    item: usize,
    rating: Option<usize>,
    timestamp: Option<usize>,
}

fn layout(
    header: Option<&[String]>,
    columns: &Columns,
    width: usize,
    path: &Path,
) -> Result<Layout> {
    let find = |chosen: &Option<String>,
                names: &[&str],
                what: &str,
                required: bool|
     -> Result<Option<usize>> {
        if let Some(choice) = chosen {
            if let Ok(position) = choice.parse::<usize>() {
                return if (1..=width).contains(&position) {
                    Ok(Some(position - 1))
                } else {
                    Err(Error::Data(format!(
                        "{}: there is no column {position} for the {what}",
                        path.display()
                    )))
                };
            }
            let header = header.ok_or_else(|| {
                Error::Data(format!(
                    "{}: column '{choice}' named for the {what}, but the file has no header",
                    path.display()
                ))
            })?;
            return header
                .iter()
                .position(|h| normalise(h) == normalise(choice) || h == choice)
                .map(Some)
                .ok_or_else(|| {
                    Error::Data(format!(
                        "{}: no column '{choice}' in the header ({})",
                        path.display(),
                        header.join(", ")
                    ))
                });
        }
        match header {
            Some(header) => {
                let found = header
                    .iter()
                    .position(|h| names.contains(&normalise(h).as_str()));
                if found.is_none() && required {
                    return Err(Error::Data(format!(
                        "{}: no {what} column in the header ({}); name it with an option",
                        path.display(),
                        header.join(", ")
                    )));
                }
                Ok(found)
            }
            None => Ok(None),
        }
    };
    if header.is_none() && columns == &Columns::default() {
        // Positional: user, item, then rating and timestamp when present.
        return Ok(Layout {
            user: 0,
            item: 1,
            rating: (width > 2).then_some(2),
            timestamp: (width > 3).then_some(3),
        });
    }
    let user = find(&columns.user, USER_NAMES, "user", true)?.unwrap_or(0);
    let item = find(&columns.item, ITEM_NAMES, "item", true)?.unwrap_or(1);
    Ok(Layout {
        user,
        item,
        rating: find(&columns.rating, RATING_NAMES, "rating", false)?,
        timestamp: find(&columns.timestamp, TIMESTAMP_NAMES, "timestamp", false)?,
    })
}

fn detect_delimiter(first: &str) -> String {
    if first.contains("::") {
        "::".into()
    } else {
        ["\t", ",", ";", "|"]
            .into_iter()
            .max_by_key(|d| first.matches(d).count())
            .unwrap_or("\t")
            .into()
    }
}

fn looks_like_header(fields: &[String]) -> bool {
    let known = |f: &String| {
        let name = normalise(f);
        [USER_NAMES, ITEM_NAMES, RATING_NAMES, TIMESTAMP_NAMES]
            .iter()
            .any(|names| names.contains(&name.as_str()))
    };
    fields.iter().any(known)
}

/// Numbered records of a file's lines.
type Records = Box<dyn Iterator<Item = Result<(usize, Vec<String>)>>>;

/// Splits delimited lines, quoting as CSV does for one-character delimiters.
fn records(path: &Path, delimiter: &str) -> Result<Records> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let display = path.display().to_string();
    if delimiter.len() == 1 {
        let reader = csv::ReaderBuilder::new()
            .delimiter(delimiter.as_bytes()[0])
            .has_headers(false)
            .flexible(true)
            .from_reader(file);
        Ok(Box::new(reader.into_records().filter_map(
            move |record| match record {
                Ok(record) => {
                    let line = record.position().map_or(0, |p| p.line() as usize);
                    let fields: Vec<String> = record
                        .iter()
                        .map(|f| f.trim_end_matches('\r').to_string())
                        .collect();
                    (!fields.iter().all(|f| f.trim().is_empty())).then_some(Ok((line, fields)))
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    Some(Err(Error::Data(format!("{display}:{line}: {e}"))))
                }
            },
        )))
    } else {
        let delimiter = delimiter.to_string();
        Ok(Box::new(crate::text::lines(path)?.filter_map(
            move |line| match line {
                Ok((_, line)) if line.trim().is_empty() => None,
                Ok((n, line)) => Some(Ok((
                    n,
                    line.split(delimiter.as_str()).map(String::from).collect(),
                ))),
                Err(e) => Some(Err(e)),
            },
        )))
    }
}

/// Reads the file.
pub fn read(path: &Path, options: &ReadOptions) -> Result<Interactions> {
    let mut first_line = None;
    for line in crate::text::lines(path)? {
        let (_, line) = line?;
        if !line.trim().is_empty() {
            first_line = Some(line);
            break;
        }
    }
    let first_line =
        first_line.ok_or_else(|| Error::Data(format!("{}: the file is empty", path.display())))?;
    let delimiter = options
        .delimiter
        .clone()
        .unwrap_or_else(|| detect_delimiter(&first_line));
    let mut rows = records(path, &delimiter)?.peekable();
    let first = match rows.peek() {
        Some(Ok((_, fields))) => fields.clone(),
        Some(Err(_)) => return Err(rows.next().unwrap().unwrap_err()),
        None => {
            return Err(Error::Data(format!(
                "{}: the file is empty",
                path.display()
            )))
        }
    };
    let header = options.header.unwrap_or_else(|| looks_like_header(&first));
    if header {
        rows.next();
    }
    let layout = layout(
        header.then_some(first.as_slice()),
        &options.columns,
        first.len(),
        path,
    )?;
    let needed = [
        Some(layout.user),
        Some(layout.item),
        layout.rating,
        layout.timestamp,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(1)
        + 1;
    let mut interactions = Interactions::default();
    for row in rows {
        let (line, fields) = row?;
        let at = || format!("{}:{line}", path.display());
        if fields.len() < needed {
            return Err(Error::Data(format!(
                "{}: {} fields, at least {needed} expected",
                at(),
                fields.len()
            )));
        }
        let (user, item) = (fields[layout.user].trim(), fields[layout.item].trim());
        if user.is_empty() || item.is_empty() {
            return Err(Error::Data(format!(
                "{}: the user or item id is empty",
                at()
            )));
        }
        let number = |column: Option<usize>, what: &str| -> Result<Option<f64>> {
            column
                .map(|c| {
                    let text = fields[c].trim();
                    text.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            Error::Data(format!("{}: the {what} '{text}' is not a number", at()))
                        })
                })
                .transpose()
        };
        let rating = number(layout.rating, "rating")?.map(|r| r as f32);
        let timestamp = number(layout.timestamp, "timestamp")?.map(|t| t as i64);
        interactions.push(user, item, rating, timestamp);
    }
    Ok(interactions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str, options: &ReadOptions) -> Result<Interactions> {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("data.csv");
        std::fs::write(&path, text).unwrap();
        read(&path, options)
    }

    #[test]
    fn recbole_header_and_tabs() {
        let table = read_text(
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
            &ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(table.users.ids(), &["196".to_string(), "186".to_string()]);
        assert_eq!(table.rating, vec![3.0, 3.0]);
        assert_eq!(table.timestamp, vec![881250949, 891717742]);
    }

    #[test]
    fn quoted_csv_odd_ids_blank_lines_and_double_colons() {
        let table = read_text(
            "userId,movieId,rating\n\"Smith, J\",\"Film \"\"X\"\"\",4.5\n\nü,2,1\n",
            &ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(
            table.users.ids(),
            &["Smith, J".to_string(), "ü".to_string()]
        );
        assert_eq!(table.items.id(0), "Film \"X\"");
        let table = read_text(
            "1::10::5::978300760\n2::20::3::978302109\n",
            &ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(
            (table.len(), table.rating[0], table.timestamp[1]),
            (2, 5.0, 978302109)
        );
        let table = read_text("a,b\nc,d\n", &ReadOptions::default()).unwrap();
        assert_eq!(table.len(), 2);
        assert!(table.rating.iter().all(|r| r.is_nan()));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let error = read_text(
            "user,item,rating\nu,i,5\nu,j,five\n",
            &ReadOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("data.csv:3:") && error.contains("'five'"),
            "{error}"
        );
        let error = read_text("u,i,5\nu\n", &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("data.csv:2:"), "{error}");
        let options = ReadOptions {
            columns: Columns {
                user: Some("customer".into()),
                ..Columns::default()
            },
            ..ReadOptions::default()
        };
        let error = read_text("user,item\nu,i\n", &options)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no column 'customer'"), "{error}");
    }
}
