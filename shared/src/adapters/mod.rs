//! Adapters: the ports implemented for AWS (S3, DynamoDB, SNS, Secrets Manager, SSM parameters, RDS scratch
//! instances), for PostgreSQL's client programs, for Slack's incoming webhooks, and in memory for unit tests.

pub mod dynamodb;
mod early_indexes;
pub mod framed_restore;
pub mod local_scratch;
// The in-memory fakes, for tests only: the library's own, and (feature `test-support`) the integration tests'.
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod pg_wire;
pub mod physical_check;
pub mod postgres;
pub mod psql_restorer;
pub mod rds;
pub mod read_back;
pub mod s3;
mod s3_resume;
pub mod secrets;
pub mod slack;
pub mod sns;
mod spill;
pub mod ssm;
pub mod table_restore;

// Every AWS SDK crate re-exports the same smithy error types; S3's names serve for all of them.
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

pub use crate::ports::{AwsErrorKind, ServiceFailure};

/// An AWS call's failure as a [`ServiceFailure`]: classified (so that throttling, a denied permission, a missing
/// resource and a lost race do not look alike upstream), and described for people: the service's code and
/// message when the service answered, else the chain of causes (connection, credentials, timeout), cut short (the
/// SDK's full form embeds whole HTTP responses). Adapters keep it as their errors' `source`.
pub fn aws_failure<E, R>(error: &SdkError<E, R>) -> ServiceFailure
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    const MAX: usize = 400;
    let (code, text) = match error {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().map(str::to_string);
            (code, format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or("(no message)")))
        }
        other => (None, DisplayErrorContext(other).to_string()),
    };
    let status = error.raw_response().map(|r| format!("{r:?}")).and_then(|r| status_in_debug(&r));
    let kind = match error {
        // No answer: the connection failed or dropped, or the call timed out. A dispatch failure of another kind
        // (no credentials, a request that cannot be signed or built) fails the same way every time: not this.
        SdkError::DispatchFailure(d)
            if d.is_io()
                || d.is_timeout()
                || d.as_other() == Some(aws_smithy_types::retry::ErrorKind::TransientError) =>
        {
            AwsErrorKind::Unavailable
        }
        SdkError::TimeoutError(_) => AwsErrorKind::Unavailable,
        // An answer that could not be read is judged by its status (a proxy's 502 page), never as such.
        _ => classify(code.as_deref(), status),
    };
    let text =
        if text.chars().count() > MAX { format!("{}…", text.chars().take(MAX).collect::<String>()) } else { text };
    ServiceFailure { kind, code, text }
}

/// The HTTP status in a raw response's debug form (`status: StatusCode(403)`), when there is one.
fn status_in_debug(raw: &str) -> Option<u16> {
    let at = raw.find("StatusCode(")? + "StatusCode(".len();
    raw[at..].split(')').next()?.parse().ok()
}

/// By the service's error code first (they differ between services), else by the HTTP status.
pub fn classify(code: Option<&str>, status: Option<u16>) -> AwsErrorKind {
    const THROTTLED: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "LimitExceededException",
    ];
    const DENIED: &[&str] = &[
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthorizationError",
        "KMSAccessDeniedException",
        "KMS.AccessDeniedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
    ];
    const NOT_FOUND: &[&str] = &[
        "NoSuchKey",
        "NoSuchBucket",
        "NoSuchVersion",
        "NoSuchUpload",
        "NotFound",
        "NotFoundException",
        "ResourceNotFoundException",
        "ParameterNotFound",
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "DBSubnetGroupNotFoundFault",
    ];
    const CONFLICT: &[&str] = &[
        "ConditionalCheckFailedException",
        "TransactionConflictException",
        "PreconditionFailed",
        "ConflictException",
        "OperationAborted",
        "InvalidDBInstanceState",
        "InvalidDBInstanceStateFault",
        "DBInstanceAlreadyExists",
        "DBInstanceAlreadyExistsFault",
    ];
    const UNAVAILABLE: &[&str] = &[
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    ];
    match code {
        Some(c) if THROTTLED.contains(&c) => AwsErrorKind::Throttled,
        Some(c) if UNAVAILABLE.contains(&c) => AwsErrorKind::Unavailable,
        Some(c) if DENIED.contains(&c) => AwsErrorKind::Denied,
        Some(c) if NOT_FOUND.contains(&c) => AwsErrorKind::NotFound,
        Some(c) if CONFLICT.contains(&c) => AwsErrorKind::Conflict,
        _ => match status {
            Some(429 | 503) => AwsErrorKind::Throttled,
            Some(401 | 403) => AwsErrorKind::Denied,
            Some(404) => AwsErrorKind::NotFound,
            Some(409 | 412) => AwsErrorKind::Conflict,
            Some(500 | 502 | 504) => AwsErrorKind::Unavailable,
            _ => AwsErrorKind::Other,
        },
    }
}

/// The text of [`aws_failure`] alone, where an error carries a message rather than a source.
pub fn sdk_error_text<E, R>(error: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    aws_failure(error).text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_code_then_by_status() {
        assert_eq!(classify(Some("ThrottlingException"), Some(400)), AwsErrorKind::Throttled);
        assert_eq!(classify(Some("SlowDown"), Some(503)), AwsErrorKind::Throttled);
        assert_eq!(classify(Some("AccessDenied"), Some(403)), AwsErrorKind::Denied);
        assert_eq!(classify(Some("KMS.AccessDeniedException"), None), AwsErrorKind::Denied);
        assert_eq!(classify(Some("NoSuchKey"), Some(404)), AwsErrorKind::NotFound);
        assert_eq!(classify(Some("ParameterNotFound"), Some(400)), AwsErrorKind::NotFound);
        assert_eq!(classify(Some("ConditionalCheckFailedException"), Some(400)), AwsErrorKind::Conflict);
        assert_eq!(classify(Some("InvalidDBInstanceState"), Some(400)), AwsErrorKind::Conflict);
        assert_eq!(classify(None, Some(429)), AwsErrorKind::Throttled);
        assert_eq!(classify(Some("InternalError"), Some(500)), AwsErrorKind::Unavailable);
        assert_eq!(classify(None, Some(502)), AwsErrorKind::Unavailable);
        assert_eq!(classify(None, Some(403)), AwsErrorKind::Denied);
        assert_eq!(classify(None, None), AwsErrorKind::Other);
    }

    #[test]
    fn the_status_is_read_from_a_raw_response() {
        assert_eq!(status_in_debug("Response { status: StatusCode(403), headers: … }"), Some(403));
        assert_eq!(status_in_debug("no status here"), None);
    }
}
