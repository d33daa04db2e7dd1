//! Which paths name objects: `s3://bucket/key`; every other path is a local file.

use destiny_core::error::{Error, Result};
use std::path::Path;

/// The scheme of objects in S3 and S3-compatible stores.
const S3_SCHEME: &str = "s3://";

/// An object in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    /// The bucket's name.
    pub bucket: String,
    /// The object's key inside the bucket (no leading `/`).
    pub key: String,
}

impl ObjectUrl {
    /// The object's last path segment, which keeps the extension that some writers choose
    /// a format by.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }

    /// The object `name` beside this one (in the same "folder" of keys).
    pub fn sibling(&self, name: &str) -> ObjectUrl {
        let key = match self.key.rsplit_once('/') {
            Some((folder, _)) => format!("{folder}/{name}"),
            None => name.to_string(),
        };
        ObjectUrl {
            bucket: self.bucket.clone(),
            key,
        }
    }

    /// The object `name` under this key taken as a prefix (`key/name`).
    pub fn child(&self, name: &str) -> ObjectUrl {
        ObjectUrl {
            bucket: self.bucket.clone(),
            key: format!("{}/{name}", self.key),
        }
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{S3_SCHEME}{}/{}", self.bucket, self.key)
    }
}

/// Where a path points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location<'a> {
    /// A local path, `-` included.
    Local(&'a Path),
    /// An object in S3-compatible storage.
    Object(ObjectUrl),
}

impl<'a> Location<'a> {
    /// Reads `path`: `s3://bucket/key` is an object; another `scheme://` is an error rather
    /// than a local folder named `scheme:`, which is never what was meant.
    pub fn of(path: &'a Path) -> Result<Location<'a>> {
        let Some(text) = path.to_str() else {
            return Ok(Location::Local(path));
        };
        if let Some(rest) = text.strip_prefix(S3_SCHEME) {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let key = key.trim_end_matches('/');
            if bucket.is_empty() || key.is_empty() {
                return Err(invalid(path, "an object is s3://BUCKET/KEY, with both"));
            }
            return Ok(Location::Object(ObjectUrl {
                bucket: bucket.to_string(),
                key: key.to_string(),
            }));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(invalid(
                    path,
                    &format!("{scheme}:// is not supported (objects are s3://BUCKET/KEY)"),
                ));
            }
        }
        Ok(Location::Local(path))
    }
}

/// Whether `path` names an object rather than a local file (a malformed URL counts as one,
/// so that the error comes where it is opened).
pub fn is_object(path: &Path) -> bool {
    !matches!(Location::of(path), Ok(Location::Local(_)))
}

fn invalid(path: &Path, message: &str) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> ObjectUrl {
        match Location::of(Path::new(text)).unwrap() {
            Location::Object(url) => url,
            Location::Local(path) => panic!("{} is local", path.display()),
        }
    }

    #[test]
    fn s3_urls_are_objects_with_bucket_and_key() {
        let url = object("s3://ratings/ml/20m/train.arrow");
        assert_eq!(url.bucket, "ratings");
        assert_eq!(url.key, "ml/20m/train.arrow");
        assert_eq!(url.file_name(), "train.arrow");
        assert_eq!(url.to_string(), "s3://ratings/ml/20m/train.arrow");
        assert_eq!(object("s3://b/folder/").key, "folder");
    }

    #[test]
    fn other_paths_are_local() {
        for text in [
            "-",
            "model.safetensors",
            "/tmp/s3:/x",
            "a/b://c",
            "./s3://x",
        ] {
            assert_eq!(
                Location::of(Path::new(text)).unwrap(),
                Location::Local(Path::new(text)),
                "{text}"
            );
        }
    }

    #[test]
    fn incomplete_urls_and_other_schemes_are_errors() {
        for (text, expected) in [
            ("s3://", "s3://BUCKET/KEY"),
            ("s3://bucket", "s3://BUCKET/KEY"),
            ("s3://bucket/", "s3://BUCKET/KEY"),
            ("s3:///key", "s3://BUCKET/KEY"),
            ("gs://bucket/key", "gs:// is not supported"),
        ] {
            let error = Location::of(Path::new(text)).unwrap_err().to_string();
            assert!(
                error.starts_with(text) && error.contains(expected),
                "{text}: {error}"
            );
            assert!(is_object(Path::new(text)));
        }
    }
}
