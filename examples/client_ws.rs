//! Connects to a WebSocket, prints what arrives and sends what you type:
//! the blocking client of `pushloop::client::ws` from a terminal.
//!
//! ```text
//! cargo run --release &                      # the demo server on :6788
//! cargo run --example client_ws --features client -- ws://127.0.0.1:6788/echo
//! ```
//!
//! Each line you type goes out as a text message; end the input (Ctrl-D) to
//! close with 1000 and wait for the server's answer:
//!
//! ```text
//! connected to ws://127.0.0.1:6788/echo
//! hello
//! < hello
//! ^D
//! closed: 1000 ""
//! ```
//!
//! On `ws://127.0.0.1:6788/chat?topics=feed` the lines are published and
//! every feed event arrives as JSON. For a connection that reconnects and
//! resumes the feed after the last event id, see `client::ws::WsClient`.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::mpsc::{self, TryRecvError};
use std::time::Duration;

use pushloop::client::ws::{Message, WebSocket};
use pushloop::ws::close::CloseCode;

const DEFAULT_URL: &str = "ws://127.0.0.1:6788/echo";

/// How long one wait for a message lasts before the typed lines are sent.
const TICK: Duration = Duration::from_millis(20);

fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    if url == "-h" || url == "--help" {
        println!("usage: client_ws [URL]   (default {DEFAULT_URL}); lines from stdin are sent");
        return ExitCode::SUCCESS;
    }
    let mut ws = match WebSocket::connect(&url) {
        Ok(ws) => ws,
        Err(error) => {
            eprintln!("{url}: {error}");
            return ExitCode::from(2);
        }
    };
    println!("connected to {url}");
    // Lines are read on their own thread: a blocking client reads the
    // socket, and must keep reading to answer pings.
    let (line_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        match ws.recv_timeout(TICK) {
            Ok(Some(Message::Text(text))) => println!("< {text}"),
            Ok(Some(Message::Binary(bytes))) => println!("< {} bytes", bytes.len()),
            Ok(Some(Message::Ping(_) | Message::Pong(_)) | None) => {}
            Ok(Some(Message::Close(frame))) => {
                println!("closed by the server: {} {:?}", frame.code.0, frame.reason);
                return ExitCode::SUCCESS;
            }
            Err(error) => {
                eprintln!("{url}: {error}");
                return ExitCode::FAILURE;
            }
        }
        loop {
            let sent = match lines.try_recv() {
                Ok(line) => ws.send_text(&line),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    return match ws.close(CloseCode::NORMAL, "") {
                        Ok(frame) => {
                            println!("closed: {} {:?}", frame.code.0, frame.reason);
                            ExitCode::SUCCESS
                        }
                        Err(error) => {
                            eprintln!("{url}: closing: {error}");
                            ExitCode::FAILURE
                        }
                    };
                }
            };
            if let Err(error) = sent {
                eprintln!("{url}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
}
