//! A job's Lambda function, whole, so that each `functions/*/src/main.rs` is a few lines: telemetry, the AWS
//! clients once per container, and per invocation the configuration (its targets re-read from Parameter Store,
//! so an edited parameter applies from the next run, and its server targets' databases from the catalog), the
//! job built on it, and the job's handler. A failure
//! becomes Lambda's error with its [`ErrorType`](super::ErrorType).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

use super::handlers::{ErrorType, HandlerError};
use super::{config_from_env, with_discovered_on, AwsClients};
use crate::config::Config;
use crate::metrics::{MetricsSink, StdoutEmf};

/// One invocation, as a handler sees it.
pub struct Invocation {
    pub event: Value,
    /// Lambda's request id: the idempotency key of a console event.
    pub request_id: String,
    /// What is left of the invocation's time.
    pub time_left: Duration,
}

/// Runs the function until Lambda stops it. `build` makes the job (one of `app::*_job`); `handle` runs one event
/// through it (one of `app::handle_*_event`).
pub async fn serve<Job, Build, Handle, Answer>(build: Build, handle: Handle) -> Result<(), lambda_runtime::Error>
where
    Build: Fn(Arc<Config>, &AwsClients, Arc<dyn MetricsSink>) -> Job,
    Handle: Fn(Job, Invocation) -> Answer,
    Answer: Future<Output = Result<Value, HandlerError>>,
{
    crate::memory::return_large_blocks_when_freed();
    crate::telemetry::init("info");
    let clients = AwsClients::from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (clients, build, handle) = (&clients, &build, &handle);
        async move {
            let config = config_from_env(clients).await.map_err(|e| diagnostic(e.into()))?;
            let config = with_discovered_on(config, clients).await.map_err(|e| {
                diagnostic(HandlerError {
                    error_type: ErrorType::Retryable,
                    message: format!("the server targets' inventories could not be read from the catalog: {e}"),
                })
            })?;
            let job = build(Arc::new(config), clients, Arc::new(StdoutEmf));
            let invocation = Invocation {
                // Lambda's deadline is in milliseconds since the epoch.
                time_left: Duration::from_millis(event.context.deadline.saturating_sub(now_millis())),
                request_id: event.context.request_id,
                event: event.payload,
            };
            handle(job, invocation).await.map_err(diagnostic)
        }
    }))
    .await
}

/// The error Lambda reports: its type is what the template's retry rules and on-failure destinations match.
pub fn diagnostic(e: HandlerError) -> Diagnostic {
    Diagnostic { error_type: e.error_type.as_str().into(), error_message: e.message }
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
