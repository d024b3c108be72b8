//! Logging: JSON lines in Lambda (CloudWatch Logs Insights can query them), readable text on a terminal.
//! `RUST_LOG` overrides the default level (`info` in Lambda; the CLI passes `warn`, its own output says
//! what happened).

use tracing_subscriber::EnvFilter;

pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// `default_level`: `info`, `warn`, … for Backstop's own lines; the SDK's chatter stays at `warn` or above.
pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},aws_config=warn,aws_smithy_runtime=warn")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if in_lambda() {
        // Lambda timestamps every line itself; JSON keeps fields queryable.
        builder.json().without_time().with_ansi(false).with_current_span(true).try_init()
    } else {
        builder.with_target(false).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
