//! WebSocket echo: every message a client sends comes straight back.
//!
//! The Node original, with the `ws` package:
//!
//! ```js
//! const wss = new WebSocketServer({ port: 8080 });
//! wss.on('connection', ws => ws.on('message', m => ws.send(m)));
//! ```
//!
//! What you will see on the wire (RFC 6455):
//!
//! 1. The browser sends `GET /` with `Upgrade: websocket`, `Connection: Upgrade`
//!    and a random `Sec-WebSocket-Key` (§4.1).
//! 2. pushloop checks it and answers `101 Switching Protocols` with
//!    `Sec-WebSocket-Accept` = base64(SHA-1(key + GUID)) (§4.2.2). Only then is
//!    [`App::upgrade`] asked, and its `Accept` opens the socket.
//! 3. Each message arrives as frames masked by the client (§5.3); pushloop
//!    unmasks, joins fragments (§5.4) and checks text is UTF-8 (§8.1) before
//!    [`App::message`] sees it. `ctx.send` writes it back as one unmasked frame
//!    of the same kind, text or binary (§5.6).
//!
//! A plain `GET /` (no `Upgrade`) is not a WebSocket, so it goes to
//! [`App::request`] instead and gets a one-line hint.
//!
//! ```text
//! cargo run --example echo [-- --addr 127.0.0.1:8080]
//! ```

use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::server::{Config, Server};
use pushloop::ws::handshake::Upgrade;

struct Echo;

impl App for Echo {
    /// Plain HTTP: only a hint, since the interesting part needs a WebSocket.
    fn request(&mut self, _: &mut Context, _: ConnId, req: &Request, _body: &[u8]) -> Reply {
        let host = req.header_str("host").unwrap_or("this-host");
        let response = match req.path() {
            "/" => Response::text(200, &format!("WebSocket echo: connect to ws://{host}/\n")),
            _ => Response::text(404, "not found\n"),
        };
        Reply::Response(response)
    }

    /// `wss.on('connection', ...)`: accept upgrades on `/` only.
    fn upgrade(&mut self, _: &mut Context, _: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
        match req.path() {
            "/" => Upgrading::Accept(Accept::new()),
            _ => Upgrading::Reject(Response::text(404, "not found\n")),
        }
    }

    /// `ws.on('message', m => ws.send(m))`. A send fails only when the socket
    /// is already closing or its queue is full; an echo has nothing to do then.
    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let _ = ctx.send(id, message);
    }
}

/// `--addr HOST:PORT` from the command line, else this example's fixed port.
fn addr_from_args(default: &str) -> String {
    let mut args = std::env::args().skip_while(|arg| arg != "--addr").skip(1);
    args.next().unwrap_or_else(|| default.to_owned())
}

fn main() -> std::io::Result<()> {
    let server = Server::bind(addr_from_args("127.0.0.1:8080"), Config::default())?;
    let addr = server.local_addr()?;
    println!("listening on http://{addr}");
    println!("every message to ws://{addr}/ comes back; try, in a browser console:");
    println!("  s = new WebSocket('ws://{addr}/'); s.onmessage = e => console.log(e.data);");
    println!("  s.onopen = () => s.send('hello')");
    println!("or run: websocat ws://{addr}/");
    server.run(Echo)
}
