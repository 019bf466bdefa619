//! Peer server: WebSocket echo at `/echo` on tokio-tungstenite, one tokio
//! `current_thread` runtime — the stack an embedder would reach for first.
//!
//! The echo loop is the crate's own example (`examples/echo-server.rs`):
//! split the stream and `forward` data messages back; tungstenite answers
//! pings and the close handshake itself.
//!
//! Usage: `tungstenite-echo --addr 127.0.0.1:9001` (or `PORT=9001`).

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest message and frame accepted: the benchmark asks for at least 16 MiB.
const MAX_MESSAGE: usize = 64 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = addr_from_args();
    let listener = TcpListener::bind(&addr).await.expect("bind");
    eprintln!("tungstenite-echo listening on {addr}");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            // EMFILE and friends: keep serving the connections we have.
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let only_echo = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/echo" {
            Ok(resp)
        } else {
            let mut not_found = ErrorResponse::new(None);
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            Err(not_found)
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, only_echo, Some(config)).await
    else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

/// `--addr HOST:PORT`, else `PORT` from the environment on 127.0.0.1.
fn addr_from_args() -> String {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--addr") {
        return args.get(i + 1).expect("--addr needs HOST:PORT").clone();
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "9001".into());
    format!("127.0.0.1:{port}")
}
