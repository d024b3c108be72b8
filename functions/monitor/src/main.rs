//! The monitor Lambda function: hourly, evaluates every target's backups (age, verification, failures,
//! anomalies), emits BackupAgeHours / VerifiedAgeHours, and alerts once per change of state.
//! Everything but wiring lives in the `backstop` library (shared/).

use backstop::app;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    app::serve(app::monitor_job, |job, call| async move { app::handle_monitor_event(&job, &call.event).await }).await
}
