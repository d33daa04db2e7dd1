//! An advisory lock on a file being written over a long run (a model file checkpointed after
//! every epoch), so that a second run on the same file stops at once with a clear message
//! instead of interleaving its checkpoints with the first's.
//!
//! The lock is held on a hidden file beside the target (`.NAME.lock`), not on the target
//! itself: the target is replaced by renames, each a new file that a lock on the old one
//! would not cover. The lock file is removed when the lock is released.

use crate::atomic::follow_links;
use crate::error::{Error, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// An exclusive lock on a file, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    lock_path: PathBuf,
    _file: File,
}

impl FileLock {
    /// Locks `path` (through symbolic links, the file they end at) for this process, or
    /// fails at once naming the file when another process holds it. Also fails when the
    /// file's folder does not exist or cannot be written, before any work is done.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let target = follow_links(path)?;
        let name = target
            .file_name()
            .ok_or_else(|| Error::io(path, std::io::Error::other("not a file name")))?;
        let lock_path = target.with_file_name(format!(".{}.lock", name.to_string_lossy()));
        // A lock file removed by its holder between our open and our lock is a stale one:
        // open again until the locked file is the one at the path.
        loop {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .map_err(|e| Error::io(path, e))?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(Error::ModelFile {
                        path: path.to_path_buf(),
                        message: format!(
                            "in use by another run (it holds the lock {})",
                            lock_path.display()
                        ),
                    })
                }
                Err(e) => return Err(Error::io(&lock_path, e.into())),
            }
            let locked = file.metadata().map_err(|e| Error::io(&lock_path, e))?;
            let current = std::fs::metadata(&lock_path);
            if current.is_ok_and(|m| m.ino() == locked.ino() && m.dev() == locked.dev()) {
                return Ok(FileLock {
                    lock_path,
                    _file: file,
                });
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Removed while still locked, so that no other process can lock this file after it
        // is gone (the inode check in `acquire` turns away one that opened it before).
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_released() {
        let folder = tempfile::tempdir().unwrap();
        let model = folder.path().join("m.safetensors");
        let first = FileLock::acquire(&model).unwrap();
        // flock locks belong to an open file, so a second open in this process conflicts
        // just as another process would.
        let error = FileLock::acquire(&model).unwrap_err().to_string();
        assert!(
            error.contains("m.safetensors") && error.contains("in use by another run"),
            "{error}"
        );
        drop(first);
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 0);
        let again = FileLock::acquire(&model).unwrap();
        drop(again);
    }

    #[test]
    fn a_missing_folder_fails_at_once() {
        let folder = tempfile::tempdir().unwrap();
        let error = FileLock::acquire(&folder.path().join("missing/m.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("missing/m.safetensors") && error.contains("No such file"),
            "{error}"
        );
    }
}
