//! The backup Lambda function: every target on schedule, or the one a console test event names.
//! Everything but wiring lives in the `backstop` library (shared/).

use backstop::app;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    app::serve(app::backup_job, |job, call| async move {
        app::handle_backup_event(&job, &call.event, &call.request_id, Some(call.time_left)).await
    })
    .await
}
