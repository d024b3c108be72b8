//! The purge Lambda function: applies each target's retention policy (keep N daily / weekly / monthly /
//! yearly, with safety rails) and answers with what it deleted and kept, and why.
//! Everything but wiring lives in the `backstop` library (shared/).

use std::sync::Arc;

use backstop::{app, config::Config, metrics::StdoutEmf, telemetry};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("info");
    let config = Arc::new(Config::from_env()?);
    let job = app::purge_job(config, &app::AwsClients::from_env().await, Arc::new(StdoutEmf));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let job = &job;
        async move {
            app::handle_purge_event(job, &event.payload, &event.context.request_id)
                .await
                .map_err(|e| Diagnostic { error_type: e.error_type.into(), error_message: e.message })
        }
    }))
    .await
}
