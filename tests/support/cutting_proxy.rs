//! A TCP proxy on loopback that drops connections in the middle of a response, as a network that resets a long
//! download does: it forwards everything to an upstream address and, for the first `cuts` connections whose
//! responses pass `after` bytes, closes both sides there. Started with [`CuttingProxy::start_then_gone`], it
//! also drops every connection after its last cut, as a service that went away.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct CuttingProxy {
    /// `http://127.0.0.1:PORT`, for an endpoint override.
    pub url: String,
    cuts_left: Arc<AtomicUsize>,
    cuts: usize,
}

impl CuttingProxy {
    /// Forwards to `upstream` (`http://host:port`) and cuts `cuts` responses once they pass `after` bytes.
    pub async fn start(upstream: &str, after: u64, cuts: usize) -> CuttingProxy {
        Self::started(upstream, after, cuts, false).await
    }

    /// As [`CuttingProxy::start`], and once the cuts are made every connection is closed as soon as it opens.
    pub async fn start_then_gone(upstream: &str, after: u64, cuts: usize) -> CuttingProxy {
        Self::started(upstream, after, cuts, true).await
    }

    async fn started(upstream: &str, after: u64, cuts: usize, gone_after: bool) -> CuttingProxy {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("the proxy's address"));
        let cuts_left = Arc::new(AtomicUsize::new(cuts));
        let left = cuts_left.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if gone_after && left.load(Ordering::SeqCst) == 0 {
                    drop(client);
                    continue;
                }
                let (upstream, left) = (upstream.clone(), left.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        forward(client, server, after, left).await;
                    }
                });
            }
        });
        CuttingProxy { url, cuts_left, cuts }
    }

    /// How many responses it has cut so far.
    pub fn cuts_made(&self) -> usize {
        self.cuts - self.cuts_left.load(Ordering::SeqCst)
    }
}

async fn forward(client: TcpStream, server: TcpStream, after: u64, cuts_left: Arc<AtomicUsize>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        sent += n as u64;
        if sent > after && take_a_cut(&cuts_left) {
            // Half of this read goes through, then the connection is gone: a response cut mid-body.
            let _ = client_write.write_all(&buf[..n / 2]).await;
            break;
        }
        if client_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    requests.abort();
}

fn take_a_cut(cuts_left: &AtomicUsize) -> bool {
    cuts_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok()
}
