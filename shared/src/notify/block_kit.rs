//! An SNS alert as a Slack Block Kit message: a header (severity and subject), the body as a section, and a
//! context line (target, job, time, message id), with a plain `text` fallback for notifications.
//!
//! Slack's rules: `&`, `<` and `>` are escaped in every mrkdwn text (else `<…>` is read as a link or a
//! mention); a header is plain text of at most 150 characters; a section's text is at most 3,000 characters,
//! so a longer body is cut, on a character boundary and never inside an escape, with a note saying so.

use serde_json::{json, Value};

use super::sns_event::{AlertSeverity, SnsNotification};

/// Slack's limits, in characters.
pub const HEADER_MAX: usize = 150;
pub const SECTION_MAX: usize = 3000;
const CONTEXT_ITEM_MAX: usize = 300;

/// A rendered message and whether its body had to be cut.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    /// The JSON posted to the webhook: `{"text": …, "blocks": […]}`.
    pub payload: Value,
    /// Characters of the (escaped) body left out, when it was too long for one section.
    pub truncated_chars: Option<usize>,
}

/// `&`, `<`, `>` → `&amp;`, `&lt;`, `&gt;`: the only escaping Slack wants (more shows up as literal entities).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The emoji and label a severity is shown with.
pub fn severity_label(severity: &AlertSeverity) -> (&'static str, String) {
    match severity {
        AlertSeverity::Critical => (":rotating_light:", "CRITICAL".into()),
        AlertSeverity::Warning => (":warning:", "WARNING".into()),
        AlertSeverity::Info => (":information_source:", "INFO".into()),
        AlertSeverity::Unspecified => (":bell:", "ALERT".into()),
        AlertSeverity::Other(raw) => (":bell:", one_line(raw).chars().take(20).collect::<String>().to_uppercase()),
    }
}

pub fn render(n: &SnsNotification) -> SlackMessage {
    let (emoji, label) = severity_label(&n.severity);
    let subject = one_line(n.subject.as_deref().unwrap_or_else(|| first_line(&n.message)));
    let subject = if subject.trim().is_empty() { "(no subject)".to_string() } else { subject };

    let header = cut_plain(&format!("{emoji} {label}: {subject}"), HEADER_MAX);
    let (body, truncated_chars) = section_text(&n.message, n.message_id.as_deref());
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": body}}),
    ];
    let context = context_items(n);
    if !context.is_empty() {
        let elements: Vec<Value> = context.into_iter().map(|text| json!({"type": "mrkdwn", "text": text})).collect();
        blocks.push(json!({"type": "context", "elements": elements}));
    }
    let target = n.target.as_deref().map(|t| format!(" ({})", escape(&one_line(t)))).unwrap_or_default();
    let text = cut(&format!("{emoji} {label}: {}{target}", escape(&subject)), HEADER_MAX * 2);
    SlackMessage { payload: json!({"text": text, "blocks": blocks}), truncated_chars }
}

/// The escaped body, cut to fit one section with a note saying how much is missing and where it is.
fn section_text(message: &str, message_id: Option<&str>) -> (String, Option<usize>) {
    let escaped = escape(message.trim_end());
    if escaped.trim().is_empty() {
        return ("_(empty message)_".into(), None);
    }
    let total = escaped.chars().count();
    if total <= SECTION_MAX {
        return (escaped, None);
    }
    let id = message_id.map(|id| format!(" under message id `{}`", escape(id))).unwrap_or_default();
    // The note's own length depends on the number in it; a bound that is never smaller keeps it simple.
    let note_for = |omitted: usize| {
        format!(
            "\n\n_… truncated: {omitted} more characters not shown. The whole message is in the notifier's log{id}._"
        )
    };
    let budget = SECTION_MAX - note_for(total).chars().count();
    let kept = cut_escaped(&escaped, budget);
    let omitted = total - kept.chars().count();
    (format!("{kept}{}", note_for(omitted)), Some(omitted))
}

/// At most `max` characters of escaped text, never ending inside an `&…;` entity.
fn cut_escaped(escaped: &str, max: usize) -> &str {
    let end = escaped.char_indices().nth(max).map_or(escaped.len(), |(i, _)| i);
    let head = &escaped[..end];
    // An entity is at most `&amp;` long, so a cut one is an `&` among the last four bytes with no `;` after it.
    let tail_start = head.len().saturating_sub(4);
    match head.rfind('&') {
        Some(amp) if amp >= tail_start && !head[amp..].contains(';') => &head[..amp],
        _ => head,
    }
}

fn context_items(n: &SnsNotification) -> Vec<String> {
    let mut items = Vec::new();
    let field = |name: &str, value: &str| cut(&format!("*{name}:* {}", escape(&one_line(value))), CONTEXT_ITEM_MAX);
    if let Some(target) = &n.target {
        items.push(field("Target", target));
    }
    if let Some(job) = &n.job {
        items.push(field("Job", job));
    }
    match (&n.timestamp, &n.timestamp_text) {
        // Slack shows the time in each reader's own time zone; the fallback is UTC.
        (Some(t), _) => items.push(format!(
            "*Time:* <!date^{}^{{date_short_pretty}} {{time_secs}}|{}>",
            t.timestamp(),
            t.format("%Y-%m-%d %H:%M:%S UTC")
        )),
        (None, Some(raw)) => items.push(field("Time", raw)),
        (None, None) => {}
    }
    if let Some(id) = &n.message_id {
        items.push(cut(&format!("*Message id:* `{}`", escape(&one_line(id))), CONTEXT_ITEM_MAX));
    }
    items
}

fn first_line(text: &str) -> &str {
    text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
}

/// Control characters (newlines included) as spaces: headers and context items are one line.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string()
}

/// Plain text in at most `max` characters, ending in `…` when cut.
fn cut_plain(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

/// Escaped (mrkdwn) text in at most `max` characters, ending in `…` when cut, never inside an escape.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", cut_escaped(text, max - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn alert(message: &str) -> SnsNotification {
        SnsNotification {
            message_id: Some("m-1".into()),
            subject: Some("Backstop: backup of orders FAILED".into()),
            message: message.into(),
            severity: AlertSeverity::Critical,
            job: Some("backup".into()),
            target: Some("orders".into()),
            timestamp: Some(chrono::Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 7).unwrap()),
            timestamp_text: Some("2026-11-22T02:00:07Z".into()),
        }
    }

    fn block<'a>(payload: &'a Value, kind: &str) -> &'a Value {
        payload["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} block"))
    }

    #[test]
    fn an_alert_becomes_header_section_context_and_fallback_text() {
        // GIVEN a critical backup alert WHEN it is rendered
        let message = render(&alert("pg_dump failed\nsee the runbook"));
        let p = &message.payload;
        // THEN the header carries the severity and subject, the section the body, the context the facts
        assert_eq!(block(p, "header")["text"]["text"], ":rotating_light: CRITICAL: Backstop: backup of orders FAILED");
        assert_eq!(block(p, "header")["text"]["type"], "plain_text");
        assert_eq!(block(p, "section")["text"], json!({"type": "mrkdwn", "text": "pg_dump failed\nsee the runbook"}));
        let context: Vec<&str> =
            block(p, "context")["elements"].as_array().unwrap().iter().map(|e| e["text"].as_str().unwrap()).collect();
        assert_eq!(
            context,
            [
                "*Target:* orders",
                "*Job:* backup",
                "*Time:* <!date^1795312807^{date_short_pretty} {time_secs}|2026-11-22 02:00:07 UTC>",
                "*Message id:* `m-1`"
            ]
        );
        assert_eq!(p["text"], ":rotating_light: CRITICAL: Backstop: backup of orders FAILED (orders)");
        assert_eq!(message.truncated_chars, None);
    }

    #[test]
    fn slack_control_characters_are_escaped_everywhere_mrkdwn_is_read() {
        // GIVEN text that Slack would read as a mention and a link
        let mut n = alert("<!channel> a & b <http://evil|click>");
        n.target = Some("t<1>&".into());
        n.subject = Some("x <@U123> y".into());
        // WHEN rendered
        let p = render(&n).payload;
        // THEN the mrkdwn texts carry escapes, and nothing unescaped remains
        assert_eq!(block(&p, "section")["text"]["text"], "&lt;!channel&gt; a &amp; b &lt;http://evil|click&gt;");
        assert_eq!(block(&p, "context")["elements"][0]["text"], "*Target:* t&lt;1&gt;&amp;");
        assert_eq!(p["text"], ":rotating_light: CRITICAL: x &lt;@U123&gt; y (t&lt;1&gt;&amp;)");
        assert_eq!(escape("a&<>b"), "a&amp;&lt;&gt;b");
    }

    #[test]
    fn a_long_body_is_cut_to_the_section_limit_with_a_note() {
        // GIVEN a body of 5,000 characters, with escapes around the cut point
        let body = "é&".repeat(2500);
        // WHEN rendered
        let message = render(&alert(&body));
        let text = block(&message.payload, "section")["text"]["text"].as_str().unwrap().to_string();
        // THEN the text fits, says it was cut and where the rest is, and no escape is broken
        assert!(text.chars().count() <= SECTION_MAX, "{}", text.chars().count());
        assert!(text.contains("truncated"), "{text}");
        assert!(text.contains("message id `m-1`"), "{text}");
        let kept = text.split("\n\n_…").next().unwrap();
        assert!(kept.ends_with("&amp;") || kept.ends_with('é'), "{}", &kept[kept.len() - 10..]);
        let escaped_total = escape(&body).chars().count();
        assert_eq!(message.truncated_chars, Some(escaped_total - kept.chars().count()));
        assert!(text.contains(&format!("{} more characters", escaped_total - kept.chars().count())));
    }

    #[test]
    fn an_escape_is_never_split_by_a_cut() {
        assert_eq!(cut_escaped("ab&amp;c", 4), "ab");
        assert_eq!(cut_escaped("ab&amp;c", 7), "ab&amp;");
        assert_eq!(cut_escaped("abc", 10), "abc");
        assert_eq!(cut_escaped("a &amp; b and more", 12), "a &amp; b an");
        assert_eq!(cut_escaped("x&lt", 4), "x");
    }

    #[test]
    fn a_long_subject_fits_the_header_and_missing_facts_are_left_out() {
        // GIVEN a message without subject, attributes or id, whose first line is very long
        let n = SnsNotification {
            message_id: None,
            subject: None,
            message: format!("\n{}\nsecond line", "x".repeat(400)),
            severity: AlertSeverity::Unspecified,
            job: None,
            target: None,
            timestamp: None,
            timestamp_text: None,
        };
        // WHEN rendered
        let p = render(&n).payload;
        // THEN the header is the first line cut to 150 characters, and there is no empty context block
        let header = block(&p, "header")["text"]["text"].as_str().unwrap();
        assert!(header.starts_with(":bell: ALERT: xxx"), "{header}");
        assert_eq!(header.chars().count(), HEADER_MAX);
        assert!(header.ends_with('…'));
        assert_eq!(p["blocks"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn an_empty_body_still_gives_a_valid_section() {
        let p = render(&alert("  \n")).payload;
        assert_eq!(block(&p, "section")["text"]["text"], "_(empty message)_");
    }

    #[test]
    fn each_severity_has_its_label() {
        assert_eq!(severity_label(&AlertSeverity::Warning), (":warning:", "WARNING".to_string()));
        assert_eq!(severity_label(&AlertSeverity::Info), (":information_source:", "INFO".to_string()));
        assert_eq!(severity_label(&AlertSeverity::Other("sev 2\n".into())).1, "SEV 2");
    }
}
