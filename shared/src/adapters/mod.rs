//! Adapters: the ports implemented for AWS (S3, DynamoDB, SNS, Secrets Manager, SSM parameters, RDS scratch
//! instances), for PostgreSQL's client programs, for Slack's incoming webhooks, and in memory for unit tests.

pub mod dynamodb;
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
pub mod secrets;
pub mod slack;
pub mod sns;
pub mod ssm;

// Every AWS SDK crate re-exports the same smithy error types; S3's names serve for all of them.
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// An AWS error for people: the service's code and message when the service answered, else the chain of
/// causes (connection, credentials, timeout), cut short — the SDK's full form embeds whole HTTP responses.
pub fn sdk_error_text<E, R>(error: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    const MAX: usize = 400;
    let text = match error {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or("(no message)"))
        }
        other => DisplayErrorContext(other).to_string(),
    };
    if text.chars().count() > MAX {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    } else {
        text
    }
}
