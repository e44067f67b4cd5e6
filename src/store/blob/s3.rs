//! Blobs in an S3 bucket (AWS or any S3-compatible service), through `object_store`.
//!
//! A blob is `PREFIX/<first two hex digits>/<name>`. Writes buffer one part at a time
//! ([`PART_BYTES`]): a blob smaller than a part is one `PUT`, a larger one a multipart
//! upload with at most [`PARTS_IN_FLIGHT`] parts in flight, visible only when completed;
//! a writer dropped before its commit aborts the upload. Reads are (ranged) `GET`s,
//! streamed.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig,
};
use tokio::io::AsyncWriteExt as _;

use super::{BlobName, BlobReader};
use crate::config::S3Location;

/// The size of one uploaded part (S3's minimum for all but the last).
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload sent at once: what one upload can hold in memory is bounded by
/// this and [`PART_BYTES`].
const PARTS_IN_FLIGHT: usize = 2;

/// A bucket (and prefix) holding blobs.
#[derive(Debug, Clone)]
pub(super) struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl S3Blobs {
    /// A client for `location`; the bucket is first reached by the first request.
    pub(super) fn open(location: &S3Location) -> io::Result<Self> {
        // The process's `AWS_*` variables first (a role, a profile's container
        // credentials), then what the configuration names.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&location.bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(location.allow_http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            )
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &location.endpoint {
            // S3-compatible services are addressed by path (`endpoint/bucket/key`).
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &location.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &location.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &location.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &location.session_token {
            builder = builder.with_token(token);
        }
        let store = builder.build().map_err(io::Error::other)?;
        Ok(Self {
            store: Arc::new(store),
            prefix: location.prefix.clone(),
        })
    }

    fn key(&self, rest: &str) -> Path {
        match self.prefix.is_empty() {
            true => Path::from(rest),
            false => Path::from(format!("{}/{rest}", self.prefix)),
        }
    }

    fn path(&self, name: &BlobName) -> Path {
        self.key(&format!("{}/{}", name.shard(), name.as_str()))
    }

    pub(super) fn create(&self, name: &BlobName) -> S3Writer {
        let writer = BufWriter::with_capacity(Arc::clone(&self.store), self.path(name), PART_BYTES)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        S3Writer {
            writer: Some(std::sync::Mutex::new(writer)),
        }
    }

    pub(super) async fn read_head(&self, name: &BlobName, len: usize) -> io::Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(0..len as u64)),
            ..GetOptions::default()
        };
        let got = self.store.get_opts(&self.path(name), options).await?;
        Ok(got.bytes().await?.to_vec())
    }

    pub(super) async fn read_from(&self, name: &BlobName, offset: u64) -> io::Result<BlobReader> {
        let options = GetOptions {
            range: Some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        let got = self.store.get_opts(&self.path(name), options).await?;
        let stream = got.into_stream().map_err(io::Error::from);
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    pub(super) async fn delete(&self, name: &BlobName) -> io::Result<()> {
        match self.store.delete(&self.path(name)).await {
            Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn exists(&self, name: &BlobName) -> io::Result<bool> {
        match self.store.head(&self.path(name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn list(&self) -> io::Result<Vec<BlobName>> {
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let mut listed = self.store.list(prefix.as_ref());
        let mut names = Vec::new();
        while let Some(meta) = listed.next().await {
            // Probes (`tmp/probe-…`) and anything else that is not a blob name are skipped.
            if let Some(name) = meta?.location.filename().and_then(BlobName::parse) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Writes, reads back and removes a probe object.
    pub(super) async fn check(&self) -> io::Result<()> {
        let probe = self.key(&format!("tmp/probe-{}", BlobName::random().as_str()));
        self.store
            .put(&probe, PutPayload::from_static(b"ok"))
            .await?;
        let back = self.store.get(&probe).await?.bytes().await?;
        self.store.delete(&probe).await?;
        match back.as_ref() {
            b"ok" => Ok(()),
            _ => Err(io::Error::other("the S3 probe read back other bytes")),
        }
    }
}

/// A blob being uploaded. Dropped before [`S3Writer::commit`], the upload is aborted.
///
/// The upload (which is `Send` but not `Sync`) sits in a mutex only so that the writer
/// can be shared by reference across an `await`; it is reached through `get_mut`, never
/// locked.
pub(super) struct S3Writer {
    writer: Option<std::sync::Mutex<BufWriter>>,
}

impl std::fmt::Debug for S3Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Writer")
    }
}

impl S3Writer {
    pub(super) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let writer = self.writer.as_mut().ok_or_else(closed)?;
        // A poisoned mutex only means a panic elsewhere while it was held; it never is.
        let writer = writer.get_mut().unwrap_or_else(|e| e.into_inner());
        writer.put(Bytes::copy_from_slice(bytes)).await?;
        Ok(())
    }

    /// Sends what is buffered and completes the upload: only now is the blob visible.
    pub(super) async fn commit(mut self) -> io::Result<()> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(closed)?
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        // A completion that fails leaves the upload to the bucket's lifecycle rule: the
        // writer cannot abort once it has begun to shut down.
        writer.shutdown().await
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            abort_later(writer.into_inner().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

/// Aborts an unfinished upload in the background (a drop cannot wait). Without a runtime,
/// or if the abort fails, the bucket's lifecycle rule removes the parts.
fn abort_later(mut writer: BufWriter) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(e) = writer.abort().await {
                tracing::warn!(error = %e, "an unfinished S3 upload could not be aborted");
            }
        });
    }
}

fn closed() -> io::Error {
    io::Error::other("blob writer already committed")
}
