//! The one place files are written, with the path conventions of Unix tools:
//!
//! - a regular file (new or existing) is written to a temporary file in its folder and
//!   renamed over it only once complete and synced, so a failed or killed command never
//!   leaves a half-written file or damages the file it was replacing, and no temporary file
//!   is left behind;
//! - a symbolic link is followed, and its target replaced that way (the link stays a link);
//! - `-` is standard output, and an existing device, FIFO or other non-regular file is
//!   written in place, never replaced;
//! - a new file gets the permissions the umask gives; a replaced file keeps its own mode.
//!
//! Every write error (a full disk, an I/O error, a closed pipe) is an error naming the path.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, Permissions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The path that stands for standard output (and standard input where a command reads).
pub const STANDARD_STREAM: &str = "-";

/// Symbolic links followed before giving up (the limit Linux uses).
const MAX_LINKS: usize = 40;

/// Whether `path` is `-`, standard output or input.
pub fn is_standard_stream(path: &Path) -> bool {
    path.as_os_str() == STANDARD_STREAM
}

/// How `path` is to be written.
enum Target {
    /// `-`: standard output.
    StandardOutput,
    /// An existing non-regular file (a device, a FIFO): opened and written as it is.
    InPlace(PathBuf),
    /// A regular file, new or existing (symbolic links followed), replaced atomically;
    /// with the mode of the file it replaces.
    Replace { path: PathBuf, mode: Option<u32> },
}

impl Target {
    fn of(path: &Path) -> Result<Target> {
        if is_standard_stream(path) {
            return Ok(Target::StandardOutput);
        }
        let path = follow_links(path)?;
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_dir() => Err(Error::io(
                &path,
                std::io::Error::other("is a directory, not a file"),
            )),
            Ok(metadata) if !metadata.is_file() => Ok(Target::InPlace(path)),
            Ok(metadata) => Ok(Target::Replace {
                path,
                mode: Some(metadata.permissions().mode()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Target::Replace { path, mode: None })
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

/// The file a chain of symbolic links at `path` ends at (which need not exist), or `path`.
pub fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).map_err(|e| Error::io(&current, e))?;
                current = match current.parent() {
                    Some(folder) if target.is_relative() => folder.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(Error::io(
        path,
        std::io::Error::other(format!("more than {MAX_LINKS} symbolic links")),
    ))
}

/// Writes `path` through `write`: atomically for a regular file, in place for `-` and
/// non-regular files.
pub fn write_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let buffered = |out: &mut dyn Write| {
        let mut writer = BufWriter::new(out);
        write(&mut writer)?;
        writer.flush()
    };
    match Target::of(path)? {
        Target::StandardOutput => {
            buffered(&mut std::io::stdout().lock()).map_err(|e| Error::io(path, e))
        }
        Target::InPlace(target) => {
            let mut file = open_in_place(&target)?;
            buffered(&mut file).map_err(|e| Error::io(&target, e))
        }
        Target::Replace { path: target, mode } => replace(&target, mode, |temporary| {
            let mut file = File::create(temporary).map_err(|e| Error::io(&target, e))?;
            buffered(&mut file).map_err(|e| Error::io(&target, e))?;
            file.sync_all().map_err(|e| Error::io(&target, e))
        }),
    }
}

/// Lets `write` create the file at a temporary path (with the same extension, for writers
/// that choose a format by it), then renames it to `path`; for `-` and non-regular files the
/// temporary file is copied there instead.
pub fn write_path(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    match Target::of(path)? {
        Target::StandardOutput => {
            copy_through_temporary(path, write, &mut std::io::stdout().lock(), path)
        }
        Target::InPlace(target) => {
            let mut file = open_in_place(&target)?;
            copy_through_temporary(path, write, &mut file, &target)
        }
        Target::Replace { path: target, mode } => replace(&target, mode, write),
    }
}

fn open_in_place(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// A temporary file named after `path` (hidden, keeping the extension), created in `folder`
/// with the mode `mode`, or else the umask's permissions for a new file.
fn temporary_file(
    path: &Path,
    folder: &Path,
    mode: Option<u32>,
) -> Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    // 0o666 is what open(2) gives a new file before the umask takes its bits away.
    let temporary = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(&format!(".tmp{extension}"))
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(folder)
        .map_err(|e| Error::io(folder, e))?;
    if let Some(mode) = mode {
        // An explicit mode is not masked by the umask: the replaced file keeps its own.
        std::fs::set_permissions(temporary.path(), Permissions::from_mode(mode))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(temporary)
}

fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes a temporary file beside `path` through `write` and renames it over `path`.
fn replace(path: &Path, mode: Option<u32>, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let folder = folder_of(path);
    let temporary = temporary_file(path, folder, mode)?;
    write(temporary.path())?;
    temporary
        .persist(path)
        .map_err(|e| Error::io(path, e.error))?;
    // The rename itself survives a crash only once the folder is synced; a folder that
    // cannot be opened for that (some network file systems) still has the new file.
    if let Ok(folder) = File::open(folder) {
        folder.sync_all().map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Writes through `write` into a temporary file in the system's temporary folder, then
/// copies it to `out` (which `shown` names in errors).
fn copy_through_temporary(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<()>,
    out: &mut dyn Write,
    shown: &Path,
) -> Result<()> {
    let temporary = temporary_file(path, &std::env::temp_dir(), None)?;
    write(temporary.path())?;
    let mut file = File::open(temporary.path()).map_err(|e| Error::io(temporary.path(), e))?;
    std::io::copy(&mut file, out)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io(shown, e))?;
    Ok(())
}

#[cfg(test)]
mod tests;
