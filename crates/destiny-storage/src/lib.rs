//! Paths that are local files or objects in S3-compatible storage (`s3://bucket/key`).
//!
//! Commands read and write local files; this crate puts objects behind the same paths:
//!
//! - an [`Input`] that is an object is downloaded once into a temporary folder, and the
//!   command reads (or memory-maps) that copy, which is removed when the input is dropped;
//! - an [`Output`] that is an object is written locally first and uploaded by
//!   [`Output::publish`]. S3 shows an object only once all of it has arrived, so a failed
//!   or killed command leaves the old object or none, never part of one.
//!
//! Settings come from the AWS shared files and `AWS_*` variables ([`profile`]).

mod bucket;
mod location;
pub mod profile;

pub use location::{is_object, Location, ObjectUrl};

use bucket::Bucket;
use destiny_core::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use tempfile::TempDir;

/// A file to read: the local path itself, or the downloaded copy of an object.
pub struct Input {
    path: PathBuf,
    /// The folder of a downloaded copy, removed with the input.
    _copy: Option<TempDir>,
}

impl Input {
    /// Opens `path` for reading, downloading it first if it is an object; `-` is standard
    /// input.
    pub fn open(path: &Path) -> Result<Input> {
        Input::open_with_siblings(path, &[])
    }

    /// Opens `path` as [`Input::open`] does; for an object, those of the `siblings` beside
    /// it that exist are downloaded beside its copy, where a command looks for them as it
    /// would next to a local file (a dataset's `features.idx`).
    pub fn open_with_siblings(path: &Path, siblings: &[&str]) -> Result<Input> {
        if destiny_core::atomic::is_standard_stream(path) {
            return standard_input();
        }
        let url = match Location::of(path)? {
            Location::Local(path) => return Ok(Input::local(path)),
            Location::Object(url) => url,
        };
        let bucket = Bucket::of(&url)?;
        let copy = staging_folder(&url)?;
        let local = copy.path().join(url.file_name());
        bucket.download(&url, &local)?;
        for name in siblings {
            bucket.download_if_exists(&url.sibling(name), &copy.path().join(name))?;
        }
        Ok(Input {
            path: local,
            _copy: Some(copy),
        })
    }

    /// Opens `path`, a file or a folder. A key with no object of its own is a prefix: of
    /// the objects under it, only the `names` that the command reads are downloaded, into a
    /// folder (so a command never fetches files it was not meant to see, such as the test
    /// users' next to the validation users').
    pub fn open_file_or_folder(path: &Path, names: &[&str]) -> Result<Input> {
        let url = match Location::of(path)? {
            Location::Local(path) => return Ok(Input::local(path)),
            Location::Object(url) => url,
        };
        let bucket = Bucket::of(&url)?;
        let copy = staging_folder(&url)?;
        if bucket.exists(&url)? {
            let local = copy.path().join(url.file_name());
            bucket.download(&url, &local)?;
            return Ok(Input {
                path: local,
                _copy: Some(copy),
            });
        }
        for name in names {
            bucket.download_if_exists(&url.child(name), &copy.path().join(name))?;
        }
        Ok(Input {
            path: copy.path().to_path_buf(),
            _copy: Some(copy),
        })
    }

    fn local(path: &Path) -> Input {
        Input {
            path: path.to_path_buf(),
            _copy: None,
        }
    }

    /// Opens `path` if it is given.
    pub fn open_optional(path: Option<&Path>) -> Result<Option<Input>> {
        path.map(Input::open).transpose()
    }

    /// The local file to read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether `path` exists, as a local file or folder or as an object.
pub fn exists(path: &Path) -> Result<bool> {
    match Location::of(path)? {
        Location::Local(path) => Ok(path.exists()),
        Location::Object(url) => Bucket::of(&url)?.exists(&url),
    }
}

/// A file or folder to write: the local path itself, or a local stand-in for an object (or
/// for the objects under a prefix) that [`Output::publish`] uploads.
pub struct Output {
    path: PathBuf,
    remote: Option<Remote>,
}

struct Remote {
    url: ObjectUrl,
    bucket: Bucket,
    /// Holds the stand-in; removed with the output.
    _staging: TempDir,
    folder: bool,
}

impl Output {
    /// A file to write at `path`.
    pub fn file(path: &Path) -> Result<Output> {
        Output::new(path, false, false)
    }

    /// A file that the command may read before it replaces it (a model that training
    /// resumes): for an object, the stand-in starts as a copy of the object if there is one.
    pub fn replacing(path: &Path) -> Result<Output> {
        Output::new(path, false, true)
    }

    /// A model file that training writes. An object is checked as training checks a local
    /// file: resuming needs it to exist (the stand-in starts as its copy), and one that
    /// exists is replaced only with `overwrite`.
    pub fn model(path: &Path, resume: bool, overwrite: bool) -> Result<Output> {
        if is_object(path) {
            let exists = exists(path)?;
            if resume && !exists {
                return Err(Error::Options(format!(
                    "there is no model file {} to resume",
                    path.display()
                )));
            }
            if !resume && !overwrite && exists {
                return Err(Error::Options(format!(
                    "{} already exists: resume it (--resume) or replace it (--overwrite)",
                    path.display()
                )));
            }
        }
        Output::new(path, false, resume)
    }

    /// A folder of files to write at `path`; for a prefix in a bucket, each file becomes the
    /// object `prefix/name`.
    pub fn folder(path: &Path) -> Result<Output> {
        Output::new(path, true, false)
    }

    fn new(path: &Path, folder: bool, download: bool) -> Result<Output> {
        let url = match Location::of(path)? {
            Location::Local(path) => {
                return Ok(Output {
                    path: path.to_path_buf(),
                    remote: None,
                })
            }
            Location::Object(url) => url,
        };
        let bucket = Bucket::of(&url)?;
        let staging = staging_folder(&url)?;
        let local = if folder {
            staging.path().to_path_buf()
        } else {
            staging.path().join(url.file_name())
        };
        if download && bucket.exists(&url)? {
            bucket.download(&url, &local)?;
        }
        Ok(Output {
            path: local,
            remote: Some(Remote {
                url,
                bucket,
                _staging: staging,
                folder,
            }),
        })
    }

    /// Where the command writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Uploads what the command wrote, if the output is an object: the file, or every file
    /// of the folder (each object is replaced whole). May be called again after rewrites.
    pub fn publish(&self) -> Result<()> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        if !remote.folder {
            return remote.bucket.upload(&self.path, &remote.url);
        }
        for (file, relative) in files_under(&self.path)? {
            remote.bucket.upload(&file, &remote.url.child(&relative))?;
        }
        Ok(())
    }
}

/// Every regular file under `folder` with its path relative to it (`/`-separated), in a
/// fixed order; hidden files (temporary files of atomic writes) are left out.
fn files_under(folder: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    let mut pending = vec![(folder.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if kind.is_dir() {
                pending.push((entry.path(), format!("{relative}/")));
            } else if kind.is_file() {
                files.push((entry.path(), relative));
            }
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(files)
}

/// A temporary folder for the local copy of `url`, in the system's temporary folder
/// (`TMPDIR`).
fn staging_folder(source: impl std::fmt::Display) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("destiny-object.")
        .tempdir()
        .map_err(|e| Error::io(source.to_string(), e))
}

/// Whether standard input was taken already: it can be read once.
static STANDARD_INPUT_TAKEN: AtomicBool = AtomicBool::new(false);

/// A copy of standard input in a temporary folder (the readers detect a format and may read
/// a file twice, which a pipe does not allow).
fn standard_input() -> Result<Input> {
    if STANDARD_INPUT_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(Error::Options(
            "standard input (-) can be read once: name a file for the other input".into(),
        ));
    }
    let copy = staging_folder("-")?;
    let local = copy.path().join("stdin");
    let mut file = std::fs::File::create(&local).map_err(|e| Error::io(&local, e))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file).map_err(|e| Error::io("-", e))?;
    Ok(Input {
        path: local,
        _copy: Some(copy),
    })
}
