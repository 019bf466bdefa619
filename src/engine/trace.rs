//! `--trace`: the protocol lab. One line per event, aligned and greppable:
//!
//! ```text
//!    0.000 #1    ← http    GET /echo HTTP/1.1                                  RFC 9112 §3
//!    0.000 #1    → http    HTTP/1.1 101 Switching Protocols                    RFC 6455 §4.2.2
//!    0.001 #1    ← frame   FIN=1 RSV=000 op=0x1 text  MASK=1 key=37fa213d len=5 (7-bit)  RFC 6455 §5.2
//!    0.001 #1    ← text    5 bytes "Hello"                                     RFC 6455 §5.6
//!    0.001 #1    → frame   FIN=1 RSV=000 op=0x1 text  MASK=0 len=5 (7-bit) "Hello"  RFC 6455 §5.2
//! ```
//!
//! With permessage-deflate, a compressed frame shows `RSV=100` and its length
//! on the wire; the message it carries shows the length it inflated to, both
//! ways (what we send is inflated again for the trace, RFC 7692 §7.2.2):
//!
//! ```text
//!    0.002 #1    ← frame   FIN=1 RSV=100 op=0x1 text  MASK=1 key=… len=312 (16-bit)   RFC 6455 §5.2
//!    0.002 #1    ← text    2048 bytes, inflated from 312 "{\"id\":1,…"          RFC 7692 §7.2.2
//!    0.002 #1    → frame   FIN=1 RSV=100 op=0x1 text  MASK=0 len=312 (16-bit) compressed, inflates to 2048 bytes "{\"id\":1,…"  RFC 7692 §6
//! ```
//!
//! Columns: seconds since start, connection, direction (`←` in, `→` out, `·`
//! a state change), what, the fields, and the section of the spec that governs
//! it. Off by default; when off, the loop pays one `Option` check per event.

use std::fmt::Write as _;
use std::io::Write;

use mio::Token;

use crate::engine::slab::display_token;
use crate::time::Instant;
use crate::ws::close::parse_close_payload;
#[cfg(feature = "deflate")]
use crate::ws::deflate::{Direction, Inflater, MAX_WINDOW_BITS};
use crate::ws::frame::{decode_header, FrameHeader, OpCode, Role};
use crate::ws::session::{Event, State};

/// Where trace lines go (stdout for `pushloop --trace`).
pub struct TraceOutput(pub Box<dyn Write + Send>);

impl std::fmt::Debug for TraceOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceOutput(..)")
    }
}

/// What kind of bytes a connection is being sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// HTTP responses (heads and bodies).
    Http,
    /// WebSocket frames.
    Frames,
    /// `text/event-stream` events.
    Events,
}

/// Characters of payload shown in a preview.
const PREVIEW: usize = 48;
/// Column where the spec citation starts.
const CITE_COLUMN: usize = 96;

/// Writes trace lines; times are the loop's (seconds since it started).
pub(crate) struct Tracer {
    out: Box<dyn Write + Send>,
    /// Inflates the compressed frames we send, to show what they carry (a
    /// message that used a context kept from earlier ones cannot be shown).
    #[cfg(feature = "deflate")]
    inflater: Inflater,
}

impl Tracer {
    pub(crate) fn new(output: TraceOutput) -> Tracer {
        Tracer {
            out: output.0,
            #[cfg(feature = "deflate")]
            inflater: Inflater::new(Direction {
                window_bits: MAX_WINDOW_BITS,
                context_takeover: false,
            }),
        }
    }

    fn line(
        &mut self,
        now: Instant,
        conn: Token,
        arrow: char,
        what: &str,
        fields: &str,
        cite: &str,
    ) {
        // Seconds with milliseconds, in integers: float formatting would add
        // kilobytes of code to the binary for this one column.
        let ms = now.as_micros() / 1000;
        let mut line = format!(
            "{:>4}.{:03} {:<6} {arrow} {what:<7} {fields}",
            ms / 1000,
            ms % 1000,
            display_token(conn)
        );
        if !cite.is_empty() {
            let pad = CITE_COLUMN.saturating_sub(line.chars().count()).max(2);
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(cite);
        }
        line.push('\n');
        // A trace that cannot be written is not worth stopping the server for.
        let _ = self.out.write_all(line.as_bytes());
        let _ = self.out.flush();
    }

    /// A note about a connection: accepted, closed, long-poll held or woken.
    pub(crate) fn note(&mut self, now: Instant, conn: Token, what: &str, fields: &str, cite: &str) {
        self.line(now, conn, '·', what, fields, cite);
    }

    /// A request head as received, line by line.
    pub(crate) fn head_in(&mut self, now: Instant, conn: Token, head: &[u8]) {
        self.head(now, conn, '←', head, "RFC 9112 §3");
    }

    fn head(&mut self, now: Instant, conn: Token, arrow: char, head: &[u8], cite: &str) {
        let text = String::from_utf8_lossy(head);
        for (i, line) in text.split("\r\n").filter(|l| !l.is_empty()).enumerate() {
            let (what, cite) = if i == 0 { ("http", cite) } else { ("", "") };
            self.line(
                now,
                conn,
                arrow,
                what,
                &format!("{}{line}", if i == 0 { "" } else { "  " }),
                cite,
            );
        }
    }

    /// The header of a frame received (RFC 6455 §5.2).
    pub(crate) fn frame_in(
        &mut self,
        now: Instant,
        conn: Token,
        header: &FrameHeader,
        header_len: usize,
    ) {
        let fields = frame_fields(header, header_len);
        self.line(now, conn, '←', "frame", &fields, "RFC 6455 §5.2");
    }

    /// A message, control frame or failure received, with a preview;
    /// `inflated`: the message came compressed, (bytes received, inflated).
    pub(crate) fn event_in(
        &mut self,
        now: Instant,
        conn: Token,
        event: &Event,
        inflated: Option<(usize, usize)>,
    ) {
        let data = |bytes: &[u8]| match inflated {
            Some((received, _)) => (
                format!(
                    "{} bytes, inflated from {received} {}",
                    bytes.len(),
                    preview(bytes)
                ),
                "RFC 7692 §7.2.2",
            ),
            None => (
                format!("{} bytes {}", bytes.len(), preview(bytes)),
                "RFC 6455 §5.6",
            ),
        };
        let (what, fields, cite) = match event {
            Event::Text(text) => {
                let (fields, cite) = data(text.as_bytes());
                ("text", fields, cite)
            }
            Event::Binary(bytes) => {
                let (fields, cite) = data(bytes);
                ("binary", fields, cite)
            }
            Event::Ping(p) => ("ping", preview(p), "RFC 6455 §5.5.2"),
            Event::Pong(p) => ("pong", preview(p), "RFC 6455 §5.5.3"),
            Event::Closed { code, reason } => (
                "close",
                format!("{} {} {:?}", code.0, code.name(), reason),
                "RFC 6455 §7.4.1",
            ),
            Event::Failed(error) => (
                "error",
                format!("{error} → close {}", error.close_code().0),
                "RFC 6455 §7.1.7",
            ),
        };
        self.line(now, conn, '←', what, &fields, cite);
    }

    /// A step of the closing handshake (RFC 6455 §7.1).
    pub(crate) fn ws_state(&mut self, now: Instant, conn: Token, from: State, to: State) {
        if from != to {
            self.note(
                now,
                conn,
                "state",
                &format!("websocket {} → {}", from.name(), to.name()),
                "RFC 6455 §7.1",
            );
        }
    }

    /// Bytes queued for a connection, shown by what they are.
    pub(crate) fn bytes_out(&mut self, now: Instant, conn: Token, kind: Outgoing, bytes: &[u8]) {
        match kind {
            Outgoing::Http => self.http_out(now, conn, bytes),
            Outgoing::Frames => self.frames_out(now, conn, bytes),
            Outgoing::Events => self.events_out(now, conn, bytes),
        }
    }

    fn http_out(&mut self, now: Instant, conn: Token, bytes: &[u8]) {
        let head_end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes.len(), |i| i + 4);
        let cite = if bytes.starts_with(b"HTTP/1.1 101") {
            "RFC 6455 §4.2.2"
        } else {
            "RFC 9112 §4"
        };
        self.head(now, conn, '→', &bytes[..head_end], cite);
        let body = &bytes[head_end..];
        if body.starts_with(b"retry:") {
            self.events_out(now, conn, body);
        } else if !body.is_empty() {
            self.line(
                now,
                conn,
                '→',
                "body",
                &format!("{} bytes {}", body.len(), preview(body)),
                "RFC 9112 §6",
            );
        }
    }

    fn frames_out(&mut self, now: Instant, conn: Token, mut bytes: &[u8]) {
        while let Ok(Some((header, header_len))) =
            decode_header(bytes, Role::Client, usize::MAX >> 1, true)
        {
            let end = header_len
                .saturating_add(header.payload_len as usize)
                .min(bytes.len());
            let payload = &bytes[header_len..end];
            let mut fields = frame_fields(&header, header_len);
            let mut cite = "RFC 6455 §5.2";
            if header.opcode == OpCode::Close {
                if let Ok(Some((code, reason))) = parse_close_payload(payload) {
                    let _ = write!(fields, " code={} {} {:?}", code.0, code.name(), reason);
                }
            } else if header.rsv1 {
                cite = "RFC 7692 §6";
                self.compressed_fields(payload, &mut fields);
            } else {
                fields.push(' ');
                fields.push_str(&preview(payload));
            }
            self.line(now, conn, '→', "frame", &fields, cite);
            bytes = &bytes[end..];
        }
    }

    /// What a compressed frame we send carries: its inflated length and a
    /// preview (RFC 7692 §7.2.2).
    #[cfg(feature = "deflate")]
    fn compressed_fields(&mut self, payload: &[u8], fields: &mut String) {
        let mut inflated = Vec::new();
        match self
            .inflater
            .inflate_message(payload, 1 << 30, &mut inflated)
        {
            Ok(()) => {
                let _ = write!(
                    fields,
                    " compressed, inflates to {} bytes {}",
                    inflated.len(),
                    preview(&inflated)
                );
            }
            Err(_) => fields.push_str(" compressed, with context kept from earlier messages"),
        }
    }

    /// Without the `deflate` feature we never send a compressed frame.
    #[cfg(not(feature = "deflate"))]
    fn compressed_fields(&mut self, _: &[u8], fields: &mut String) {
        fields.push_str(" compressed");
    }

    fn events_out(&mut self, now: Instant, conn: Token, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        for block in text.split("\n\n").filter(|b| !b.is_empty()) {
            let fields: Vec<String> = block
                .lines()
                .map(|line| match line.split_once(':') {
                    Some(("", comment)) => format!("comment{comment:?}"),
                    Some((name, value)) => {
                        format!("{name}={}", value.strip_prefix(' ').unwrap_or(value))
                    }
                    None => line.to_owned(),
                })
                .collect();
            let cite = if block.starts_with(':') {
                "WHATWG HTML §9.2.7"
            } else {
                "WHATWG HTML §9.2.6"
            };
            self.line(now, conn, '→', "sse", &clip(&fields.join(" ")), cite);
        }
    }
}

/// FIN, RSV1-3, opcode, MASK and key, length and its encoding (RFC 6455 §5.2).
fn frame_fields(header: &FrameHeader, header_len: usize) -> String {
    let mask_len = if header.mask.is_some() { 4 } else { 0 };
    let encoding = match header_len - mask_len {
        2 => "7-bit",
        4 => "16-bit",
        _ => "64-bit",
    };
    let mut fields = format!(
        "FIN={} RSV={}{}{} op=0x{:x} {:<6} MASK={}",
        u8::from(header.fin),
        u8::from(header.rsv1),
        u8::from(header.rsv2),
        u8::from(header.rsv3),
        header.opcode as u8,
        header.opcode.name(),
        u8::from(header.mask.is_some()),
    );
    if let Some(key) = header.mask {
        let _ = write!(
            fields,
            " key={:02x}{:02x}{:02x}{:02x}",
            key[0], key[1], key[2], key[3]
        );
    }
    let _ = write!(fields, " len={} ({encoding})", header.payload_len);
    fields
}

/// A payload as a quoted string if it is text, else hex, shortened.
fn preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(PREVIEW)];
    let ellipsis = if bytes.len() > PREVIEW { "…" } else { "" };
    match std::str::from_utf8(shown) {
        Ok(text) => format!("{text:?}{ellipsis}"),
        Err(_) => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{ellipsis}")
        }
    }
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(PREVIEW * 2) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
