//! Atomic file writes: output goes to a temporary file in the target's folder and is renamed
//! over the target only once complete, so a failed or killed command never leaves a
//! half-written file or damages the file it was replacing.

use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes `path` through `write`, atomically.
pub fn write_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    write_path(path, |temporary| {
        let file = std::fs::File::create(temporary).map_err(|e| Error::io(path, e))?;
        let mut writer = BufWriter::new(file);
        write(&mut writer)
            .and_then(|()| writer.flush())
            .map_err(|e| Error::io(path, e))?;
        writer.get_ref().sync_all().map_err(|e| Error::io(path, e))
    })
}

/// Lets `write` create the file at a temporary path, then renames it to `path`.
pub fn write_path(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The temporary name keeps the extension, for writers that choose a format by it.
    let extension = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let temporary = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(&format!(".tmp{extension}"))
        .tempfile_in(folder)
        .map_err(|e| Error::io(folder, e))?;
    write(temporary.path())?;
    temporary
        .persist(path)
        .map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_on_success() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("out.txt");
        write_file(&path, |w| w.write_all(b"first")).unwrap();
        let failed = write_file(&path, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.unwrap_err().to_string().contains("disk full"));
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let leftovers = std::fs::read_dir(folder.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        assert!(write_file(&folder.path().join("missing/out.txt"), |w| w
            .write_all(b"x"))
        .is_err());
    }
}
