//! The Slack notifier Lambda function: subscribed to Backstop's SNS alert topic, it posts each alert to a Slack
//! incoming webhook as a Block Kit message. Everything but wiring lives in the `backstop` library (shared/).

use backstop::{app, telemetry};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    backstop::memory::return_large_blocks_when_freed();
    telemetry::init("info");
    // Only which webhook to use is checked here; its URL is read on the first alert and kept.
    let slack = app::notifier_from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let slack = &slack;
        async move { app::handle_notify_event(slack, &event.payload).await.map_err(app::diagnostic) }
    }))
    .await
}
