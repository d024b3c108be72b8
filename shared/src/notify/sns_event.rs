//! The event SNS sends a subscribed Lambda function, parsed record by record: a record that cannot be read is
//! dropped with its reason (a retry would fail the same way forever) and the others are still delivered.
//!
//! Parsing is lenient wherever an alert can still be shown: a missing subject, an unknown severity, an
//! attribute of another type or an unreadable timestamp are rendered as best they can be. Only a record that is
//! not from SNS, or has no message, is dropped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// How bad the alert is, from the `severity` message attribute Backstop's publishers set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertSeverity {
    Critical,
    Warning,
    Info,
    /// The attribute is missing (a message published by hand, or by something other than Backstop).
    Unspecified,
    /// A value Backstop does not publish; shown as it is.
    Other(String),
}

impl AlertSeverity {
    pub fn from_attribute(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            None | Some("") => AlertSeverity::Unspecified,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "critical" => AlertSeverity::Critical,
                "warning" => AlertSeverity::Warning,
                "info" => AlertSeverity::Info,
                _ => AlertSeverity::Other(v.to_string()),
            },
        }
    }
}

/// One SNS message, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsNotification {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub message: String,
    pub severity: AlertSeverity,
    pub job: Option<String>,
    pub target: Option<String>,
    /// When SNS accepted the message; `timestamp_text` keeps what SNS sent when it does not parse.
    pub timestamp: Option<DateTime<Utc>>,
    pub timestamp_text: Option<String>,
}

/// A record that was not delivered, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DroppedRecord {
    /// Position in the event's `Records` array.
    pub index: usize,
    pub message_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    pub notifications: Vec<SnsNotification>,
    pub dropped: Vec<DroppedRecord>,
}

/// The whole event is not an SNS event (a console test with `{}`, a wrong trigger): nothing to deliver.
#[derive(Debug, thiserror::Error)]
#[error("the event is not an SNS event: {reason}. The notifier is invoked by an SNS subscription; see functions/notifier/events/ for the shape")]
pub struct NotAnSnsEvent {
    pub reason: String,
}

#[derive(Deserialize)]
struct RawRecord {
    #[serde(rename = "EventSource")]
    event_source: Option<String>,
    #[serde(rename = "Sns")]
    sns: Option<RawSns>,
}

#[derive(Deserialize)]
struct RawSns {
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
    // SNS sends `"Subject": null` for a message published without one.
    #[serde(rename = "Subject")]
    subject: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "Timestamp")]
    timestamp: Option<String>,
    // Values stay loose: an attribute of an unexpected shape must not cost the alert.
    #[serde(rename = "MessageAttributes", default)]
    message_attributes: Option<BTreeMap<String, Value>>,
}

pub fn parse_sns_event(event: &Value) -> Result<ParsedEvent, NotAnSnsEvent> {
    let records = match event.get("Records") {
        Some(Value::Array(records)) => records,
        Some(_) => return Err(NotAnSnsEvent { reason: "`Records` is not an array".into() }),
        None => return Err(NotAnSnsEvent { reason: "it has no `Records` array".into() }),
    };
    let mut parsed = ParsedEvent::default();
    for (index, record) in records.iter().enumerate() {
        match parse_record(record) {
            Ok(notification) => parsed.notifications.push(notification),
            Err(reason) => {
                let message_id = record.pointer("/Sns/MessageId").and_then(Value::as_str).map(str::to_string);
                parsed.dropped.push(DroppedRecord { index, message_id, reason });
            }
        }
    }
    Ok(parsed)
}

fn parse_record(record: &Value) -> Result<SnsNotification, String> {
    let raw: RawRecord =
        serde_json::from_value(record.clone()).map_err(|e| format!("the record is not an SNS record: {e}"))?;
    match raw.event_source.as_deref() {
        Some("aws:sns") => {}
        Some(other) => return Err(format!("EventSource is {other:?}, not \"aws:sns\"")),
        None => return Err("the record has no EventSource (expected \"aws:sns\")".into()),
    }
    let sns = raw.sns.ok_or("the record has no `Sns` object")?;
    let message = sns.message.ok_or("the SNS record has no `Message`")?;
    let attributes = sns.message_attributes.unwrap_or_default();
    let attribute = |name: &str| string_attribute(&attributes, name);
    let timestamp =
        sns.timestamp.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc));
    Ok(SnsNotification {
        message_id: sns.message_id.filter(|s| !s.is_empty()),
        subject: sns.subject.filter(|s| !s.trim().is_empty()),
        message,
        severity: AlertSeverity::from_attribute(attribute("severity").as_deref()),
        job: attribute("job"),
        target: attribute("target"),
        timestamp,
        timestamp_text: sns.timestamp,
    })
}

/// `{"Type": "String", "Value": "critical"}` → `critical`. Numbers count too (a `Number` attribute's value is
/// its text); binary attributes and empty values count as absent.
fn string_attribute(attributes: &BTreeMap<String, Value>, name: &str) -> Option<String> {
    let attribute = attributes.get(name)?;
    let kind = attribute.get("Type").and_then(Value::as_str).unwrap_or("String");
    if kind.starts_with("Binary") {
        return None;
    }
    match attribute.get("Value")? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(sns: Value) -> Value {
        json!({"EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:alerts:1", "Sns": sns})
    }

    fn full_sns() -> Value {
        json!({
            "Type": "Notification",
            "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:backstop-alerts",
            "Subject": "Backstop: backup of orders FAILED",
            "Message": "pg_dump: error: connection refused",
            "Timestamp": "2026-11-22T02:00:07.123Z",
            "MessageAttributes": {
                "severity": {"Type": "String", "Value": "critical"},
                "job": {"Type": "String", "Value": "backup"},
                "target": {"Type": "String", "Value": "orders"}
            }
        })
    }

    #[test]
    fn a_backstop_alert_is_read_with_its_attributes() {
        // GIVEN the event SNS sends for an alert Backstop published
        let event = json!({"Records": [record(full_sns())]});
        // WHEN it is parsed
        let parsed = parse_sns_event(&event).unwrap();
        // THEN every field is there
        assert!(parsed.dropped.is_empty());
        let n = &parsed.notifications[0];
        assert_eq!(n.severity, AlertSeverity::Critical);
        assert_eq!(n.subject.as_deref(), Some("Backstop: backup of orders FAILED"));
        assert_eq!(n.message, "pg_dump: error: connection refused");
        assert_eq!(n.job.as_deref(), Some("backup"));
        assert_eq!(n.target.as_deref(), Some("orders"));
        assert_eq!(n.message_id.as_deref(), Some("95df01b4-ee98-5cb9-9903-4c221d41eb5e"));
        assert_eq!(n.timestamp.unwrap().to_rfc3339(), "2026-11-22T02:00:07.123+00:00");
    }

    #[test]
    fn the_example_event_parses() {
        let event: Value =
            serde_json::from_str(include_str!("../../../functions/notifier/events/backup-failed.json")).unwrap();
        let parsed = parse_sns_event(&event).unwrap();
        assert_eq!(parsed.notifications.len(), 1);
        assert!(parsed.dropped.is_empty());
    }

    #[test]
    fn a_malformed_record_is_dropped_with_its_reason_and_the_others_kept() {
        // GIVEN an event with a good record between a record from SQS and a record without a message
        let mut no_message = full_sns();
        no_message.as_object_mut().unwrap().remove("Message");
        let event = json!({"Records": [
            {"eventSource": "aws:sqs", "body": "{}"},
            record(full_sns()),
            record(no_message),
            "not even an object",
        ]});
        // WHEN it is parsed
        let parsed = parse_sns_event(&event).unwrap();
        // THEN the good one is kept and each other one is dropped, saying why
        assert_eq!(parsed.notifications.len(), 1);
        let reasons: Vec<(usize, &str)> = parsed.dropped.iter().map(|d| (d.index, d.reason.as_str())).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert_eq!(reasons[0].0, 0);
        assert!(reasons[0].1.contains("EventSource"), "{}", reasons[0].1);
        assert_eq!(reasons[1].0, 2);
        assert!(reasons[1].1.contains("no `Message`"), "{}", reasons[1].1);
        assert_eq!(parsed.dropped[1].message_id.as_deref(), Some("95df01b4-ee98-5cb9-9903-4c221d41eb5e"));
        assert!(reasons[2].1.contains("not an SNS record"), "{}", reasons[2].1);
    }

    #[test]
    fn missing_attributes_subject_and_timestamp_still_give_a_notification() {
        // GIVEN a message published by hand: no subject (SNS sends null), no attributes, an odd timestamp
        let event = json!({"Records": [record(json!({"MessageId": "m-1", "Subject": null, "Message": "hello", "Timestamp": "yesterday"}))]});
        // WHEN it is parsed
        let parsed = parse_sns_event(&event).unwrap();
        // THEN it is kept, with what is known
        let n = &parsed.notifications[0];
        assert_eq!(n.severity, AlertSeverity::Unspecified);
        assert_eq!((n.subject.as_deref(), n.job.as_deref(), n.target.as_deref()), (None, None, None));
        assert_eq!(n.timestamp, None);
        assert_eq!(n.timestamp_text.as_deref(), Some("yesterday"));
    }

    #[test]
    fn odd_attribute_shapes_do_not_cost_the_alert() {
        let event = json!({"Records": [record(json!({
            "Message": "m",
            "MessageAttributes": {
                "severity": {"Type": "String", "Value": "Sev1"},
                "job": {"Type": "Binary", "Value": "YmFja3Vw"},
                "target": {"Type": "Number", "Value": 7}
            }
        }))]});
        let n = &parse_sns_event(&event).unwrap().notifications[0];
        assert_eq!(n.severity, AlertSeverity::Other("Sev1".into()));
        assert_eq!(n.job, None);
        assert_eq!(n.target.as_deref(), Some("7"));
        assert_eq!(AlertSeverity::from_attribute(Some("WARNING")), AlertSeverity::Warning);
    }

    #[test]
    fn an_event_without_records_is_refused_as_a_whole() {
        assert!(parse_sns_event(&json!({})).unwrap_err().to_string().contains("no `Records`"));
        assert!(parse_sns_event(&json!({"Records": {}})).is_err());
        assert_eq!(parse_sns_event(&json!({"Records": []})).unwrap(), ParsedEvent::default());
    }
}
