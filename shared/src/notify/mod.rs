//! The Slack notifier: SNS alert records → Block Kit messages → a Slack incoming webhook.
//!
//! - [`sns_event`]: the SNS event, record by record (a malformed record is dropped, with its reason);
//! - [`block_kit`]: the message Slack shows;
//! - [`retry`]: when a failed post is tried again;
//! - [`webhook_url`]: where the (secret) webhook URL comes from;
//! - [`deliver`]: the job; `adapters::slack` posts over HTTPS.
//!
//! A record whose post still fails after the retries fails the invocation once, so that Lambda's and SNS's own
//! retry policies (and the function's error metric) take over; a record that can never be delivered because it
//! cannot be read does not.

pub mod block_kit;
pub mod retry;
pub mod sns_event;
pub mod webhook_url;

use async_trait::async_trait;
use serde_json::Value;

use self::sns_event::{parse_sns_event, DroppedRecord, NotAnSnsEvent};
use self::webhook_url::WebhookUrlError;

/// The port: posts one Block Kit payload to the configured webhook, retrying as its policy says.
#[async_trait]
pub trait WebhookPoster: Send + Sync {
    async fn post(&self, payload: &Value) -> Result<Delivered, SlackError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub attempts: u32,
}

/// Why a message did not reach Slack. No variant ever holds the webhook URL.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error(transparent)]
    WebhookUrl(#[from] WebhookUrlError),
    #[error("cannot set up the HTTPS client: {0}")]
    Tls(std::io::Error),
    /// A 4xx (or another status that is not worth a retry): the webhook or the message is wrong.
    #[error(
        "Slack refused the message ({detail}); not retried: the webhook is revoked or misconfigured (403/404), its \
         channel is archived (410), or the message is invalid (400)"
    )]
    Rejected {
        status: u16,
        /// The status and Slack's answer (`HTTP 404 Not Found: no_service`).
        detail: String,
    },
    #[error("Slack asked to wait {wait_seconds} s before posting again (HTTP 429), longer than this notifier waits; gave up after {attempts} attempt(s)")]
    RateLimited { wait_seconds: u64, attempts: u32 },
    #[error("posting to the Slack webhook failed {attempts} time(s), giving up; last failure: {last}")]
    Exhausted { attempts: u32, last: String },
}

/// What an invocation did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotifyReport {
    pub delivered: usize,
    pub dropped: Vec<DroppedRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    NotAnSnsEvent(#[from] NotAnSnsEvent),
    #[error("{} of {total} message(s) did not reach Slack: {}", failures.len(), failures.join("; "))]
    Undelivered {
        total: usize,
        failures: Vec<String>,
        /// Every failure was a refusal (4xx): retrying will not help until the webhook is fixed.
        all_rejected: bool,
    },
}

/// Delivers every readable record of an SNS event, in order. Dropped records are logged and reported;
/// failed posts are logged and fail the whole invocation, after every other record was tried.
pub async fn deliver(event: &Value, poster: &dyn WebhookPoster) -> Result<NotifyReport, NotifyError> {
    let parsed = parse_sns_event(event)?;
    for dropped in &parsed.dropped {
        tracing::error!(record = dropped.index, message_id = dropped.message_id.as_deref().unwrap_or("-"), reason = %dropped.reason, "SNS record dropped: it cannot be read, so it cannot be delivered (not retried)");
    }
    let total = parsed.notifications.len();
    let mut failures = Vec::new();
    let mut all_rejected = true;
    for notification in &parsed.notifications {
        let message_id = notification.message_id.as_deref().unwrap_or("-");
        let message = block_kit::render(notification);
        if let Some(omitted) = message.truncated_chars {
            // The one place the whole text survives when Slack only shows the beginning.
            tracing::info!(message_id, omitted, message = %notification.message, "message too long for one Slack section; the whole text follows");
        }
        match poster.post(&message.payload).await {
            Ok(delivered) => tracing::info!(message_id, attempts = delivered.attempts, "posted to Slack"),
            Err(e) => {
                let rejected = matches!(e, SlackError::Rejected { .. });
                all_rejected &= rejected;
                if rejected {
                    tracing::error!(message_id, error = %e, "Slack refused the message: a configuration error (check the webhook in its secret or parameter)");
                } else {
                    tracing::error!(message_id, error = %e, "the message did not reach Slack");
                }
                failures.push(format!("message {message_id}: {e}"));
            }
        }
    }
    if failures.is_empty() {
        Ok(NotifyReport { delivered: total, dropped: parsed.dropped })
    } else {
        Err(NotifyError::Undelivered { total, failures, all_rejected })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;

    /// Records payloads; fails the posts whose header contains `fail`.
    #[derive(Default)]
    struct FakeSlack {
        posted: Mutex<Vec<Value>>,
    }

    #[async_trait]
    impl WebhookPoster for FakeSlack {
        async fn post(&self, payload: &Value) -> Result<Delivered, SlackError> {
            self.posted.lock().unwrap().push(payload.clone());
            if payload["blocks"][0]["text"]["text"].as_str().unwrap().contains("fail") {
                return Err(SlackError::Exhausted { attempts: 3, last: "HTTP 500".into() });
            }
            Ok(Delivered { attempts: 1 })
        }
    }

    fn record(subject: &str) -> Value {
        json!({"EventSource": "aws:sns", "Sns": {"MessageId": subject, "Subject": subject, "Message": "body",
            "MessageAttributes": {"severity": {"Type": "String", "Value": "warning"}}}})
    }

    #[tokio::test]
    async fn readable_records_are_posted_and_malformed_ones_dropped_without_failing() {
        // GIVEN an event with one good record and one malformed record
        let slack = FakeSlack::default();
        let event = json!({"Records": [record("ok"), {"EventSource": "aws:sns"}]});
        // WHEN delivered
        let report = deliver(&event, &slack).await.unwrap();
        // THEN the good one is posted, the bad one reported as dropped, and the invocation succeeds
        assert_eq!(report.delivered, 1);
        assert_eq!(report.dropped.len(), 1);
        assert!(report.dropped[0].reason.contains("no `Sns`"), "{:?}", report.dropped);
        let posted = slack.posted.lock().unwrap();
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0]["blocks"][0]["text"]["text"], ":warning: WARNING: ok");
    }

    #[tokio::test]
    async fn a_failed_post_fails_the_invocation_once_after_the_others_were_tried() {
        // GIVEN a record Slack will not take, before one it will
        let slack = FakeSlack::default();
        let event = json!({"Records": [record("fail-1"), record("ok")]});
        // WHEN delivered
        let error = deliver(&event, &slack).await.unwrap_err();
        // THEN both were tried and the error names the failed one
        assert_eq!(slack.posted.lock().unwrap().len(), 2);
        match &error {
            NotifyError::Undelivered { total, failures, all_rejected } => {
                assert_eq!((*total, failures.len(), *all_rejected), (2, 1, false));
                assert!(failures[0].contains("fail-1"), "{failures:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(error.to_string().starts_with("1 of 2 message(s) did not reach Slack"), "{error}");
    }

    #[tokio::test]
    async fn an_event_that_is_not_from_sns_is_an_error() {
        let error = deliver(&json!({"target": "orders"}), &FakeSlack::default()).await.unwrap_err();
        assert!(matches!(error, NotifyError::NotAnSnsEvent(_)), "{error:?}");
    }
}
