//! Peer server: WebSocket echo at `/echo` on fastwebsockets, upgraded through
//! hyper 1, on one tokio `current_thread` runtime.
//!
//! This is the server pattern from fastwebsockets' own docs and
//! `examples/echo_server.rs`: hyper serves HTTP/1.1 with upgrades,
//! `upgrade::upgrade` answers the handshake, and a `FragmentCollector` echoes
//! whole messages (auto-pong and auto-close on, as by default).
//!
//! Usage: `fastws-echo --addr 127.0.0.1:9002` (or `PORT=9002`).

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Largest message accepted: the benchmark asks for at least 16 MiB.
const MAX_MESSAGE: usize = 64 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = addr_from_args();
    let listener = TcpListener::bind(&addr).await.expect("bind");
    eprintln!("fastws-echo listening on {addr}");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            let _ = http1::Builder::new()
                .serve_connection(io, service_fn(route))
                .with_upgrades()
                .await;
        });
    }
}

async fn route(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    if req.uri().path() != "/echo" || !upgrade::is_upgrade_request(&req) {
        let mut resp = Response::new(Empty::new());
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return Ok(resp);
    }
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_max_message_size(MAX_MESSAGE);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

/// `--addr HOST:PORT`, else `PORT` from the environment on 127.0.0.1.
fn addr_from_args() -> String {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--addr") {
        return args.get(i + 1).expect("--addr needs HOST:PORT").clone();
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "9002".into());
    format!("127.0.0.1:{port}")
}
