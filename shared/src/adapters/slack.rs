//! Slack incoming webhooks over HTTPS, with retries (see `notify::retry`).
//!
//! Built on the hyper / hyper-rustls / rustls (aws-lc-rs) stack the AWS SDK already compiles, with the same
//! native root certificates: no second TLS stack. Connections are not pooled: alerts are rare, and a pooled
//! connection would not survive Lambda freezing the container between them.
//!
//! The webhook URL is a secret: it is redacted from every error and log line this module writes (hyper's
//! errors do not carry the URL, but redaction does not rely on that).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::notify::retry::{classify, parse_retry_after, AttemptOutcome, NextStep, RetryPolicy, Verdict};
use crate::notify::webhook_url::{WebhookUrl, WebhookUrlCache};
use crate::notify::{Delivered, SlackError, WebhookPoster};

/// Slack answers `ok` or a short error code (`invalid_token`, `no_service`, `channel_is_archived`, …).
const RESPONSE_BODY_LIMIT: usize = 64 * 1024;
const DETAIL_MAX: usize = 300;

pub struct SlackWebhook {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Arc<WebhookUrlCache>,
    policy: RetryPolicy,
}

impl SlackWebhook {
    pub fn new(url: Arc<WebhookUrlCache>, policy: RetryPolicy) -> Result<Self, SlackError> {
        let mut http = HttpConnector::new();
        // The scheme is checked by `WebhookUrl` (https, or http to the loopback interface only).
        http.enforce_http(false);
        http.set_connect_timeout(Some(policy.attempt_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .map_err(SlackError::Tls)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(https);
        Ok(SlackWebhook { client, url, policy })
    }

    async fn post_to(&self, url: &WebhookUrl, payload: &Value) -> Result<Delivered, SlackError> {
        let body = Bytes::from(serde_json::to_vec(payload).expect("JSON values serialize"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (outcome, detail) = self.attempt(url, body.clone()).await;
            let detail = url.redact(&detail);
            let verdict = classify(&outcome);
            match self.policy.next_step(attempt, &verdict, rand::random::<f64>()) {
                NextStep::Done => return Ok(Delivered { attempts: attempt }),
                NextStep::Wait(delay) => {
                    tracing::warn!(attempt, of = self.policy.max_attempts, delay_ms = delay.as_millis() as u64, failure = %detail, "Slack webhook post failed; trying again");
                    tokio::time::sleep(delay).await;
                }
                NextStep::GiveUp => {
                    return Err(match (verdict, outcome) {
                        (Verdict::Reject, AttemptOutcome::Status { status, .. }) => {
                            SlackError::Rejected { status, detail }
                        }
                        (Verdict::Retry { retry_after: Some(wait) }, _) if wait > self.policy.max_retry_after => {
                            SlackError::RateLimited { wait_seconds: wait.as_secs(), attempts: attempt }
                        }
                        _ => SlackError::Exhausted { attempts: attempt, last: detail },
                    })
                }
            }
        }
    }

    /// One POST: its outcome and a description of it for people (redacted by the caller).
    async fn attempt(&self, url: &WebhookUrl, body: Bytes) -> (AttemptOutcome, String) {
        let request = match hyper::Request::post(url.expose())
            .header(hyper::header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Full::new(body))
        {
            Ok(request) => request,
            // `WebhookUrl` checked the URL; a request that cannot be built is as final as a 400.
            Err(e) => {
                return (
                    AttemptOutcome::Status { status: 400, retry_after: None },
                    format!("cannot build the request: {}", error_chain(&e)),
                )
            }
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            // The answer's text helps whoever reads the error; failing to read it changes nothing.
            let text = match Limited::new(response.into_body(), RESPONSE_BODY_LIMIT).collect().await {
                Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
                Err(_) => String::new(),
            };
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, text))
        };
        match tokio::time::timeout(self.policy.attempt_timeout, exchange).await {
            Err(_) => (AttemptOutcome::Timeout, format!("no answer within {:?}", self.policy.attempt_timeout)),
            Ok(Err(e)) if e.is_connect() => (AttemptOutcome::Connect, format!("cannot connect: {}", error_chain(&e))),
            Ok(Err(e)) => (AttemptOutcome::Transport, format!("the connection failed: {}", error_chain(&e))),
            Ok(Ok((status, retry_after, text))) => {
                let mut detail = format!("HTTP {status}");
                let text = one_line(&text);
                if !text.is_empty() {
                    detail.push_str(": ");
                    detail.push_str(&text);
                }
                if let Some(wait) = retry_after {
                    detail.push_str(&format!(" (Retry-After: {} s)", wait.as_secs()));
                }
                (AttemptOutcome::Status { status: status.as_u16(), retry_after }, detail)
            }
        }
    }
}

#[async_trait]
impl WebhookPoster for SlackWebhook {
    async fn post(&self, payload: &Value) -> Result<Delivered, SlackError> {
        let url = self.url.get().await?;
        self.post_to(url, payload).await
    }
}

/// An error and its causes, `a: b: c`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

fn one_line(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let clean = clean.trim();
    if clean.chars().count() > DETAIL_MAX {
        format!("{}…", clean.chars().take(DETAIL_MAX).collect::<String>())
    } else {
        clean.to_string()
    }
}
