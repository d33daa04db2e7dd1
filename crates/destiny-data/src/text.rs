//! Lines of a text file for the readers of outside files: a line that is not UTF-8 (a binary
//! file given by mistake) is an error naming the line and the byte offset in the file.

use destiny_core::error::{Error, Result};
use std::io::BufRead;
use std::path::Path;

/// The lines of `path` with their numbers (from 1), without the line ends (`\n`, `\r\n`).
pub fn lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, String)>>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let path = path.to_path_buf();
    let (mut number, mut offset) = (0usize, 0usize);
    let mut failed = false;
    Ok(std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let mut bytes = Vec::new();
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                failed = true;
                return Some(Err(Error::io(&path, e)));
            }
        }
        number += 1;
        let start = offset;
        offset += bytes.len();
        while bytes.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            bytes.pop();
        }
        Some(match String::from_utf8(bytes) {
            Ok(line) => Ok((number, line)),
            Err(e) => {
                failed = true;
                Err(Error::Data(format!(
                    "{}:{number}: not text: invalid UTF-8 at byte {} of the file",
                    path.display(),
                    start + e.utf8_error().valid_up_to()
                )))
            }
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_the_offset_of_binary_garbage() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("f.txt");
        std::fs::write(&path, b"one\r\ntwo\n\xff\xfe\n").unwrap();
        let read: Vec<Result<(usize, String)>> = lines(&path).unwrap().collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].as_ref().unwrap(), &(1, "one".to_string()));
        assert_eq!(read[1].as_ref().unwrap(), &(2, "two".to_string()));
        let error = read[2].as_ref().unwrap_err().to_string();
        assert!(
            error.ends_with("f.txt:3: not text: invalid UTF-8 at byte 9 of the file"),
            "{error}"
        );
    }
}
