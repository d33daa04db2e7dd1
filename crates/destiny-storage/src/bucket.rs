//! A connection to one bucket, and the transfers between objects and local files.

use crate::location::ObjectUrl;
use crate::profile;
use destiny_core::error::{Error, Result};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use std::io::{Read, Write};
use std::path::Path;

/// Files up to this size go up in one request; larger ones in parts of this size, several
/// at a time. Either way the object appears only once all of it has arrived.
const PART_BYTES: usize = 16 << 20;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 8;

/// A bucket with the runtime its requests run on.
pub(crate) struct Bucket {
    runtime: tokio::runtime::Runtime,
    store: AmazonS3,
}

impl Bucket {
    /// Connects to `url`'s bucket with the settings of the AWS shared files, overridden by
    /// the `AWS_*` environment variables (`AWS_ENDPOINT_URL` for an S3-compatible store).
    pub(crate) fn of(url: &ObjectUrl) -> Result<Bucket> {
        let mut builder = AmazonS3Builder::new();
        let variable = |name: &str| std::env::var(name).ok();
        let mut endpoint = None;
        let mut set = |builder: AmazonS3Builder, key: &str, value: String| {
            let config = key.parse().map_err(|e| storage_error(url, e))?;
            if key == "aws_endpoint" || key == "aws_endpoint_url" {
                endpoint = Some(value.clone());
            }
            Ok::<_, Error>(builder.with_config(config, value))
        };
        for (key, value) in profile::settings(&variable)? {
            builder = set(builder, key, value)?;
        }
        for (name, value) in std::env::vars() {
            let key = name.to_ascii_lowercase();
            if name.starts_with("AWS_")
                && key.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok()
            {
                builder = set(builder, &key, value)?;
            }
        }
        // An http:// endpoint was chosen on purpose (a store on the local network).
        if endpoint.is_some_and(|e| e.starts_with("http://")) {
            builder = builder.with_allow_http(true);
        }
        let store = builder
            .with_bucket_name(&url.bucket)
            .build()
            .map_err(|e| storage_error(url, e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io(url.to_string(), e))?;
        Ok(Bucket { runtime, store })
    }

    /// Whether the object exists.
    pub(crate) fn exists(&self, url: &ObjectUrl) -> Result<bool> {
        match self.runtime.block_on(self.store.head(&key(url))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(storage_error(url, e)),
        }
    }

    /// Downloads the object into the file `local`, which it creates.
    pub(crate) fn download(&self, url: &ObjectUrl, local: &Path) -> Result<()> {
        self.runtime.block_on(async {
            let object = match self.store.get(&key(url)).await {
                Ok(object) => object,
                Err(object_store::Error::NotFound { .. }) => {
                    let missing =
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no such object");
                    return Err(Error::io(url.to_string(), missing));
                }
                Err(e) => return Err(storage_error(url, e)),
            };
            let expected = object.meta.size;
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(local).map_err(|e| Error::io(local, e))?,
            );
            let mut stream = object.into_stream();
            let mut received = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| storage_error(url, e))?;
                received += chunk.len() as u64;
                file.write_all(&chunk).map_err(|e| Error::io(local, e))?;
            }
            file.flush().map_err(|e| Error::io(local, e))?;
            if received != expected {
                return Err(storage_error(
                    url,
                    format!("received {received} bytes of {expected}"),
                ));
            }
            Ok(())
        })
    }

    /// Downloads the object into `local` if there is one.
    pub(crate) fn download_if_exists(&self, url: &ObjectUrl, local: &Path) -> Result<()> {
        if self.exists(url)? {
            self.download(url, local)?;
        }
        Ok(())
    }

    /// Uploads the file `local` as the object; the object is replaced whole or not at all.
    pub(crate) fn upload(&self, local: &Path, url: &ObjectUrl) -> Result<()> {
        let mut file = std::fs::File::open(local).map_err(|e| Error::io(local, e))?;
        let size = file.metadata().map_err(|e| Error::io(local, e))?.len();
        let mut buffer = vec![0u8; PART_BYTES.min(size as usize)];
        let location = key(url);
        self.runtime.block_on(async {
            if size as usize <= PART_BYTES {
                file.read_exact(&mut buffer)
                    .map_err(|e| Error::io(local, e))?;
                let payload = PutPayload::from(buffer);
                self.store
                    .put(&location, payload)
                    .await
                    .map_err(|e| storage_error(url, e))?;
                return Ok(());
            }
            let upload = self
                .store
                .put_multipart(&location)
                .await
                .map_err(|e| storage_error(url, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let sent = async {
                loop {
                    let read = file.read(&mut buffer).map_err(|e| Error::io(local, e))?;
                    if read == 0 {
                        return Ok(());
                    }
                    writer
                        .wait_for_capacity(PARTS_IN_FLIGHT)
                        .await
                        .map_err(|e| storage_error(url, e))?;
                    writer.write(&buffer[..read]);
                }
            }
            .await;
            match sent {
                Ok(()) => writer
                    .finish()
                    .await
                    .map(|_| ())
                    .map_err(|e| storage_error(url, e)),
                Err(e) => {
                    // Parts already sent are dropped by the store, not left to be billed.
                    let _ = writer.abort().await;
                    Err(e)
                }
            }
        })
    }
}

fn key(url: &ObjectUrl) -> ObjectPath {
    ObjectPath::from(url.key.as_str())
}

/// An error of the store about `url`, with the store's own words.
fn storage_error(url: &ObjectUrl, error: impl std::fmt::Display) -> Error {
    Error::io(url.to_string(), std::io::Error::other(error.to_string()))
}
