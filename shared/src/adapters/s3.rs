//! The object store on S3: multipart uploads with per-part SHA-256 checksums, SSE-KMS when a key is configured;
//! reads whose bodies resume where a dropped connection stopped them (`s3_resume`).
//!
//! The same code runs against AWS and against the local emulator (moto); only the endpoint differs.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_sdk_s3::Client;
use base64::Engine;
use bytes::Bytes;

use super::aws_failure;
use crate::ports::*;

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    kms_key_id: Option<String>,
}

impl S3Store {
    pub fn new(client: Client, bucket: impl Into<String>, kms_key_id: Option<String>) -> Self {
        S3Store { client, bucket: bucket.into(), kms_key_id }
    }

    /// A GetObject body of `head.size` bytes from `start`, reopened where it stops (`s3_resume`).
    fn resuming(
        &self,
        key: &str,
        head: &ObjectHead,
        e_tag: Option<String>,
        start: u64,
        body: ByteStream,
    ) -> Box<dyn tokio::io::AsyncRead + Send + Unpin> {
        let source = super::s3_resume::BodySource {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            version_id: head.version_id.clone(),
            e_tag,
            start,
            len: head.size,
        };
        super::s3_resume::resuming(source, body)
    }
}

fn store_error<E>(operation: &'static str, key: &str, e: aws_sdk_s3::error::SdkError<E>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    StoreError { operation, key: key.to_string(), cause: Box::new(aws_failure(&e)) }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<Arc<dyn MultipartUpload>, StoreError> {
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256);
        if let Some(kms) = &self.kms_key_id {
            request = request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms)
                .bucket_key_enabled(true);
        }
        let out = request.send().await.map_err(|e| store_error("CreateMultipartUpload", key, e))?;
        let upload_id = out.upload_id.ok_or_else(|| StoreError {
            operation: "CreateMultipartUpload",
            key: key.to_string(),
            cause: "the response carried no upload id".into(),
        })?;
        Ok(Arc::new(S3Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id,
        }))
    }

    async fn put_object(&self, key: &str, body: Bytes, content_type: &str) -> Result<StoredVersion, StoreError> {
        use sha2::Digest;
        let sha = sha2::Sha256::digest(&body);
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_sha256(b64(&sha))
            .body(ByteStream::from(body));
        if let Some(kms) = &self.kms_key_id {
            request = request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms)
                .bucket_key_enabled(true);
        }
        let out = request.send().await.map_err(|e| store_error("PutObject", key, e))?;
        Ok(StoredVersion { key: key.to_string(), version_id: out.version_id })
    }

    async fn versions(&self, prefix: &str) -> Result<Vec<ListedVersion>, StoreError> {
        let mut found = Vec::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .map_err(|e| store_error("ListObjectVersions", prefix, e))?;
            let versions = out.versions.unwrap_or_default().into_iter().map(|v| (v.key, v.version_id, v.is_latest));
            let markers =
                out.delete_markers.unwrap_or_default().into_iter().map(|m| (m.key, m.version_id, m.is_latest));
            found.extend(versions.chain(markers).filter_map(|(key, version_id, latest)| {
                Some(ListedVersion { key: key?, version_id, current: latest.unwrap_or(false) })
            }));
            if out.is_truncated != Some(true) {
                return Ok(found);
            }
            key_marker = out.next_key_marker;
            version_marker = out.next_version_id_marker;
        }
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError> {
        let mut found = Vec::new();
        let (mut key_marker, mut upload_marker) = (None, None);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker)
                .set_upload_id_marker(upload_marker)
                .send()
                .await
                .map_err(|e| store_error("ListMultipartUploads", prefix, e))?;
            found.extend(out.uploads.unwrap_or_default().into_iter().filter_map(|u| {
                let initiated = u.initiated.and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
                Some(OpenUpload { key: u.key?, upload_id: u.upload_id?, initiated })
            }));
            if out.is_truncated != Some(true) {
                return Ok(found);
            }
            key_marker = out.next_key_marker;
            upload_marker = out.next_upload_id_marker;
        }
    }

    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Finished or aborted meanwhile: nothing left to free.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_upload()) => Ok(()),
            Err(e) => Err(store_error("AbortMultipartUpload", &upload.key, e)),
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectHead, StoreError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_error("HeadObject", key, e))?;
        Ok(ObjectHead {
            version_id: out.version_id,
            size: out.content_length.unwrap_or(0).max(0) as u64,
            server_side_encryption: out.server_side_encryption.map(|s| s.as_str().to_string()),
            kms_key_id: out.ssekms_key_id,
        })
    }

    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<FetchedObject, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| store_error("GetObject", key, e))?;
        let head = ObjectHead {
            version_id: out.version_id,
            size: out.content_length.unwrap_or(0).max(0) as u64,
            server_side_encryption: out.server_side_encryption.map(|s| s.as_str().to_string()),
            kms_key_id: out.ssekms_key_id,
        };
        let body = self.resuming(key, &head, out.e_tag, 0, out.body);
        Ok(FetchedObject { head, body })
    }

    async fn get_range(
        &self,
        key: &str,
        version_id: Option<&str>,
        start: u64,
        len: u64,
    ) -> Result<FetchedObject, StoreError> {
        if len == 0 {
            return Err(StoreError {
                operation: "GetObject",
                key: key.into(),
                cause: "an empty range was asked for".into(),
            });
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .range(format!("bytes={start}-{}", start + len - 1))
            .send()
            .await
            .map_err(|e| store_error("GetObject", key, e))?;
        let size = out.content_length.unwrap_or(0).max(0) as u64;
        if size != len {
            return Err(StoreError {
                operation: "GetObject",
                key: key.into(),
                cause: format!("asked for {len} bytes from {start}, got {size}").into(),
            });
        }
        let head = ObjectHead {
            version_id: out.version_id,
            size,
            server_side_encryption: out.server_side_encryption.map(|s| s.as_str().to_string()),
            kms_key_id: out.ssekms_key_id,
        };
        let body = self.resuming(key, &head, out.e_tag, start, out.body);
        Ok(FetchedObject { head, body })
    }

    async fn delete_version(&self, version: &StoredVersion) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&version.key)
            .set_version_id(version.version_id.clone())
            .send()
            .await
            .map_err(|e| store_error("DeleteObject", &version.key, e))?;
        Ok(())
    }
}

struct S3Upload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
}

#[async_trait]
impl MultipartUpload for S3Upload {
    fn key(&self) -> &str {
        &self.key
    }

    async fn upload_part(&self, part: PartToUpload) -> Result<UploadedPart, StoreError> {
        let checksum = b64(&part.sha256);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(part.number as i32)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(part.body))
            .send()
            .await
            .map_err(|e| store_error("UploadPart", &self.key, e))?;
        Ok(UploadedPart {
            number: part.number,
            etag: out.e_tag.unwrap_or_default(),
            checksum_sha256: out.checksum_sha256.or(Some(checksum)),
        })
    }

    async fn complete(&self, parts: Vec<UploadedPart>) -> Result<StoredVersion, StoreError> {
        let parts = parts
            .into_iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(p.etag)
                    .set_checksum_sha256(p.checksum_sha256)
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| store_error("CompleteMultipartUpload", &self.key, e))?;
        Ok(StoredVersion { key: self.key.clone(), version_id: out.version_id })
    }

    async fn abort(&self) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
            .map_err(|e| store_error("AbortMultipartUpload", &self.key, e))?;
        Ok(())
    }
}
