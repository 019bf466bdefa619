//! Rooms on every transport, in under 60 lines: WebSockets join rooms and talk
//! in them; event streams and long-polls follow the same rooms; one cursor
//! resumes them all.
//!
//! ```text
//! cargo run --example rooms                                 # on 127.0.0.1:6790
//! websocat 'ws://127.0.0.1:6790/talk?rooms=lobby,dev'       # "@dev hi" speaks in dev
//! curl -N 'http://127.0.0.1:6790/events?rooms=lobby,dev'    # the same rooms, as SSE
//! curl 'http://127.0.0.1:6790/poll?rooms=dev&after=0'       # a long-poll, as JSON
//! ```
use pushloop::prelude::*;

struct Rooms;

/// `?rooms=a,b`: the rooms, made on first use (a malformed list is a 400).
fn rooms(ctx: &mut Context, req: &Request) -> Result<Vec<TopicId>, Response> {
    let list = req.query_param("rooms").unwrap_or_default();
    ctx.topics(&list, true)
        .map_err(|e| Response::text(400, &e.to_string()))
}

impl App for Rooms {
    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, _: &[u8]) -> Reply {
        let after = req
            .query_param("after")
            .and_then(|after| after.parse().ok());
        let topics = match rooms(ctx, req) {
            Ok(topics) => topics,
            Err(refusal) => return Reply::Response(refusal),
        };
        match req.path() {
            "/events" => Reply::EventStream { topics, after },
            "/poll" => Reply::LongPoll {
                topics,
                after: after.unwrap_or(0),
            },
            _ => Reply::Response(Response::text(404, "try /events, /poll or /talk")),
        }
    }

    fn upgrade(&mut self, ctx: &mut Context, id: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
        match rooms(ctx, req) {
            Ok(topics) => {
                ctx.set_data(id, topics.clone());
                Upgrading::Accept(
                    topics
                        .into_iter()
                        .fold(Accept::new(), |a, t| a.subscribe(t, None)),
                )
            }
            Err(refusal) => Upgrading::Reject(refusal),
        }
    }

    /// "@room text" speaks in that room, anything else in the socket's first
    /// room; everyone in it hears it but the speaker.
    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let Message::Text(text) = message else { return };
        let (room, text) = match text.strip_prefix('@').and_then(|t| t.split_once(' ')) {
            Some((name, text)) => (ctx.find_topic(name), text),
            None => (
                ctx.data::<Vec<TopicId>>(id)
                    .and_then(|r| r.first().copied()),
                text,
            ),
        };
        if let Some(room) = room {
            let _ = ctx.publish_payload(room, Some("chat"), Payload::Text(text), Some(id));
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1);
    let server = Server::bind(
        addr.as_deref().unwrap_or("127.0.0.1:6790"),
        Config::default(),
    )?;
    println!("listening on http://{}", server.local_addr()?);
    server.run(Rooms)
}
