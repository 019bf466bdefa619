//! A sensor on its own thread, publishing through a `Handle`, as an embedded
//! device would: the loop serves browsers, the sensor never waits for them.
//!
//! Every 500 ms the sensor thread calls `handle.publish(topic, Some("reading"),
//! json)`. That puts a command on a bounded channel and wakes the loop (a
//! `mio::Waker`); the loop publishes it at its next turn, to every reader:
//!
//! ```text
//! curl -N http://127.0.0.1:8084/events          (SSE, WHATWG HTML §9.2)
//!   retry: 2000
//!
//!   id: 1718000000000001
//!   event: reading
//!   data: {"n":1,"celsius":20.20}
//!
//! curl 'http://127.0.0.1:8084/poll?after=0'     (short poll: all history, at once)
//!   [{"id":1718000000000001,"event":"reading","data":"{\"n\":1,\"celsius\":20.20}"}]
//! ```
//!
//! `publish` never blocks. When the loop falls behind and the channel is full,
//! it says `HandleError::Full` and the sensor drops that reading (the next one
//! is newer anyway); `HandleError::Closed` means the loop has ended.
//!
//! Ctrl-C starts a graceful shutdown: open streams end, queued bytes are
//! written, `run` returns, and the sensor thread stops at its next publish.

use std::thread;
use std::time::Duration;

use pushloop::app::{App, ConnId, Context, Reply, TopicId};
use pushloop::http::{Request, Response};
use pushloop::server::{signal, Config, Handle, HandleError, OwnedPayload, Server};

/// The sensor: one reading every 500 ms until the loop is gone.
fn sensor(handle: Handle, topic: TopicId) {
    let mut dropped = 0u64;
    for n in 1u64.. {
        thread::sleep(Duration::from_millis(500));
        let celsius = 20.0 + 2.0 * (n as f64 / 10.0).sin(); // a fake thermometer
        let json = format!("{{\"n\":{n},\"celsius\":{celsius:.2}}}");
        // The reading is JSON: published as such, so clients parse it once.
        match handle.publish_payload(topic, Some("reading"), OwnedPayload::Json(json)) {
            Ok(()) => {}
            Err(HandleError::Full) => {
                dropped += 1;
                eprintln!("reading {n} dropped: the loop is behind ({dropped} so far)");
            }
            Err(HandleError::Closed) => return,
            Err(other) => eprintln!("reading {n} refused: {other}"),
        }
    }
}

struct Readings {
    topic: TopicId,
}

impl App for Readings {
    fn request(&mut self, _: &mut Context, _: ConnId, req: &Request, _body: &[u8]) -> Reply {
        let after = match req.query_param("after").map(|after| after.parse()) {
            None => None,
            Some(Ok(after)) => Some(after),
            Some(Err(_)) => return Reply::Response(Response::text(400, "bad after\n")),
        };
        let topic = self.topic;
        match req.path() {
            // SSE: `after` replays history first; without it, only new readings.
            "/events" => Reply::EventStream {
                topics: vec![topic],
                after,
            },
            "/poll" => Reply::Poll {
                topics: vec![topic],
                after: after.unwrap_or(0),
            },
            _ => Reply::Response(Response::text(404, "try /events or /poll?after=0\n")),
        }
    }
}

/// `--addr HOST:PORT` from the command line, else this example's fixed port.
fn addr_from_args(default: &str) -> String {
    let mut args = std::env::args().skip_while(|arg| arg != "--addr").skip(1);
    args.next().unwrap_or_else(|| default.to_owned())
}

fn main() -> std::io::Result<()> {
    let mut server = Server::bind(addr_from_args("127.0.0.1:8084"), Config::default())?;
    // First, before any other thread starts: they inherit the blocked signals,
    // so SIGINT/SIGTERM reach only the thread that turns them into a shutdown.
    signal::shutdown_on_signals(server.handle())?;
    let topic = server.topic("sensor").expect("a valid topic name");
    let handle = server.handle();
    let sensor = thread::spawn(move || sensor(handle, topic));

    let addr = server.local_addr()?;
    println!("listening on http://{addr}");
    println!("run: curl -N http://{addr}/events  or  curl 'http://{addr}/poll?after=0'");
    println!("Ctrl-C shuts down gracefully");
    server.run(Readings { topic })?;

    let _ = sensor.join();
    println!("shut down: streams ended, sensor stopped");
    Ok(())
}
