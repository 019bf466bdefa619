//! Peer server: WebSocket echo at `/echo` over TLS (`wss://`), on
//! tokio-tungstenite and tokio-rustls, one tokio `current_thread` runtime —
//! the stack an embedder would reach for first, with the same TLS library
//! and settings as pushloop's `tls` feature (rustls 0.23 on ring, TLS 1.3
//! and 1.2, ALPN `http/1.1`), so a comparison measures the servers.
//!
//! The echo loop is `tungstenite-echo`'s, behind a `TlsAcceptor`.
//!
//! Usage: `tungstenite-tls-echo --addr 127.0.0.1:9443 --cert cert.pem --key key.pem`
//! (or `PORT=9443`); the certificate file holds the chain, leaf first.

use std::sync::Arc;

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest message and frame accepted: the benchmark asks for at least 16 MiB.
const MAX_MESSAGE: usize = 64 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let acceptor = TlsAcceptor::from(server_config(&args.cert, &args.key));
    let listener = TcpListener::bind(&args.addr).await.expect("bind");
    eprintln!("tungstenite-tls-echo listening on {} (wss)", args.addr);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, acceptor.clone()));
            }
            // EMFILE and friends: keep serving the connections we have.
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

/// rustls on ring with its safe defaults (TLS 1.3 and 1.2), ALPN `http/1.1`.
fn server_config(cert: &str, key: &str) -> Arc<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .expect("certificate file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("key PEM");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn serve(stream: TcpStream, acceptor: TlsAcceptor) {
    let _ = stream.set_nodelay(true);
    let Ok(stream) = acceptor.accept(stream).await else {
        return;
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    // The error type is tungstenite's callback signature, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let only_echo = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/echo" {
            Ok(resp)
        } else {
            let mut not_found = ErrorResponse::new(None);
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            Err(not_found)
        }
    };
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, only_echo, Some(config)).await
    else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

/// `--addr HOST:PORT` (else `PORT` from the environment on 127.0.0.1),
/// `--cert FILE`, `--key FILE`.
struct Args {
    addr: String,
    cert: String,
    key: String,
}

impl Args {
    fn parse() -> Args {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            let i = args.iter().position(|a| a == name)?;
            Some(
                args.get(i + 1)
                    .unwrap_or_else(|| panic!("{name} needs a value"))
                    .clone(),
            )
        };
        let port = std::env::var("PORT").unwrap_or_else(|_| "9443".into());
        Args {
            addr: value("--addr").unwrap_or_else(|| format!("127.0.0.1:{port}")),
            cert: value("--cert").expect("--cert FILE (PEM chain, leaf first)"),
            key: value("--key").expect("--key FILE (PEM private key)"),
        }
    }
}
