//! When to post a webhook message again: the policy (attempts, exponential backoff with jitter, per-attempt
//! timeout) and the classification of one attempt's outcome, as plain functions so both are tested without a
//! network.
//!
//! Retried: connection failures, timeouts, other transport errors, 429 (after Slack's `Retry-After`) and 5xx.
//! Not retried: any other status, above all 4xx — a revoked webhook (403/404), an archived channel (410) or a
//! payload Slack refuses (400) answers the same every time; that is a configuration error to report, not to
//! hammer.

use std::time::Duration;

/// How hard to try one message. The defaults: at most 4 attempts of at most 10 s each, 0.5, 1 and 2 s (minus
/// jitter) between them, or up to 10 s when a 429 asks for it — under 75 s in the worst case, so a notifier
/// with a 90 s Lambda timeout always finishes and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub base_delay: Duration,
    /// No wait is longer (jitter included).
    pub max_delay: Duration,
    /// One attempt (connect, send, read the answer) takes at most this.
    pub attempt_timeout: Duration,
    /// A 429 asking to wait longer than this is not waited for: the message fails now, and SNS's retry
    /// policy brings it back later.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `failed_attempt` (1-based): `base × 2^(n-1)`, capped, with "equal jitter"
    /// (half of it fixed, half random; `jitter` in [0, 1)) so that many notifiers retrying at once spread out.
    pub fn backoff(&self, failed_attempt: u32, jitter: f64) -> Duration {
        let exponent = failed_attempt.saturating_sub(1).min(20);
        let full = self.base_delay.saturating_mul(1u32 << exponent).min(self.max_delay);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// What to do after attempt `failed_attempt` failed with `verdict`.
    pub fn next_step(&self, failed_attempt: u32, verdict: &Verdict, jitter: f64) -> NextStep {
        match verdict {
            Verdict::Delivered => NextStep::Done,
            Verdict::Reject => NextStep::GiveUp,
            Verdict::Retry { .. } if failed_attempt >= self.max_attempts => NextStep::GiveUp,
            Verdict::Retry { retry_after: Some(wait) } if *wait > self.max_retry_after => NextStep::GiveUp,
            // Retry-After is a minimum: never come back sooner than asked.
            Verdict::Retry { retry_after } => {
                NextStep::Wait(self.backoff(failed_attempt, jitter).max(retry_after.unwrap_or_default()))
            }
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Slack answered.
    Status { status: u16, retry_after: Option<Duration> },
    /// No connection (DNS, refused, TLS handshake).
    Connect,
    /// No answer within the attempt timeout.
    Timeout,
    /// The connection broke while sending or reading.
    Transport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry { retry_after: Option<Duration> },
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    Done,
    Wait(Duration),
    GiveUp,
}

pub fn classify(outcome: &AttemptOutcome) -> Verdict {
    match outcome {
        AttemptOutcome::Status { status, .. } if (200..300).contains(status) => Verdict::Delivered,
        AttemptOutcome::Status { status: 429, retry_after } => Verdict::Retry { retry_after: *retry_after },
        AttemptOutcome::Status { status, .. } if *status >= 500 => Verdict::Retry { retry_after: None },
        AttemptOutcome::Status { .. } => Verdict::Reject,
        AttemptOutcome::Connect | AttemptOutcome::Timeout | AttemptOutcome::Transport => {
            Verdict::Retry { retry_after: None }
        }
    }
}

/// `Retry-After` in seconds (what Slack sends). The HTTP-date form is not used by Slack and reads as absent.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> AttemptOutcome {
        AttemptOutcome::Status { status, retry_after: None }
    }

    #[test]
    fn success_is_delivered_server_trouble_is_retried_client_errors_are_not() {
        assert_eq!(classify(&status(200)), Verdict::Delivered);
        assert_eq!(classify(&status(204)), Verdict::Delivered);
        for s in [500, 502, 503, 504] {
            assert_eq!(classify(&status(s)), Verdict::Retry { retry_after: None }, "{s}");
        }
        // a revoked webhook, an archived channel, a payload Slack refuses, a redirect: the same every time
        for s in [400, 401, 403, 404, 410, 413, 301] {
            assert_eq!(classify(&status(s)), Verdict::Reject, "{s}");
        }
        for outcome in [AttemptOutcome::Connect, AttemptOutcome::Timeout, AttemptOutcome::Transport] {
            assert_eq!(classify(&outcome), Verdict::Retry { retry_after: None }, "{outcome:?}");
        }
    }

    #[test]
    fn a_429_is_retried_after_what_slack_asked() {
        let outcome = AttemptOutcome::Status { status: 429, retry_after: Some(Duration::from_secs(3)) };
        let verdict = classify(&outcome);
        assert_eq!(verdict, Verdict::Retry { retry_after: Some(Duration::from_secs(3)) });
        // GIVEN a policy whose backoff is shorter than what Slack asked THEN Slack's wait wins
        let policy = RetryPolicy::default();
        assert_eq!(policy.next_step(1, &verdict, 0.0), NextStep::Wait(Duration::from_secs(3)));
        // GIVEN Slack asks for longer than the policy waits THEN the message fails now (SNS retries it later)
        let long = Verdict::Retry { retry_after: Some(Duration::from_secs(600)) };
        assert_eq!(policy.next_step(1, &long, 0.0), NextStep::GiveUp);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn backoff_doubles_is_capped_and_jitter_stays_within_half() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(3),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(1, 0.999_999).as_millis(), 499);
        assert_eq!(policy.backoff(1, 0.0), Duration::from_millis(250));
        assert_eq!(policy.backoff(2, 0.0), Duration::from_millis(500));
        assert_eq!(policy.backoff(3, 0.5), Duration::from_millis(1500));
        // 500 ms × 2^9 would be 256 s: capped
        assert_eq!(policy.backoff(10, 1.0), Duration::from_secs(3));
        assert_eq!(policy.backoff(u32::MAX, 1.0), Duration::from_secs(3));
    }

    #[test]
    fn attempts_are_bounded_and_a_rejection_is_final() {
        let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        let retry = Verdict::Retry { retry_after: None };
        assert!(matches!(policy.next_step(1, &retry, 0.5), NextStep::Wait(_)));
        assert!(matches!(policy.next_step(2, &retry, 0.5), NextStep::Wait(_)));
        assert_eq!(policy.next_step(3, &retry, 0.5), NextStep::GiveUp);
        assert_eq!(policy.next_step(1, &Verdict::Reject, 0.5), NextStep::GiveUp);
        assert_eq!(policy.next_step(1, &Verdict::Delivered, 0.5), NextStep::Done);
    }
}
