//! Follows a pushloop event stream and prints what arrives: the SSE client of
//! `pushloop::client::sse`, the way a browser's `EventSource` reads a page's
//! feed, from a terminal or a device.
//!
//! ```text
//! cargo run --release &                      # the demo server on :6788
//! cargo run --example client_sse --features client -- 'http://127.0.0.1:6788/events?topics=feed'
//! curl -d hello 'http://127.0.0.1:6788/publish?topic=feed'
//! ```
//!
//! What you will see (stop the server and start it again to watch the
//! reconnect resume from the last id):
//!
//! ```text
//! connected to http://127.0.0.1:6788/events?topics=feed
//! 1795977172853509 message: hello
//! the server closed the stream; retry 1 in 2575 ms
//! could not connect (connection refused); retry 2 in 3204 ms
//! connected to http://127.0.0.1:6788/events?topics=feed
//! 1795977176192141 resync: {"reason":"unknown id","oldest":1795977176192142,"latest":1795977176192141}
//! 1795977176192142 message: again
//! ```
//!
//! The delays are the server's `retry:` (2 s) plus jitter that grows while
//! the server stays away. `resync` is pushloop's way of saying "I cannot
//! replay from your id" (here: a restarted in-memory feed): an ordinary event
//! with its own type.

use std::process::ExitCode;

use pushloop::client::sse::{ClientEvent, SseClient};

const DEFAULT_URL: &str = "http://127.0.0.1:6788/events?topics=feed";

fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    if url == "-h" || url == "--help" {
        println!("usage: client_sse [URL]   (default {DEFAULT_URL})");
        return ExitCode::SUCCESS;
    }
    let mut client = match SseClient::new(&url) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("{url}: {error}");
            return ExitCode::from(2);
        }
    };
    for item in client.events() {
        match item {
            Ok(ClientEvent::Connected) => println!("connected to {url}"),
            Ok(ClientEvent::Event(event)) => {
                println!(
                    "{} {}: {}",
                    event.last_event_id, event.event_type, event.data
                )
            }
            Ok(ClientEvent::Reconnecting {
                delay,
                attempt,
                cause,
            }) => println!("{cause}; retry {attempt} in {} ms", delay.as_millis()),
            Ok(ClientEvent::Stopped) => println!("the server answered 204: no more reconnects"),
            Err(error) => {
                eprintln!("{url}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
