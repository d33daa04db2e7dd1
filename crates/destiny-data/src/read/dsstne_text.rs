//! DSSTNE's text format: `user<TAB>item[,number]:item[,number]:...`, one user per line.

use crate::interactions::Interactions;
use destiny_core::error::{Error, Result};
use std::path::Path;

/// Reads the file; the number after an item is its timestamp, or its value when `values`.
pub fn read(path: &Path, values: bool) -> Result<Interactions> {
    let mut interactions = Interactions::default();
    for line in crate::text::lines(path)? {
        let (number, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{number}", path.display());
        let (user, list) = line.split_once('\t').ok_or_else(|| {
            Error::Data(format!(
                "{}: expected 'user<TAB>item,...', found no tab",
                at()
            ))
        })?;
        if user.is_empty() {
            return Err(Error::Data(format!("{}: the user id is empty", at())));
        }
        for entry in list.split(':').filter(|e| !e.is_empty()) {
            let mut parts = entry.split(',');
            let item = parts.next().unwrap_or_default();
            if item.is_empty() {
                continue;
            }
            let number = match parts.next() {
                Some(text) => Some(
                    text.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                        .ok_or_else(|| {
                            Error::Data(format!(
                                "{}: '{text}' after item '{item}' is not a finite number",
                                at()
                            ))
                        })?,
                ),
                None => None,
            };
            if parts.next().is_some() {
                return Err(Error::Data(format!(
                    "{}: '{entry}' has more than one number",
                    at()
                )));
            }
            if values {
                interactions.push(user, item, number.map(|n| n as f32), None);
            } else {
                interactions.push(user, item, None, number.map(|n| n as i64));
            }
        }
    }
    Ok(interactions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_users_items_and_timestamps() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("ratings");
        std::fs::write(&path, "u1\ti1,100:i2,200\n\n u 2\ti2:i3,7\r\n").unwrap();
        let table = read(&path, false).unwrap();
        assert_eq!(table.users.ids(), &["u1".to_string(), " u 2".to_string()]);
        assert_eq!(
            table.items.ids(),
            &["i1".to_string(), "i2".to_string(), "i3".to_string()]
        );
        assert_eq!(
            table.timestamp,
            vec![100, 200, crate::interactions::NO_TIMESTAMP, 7]
        );
        let values = read(&path, true).unwrap();
        assert_eq!(values.rating[0], 100.0);
        std::fs::write(&path, "u1\ti1,100:i2,abc\n").unwrap();
        let error = read(&path, false).unwrap_err().to_string();
        assert!(
            error.contains("ratings:1:") && error.contains("'abc'"),
            "{error}"
        );
        std::fs::write(&path, "u1\ti1\nu2 i2\n").unwrap();
        assert!(read(&path, false)
            .unwrap_err()
            .to_string()
            .contains("ratings:2:"));
    }
}
