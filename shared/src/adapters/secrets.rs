//! Passwords from AWS Secrets Manager (the RDS-managed master secret or any secret with a `password` key).

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use secrecy::SecretString;

use super::sdk_error_text;
use crate::ports::{SecretError, SecretStore};

pub struct SecretsManager {
    client: Client,
}

impl SecretsManager {
    pub fn new(client: Client) -> Self {
        SecretsManager { client }
    }
}

#[async_trait]
impl SecretStore for SecretsManager {
    async fn secret_string(&self, secret_id: &str) -> Result<SecretString, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            // The error describes the request, never the value: safe to show.
            .map_err(|e| SecretError {
                secret_id: secret_id.into(),
                message: sdk_error_text(&e),
                transient: super::aws_failure(&e).kind.is_transient(),
            })?;
        out.secret_string.map(SecretString::from).ok_or_else(|| SecretError {
            secret_id: secret_id.into(),
            message: "the secret has no string value (binary secrets are not supported)".into(),
            transient: false,
        })
    }
}
