//! A chat room, the socket.io way, without socket.io: four ways to address a
//! message, each one `Context` call.
//!
//! | socket.io                         | pushloop                          |
//! |-----------------------------------|-----------------------------------|
//! | `socket.emit(..)` (the sender)    | `ctx.send(id, ..)`                |
//! | `socket.broadcast.emit(..)`       | `ctx.broadcast_except(id, ..)`    |
//! | `io.emit(..)` (everyone)          | `ctx.broadcast(..)`               |
//! | `io.to(socketId).emit(..)`        | `ctx.send(other, ..)`             |
//!
//! On the wire every message is one unmasked text frame from the server
//! (RFC 6455 §5.6) and one masked text frame from the browser (§5.3); there is
//! no event-name envelope as in socket.io, just the text. A broadcast is
//! encoded once and the same bytes are queued for every socket.
//!
//! Type `hello` and the others see `user 1: hello`; type `/to 2 psst` and
//! only user 2 sees `user 1 whispers: psst`. Ids are our own small numbers:
//! a `ConnId` prints as `#hex` but cannot be parsed back, so the app keeps a map.

use std::collections::HashMap;

use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::server::{Config, Server};
use pushloop::ws::close::CloseCode;
use pushloop::ws::handshake::Upgrade;

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>chat</title>
<pre id="log"></pre>
<form id="form"><input id="text" autocomplete="off" placeholder="hello, or /to 2 psst"></form>
<script>
const log = line => document.getElementById('log').textContent += line + '\n';
const socket = new WebSocket(`ws://${location.host}/chat`);
socket.onmessage = e => log(e.data);
socket.onclose = e => log(`closed (${e.code})`);
document.getElementById('form').onsubmit = e => {
  e.preventDefault();
  socket.send(document.getElementById('text').value);
  document.getElementById('text').value = '';
};
</script>"#;

#[derive(Default)]
struct Chat {
    /// Our user number for each open socket.
    users: HashMap<ConnId, u32>,
    last_user: u32,
}

impl App for Chat {
    fn request(&mut self, _: &mut Context, _: ConnId, req: &Request, _body: &[u8]) -> Reply {
        match req.path() {
            "/" => Reply::Response(Response::html(200, PAGE)),
            _ => Reply::Response(Response::text(404, "not found\n")),
        }
    }

    fn upgrade(&mut self, _: &mut Context, _: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
        match req.path() {
            "/chat" => Upgrading::Accept(Accept::new()),
            _ => Upgrading::Reject(Response::text(404, "not found\n")),
        }
    }

    fn open(&mut self, ctx: &mut Context, id: ConnId) {
        self.last_user += 1;
        let me = self.last_user;
        self.users.insert(id, me);
        let welcome = format!("you are user {me}; type text, or /to <user> <text> to whisper");
        let _ = ctx.send(id, Message::Text(&welcome));
        let joined = format!("user {me} joined ({} online)", self.users.len());
        ctx.broadcast(Message::Text(&joined));
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let (Message::Text(text), Some(&me)) = (message, self.users.get(&id)) else {
            return; // this chat speaks text only
        };
        if let Some(whisper) = text.strip_prefix("/to ") {
            // `/to <user> <text>`: one recipient, found by our number.
            let (user, text) = whisper.split_once(' ').unwrap_or((whisper, ""));
            let target = self.users.iter().find(|(_, n)| n.to_string() == user);
            let ack = match target {
                Some((&other, _)) => {
                    let _ = ctx.send(other, Message::Text(&format!("user {me} whispers: {text}")));
                    format!("(whispered to user {user})")
                }
                None => format!("(no user {user})"),
            };
            let _ = ctx.send(id, Message::Text(&ack));
        } else {
            let others = ctx.broadcast_except(id, Message::Text(&format!("user {me}: {text}")));
            let _ = ctx.send(id, Message::Text(&format!("(sent to {others} others)")));
        }
    }

    /// Called once per opened socket, however it ended (RFC 6455 §7.1.5).
    fn close(&mut self, ctx: &mut Context, id: ConnId, _: CloseCode, _: &str) {
        if let Some(me) = self.users.remove(&id) {
            ctx.broadcast(Message::Text(&format!("user {me} left")));
        }
    }
}

/// `--addr HOST:PORT` from the command line, else this example's fixed port.
fn addr_from_args(default: &str) -> String {
    let mut args = std::env::args().skip_while(|arg| arg != "--addr").skip(1);
    args.next().unwrap_or_else(|| default.to_owned())
}

fn main() -> std::io::Result<()> {
    let server = Server::bind(addr_from_args("127.0.0.1:8082"), Config::default())?;
    let addr = server.local_addr()?;
    println!("listening on http://{addr}");
    println!("open http://{addr}/ in two tabs (the socket is ws://{addr}/chat)");
    server.run(Chat::default())
}
