//! Long polling: the browser asks "anything after ID?", and the server holds
//! the question open until the answer is yes.
//!
//! What you will see on the wire (`curl -i 'http://127.0.0.1:8083/poll?after=0'`):
//!
//! ```text
//! GET /poll?after=0 HTTP/1.1          ← nothing newer than 0 yet: held...
//!                                      ← ...up to 3 s, until the timer publishes
//! HTTP/1.1 200 OK
//! Content-Type: application/json
//! Cache-Control: no-store
//!
//! [{"id":1718000000000001,"event":"message","data":"message 1 at 1718000003 s since 1970"}]
//! ```
//!
//! The page then asks again with `after=1718000000000001`, its cursor: an event
//! published between two requests is never lost, because the next request
//! starts from the last id it saw (`after=0` means "all history"). A request
//! held for `Limits::long_poll_timeout` (25 s) is answered with `[]`, so no
//! proxy times it out; the page simply asks again. The classic client loop:
//! each answer, whatever it is, ends with another `subscribe()`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushloop::app::{App, ConnId, Context, Reply, TimerId, TopicId};
use pushloop::http::{Request, Response};
use pushloop::server::{Config, Server};

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>long_poll</title>
<pre id="log"></pre>
<script>
const log = line => document.getElementById('log').textContent += line + '\n';
let after = 0;
async function subscribe() {
  let response = await fetch(`/poll?after=${after}`);
  if (response.status != 200) {
    // An error: show it, wait a second, and try again.
    log(`${response.status} ${response.statusText}`);
    await new Promise(resolve => setTimeout(resolve, 1000));
  } else {
    // New events ([] when the server's hold timed out); move the cursor.
    for (const event of await response.json()) {
      log(`id=${event.id} ${event.event}: ${event.data}`);
      after = event.id;
    }
  }
  await subscribe();
}
subscribe().catch(error => log(`stopped: ${error}`));
</script>"#;

struct Feed {
    feed: TopicId,
    count: u64,
}

impl App for Feed {
    fn start(&mut self, ctx: &mut Context) {
        ctx.set_interval(Duration::from_secs(3));
    }

    fn request(&mut self, _: &mut Context, _: ConnId, req: &Request, _body: &[u8]) -> Reply {
        match req.path() {
            "/" => Reply::Response(Response::html(200, PAGE)),
            "/poll" => match req.query_param("after").as_deref().unwrap_or("0").parse() {
                // Answered at once if the feed has anything after `after`,
                // else held until a publish or the long-poll timeout.
                Ok(after) => Reply::LongPoll {
                    topics: vec![self.feed],
                    after,
                },
                Err(_) => Reply::Response(Response::text(400, "after must be an event id\n")),
            },
            _ => Reply::Response(Response::text(404, "not found\n")),
        }
    }

    /// Every 3 s: one event, which answers every held request at once.
    fn timer(&mut self, ctx: &mut Context, _: TimerId) {
        self.count += 1;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let text = format!("message {} at {secs} s since 1970", self.count);
        let _ = ctx.publish(self.feed, None, &text);
    }
}

/// `--addr HOST:PORT` from the command line, else this example's fixed port.
fn addr_from_args(default: &str) -> String {
    let mut args = std::env::args().skip_while(|arg| arg != "--addr").skip(1);
    args.next().unwrap_or_else(|| default.to_owned())
}

fn main() -> std::io::Result<()> {
    let mut server = Server::bind(addr_from_args("127.0.0.1:8083"), Config::default())?;
    let feed = server.topic("feed").expect("a valid topic name");
    let addr = server.local_addr()?;
    println!("listening on http://{addr}");
    println!("open http://{addr}/ or run: curl 'http://{addr}/poll?after=0'");
    server.run(Feed { feed, count: 0 })
}
