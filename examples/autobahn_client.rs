//! The Autobahn|Testsuite's client cases, played by pushloop's blocking
//! WebSocket client: the suite's fuzzing server sends each case's frames,
//! the client echoes every message back, and the suite judges what the
//! client did (RFC 6455 §5-§8). `.ci/autobahn/run-client.sh` starts the
//! fuzzing server and runs this program with its address in the environment:
//!
//! ```text
//! AUTOBAHN_URL=ws://127.0.0.1:9001 AUTOBAHN_AGENT=pushloop \
//!     cargo run --release --example autobahn_client --features client
//! ```
//!
//! The dance: one text message from `/getCaseCount`; then, for each case,
//! `/runCase?case=N&agent=AGENT`, echoing until the server closes (a case
//! that makes the client fail the connection is part of the test: go on);
//! then `/updateReports?agent=AGENT` to have the reports written.

use std::process::ExitCode;
use std::time::Instant;

#[cfg(feature = "deflate")]
use pushloop::client::ws::DeflateOffer;
use pushloop::client::ws::{Message, WebSocket, WsConfig, WsError};
use pushloop::ws::frame::MessageLimits;

fn main() -> ExitCode {
    let base = std::env::var("AUTOBAHN_URL").unwrap_or_else(|_| "ws://127.0.0.1:9001".into());
    let agent = std::env::var("AUTOBAHN_AGENT").unwrap_or_else(|_| "pushloop".into());
    let base = base.trim_end_matches('/');
    let config = WsConfig {
        // Case 9.1.6 sends a 16 MiB text message and 9.3.1 a 4 MiB one in
        // 65 536 fragments of 64 bytes.
        limits: MessageLimits {
            max_frame_bytes: 16 << 20,
            max_message_bytes: 16 << 20,
            max_fragments: 1 << 17,
        },
        // The cases expect echoes and nothing else; the heartbeat is tested
        // in tests/client_ws.rs.
        ping_interval: None,
        // Cases 12.* and 13.* (RFC 7692): every echo compressed, however
        // short (the default leaves messages under 1 KiB as they are), so
        // the compressor meets every message the suite sends.
        #[cfg(feature = "deflate")]
        deflate: Some(DeflateOffer {
            threshold: 0,
            ..DeflateOffer::default()
        }),
        ..WsConfig::default()
    };

    let count = match case_count(base, &config) {
        Ok(count) => count,
        Err(error) => {
            eprintln!("{base}/getCaseCount: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{count} cases");
    for case in 1..=count {
        let started = Instant::now();
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let (echoed, end) = match WebSocket::connect_with(&url, &config) {
            Ok(mut ws) => echo(&mut ws),
            Err(error) => (0, error.to_string()),
        };
        println!(
            "case {case}/{count}: {echoed} echoed, {end} ({} ms)",
            started.elapsed().as_millis()
        );
    }
    let url = format!("{base}/updateReports?agent={agent}");
    match WebSocket::connect_with(&url, &config).map(|mut ws| echo(&mut ws)) {
        Ok((_, end)) => println!("reports updated: {end}"),
        Err(error) => {
            eprintln!("{url}: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The number of cases: the one text message of `/getCaseCount`.
fn case_count(base: &str, config: &WsConfig) -> Result<u32, WsError> {
    let mut ws = WebSocket::connect_with(&format!("{base}/getCaseCount"), config)?;
    let mut count = 0;
    for message in ws.messages() {
        if let Message::Text(text) = message? {
            count = text.trim().parse().unwrap_or(0);
        }
    }
    Ok(count)
}

/// Echoes every text and binary message until the connection ends; returns
/// how many were echoed and how it ended.
fn echo<S>(ws: &mut WebSocket<S>) -> (usize, String)
where
    S: std::io::Read + std::io::Write + pushloop::client::transport::ReadTimeout,
{
    let mut echoed = 0;
    loop {
        let sent = match ws.recv() {
            Ok(Message::Text(text)) => ws.send_text(&text),
            Ok(Message::Binary(bytes)) => ws.send_binary(&bytes),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(frame)) => {
                return (
                    echoed,
                    format!("closed {} {:?}", frame.code.0, frame.reason),
                )
            }
            Err(error) => return (echoed, error.to_string()),
        };
        match sent {
            Ok(()) => echoed += 1,
            Err(error) => return (echoed, error.to_string()),
        }
    }
}
