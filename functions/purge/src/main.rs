//! The purge Lambda function: applies each target's retention policy (keep N daily / weekly / monthly /
//! yearly, with safety rails) and answers with what it deleted and kept, and why.
//! Everything but wiring lives in the `backstop` library (shared/).

use backstop::app;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    app::serve(
        app::purge_job,
        |job, call| async move { app::handle_purge_event(&job, &call.event, &call.request_id).await },
    )
    .await
}
