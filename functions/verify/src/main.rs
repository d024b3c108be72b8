//! The verify Lambda function: advances restore drills as far as this invocation's time allows and answers
//! `{"done": bool, …}`, so a Step Functions loop can invoke it again until every drill is done.
//! Everything but wiring lives in the `backstop` library (shared/).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backstop::{app, metrics::StdoutEmf, telemetry};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("info");
    let clients = app::AwsClients::from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let clients = &clients;
        async move {
            // Read at every invocation (one SSM call), so an edited targets parameter applies from the next run.
            let config = app::config_from_env(clients).await.map_err(|e| diagnostic(e.into()))?;
            let job = app::verify_job(Arc::new(config), clients, Arc::new(StdoutEmf));
            let time_left = Duration::from_millis(event.context.deadline.saturating_sub(now_millis()));
            app::handle_verify_event(&job, &event.payload, &event.context.request_id, Some(time_left))
                .await
                .map_err(diagnostic)
        }
    }))
    .await
}

/// Lambda's deadline is in milliseconds since the epoch.
fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The Lambda error: its type is what the template's retry rules and on-failure destinations match.
fn diagnostic(e: app::HandlerError) -> Diagnostic {
    Diagnostic { error_type: e.error_type.into(), error_message: e.message }
}
