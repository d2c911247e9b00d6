//! The data lake: local paths, or an S3-compatible object store (`s3://bucket/prefix`).
//!
//! Objects are mirrored into `<data_dir>/lake/s3/<bucket>/…` before a run reads them, streamed to
//! disk (never held in memory). An object whose size and ETag match the mirrored copy is not
//! downloaded again, so a later run fetches only new or changed files and partitions. The client
//! speaks the S3 REST API (path-style `ListObjectsV2`, `GetObject`, `PutObject`, `CreateBucket`)
//! signed with SigV4 (farol-channels' signer, checked against AWS's test vectors), which works
//! with AWS S3, MinIO, Ceph, Cloudflare R2 and moto alike.

use std::path::{Path, PathBuf};

use farol_channels::email::sigv4::{AwsCredentials, SigningRequest, sign};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::SegmentConfig;

/// An error reaching or reading the object store, naming the bucket and key.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The source is not `s3://bucket[/prefix]`.
    #[error("invalid source {0:?}: expected s3://bucket/prefix or a local path")]
    BadUrl(String),
    /// S3 is used but not configured.
    #[error("segment.s3_endpoint is not set; configure the object store to read {0}")]
    NotConfigured(String),
    /// The store answered with an error.
    #[error("object store: {operation} {bucket}/{key}: HTTP {status}: {message}")]
    Http {
        /// Operation.
        operation: &'static str,
        /// Bucket.
        bucket: String,
        /// Key or prefix.
        key: String,
        /// HTTP status.
        status: u16,
        /// S3 error code and message.
        message: String,
    },
    /// Network failure.
    #[error("object store unreachable: {0}")]
    Network(#[from] reqwest::Error),
    /// Local disk failure.
    #[error("{path}: {source}")]
    Io {
        /// The local file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag (quotes removed).
    pub etag: String,
}

/// A minimal S3 client (path-style requests).
#[derive(Debug, Clone)]
pub struct S3Client {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    region: String,
    credentials: AwsCredentials,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Minimal XML text unescaping for S3 listings.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of every `<tag>…</tag>` in `xml`, in order.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

impl S3Client {
    /// A client for `endpoint` (`http://127.0.0.1:9000`, `https://s3.sa-east-1.amazonaws.com`).
    pub fn new(endpoint: &str, region: &str, access_key_id: &str, secret: &str) -> S3Client {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let host = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, h)| h)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        S3Client {
            http: reqwest::Client::new(),
            endpoint,
            host,
            region: region.to_owned(),
            credentials: AwsCredentials {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: farol_channels::Secret::new(secret),
                session_token: None,
            },
        }
    }

    /// From the `[segment]` configuration.
    pub fn from_config(config: &SegmentConfig) -> Option<S3Client> {
        (!config.s3_endpoint.is_empty()).then(|| {
            S3Client::new(
                &config.s3_endpoint,
                &config.s3_region,
                &config.s3_access_key_id,
                config.s3_secret_access_key.expose_secret(),
            )
        })
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        let payload_hash = sha256_hex(body);
        let signed = sign(
            &SigningRequest {
                method: method.as_str(),
                host: &self.host,
                path,
                query,
                headers: &[("x-amz-content-sha256", &payload_hash)],
                payload: body,
            },
            &self.credentials,
            &self.region,
            "s3",
            jiff::Timestamp::now(),
        );
        let encoded_path: String = path
            .split('/')
            .map(|s| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .replace("%2D", "-")
                    .replace("%5F", "_")
                    .replace("%2E", ".")
                    .replace("%7E", "~")
            })
            .collect::<Vec<_>>()
            .join("/");
        self.http
            .request(method, format!("{}{encoded_path}", self.endpoint))
            .query(query)
            .header("x-amz-date", signed.amz_date)
            .header("x-amz-content-sha256", payload_hash)
            .header("authorization", signed.authorization)
            .body(body.to_vec())
    }

    async fn check(
        res: reqwest::Response,
        operation: &'static str,
        bucket: &str,
        key: &str,
    ) -> Result<reqwest::Response, LakeError> {
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        let code = elements(&text, "Code").first().map(|s| s.to_string());
        let message = elements(&text, "Message").first().map(|s| s.to_string());
        Err(LakeError::Http {
            operation,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            status,
            message: match (code, message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c,
                _ => text.chars().take(200).collect(),
            },
        })
    }

    /// Creates a bucket (an existing one owned by you is fine).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), LakeError> {
        let res = self
            .request(reqwest::Method::PUT, &format!("/{bucket}"), &[], b"")
            .send()
            .await?;
        if res.status().as_u16() == 409 {
            return Ok(());
        }
        Self::check(res, "CreateBucket", bucket, "").await?;
        Ok(())
    }

    /// Stores an object.
    pub async fn put(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), LakeError> {
        let res = self
            .request(reqwest::Method::PUT, &format!("/{bucket}/{key}"), &[], body)
            .send()
            .await?;
        Self::check(res, "PutObject", bucket, key).await?;
        Ok(())
    }

    /// Every object under `prefix` (all pages).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Object>, LakeError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query: Vec<(&str, &str)> = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let res = self
                .request(reqwest::Method::GET, &format!("/{bucket}"), &query, b"")
                .send()
                .await?;
            let res = Self::check(res, "ListObjectsV2", bucket, prefix).await?;
            let xml = res.text().await?;
            for item in elements(&xml, "Contents") {
                let key = elements(item, "Key").first().map(|k| unescape(k));
                let size = elements(item, "Size").first().and_then(|s| s.parse().ok());
                let etag = elements(item, "ETag")
                    .first()
                    .map(|e| unescape(e).trim_matches('"').to_owned());
                if let (Some(key), Some(size)) = (key, size) {
                    out.push(Object {
                        key,
                        size,
                        etag: etag.unwrap_or_default(),
                    });
                }
            }
            let truncated = elements(&xml, "IsTruncated").first() == Some(&"true");
            token = elements(&xml, "NextContinuationToken")
                .first()
                .map(|t| unescape(t));
            if !truncated || token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Downloads an object to `path`, streaming (a temporary file renamed at the end).
    pub async fn get_to_file(&self, bucket: &str, key: &str, path: &Path) -> Result<(), LakeError> {
        let io = |e: std::io::Error| LakeError::Io {
            path: path.display().to_string(),
            source: e,
        };
        let res = self
            .request(reqwest::Method::GET, &format!("/{bucket}/{key}"), &[], b"")
            .send()
            .await?;
        let mut res = Self::check(res, "GetObject", bucket, key).await?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".download");
        let tmp = path.with_file_name(tmp_name);
        let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
        use tokio::io::AsyncWriteExt;
        while let Some(chunk) = res.chunk().await? {
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(&tmp, path).await.map_err(io)?;
        Ok(())
    }
}

/// What mirroring a source did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Objects listed.
    pub listed: usize,
    /// Objects downloaded (new or changed).
    pub downloaded: usize,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// Splits `s3://bucket/prefix`.
pub fn parse_s3(url: &str) -> Result<(String, String), LakeError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| LakeError::BadUrl(url.to_owned()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(LakeError::BadUrl(url.to_owned()));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// A local path for `source`: itself, or the mirror of an `s3://` source (downloading new or
/// changed objects first).
pub async fn materialize(
    config: &SegmentConfig,
    data_dir: &Path,
    source: &Path,
) -> Result<(PathBuf, Option<SyncReport>), LakeError> {
    let text = source.to_string_lossy();
    if !text.starts_with("s3://") {
        return Ok((source.to_path_buf(), None));
    }
    let (bucket, prefix) = parse_s3(&text)?;
    let client =
        S3Client::from_config(config).ok_or_else(|| LakeError::NotConfigured(text.to_string()))?;
    let root = data_dir.join("lake").join("s3").join(&bucket);
    let mut report = SyncReport::default();
    for object in client.list(&bucket, &prefix).await? {
        if object.key.ends_with('/') {
            continue;
        }
        report.listed += 1;
        let local = root.join(&object.key);
        // `<file>.<ext>.etag`: not a data file for the ETL (it reads .csv/.txt/.parquet).
        let mut stamp_name = local.file_name().unwrap_or_default().to_os_string();
        stamp_name.push(".etag");
        let stamp = local.with_file_name(stamp_name);
        let same = tokio::fs::metadata(&local)
            .await
            .is_ok_and(|m| m.len() == object.size)
            && tokio::fs::read_to_string(&stamp)
                .await
                .is_ok_and(|e| e == object.etag);
        if same {
            continue;
        }
        client.get_to_file(&bucket, &object.key, &local).await?;
        tokio::fs::write(&stamp, &object.etag)
            .await
            .map_err(|e| LakeError::Io {
                path: stamp.display().to_string(),
                source: e,
            })?;
        report.downloaded += 1;
        report.bytes += object.size;
    }
    Ok((root.join(prefix.trim_end_matches('/')), Some(report)))
}

/// Materializes every source of a run (see [`materialize`]).
pub async fn materialize_all(
    config: &SegmentConfig,
    data_dir: &Path,
    sources: super::service::Sources,
) -> Result<(super::service::Sources, Vec<SyncReport>), LakeError> {
    let mut reports = Vec::new();
    let mut out = super::service::Sources::default();
    for (from, to) in [
        (&sources.transactions, &mut out.transactions),
        (&sources.users, &mut out.users),
    ] {
        for s in from {
            let (local, report) = materialize(config, data_dir, s).await?;
            to.push(local);
            reports.extend(report);
        }
    }
    Ok((out, reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_parsed_with_escapes_and_pages() {
        let xml = "<ListBucketResult><IsTruncated>true</IsTruncated>\
            <Contents><Key>tx/dt=2026-11-01/a&amp;b.parquet</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag></Contents>\
            <Contents><Key>tx/x.csv</Key><Size>3</Size><ETag>\"d\"</ETag></Contents>\
            <NextContinuationToken>t1</NextContinuationToken></ListBucketResult>";
        let keys: Vec<String> = elements(xml, "Contents")
            .iter()
            .map(|c| unescape(elements(c, "Key")[0]))
            .collect();
        assert_eq!(keys, ["tx/dt=2026-11-01/a&b.parquet", "tx/x.csv"]);
        assert_eq!(elements(xml, "NextContinuationToken"), ["t1"]);
    }

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_s3("s3://lake/tx/").unwrap(),
            ("lake".into(), "tx/".into())
        );
        assert_eq!(parse_s3("s3://lake").unwrap(), ("lake".into(), "".into()));
        assert!(parse_s3("s3:///x").is_err());
        assert!(parse_s3("http://x").is_err());
    }
}
