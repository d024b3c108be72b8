//! Alerts through SNS, with message attributes (`severity`, `target`, `job`) for subscription filter policies.

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;

use super::aws_failure;
use crate::ports::{Alert, AlertError, Alerts};

pub struct SnsAlerts {
    client: Client,
    topic_arn: String,
    /// Prefixes runbook links (`Alert::text`); empty leaves them repository paths.
    runbook_url: String,
}

impl SnsAlerts {
    pub fn new(client: Client, topic_arn: impl Into<String>, runbook_url: impl Into<String>) -> Self {
        SnsAlerts { client, topic_arn: topic_arn.into(), runbook_url: runbook_url.into() }
    }
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().expect("data type is set")
}

#[async_trait]
impl Alerts for SnsAlerts {
    async fn publish(&self, alert: &Alert) -> Result<(), AlertError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&alert.subject)
            .message(alert.text(&self.runbook_url))
            .message_attributes("severity", string_attribute(alert.severity.as_str()))
            .message_attributes("job", string_attribute(alert.job.as_str()));
        if let Some(target) = &alert.target {
            request = request.message_attributes("target", string_attribute(target));
        }
        request
            .send()
            .await
            .map_err(|e| AlertError { subject: alert.subject.clone(), cause: Box::new(aws_failure(&e)) })?;
        Ok(())
    }
}

/// No topic configured (the CLI on a laptop): alerts go to the log only, loudly.
pub struct LogOnlyAlerts {
    pub runbook_url: String,
}

#[async_trait]
impl Alerts for LogOnlyAlerts {
    async fn publish(&self, alert: &Alert) -> Result<(), AlertError> {
        tracing::warn!(subject = %alert.subject, severity = alert.severity.as_str(), "alert (no BACKSTOP_TOPIC_ARN set, not sent):\n{}", alert.text(&self.runbook_url));
        Ok(())
    }
}
