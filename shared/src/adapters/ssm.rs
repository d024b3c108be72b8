//! SSM Parameter Store as a secret store: a (SecureString) parameter's value, decrypted. Used for the Slack
//! webhook URL when `BACKSTOP_SLACK_WEBHOOK_PARAMETER` names one.

use async_trait::async_trait;
use aws_sdk_ssm::Client;
use secrecy::SecretString;

use super::sdk_error_text;
use crate::ports::{SecretError, SecretStore};

pub struct SsmParameters {
    client: Client,
}

impl SsmParameters {
    pub fn new(client: Client) -> Self {
        SsmParameters { client }
    }
}

#[async_trait]
impl SecretStore for SsmParameters {
    async fn secret_string(&self, name: &str) -> Result<SecretString, SecretError> {
        let out = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            // The error describes the request, never the value.
            .map_err(|e| SecretError {
                secret_id: name.into(),
                message: format!("SSM GetParameter: {}", sdk_error_text(&e)),
                transient: super::aws_failure(&e).kind.is_transient(),
            })?;
        out.parameter.and_then(|p| p.value).map(SecretString::from).ok_or_else(|| SecretError {
            secret_id: name.into(),
            message: "SSM returned the parameter without a value".into(),
            transient: false,
        })
    }
}
