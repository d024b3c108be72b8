//! The monitor Lambda function: hourly, evaluates every target's backups (age, verification, failures,
//! anomalies), emits BackupAgeHours / VerifiedAgeHours, and alerts once per change of state.
//! Everything but wiring lives in the `backstop` library (shared/).

use std::sync::Arc;

use backstop::{app, config::Config, metrics::StdoutEmf, telemetry};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init("info");
    let config = Arc::new(Config::from_env()?);
    let job = app::monitor_job(config, &app::AwsClients::from_env().await, Arc::new(StdoutEmf));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let job = &job;
        async move {
            app::handle_monitor_event(job, &event.payload)
                .await
                .map_err(|e| Diagnostic { error_type: e.error_type.into(), error_message: e.message })
        }
    }))
    .await
}
