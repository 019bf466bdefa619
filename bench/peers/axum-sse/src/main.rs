//! Peer server: Server-Sent Events on axum, one tokio `current_thread` runtime.
//!
//! `GET /events` subscribes to a `tokio::sync::broadcast` channel and streams
//! it as `text/event-stream`; `POST /publish` sends its body as one event to
//! every subscriber. A subscriber that falls more than `CAPACITY` events
//! behind loses the oldest ones (the channel's `Lagged`), which the
//! benchmark counts as lost events.
//!
//! Usage: `axum-sse --addr 127.0.0.1:9003` (or `PORT=9003`).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// Events a subscriber may fall behind before it loses some.
const CAPACITY: usize = 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = addr_from_args();
    let (tx, _) = broadcast::channel::<String>(CAPACITY);
    let app = Router::new()
        .route("/events", get(events))
        .route("/publish", post(publish))
        .with_state(tx);
    let listener = TcpListener::bind(&addr).await.expect("bind").tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    eprintln!("axum-sse listening on {addr}");
    axum::serve(listener, app).await.expect("serve");
}

async fn events(
    State(tx): State<broadcast::Sender<String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(tx.subscribe())
        .filter_map(|msg| msg.ok().map(|data| Ok(Event::default().data(data))));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn publish(State(tx): State<broadcast::Sender<String>>, body: String) -> StatusCode {
    // No subscribers is not an error for a publisher.
    let _ = tx.send(body);
    StatusCode::NO_CONTENT
}

/// `--addr HOST:PORT`, else `PORT` from the environment on 127.0.0.1.
fn addr_from_args() -> String {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--addr") {
        return args.get(i + 1).expect("--addr needs HOST:PORT").clone();
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "9003".into());
    format!("127.0.0.1:{port}")
}
