//! The Slack notifier against a local webhook stub (127.0.0.1, minimal HTTP/1.1): what it posts, how it
//! retries (500s, 429 with Retry-After, timeouts, refused connections), that 4xx is final, and that the
//! webhook URL never appears in an error. The URL is read from Secrets Manager or SSM on the emulator.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use backstop::app::{self, HandlerError};
use backstop::notify::retry::RetryPolicy;
use backstop::notify::webhook_url::WebhookSource;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The secret part of every test webhook URL: it must never appear in an error.
const SECRET_PATH: &str = "/services/T0BACKSTOP/B0TEST/s3cr3tW3bh00kT0k3n";

/// One request the stub received.
#[derive(Debug, Clone)]
struct Post {
    method: String,
    path: String,
    content_type: String,
    body: Value,
}

/// What the stub answers to the n-th request (0-based).
#[derive(Clone)]
enum Reply {
    Status(u16, &'static str, Option<u64>),
    /// Accept the request, then say nothing (until the client gives up).
    Silence,
}

struct WebhookStub {
    url: String,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl WebhookStub {
    /// A stub answering `script(n)` to the n-th request.
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{SECRET_PATH}", listener.local_addr().unwrap());
        let posts = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        tokio::spawn({
            let posts = posts.clone();
            async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else { return };
                    let posts = posts.clone();
                    let script = script.clone();
                    tokio::spawn(async move {
                        let Some(post) = read_request(&mut stream).await else { return };
                        let n = {
                            let mut posts = posts.lock().unwrap();
                            posts.push(post);
                            posts.len() - 1
                        };
                        match script(n) {
                            Reply::Silence => tokio::time::sleep(Duration::from_secs(60)).await,
                            Reply::Status(status, body, retry_after) => {
                                let extra = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                                let response = format!(
                                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                                    body.len()
                                );
                                let _ = stream.write_all(response.as_bytes()).await;
                                let _ = stream.shutdown().await;
                            }
                        }
                    });
                }
            }
        });
        WebhookStub { url, posts }
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request with a Content-Length body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Post> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (request_line.next()?.to_string(), request_line.next()?.to_string());
    let header = |name: &str| {
        head.split("\r\n").find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
        })
    };
    let length: usize = header("content-length")?.parse().ok()?;
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buffer[head_end..head_end + length]).expect("the notifier posts JSON");
    Some(Post { method, path, content_type: header("content-type").unwrap_or_default(), body })
}

/// Fast retries: the shape of the default policy, with waits of milliseconds.
fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        attempt_timeout: Duration::from_secs(5),
        max_retry_after: Duration::from_secs(3),
    }
}

async fn sdk() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(backstop_tests::moto::endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// A notifier whose webhook URL (`url`, as JSON) is in a fresh Secrets Manager secret on the emulator.
async fn notifier_for(url: &str, policy: RetryPolicy) -> backstop::adapters::slack::SlackWebhook {
    let sdk = sdk().await;
    let name = format!("backstop/slack-{}", uuid::Uuid::new_v4().simple());
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&name)
        .secret_string(json!({"webhook_url": url}).to_string())
        .send()
        .await
        .unwrap();
    app::notifier(WebhookSource::SecretsManager { secret_id: name }, &sdk, policy).unwrap()
}

fn example_event() -> Value {
    serde_json::from_str(include_str!("../../functions/notifier/events/backup-failed.json")).unwrap()
}

fn assert_no_url(error: &HandlerError, url: &str) {
    assert!(!error.message.contains(url), "the webhook URL leaked: {}", error.message);
    assert!(!error.message.contains("s3cr3tW3bh00kT0k3n"), "the webhook's secret path leaked: {}", error.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_posts_block_kit_json_with_fallback_text_to_the_webhook() {
    // GIVEN a webhook that accepts, its URL in Secrets Manager
    let stub = WebhookStub::start(|_| Reply::Status(200, "ok", None)).await;
    let notifier = notifier_for(&stub.url, fast_policy(3)).await;
    // WHEN the example SNS event (a failed backup) arrives
    let answer = app::handle_notify_event(&notifier, &example_event()).await.unwrap();
    // THEN one message is posted, as JSON, to the webhook's path, with the alert's blocks and a fallback text
    assert_eq!(answer, json!({"delivered": 1, "dropped": []}));
    let posts = stub.posts();
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!((post.method.as_str(), post.path.as_str()), ("POST", SECRET_PATH));
    assert!(post.content_type.starts_with("application/json"), "{}", post.content_type);
    assert_eq!(
        post.body["text"],
        ":rotating_light: CRITICAL: Backstop: backup of orders FAILED: pg_dump exited with status 1 (orders)"
    );
    let blocks = post.body["blocks"].as_array().unwrap();
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["header", "section", "context"]);
    assert_eq!(
        blocks[0]["text"]["text"],
        ":rotating_light: CRITICAL: Backstop: backup of orders FAILED: pg_dump exited with status 1"
    );
    let section = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(section.starts_with("Backstop could not back up target \"orders\""), "{section}");
    assert!(section.contains("FATAL: password authentication failed"), "{section}");
    let context: Vec<&str> =
        blocks[2]["elements"].as_array().unwrap().iter().map(|e| e["text"].as_str().unwrap()).collect();
    assert_eq!(context[0], "*Target:* orders");
    assert_eq!(context[1], "*Job:* backup");
    assert!(context[2].starts_with("*Time:* <!date^1795312807^"), "{}", context[2]);
    assert_eq!(context[3], "*Message id:* `95df01b4-ee98-5cb9-9903-4c221d41eb5e`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_two_500s_then_200_is_three_posts_and_success() {
    let stub = WebhookStub::start(|n| {
        if n < 2 {
            Reply::Status(500, "internal_error", None)
        } else {
            Reply::Status(200, "ok", None)
        }
    })
    .await;
    let notifier = notifier_for(&stub.url, fast_policy(4)).await;
    let answer = app::handle_notify_event(&notifier, &example_event()).await.unwrap();
    assert_eq!(answer["delivered"], 1);
    let posts = stub.posts();
    assert_eq!(posts.len(), 3);
    // the same message each time
    assert!(posts.iter().all(|p| p.body == posts[0].body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_always_500_gives_up_after_the_bounded_attempts_with_an_error() {
    let stub = WebhookStub::start(|_| Reply::Status(503, "service_unavailable", None)).await;
    let notifier = notifier_for(&stub.url, fast_policy(4)).await;
    let error = app::handle_notify_event(&notifier, &example_event()).await.unwrap_err();
    assert_eq!(stub.posts().len(), 4);
    assert_eq!(error.error_type, app::ErrorType::SlackUnavailable);
    assert!(error.message.contains("failed 4 time(s)") && error.message.contains("HTTP 503"), "{}", error.message);
    assert_no_url(&error, &stub.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_400_is_not_retried_and_reported_as_a_rejection() {
    let stub = WebhookStub::start(|_| Reply::Status(400, "invalid_payload", None)).await;
    let notifier = notifier_for(&stub.url, fast_policy(4)).await;
    let error = app::handle_notify_event(&notifier, &example_event()).await.unwrap_err();
    assert_eq!(stub.posts().len(), 1);
    assert_eq!(error.error_type, app::ErrorType::SlackRejected);
    assert!(error.message.contains("HTTP 400") && error.message.contains("invalid_payload"), "{}", error.message);
    assert_no_url(&error, &stub.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_a_revoked_webhook_is_final_and_its_url_redacted_even_when_the_answer_echoes_it() {
    // GIVEN a webhook that answers 404 and quotes the URL's secret path back
    const ECHO: &str = "no_service: POST /services/T0BACKSTOP/B0TEST/s3cr3tW3bh00kT0k3n";
    assert!(ECHO.ends_with(SECRET_PATH));
    let stub = WebhookStub::start(|_| Reply::Status(404, ECHO, None)).await;
    let notifier = notifier_for(&stub.url, fast_policy(4)).await;
    // WHEN an alert arrives
    let error = app::handle_notify_event(&notifier, &example_event()).await.unwrap_err();
    // THEN one post, a rejection, and the path is redacted from Slack's answer
    assert_eq!(stub.posts().len(), 1);
    assert_eq!(error.error_type, app::ErrorType::SlackRejected);
    assert!(error.message.contains("HTTP 404 Not Found: no_service: POST [REDACTED]"), "{}", error.message);
    assert_no_url(&error, &stub.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_429_waits_for_retry_after_then_posts_again() {
    let stub = WebhookStub::start(|n| {
        if n == 0 {
            Reply::Status(429, "rate_limited", Some(1))
        } else {
            Reply::Status(200, "ok", None)
        }
    })
    .await;
    let notifier = notifier_for(&stub.url, fast_policy(3)).await;
    let started = Instant::now();
    app::handle_notify_event(&notifier, &example_event()).await.unwrap();
    assert_eq!(stub.posts().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}, before Slack's Retry-After: 1",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_a_silent_webhook_times_out_and_is_retried() {
    let stub = WebhookStub::start(|n| if n == 0 { Reply::Silence } else { Reply::Status(200, "ok", None) }).await;
    let policy = RetryPolicy { attempt_timeout: Duration::from_millis(300), ..fast_policy(3) };
    let notifier = notifier_for(&stub.url, policy).await;
    app::handle_notify_event(&notifier, &example_event()).await.unwrap();
    assert_eq!(stub.posts().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_an_unreachable_webhook_fails_after_bounded_attempts_without_naming_it() {
    // GIVEN a webhook URL whose port nobody listens on
    let url = format!("http://127.0.0.1:{}{SECRET_PATH}", backstop_tests::free_port());
    let notifier = notifier_for(&url, fast_policy(3)).await;
    let started = Instant::now();
    let error = app::handle_notify_event(&notifier, &example_event()).await.unwrap_err();
    assert_eq!(error.error_type, app::ErrorType::SlackUnavailable);
    assert!(
        error.message.contains("failed 3 time(s)") && error.message.contains("cannot connect"),
        "{}",
        error.message
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_no_url(&error, &url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_a_malformed_record_is_dropped_and_the_invocation_succeeds() {
    let stub = WebhookStub::start(|_| Reply::Status(200, "ok", None)).await;
    let notifier = notifier_for(&stub.url, fast_policy(3)).await;
    let mut event = example_event();
    event["Records"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"EventSource": "aws:sns", "Sns": {"MessageId": "broken-1", "Subject": "no message"}}));
    let answer = app::handle_notify_event(&notifier, &event).await.unwrap();
    assert_eq!(answer["delivered"], 1);
    assert_eq!(answer["dropped"][0]["message_id"], "broken-1");
    assert_eq!(stub.posts().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_webhook_url_from_an_ssm_securestring_parameter() {
    // GIVEN the URL (plain, not JSON) in an SSM SecureString parameter
    let stub = WebhookStub::start(|_| Reply::Status(200, "ok", None)).await;
    let sdk = sdk().await;
    let name = format!("/backstop/slack-{}", uuid::Uuid::new_v4().simple());
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&name)
        .value(&stub.url)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let notifier = app::notifier(WebhookSource::SsmParameter { name }, &sdk, fast_policy(3)).unwrap();
    // WHEN two events arrive THEN both are posted to the parameter's URL
    for _ in 0..2 {
        app::handle_notify_event(&notifier, &example_event()).await.unwrap();
    }
    assert_eq!(stub.posts().len(), 2);
    assert_eq!(stub.posts()[0].path, SECRET_PATH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_a_missing_secret_fails_with_its_name_and_posts_nothing() {
    let sdk = sdk().await;
    let notifier = app::notifier(
        WebhookSource::SecretsManager { secret_id: "backstop/no-such-slack-secret".into() },
        &sdk,
        fast_policy(3),
    )
    .unwrap();
    let error = app::handle_notify_event(&notifier, &example_event()).await.unwrap_err();
    assert_eq!(error.error_type, app::ErrorType::SlackUnavailable);
    assert!(error.message.contains("backstop/no-such-slack-secret"), "{}", error.message);
}
