//! A GetObject body that outlives its connection. The SDK retries a request that fails, but not a body that
//! stops halfway: a connection reset ten minutes into a multi-gigabyte dump would end the drill (or the
//! restore) as if the backup were damaged. So a body that errors, or ends before its length, is asked for again
//! from the byte it stopped at (`Range: bytes=N-`), of the same version and, by `If-Match`, the same ETag, so
//! the bytes that follow are the ones that would have: the reader sees one unbroken stream, and the SHA-256 the
//! drill takes of it still proves every byte. It gives up after [`ATTEMPTS`] reopenings in a row that bring no
//! byte, with the last error.

use std::io;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use tokio::io::AsyncRead;
use tracing::warn;

use crate::domain::scratch_fault::{mark_if, STORE_UNAVAILABLE};

/// Reopenings in a row, without a byte between them, before the body fails.
const ATTEMPTS: u32 = 5;
/// The wait before the first reopening; doubled for each that follows in a row.
const FIRST_WAIT: Duration = Duration::from_millis(200);

/// Which object, and which of its bytes, a body reads.
pub struct BodySource {
    pub client: Client,
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub e_tag: Option<String>,
    /// The first byte of the body within the object.
    pub start: u64,
    /// The body's length.
    pub len: u64,
}

struct Reading {
    source: BodySource,
    body: ByteStream,
    /// Bytes of the body read so far.
    read: u64,
    /// Reopenings since the last byte.
    failed_in_a_row: u32,
}

/// `body` (the first response's) as a reader that reopens the object where it stopped.
pub fn resuming(source: BodySource, body: ByteStream) -> Box<dyn AsyncRead + Send + Unpin> {
    let reading = Reading { source, body, read: 0, failed_in_a_row: 0 };
    let chunks = futures_util::stream::try_unfold(reading, |mut r| async move {
        loop {
            let why = match r.body.next().await {
                Some(Ok(chunk)) => {
                    if !chunk.is_empty() {
                        r.read += chunk.len() as u64;
                        r.failed_in_a_row = 0;
                    }
                    return io::Result::Ok(Some((chunk, r)));
                }
                None if r.read >= r.source.len => return Ok(None),
                // Every byte is in: nothing is left to ask for, so the error is the body's to report.
                Some(Err(e)) if r.read >= r.source.len => return Err(io::Error::other(e)),
                None => format!("the body ended after {} of its {} bytes", r.read, r.source.len),
                Some(Err(e)) => format!("reading the body failed after {} of its {} bytes: {e}", r.read, r.source.len),
            };
            r.body = reopen(&mut r, why).await?;
        }
    });
    Box::new(tokio_util::io::StreamReader::new(Box::pin(chunks)))
}

/// The rest of the body, asked for again; `Err` once [`ATTEMPTS`] reopenings in a row brought nothing.
async fn reopen(r: &mut Reading, why: String) -> io::Result<ByteStream> {
    let s = &r.source;
    let mut why = why;
    // A dropped body, a time-out or a throttled or failed GET mends by itself in time: giving up on those is the
    // drill's failure, not the object's (`scratch_fault::STORE_UNAVAILABLE`). A refusal or another length is not.
    let mut transient = true;
    loop {
        if r.failed_in_a_row >= ATTEMPTS {
            let message = format!("GetObject {}: {why} (after {ATTEMPTS} attempts to resume)", s.key);
            return Err(io::Error::other(mark_if(message, transient.then_some(STORE_UNAVAILABLE))));
        }
        let wait = FIRST_WAIT * 2u32.pow(r.failed_in_a_row);
        r.failed_in_a_row += 1;
        warn!(key = %s.key, offset = s.start + r.read, error = %why, "the object's body stopped; reading on from where it did");
        tokio::time::sleep(wait).await;
        let from = s.start + r.read;
        let to = s.start + s.len - 1;
        let asked = s
            .client
            .get_object()
            .bucket(&s.bucket)
            .key(&s.key)
            .set_version_id(s.version_id.clone())
            .set_if_match(s.e_tag.clone())
            .range(format!("bytes={from}-{to}"))
            .send()
            .await;
        match asked {
            Ok(out) if out.content_length == Some((to + 1 - from) as i64) => return Ok(out.body),
            Ok(out) => {
                why = format!("asked for bytes {from}-{to} again, got {:?} bytes", out.content_length);
                // A different length is not a dropped connection: it will not mend by asking again.
                r.failed_in_a_row = ATTEMPTS;
                transient = false;
            }
            Err(e) => {
                let failure = super::aws_failure(&e);
                transient = failure.kind.is_transient();
                why = format!("asking for bytes {from}-{to} again failed: {failure}");
            }
        }
    }
}
