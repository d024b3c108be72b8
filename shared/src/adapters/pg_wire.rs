//! Connections to a scratch server over PostgreSQL's wire protocol (tokio-postgres), for the work psql cannot
//! do in parallel: loading a dump's tables over several connections, and reading them back.
//!
//! `sslmode` reads as libpq reads it: scratch endpoints say `disable` (a local cluster on loopback) or
//! `require` (an RDS instance: encrypted, the certificate not verified, as libpq's `require` does not either);
//! the server `backstop restore --into` names may say any mode, and the psql and pg_dump beside these
//! connections take it too. `allow` tries without TLS first, `prefer` with it first; `verify-ca` and
//! `verify-full` verify the server's certificate against the root certificates libpq's default names
//! (`~/.postgresql/root.crt`; the restore's psql reads the same), `verify-full` its host name too; and, as
//! libpq does, any TLS connection verifies the chain when that file exists. Not as libpq: no client
//! certificate, no revocation list, no channel binding. The password goes in the connection's configuration,
//! never in a string that could be logged.

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
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, NoTls, TlsConnect};
use tokio_postgres::{Client, Config, Socket};

use crate::ports::{RestoreError, ScratchEndpoint};

/// A connection to `database` on the scratch server; its I/O runs on a task of its own until the client drops.
pub async fn connect(server: &ScratchEndpoint, database: &str) -> Result<Client, RestoreError> {
    connect_verifying_with(server, database, root_certificates_file().as_deref()).await
}

/// [`connect`], the server's certificate verified against the root certificates in `roots` (PEM), where libpq
/// reads them: always with `verify-ca` and `verify-full` (which refuse to connect without them), and with
/// `allow`, `prefer` and `require` when the file exists (libpq's `require` then acts as `verify-ca`).
pub async fn connect_verifying_with(
    server: &ScratchEndpoint,
    database: &str,
    roots: Option<&std::path::Path>,
) -> Result<Client, RestoreError> {
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
    let refused =
        |why: String| RestoreError::Failed { program: "connect".into(), status: "refused".into(), stderr_tail: why };
    let mode = server.sslmode.as_str();
    let verifier = Arc::new(match mode {
        "verify-ca" | "verify-full" => verifying(roots, mode == "verify-full").map_err(refused)?,
        "allow" | "prefer" | "require" if roots.is_some_and(|file| file.exists()) => {
            verifying(roots, false).map_err(refused)?
        }
        _ => ServerCertificate::any(),
    });
    match mode {
        "disable" => spawned(config.connect(NoTls).await).map_err(failed),
        // libpq's order: without TLS, then with it when the server refused that (not when it did not answer).
        "allow" => match spawned(config.connect(NoTls).await) {
            Ok(client) => Ok(client),
            Err(plain) if plain.as_db_error().is_some() => {
                config.ssl_mode(SslMode::Require);
                spawned(config.connect(Tls(verifier)).await).map_err(|encrypted| RestoreError::Failed {
                    program: "connect".into(),
                    status: "error".into(),
                    stderr_tail: format!("{} (and without TLS: {})", describe(&encrypted), describe(&plain)),
                })
            }
            Err(plain) => Err(failed(plain)),
        },
        // With TLS, and without it when the server has none (tokio-postgres's own fallback).
        "prefer" => {
            config.ssl_mode(SslMode::Prefer);
            spawned(config.connect(Tls(verifier)).await).map_err(failed)
        }
        "require" | "verify-ca" | "verify-full" => {
            config.ssl_mode(SslMode::Require);
            spawned(config.connect(Tls(verifier)).await).map_err(failed)
        }
        other => Err(refused(format!(
            "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ))),
    }
}

/// A made connection's client, its I/O on a task of its own until the client drops.
fn spawned<S, T>(
    connected: Result<(Client, tokio_postgres::Connection<S, T>), tokio_postgres::Error>,
) -> Result<Client, tokio_postgres::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = connected?;
    tokio::spawn(async move { drop(connection.await) });
    Ok(client)
}

/// The root certificates libpq reads by default, which the restore's psql and pg_dump read too:
/// `~/.postgresql/root.crt`, home being `HOME` or, when that is unset or empty, the user's own.
fn root_certificates_file() -> Option<std::path::PathBuf> {
    let home =
        std::env::var_os("HOME").filter(|home| !home.is_empty()).map(std::path::PathBuf::from).or_else(own_home)?;
    Some(home.join(".postgresql/root.crt"))
}

/// The home directory of the user this process runs as, from the password database.
fn own_home() -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: a record of null pointers and zeros, for getpwuid_r to fill.
    let mut record: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes the record's strings into `buffer`, which outlives their use below.
    let status =
        unsafe { libc::getpwuid_r(libc::geteuid(), &mut record, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if status != 0 || found.is_null() || record.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into `buffer`, a NUL-terminated string getpwuid_r wrote.
    let dir = unsafe { std::ffi::CStr::from_ptr(record.pw_dir) };
    Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}

/// A verifier of the server's certificate chain against the roots in `file` (PEM), and of its host name when
/// `full`. `Err`: why there are no roots to verify against, and what to do.
fn verifying(file: Option<&std::path::Path>, full: bool) -> Result<ServerCertificate, String> {
    use rustls::pki_types::pem::PemObject;
    let file = file.ok_or("sslmode verify-ca and verify-full need ~/.postgresql/root.crt, and there is no home")?;
    let unreadable = |why: String| {
        format!(
            "root certificate file {} {why}: the server's certificate is verified against it, as psql verifies it \
             (with sslmode verify-ca and verify-full, and with any sslmode while the file exists): put the server's \
             CA certificates there, in PEM (for RDS, its region's bundle)",
            file.display()
        )
    };
    if !file.exists() {
        return Err(format!("{}, or use sslmode=require", unreadable("does not exist".into())));
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(file).map_err(|e| unreadable(format!("cannot be read: {e}")))? {
        let certificate =
            certificate.map_err(|e| unreadable(format!("holds a certificate that cannot be read: {e}")))?;
        roots.add(certificate).map_err(|e| unreadable(format!("holds a certificate that cannot be used: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| unreadable(format!("gives no root to verify against: {e}")))?;
    Ok(ServerCertificate { chain: Some(chain), name: full, ..ServerCertificate::any() })
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
            // tokio-postgres's own errors say what happened to the connection, in words of its own, and leave
            // the cause (the refused connection, the certificate not trusted) to their source.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
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

/// TLS, the server's certificate judged as [`ServerCertificate`] says.
#[derive(Clone)]
struct Tls(Arc<ServerCertificate>);

impl MakeTlsConnect<Socket> for Tls {
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
                .with_custom_certificate_verifier(self.0.clone())
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
        // None offered (libpq binds to the certificate when it can): SCRAM works without it.
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

/// How the server's certificate is judged, as libpq's `sslmode` says: not at all (the encryption `require`
/// gives without root certificates), by its chain to a trusted root (`verify-ca`, and any TLS mode while the
/// root certificates file exists), or by its chain and the name it was made for (`verify-full`). Its signature
/// over the handshake is verified whichever.
#[derive(Debug)]
struct ServerCertificate {
    /// The chain's verifier, over the trusted roots; `None`: any certificate is taken.
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    /// Whether the name the certificate was made for must be the host's.
    name: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertificate {
    fn any() -> Self {
        let algorithms = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        ServerCertificate { chain: None, name: false, algorithms }
    }
}

impl ServerCertVerifier for ServerCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        // The name is checked after the chain: an error about the name is one about nothing else.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_verification_without_usable_roots_is_refused_saying_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("root.crt");
        let refused = |file: &std::path::Path| verifying(Some(file), true).expect_err("refused");
        let why = refused(&missing);
        assert!(why.contains("does not exist") && why.contains("sslmode=require"), "{why}");
        std::fs::write(&missing, "not a certificate\n").unwrap();
        let why = refused(&missing);
        assert!(why.contains("gives no root"), "{why}");
        std::fs::write(&missing, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        assert!(refused(&missing).contains("cannot be used"), "{}", refused(&missing));
        assert!(verifying(None, false).err().unwrap().contains("no home"));
    }
}
