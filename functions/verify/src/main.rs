//! The verify Lambda function: advances restore drills as far as this invocation's time allows and answers
//! `{"done": bool, …}`, so a Step Functions loop can invoke it again until every drill is done.
//! Everything but wiring lives in the `backstop` library (shared/).

use backstop::app;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    app::serve(app::verify_job, |job, call| async move {
        app::handle_verify_event(&job, &call.event, &call.request_id, Some(call.time_left)).await
    })
    .await
}
