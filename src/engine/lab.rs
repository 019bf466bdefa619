//! The lab: `GET /lab/events?session=S`, the trace of a page's own
//! connections, live in the page.
//!
//! A page makes up a short token `S`, opens `/lab/events?session=S`, and
//! adds `?session=S` to the URLs of its own connections. The stream's every
//! message is one trace line ([`crate::engine::trace`]) of one of those
//! connections, as JSON: the same text as `--trace`, its parts, a frame
//! header's bytes as hex, and the bytes on the wire the line stands for:
//!
//! ```text
//! data: {"t":5021,"conn":"#4","dir":"←","what":"frame","fields":"FIN=1 RSV=000 op=0x1 text   MASK=1 key=37fa213d len=5 (7-bit)",
//!        "cite":"RFC 6455 §5.2","hex":"81 85 37 fa 21 3d","bytes":11,"line":"   5.021 #4     ← frame   FIN=1 …"}
//!
//! event: dropped
//! data: {"dropped":37,"text":"37 lines dropped (over 200 lines/s)"}
//! ```
//!
//! **Who knows what.** The engine sees each request on its connection: it
//! tags the connection with the request's `session` parameter before the
//! head is traced, so the head is the session's first line of it
//! (`Core::lab_tag`). A connection keeps its tag for its life (a
//! keep-alive connection carries the page's later requests too). The lab
//! keeps the tags and the open streams, and sends each line of a tagged
//! connection to the streams of its tag. A lab stream's own connection is
//! never tagged and never traced: its bytes are other connections' lines,
//! and tracing them would make lines about lines.
//!
//! **Bounded.** At most [`LabConfig::max_sessions`] streams (past it:
//! `503`); at most [`LabConfig::lines_per_second`] lines per stream, from a
//! bucket holding one second's worth: the lines past it are dropped and
//! counted, and the next line that passes comes after an `event: dropped`
//! message saying how many. A stream whose queue is past `max_queued_bytes`
//! loses lines the same way instead of being closed. Each line's fields are
//! cut at [`crate::engine::trace::MAX_FIELD_CHARS`]. A line is formatted
//! only when a stream of its session takes it.
//!
//! Off unless [`crate::server::Config::lab`] is set; the demo binary sets
//! it (`--no-lab` leaves it off). It is for learning, not for production:
//! a session's lines hold its requests' heads — cookies and
//! `Authorization` included — and anyone who opens the stream with the same
//! token sees them.

use std::collections::HashMap;
use std::io::Write as _;

use mio::Token;

use crate::engine::connection::Kind;
use crate::engine::outbox::Kind as Chunk;
use crate::engine::Core;
use crate::http::{Request, Response};
use crate::sse;
use crate::time::Instant;

/// The lab stream's path.
pub const PATH: &str = "/lab/events";
/// The query parameter that names a session, on the lab stream and on the
/// connections it shows.
pub const SESSION_PARAM: &str = "session";
/// The longest session token. A page's random token needs about a dozen
/// characters; tags are kept inline per tagged connection, no allocation.
pub const MAX_TAG_BYTES: usize = 32;

/// The lab's limits. Start from `LabConfig::default()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabConfig {
    /// Lab streams open at once. Default 16: a stream is a learner's tab,
    /// and each costs a connection, a copy of every line of its session
    /// and, within a turn, at most a second's worth of lines waiting (about
    /// 100 KB at the default rate) — so the lab's memory stays under a few
    /// megabytes; sixteen tabs is a classroom on a demo server. Past it:
    /// `503 Service Unavailable` with `Retry-After`.
    pub max_sessions: usize,
    /// Lines a stream gets per second at most, and at once (the bucket holds
    /// one second's worth). Default 200: the demo page makes 10–40 lines a
    /// second (four transports; a poll's request and answer are about a
    /// dozen head lines), so a burst of chat passes whole, while a stream
    /// stays under about 100 KB/s (lines are cut at
    /// [`crate::engine::trace::MAX_FIELD_CHARS`]). Past it: lines dropped
    /// and counted, then an `event: dropped` message.
    pub lines_per_second: u32,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            max_sessions: 16,
            lines_per_second: 200,
        }
    }
}

/// A session's token: 1 to [`MAX_TAG_BYTES`] of `A-Z a-z 0-9 - _`, so it
/// is safe in a URL, a log and JSON as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tag {
    len: u8,
    bytes: [u8; MAX_TAG_BYTES],
}

impl Tag {
    /// The tag `text` spells, if it is a valid one.
    pub(crate) fn parse(text: &str) -> Option<Tag> {
        let valid = (1..=MAX_TAG_BYTES).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return None;
        }
        let mut bytes = [0; MAX_TAG_BYTES];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(Tag {
            len: text.len() as u8,
            bytes,
        })
    }
}

/// One line of credit in the rate bucket, which gains `lines_per_second`
/// units per microsecond: integers, exact, no clock of its own.
const LINE: u64 = 1_000_000;

/// An open lab stream.
struct Stream {
    token: Token,
    tag: Tag,
    /// Credit in millionths of a line (see [`LINE`]).
    credit: u64,
    refilled: Instant,
    /// Lines lost and not reported yet.
    dropped: u64,
    /// Messages for the stream, moved into its queue at the end of the turn.
    pending: Vec<u8>,
    /// Lines in `pending`, and the drops its notices report (both count as
    /// dropped again if the queue refuses them).
    pending_lines: u64,
    pending_reported: u64,
}

impl Stream {
    fn refill(&mut self, now: Instant, rate: u32) {
        let elapsed = u64::try_from(now.saturating_duration_since(self.refilled).as_micros())
            .unwrap_or(u64::MAX);
        self.refilled = now;
        let full = u64::from(rate).saturating_mul(LINE);
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(u64::from(rate)))
            .min(full);
    }

    /// Reports the lines lost so far, ahead of what comes next.
    fn report_drops(&mut self, rate: u32) {
        if self.dropped == 0 {
            return;
        }
        let text = format!("{} lines dropped (over {rate} lines/s)", self.dropped);
        let _ = write!(
            self.pending,
            "event: dropped\ndata: {{\"dropped\":{},\"text\":\"{text}\"}}\n\n",
            self.dropped
        );
        self.pending_reported += self.dropped;
        self.dropped = 0;
    }
}

/// The lab's state: which connection belongs to which session, the open
/// streams, and what waits for them.
pub(crate) struct Lab {
    config: LabConfig,
    /// Connections that came with a valid `?session=`.
    tags: HashMap<Token, Tag>,
    streams: Vec<Stream>,
    /// One message, formatted once for every stream of its session.
    message: Vec<u8>,
}

impl Lab {
    pub(crate) fn new(config: LabConfig) -> Lab {
        Lab {
            config,
            tags: HashMap::new(),
            streams: Vec::new(),
            message: Vec::new(),
        }
    }

    /// Whether a stream is open for this connection's session.
    #[inline]
    pub(crate) fn wants(&self, conn: Token) -> bool {
        !self.streams.is_empty()
            && self
                .tags
                .get(&conn)
                .is_some_and(|tag| self.streams.iter().any(|s| s.tag == *tag))
    }

    /// Whether this connection is a lab stream.
    pub(crate) fn is_stream(&self, conn: Token) -> bool {
        self.streams.iter().any(|s| s.token == conn)
    }

    /// A line of `conn`: to each stream of its session that has credit, the
    /// drops it has not reported first; `write_json` runs at most once.
    pub(crate) fn emit(
        &mut self,
        now: Instant,
        conn: Token,
        write_json: impl FnOnce(&mut Vec<u8>),
    ) {
        let Some(&tag) = self.tags.get(&conn) else {
            return;
        };
        let rate = self.config.lines_per_second;
        let mut write_json = Some(write_json);
        for stream in self.streams.iter_mut().filter(|s| s.tag == tag) {
            stream.refill(now, rate);
            if stream.credit < LINE {
                stream.dropped += 1;
                continue;
            }
            stream.credit -= LINE;
            if let Some(write_json) = write_json.take() {
                // WHATWG HTML §9.2.6: one `data:` line (JSON has no raw line
                // break) and a blank line end a message.
                self.message.clear();
                self.message.extend_from_slice(b"data: ");
                write_json(&mut self.message);
                self.message.extend_from_slice(b"\n\n");
            }
            stream.report_drops(rate);
            stream.pending.extend_from_slice(&self.message);
            stream.pending_lines += 1;
        }
    }

    /// Tags a connection with a session.
    fn tag(&mut self, conn: Token, tag: Tag) {
        self.tags.insert(conn, tag);
    }

    /// A connection is gone: its tag, and its stream if it was one.
    fn forget(&mut self, conn: Token) {
        self.tags.remove(&conn);
        self.streams.retain(|s| s.token != conn);
    }

    /// Whether `max_sessions` streams are open.
    fn is_full(&self) -> bool {
        self.streams.len() >= self.config.max_sessions
    }

    /// Opens a stream (the caller checked [`Lab::is_full`]).
    fn open(&mut self, conn: Token, tag: Tag, now: Instant) {
        self.tags.remove(&conn);
        self.streams.push(Stream {
            token: conn,
            tag,
            credit: u64::from(self.config.lines_per_second).saturating_mul(LINE),
            refilled: now,
            dropped: 0,
            pending: Vec::new(),
            pending_lines: 0,
            pending_reported: 0,
        });
    }

    /// Hands each stream's waiting messages to `deliver`, which says whether
    /// its queue took them; refused lines count as dropped. A stream that
    /// lost lines and has credit again hears of it now, even if quiet.
    fn drain(&mut self, now: Instant, mut deliver: impl FnMut(Token, &[u8]) -> bool) {
        let rate = self.config.lines_per_second;
        for stream in &mut self.streams {
            if stream.dropped > 0 && stream.pending.is_empty() {
                stream.refill(now, rate);
                if stream.credit >= LINE {
                    stream.report_drops(rate);
                }
            }
            if stream.pending.is_empty() {
                continue;
            }
            if !deliver(stream.token, &stream.pending) {
                stream.dropped += stream.pending_lines + stream.pending_reported;
            }
            stream.pending.clear();
            stream.pending_lines = 0;
            stream.pending_reported = 0;
        }
    }
}

impl Core {
    fn lab(&mut self) -> Option<&mut Lab> {
        self.tracer.as_mut()?.lab.as_mut()
    }

    /// A request came on `token`: a valid `session` parameter tags its
    /// connection with that session. Called before its head is traced. The
    /// lab's own stream is never tagged.
    pub(crate) fn lab_tag(&mut self, token: Token, req: &Request) {
        let Some(lab) = self.lab() else {
            return;
        };
        if req.path() == PATH {
            lab.tags.remove(&token);
        } else if let Some(tag) = req
            .query_param(SESSION_PARAM)
            .and_then(|text| Tag::parse(&text))
        {
            lab.tag(token, tag);
        }
    }

    /// `GET /lab/events?session=S`, when the lab is on: the session, or the
    /// answer refusing the request. `None` for every other request (the
    /// app's).
    pub(crate) fn lab_request(&self, req: &Request) -> Option<Result<Tag, Response>> {
        self.tracer.as_ref()?.lab.as_ref()?;
        if req.path() != PATH {
            return None;
        }
        // RFC 9110 §15.5.6: a 405 lists the methods the resource has.
        if !matches!(req.method(), "GET" | "HEAD") {
            return Some(Err(
                Response::text(405, "method not allowed").header("Allow", "GET, HEAD")
            ));
        }
        Some(
            req.query_param(SESSION_PARAM)
                .and_then(|text| Tag::parse(&text))
                .ok_or_else(|| {
                    Response::text(400, "session must be 1 to 32 characters of A-Z a-z 0-9 - _")
                }),
        )
    }

    /// Starts a lab stream for `tag` on a connection whose request asked for
    /// one — or answers `503` when `max_sessions` streams are open.
    pub(crate) fn start_lab_stream(&mut self, token: Token, tag: Tag) {
        let now = self.now;
        let Some(lab) = self.lab() else {
            return;
        };
        if lab.is_full() {
            let max = lab.config.max_sessions;
            let busy = Response::text(
                503,
                &format!("the lab has {max} sessions open (LabConfig::max_sessions)"),
            )
            .header("Retry-After", "10");
            return self.answer_with(token, &busy);
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Kind::Http(http) = &mut conn.kind else {
            return;
        };
        // The stream runs until the connection closes (RFC 9112 §6.3).
        let framing = http.session.answer(now, true);
        http.session.finish();
        self.stats.http.requests += 1;
        let retry = self.config.sse_retry_ms;
        self.push_protocol(token, &|out| sse::write_stream_head(out, retry, &[]));
        if framing.head_only {
            // RFC 9110 §9.3.2: a HEAD gets the head of the stream, and no stream.
            return self.start_closing(token, true);
        }
        let keepalive = now + self.config.limits.sse_keepalive;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // An event stream to the loop (keep-alive comments, the end on the
        // peer's FIN or at shutdown), counted as plain HTTP: it is the lab's,
        // not a feed's.
        conn.kind = Kind::EventStream;
        conn.deadline = Some(keepalive);
        if let Some(lab) = self.lab() {
            lab.open(token, tag, now);
        }
        self.rearm(token);
    }

    /// Moves the lines gathered this turn into their streams' queues, as
    /// data, and only as much as a queue admits (`max_queued_bytes`). Called
    /// once per turn, before the writes.
    pub(crate) fn flush_lab(&mut self) {
        // The tracer is set aside meanwhile, so nothing queued here is traced.
        let Some(mut tracer) = self.tracer.take() else {
            return;
        };
        if let Some(lab) = tracer.lab.as_mut() {
            let max_queued = self.config.limits.max_queued_bytes;
            lab.drain(self.now, |token, bytes| {
                let admitted = self.conns.get(token).is_some_and(|conn| {
                    conn.is_event_stream() && conn.outbox.admits(bytes.len(), max_queued)
                });
                if admitted {
                    self.push_owned(token, Chunk::Data, &|out| out.extend_from_slice(bytes));
                }
                admitted
            });
        }
        self.tracer = Some(tracer);
    }

    /// Whether lines wait for [`Core::flush_lab`].
    pub(crate) fn lab_waiting(&self) -> bool {
        self.tracer
            .as_ref()
            .and_then(|tracer| tracer.lab.as_ref())
            .is_some_and(|lab| lab.streams.iter().any(|s| !s.pending.is_empty()))
    }

    /// A connection is gone: the lab forgets its tag, or its stream.
    pub(crate) fn lab_forget(&mut self, token: Token) {
        if let Some(lab) = self.lab() {
            lab.forget(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lab(lines_per_second: u32) -> Lab {
        Lab::new(LabConfig {
            max_sessions: 2,
            lines_per_second,
        })
    }

    fn line(out: &mut Vec<u8>) {
        out.extend_from_slice(b"{}");
    }

    /// What `drain` delivers, per stream, as text.
    fn drained(lab: &mut Lab, now: Instant) -> Vec<(Token, String)> {
        let mut out = Vec::new();
        lab.drain(now, |token, bytes| {
            out.push((token, String::from_utf8_lossy(bytes).into_owned()));
            true
        });
        out
    }

    #[test]
    fn tags_are_short_url_safe_tokens() {
        assert!(Tag::parse("page-1_x").is_some());
        assert_ne!(Tag::parse("ab"), Tag::parse("abc"));
        assert!(Tag::parse(&"a".repeat(MAX_TAG_BYTES)).is_some());
        for bad in ["", "a b", "a&b", "é", "a\n", &"a".repeat(MAX_TAG_BYTES + 1)] {
            assert_eq!(Tag::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lines_go_to_the_streams_of_their_session_only() {
        let mut lab = lab(100);
        let (x, y) = (Tag::parse("x").unwrap(), Tag::parse("y").unwrap());
        lab.open(Token(10), x, Instant::ZERO);
        lab.open(Token(11), y, Instant::ZERO);
        lab.tag(Token(1), x);
        assert!(lab.wants(Token(1)));
        assert!(!lab.wants(Token(2)), "untagged");
        assert!(!lab.wants(Token(10)), "a stream is not traced");
        lab.emit(Instant::ZERO, Token(1), line);
        lab.emit(Instant::ZERO, Token(2), |_| panic!("not formatted"));
        assert_eq!(
            drained(&mut lab, Instant::ZERO),
            [(Token(10), "data: {}\n\n".into())]
        );
    }

    #[test]
    fn sessions_past_the_limit_are_refused_and_a_closed_one_frees_its_place() {
        let mut lab = lab(100);
        let tag = Tag::parse("x").unwrap();
        lab.open(Token(10), tag, Instant::ZERO);
        assert!(!lab.is_full());
        lab.open(Token(11), tag, Instant::ZERO);
        assert!(lab.is_full());
        lab.forget(Token(10));
        assert!(!lab.is_full());
    }

    #[test]
    fn lines_past_the_rate_are_dropped_counted_and_reported() {
        let mut lab = lab(10);
        let tag = Tag::parse("x").unwrap();
        lab.open(Token(10), tag, Instant::ZERO);
        lab.tag(Token(1), tag);
        for _ in 0..25 {
            lab.emit(Instant::ZERO, Token(1), line);
        }
        let first = drained(&mut lab, Instant::ZERO);
        assert_eq!(
            first[0].1.matches("data: {}").count(),
            10,
            "one second's worth"
        );
        // A quiet stream hears of its loss once it has credit again.
        let later = Instant::ZERO + Duration::from_millis(100);
        let notice = drained(&mut lab, later);
        assert_eq!(
            notice[0].1,
            "event: dropped\ndata: {\"dropped\":15,\"text\":\"15 lines dropped (over 10 lines/s)\"}\n\n"
        );
        assert!(drained(&mut lab, later).is_empty(), "reported once");
    }

    #[test]
    fn lines_a_full_queue_refuses_count_as_dropped() {
        let mut lab = lab(100);
        let tag = Tag::parse("x").unwrap();
        lab.open(Token(10), tag, Instant::ZERO);
        lab.tag(Token(1), tag);
        lab.emit(Instant::ZERO, Token(1), line);
        lab.emit(Instant::ZERO, Token(1), line);
        lab.drain(Instant::ZERO, |_, _| false);
        lab.emit(Instant::ZERO, Token(1), line);
        let out = drained(&mut lab, Instant::ZERO);
        assert!(
            out[0]
                .1
                .starts_with("event: dropped\ndata: {\"dropped\":2,"),
            "{}",
            out[0].1
        );
        assert!(out[0].1.ends_with("data: {}\n\n"));
    }
}
