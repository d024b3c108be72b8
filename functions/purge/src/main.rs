//! The purge Lambda function: applies each target's retention policy (keep N daily / weekly / monthly /
//! yearly, with safety rails) and answers with what it deleted and kept, and why.
//! Everything but wiring lives in the `backstop` library (shared/).

use std::sync::Arc;

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
            let job = app::purge_job(Arc::new(config), clients, Arc::new(StdoutEmf));
            app::handle_purge_event(&job, &event.payload, &event.context.request_id)
                .await
                .map_err(diagnostic)
        }
    }))
    .await
}

/// The Lambda error: its type is what the template's retry rules and on-failure destinations match.
fn diagnostic(e: app::HandlerError) -> Diagnostic {
    Diagnostic { error_type: e.error_type.into(), error_message: e.message }
}
