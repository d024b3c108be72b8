//! Connections to a scratch server over PostgreSQL's wire protocol (tokio-postgres), for the work psql cannot
//! do in parallel: loading a dump's tables over several connections, and reading them back.
//!
//! Scratch endpoints say `disable` (a local cluster on loopback) or `require` (an RDS instance: encrypted, like
//! libpq's `require`, which does not verify the certificate either); anything stricter is refused rather than
//! quietly weakened. The password goes in the connection's configuration, never in a string that could be
//! logged.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, NoTls, TlsConnect};
use tokio_postgres::{Client, Config, Socket};

use crate::ports::{RestoreError, ScratchEndpoint};

/// A connection to `database` on the scratch server; its I/O runs on a task of its own until the client drops.
pub async fn connect(server: &ScratchEndpoint, database: &str) -> Result<Client, RestoreError> {
    let mut config = Config::new();
    config
        .host(&server.host)
        .port(server.port)
        .user(&server.user)
        .password(server.password.expose_secret())
        .dbname(database)
        .application_name("backstop-verify")
        .connect_timeout(std::time::Duration::from_secs(30));
    let failed = |e: tokio_postgres::Error| RestoreError::Failed {
        program: "connect".into(),
        status: "error".into(),
        stderr_tail: describe(&e),
    };
    match server.sslmode.as_str() {
        "disable" => {
            let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(async move { drop(connection.await) });
            Ok(client)
        }
        "require" | "prefer" => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, connection) = config.connect(EncryptedUnverified).await.map_err(failed)?;
            tokio::spawn(async move { drop(connection.await) });
            Ok(client)
        }
        other => Err(RestoreError::Failed {
            program: "connect".into(),
            status: "refused".into(),
            stderr_tail: format!("scratch connections support sslmode disable or require, not {other:?}"),
        }),
    }
}

/// What went wrong, with the server's own message, code and detail when the server said it; marked as the
/// server's failure (`domain::scratch_fault`) when its SQLSTATE or the client's error kind says so.
pub fn describe(e: &tokio_postgres::Error) -> String {
    use crate::domain::scratch_fault;
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            scratch_fault::mark_if(text, scratch_fault::of_sqlstate(db.code().code()))
        }
        None => {
            // tokio-postgres's own errors say what happened to the connection, in words of its own.
            let text = e.to_string();
            let why = if e.is_closed() || text.starts_with("error communicating with the server") {
                Some(scratch_fault::CONNECTION_LOST)
            } else if text.starts_with("error connecting to server") || text.starts_with("timeout waiting for server") {
                Some(scratch_fault::UNREACHABLE)
            } else {
                None
            };
            scratch_fault::mark_if(text, why)
        }
    }
}

/// A deadlock the server broke by failing this statement: worth running again alone.
pub fn is_deadlock(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
}

/// TLS without certificate verification: the encryption libpq's `sslmode=require` gives.
#[derive(Clone)]
struct EncryptedUnverified;

impl MakeTlsConnect<Socket> for EncryptedUnverified {
    type Stream = TlsStream;
    type TlsConnect = Connector;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<Connector> {
        let name =
            ServerName::try_from(host.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
                .with_no_client_auth();
        Ok(Connector { name, connector: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }
}

pub struct Connector {
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
}

impl TlsConnect<Socket> for Connector {
    type Stream = TlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move { Ok(TlsStream(self.connector.connect(self.name, socket).await?)) })
    }
}

pub struct TlsStream(tokio_rustls::client::TlsStream<Socket>);

impl tokio_postgres::tls::TlsStream for TlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        // Nothing to bind to without a verified certificate; SCRAM works without it.
        ChannelBinding::none()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[derive(Debug)]
struct AcceptAnyCertificate;

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
