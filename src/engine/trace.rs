//! `--trace` and the lab: the protocol as it happens. One line per event,
//! aligned and greppable:
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
//! it.
//!
//! **One set of calls, two sinks.** The engine calls the `Tracer` where
//! things happen; the tracer builds a `Record` — the line's parts, plus the
//! bytes of a frame's header as they were on the wire and how many bytes
//! the line stands for — and hands it to each sink that wants it: the text
//! output (`pushloop --trace`, every connection) and the lab
//! ([`crate::engine::lab`]: `GET /lab/events?session=S`, only connections
//! tagged with that session, as JSON). A sink that wants nothing costs
//! nothing: each call first asks `Tracer::wants` about its connection, and
//! formats only then. With both sinks off there is no tracer at all, and the
//! loop pays one `Option` check per event.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use mio::Token;

use crate::engine::lab::{Lab, LabConfig};
use crate::engine::slab::display_token;
use crate::json;
use crate::time::Instant;
use crate::ws::close::parse_close_payload;
#[cfg(feature = "deflate")]
use crate::ws::deflate::{Direction, Inflater, MAX_WINDOW_BITS};
use crate::ws::frame::{decode_header, FrameHeader, OpCode, Role, MAX_HEADER_LEN};
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
/// Characters of a line's fields at most; the rest is cut and shown as `…`.
/// A header line may be as long as a whole head (`max_head_bytes`, 8 KiB):
/// cut at 160, every line fits a terminal row or two, and a lab line stays
/// under about half a kilobyte, so a lab stream's bytes are bounded by its
/// line rate ([`LabConfig::lines_per_second`]).
pub const MAX_FIELD_CHARS: usize = 160;
/// Column where the spec citation starts.
const CITE_COLUMN: usize = 96;

/// One trace line, in parts: what every sink gets.
#[derive(Clone, Copy, Debug)]
struct Record<'a> {
    /// When, on the loop's clock.
    at: Instant,
    /// Whose line it is.
    conn: Token,
    /// `←` in, `→` out, `·` a change of state.
    arrow: char,
    /// What it is: `http`, `frame`, `text`, `sse`, `hold`, … (empty on the
    /// continuation lines of a head).
    what: &'a str,
    /// The fields, named as the spec names them.
    fields: &'a str,
    /// The section of the spec that governs it (may be empty).
    cite: &'a str,
    /// A frame's header as it was on the wire (RFC 6455 §5.2); empty on
    /// every other line.
    header: &'a [u8],
    /// Bytes on the wire this line stands for: a whole head (on its first
    /// line), a whole frame, an event, a body. Zero for lines about bytes
    /// another line counted (a message decoded from a frame, a head's
    /// continuation lines) and for notes.
    wire_bytes: usize,
}

impl<'a> Record<'a> {
    fn new(
        at: Instant,
        conn: Token,
        arrow: char,
        what: &'a str,
        fields: &'a str,
        cite: &'a str,
    ) -> Record<'a> {
        Record {
            at,
            conn,
            arrow,
            what,
            fields,
            cite,
            header: &[],
            wire_bytes: 0,
        }
    }

    fn bytes(self, wire_bytes: usize) -> Record<'a> {
        Record { wire_bytes, ..self }
    }

    fn header(self, header: &'a [u8]) -> Record<'a> {
        Record { header, ..self }
    }

    /// The line as `--trace` prints it (without its newline).
    fn text(&self) -> String {
        // Seconds with milliseconds, in integers: float formatting would add
        // kilobytes of code to the binary for this one column.
        let ms = self.at.as_micros() / 1000;
        let mut line = format!(
            "{:>4}.{:03} {:<6} {} {:<7} {}",
            ms / 1000,
            ms % 1000,
            display_token(self.conn),
            self.arrow,
            self.what,
            self.fields
        );
        if !self.cite.is_empty() {
            let pad = CITE_COLUMN.saturating_sub(line.chars().count()).max(2);
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(self.cite);
        }
        line
    }

    /// The line as the lab sends it: one JSON object with its parts, its
    /// `--trace` text, the frame header as hex and the bytes it stands for.
    ///
    /// ```text
    /// {"t":1,"conn":"#1","dir":"←","what":"frame","fields":"FIN=1 …","cite":"RFC 6455 §5.2",
    ///  "hex":"81 85 37 fa 21 3d","bytes":11,"line":"   0.001 #1     ← frame   FIN=1 …"}
    /// ```
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut arrow = [0; 4];
        let mut hex = String::with_capacity(self.header.len() * 3);
        for (i, byte) in self.header.iter().enumerate() {
            let space = if i == 0 { "" } else { " " };
            let _ = write!(hex, "{space}{byte:02x}");
        }
        let _ = write!(out, "{{\"t\":{},\"conn\":", self.at.as_micros() / 1000);
        json::write_str(out, &display_token(self.conn));
        out.extend_from_slice(b",\"dir\":");
        json::write_str(out, self.arrow.encode_utf8(&mut arrow));
        for (name, value) in [
            ("what", self.what),
            ("fields", self.fields),
            ("cite", self.cite),
            ("hex", &hex),
        ] {
            let _ = write!(out, ",\"{name}\":");
            json::write_str(out, value);
        }
        let _ = write!(out, ",\"bytes\":{},\"line\":", self.wire_bytes);
        json::write_str(out, &self.text());
        out.push(b'}');
    }
}

/// Turns what happens into [`Record`]s and hands them to its sinks; times
/// are the loop's (seconds since it started).
pub(crate) struct Tracer {
    /// `--trace`: every connection's lines, as text.
    out: Option<Box<dyn Write + Send>>,
    /// `/lab/events`: the lines of connections tagged with a session.
    pub(crate) lab: Option<Lab>,
    /// Inflates the compressed frames we send, to show what they carry (a
    /// message that used a context kept from earlier ones cannot be shown).
    #[cfg(feature = "deflate")]
    inflater: Inflater,
}

impl Tracer {
    /// A tracer for the sinks asked for; none when neither is.
    pub(crate) fn new(output: Option<TraceOutput>, lab: Option<LabConfig>) -> Option<Tracer> {
        if output.is_none() && lab.is_none() {
            return None;
        }
        Some(Tracer {
            out: output.map(|output| output.0),
            lab: lab.map(Lab::new),
            #[cfg(feature = "deflate")]
            inflater: Inflater::new(Direction {
                window_bits: MAX_WINDOW_BITS,
                context_takeover: false,
            }),
        })
    }

    /// Whether any sink wants this connection's lines. A lab stream's own
    /// connection is traced nowhere: its bytes are other lines.
    #[inline]
    pub(crate) fn wants(&self, conn: Token) -> bool {
        match &self.lab {
            Some(lab) => lab.wants(conn) || (self.out.is_some() && !lab.is_stream(conn)),
            None => self.out.is_some(),
        }
    }

    fn emit(&mut self, record: Record<'_>) {
        let fields = clip(record.fields, MAX_FIELD_CHARS);
        let record = Record {
            fields: &fields,
            ..record
        };
        if let Some(out) = self.out.as_mut() {
            let mut line = record.text();
            line.push('\n');
            // A trace that cannot be written is not worth stopping the server for.
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        if let Some(lab) = self.lab.as_mut() {
            lab.emit(record.at, record.conn, |out| record.write_json(out));
        }
    }

    /// A note about a connection: accepted, closed, long-poll held or woken.
    pub(crate) fn note(&mut self, now: Instant, conn: Token, what: &str, fields: &str, cite: &str) {
        if self.wants(conn) {
            self.emit(Record::new(now, conn, '·', what, fields, cite));
        }
    }

    /// A request head as received, line by line.
    pub(crate) fn head_in(&mut self, now: Instant, conn: Token, head: &[u8]) {
        if self.wants(conn) {
            self.head(now, conn, '←', head, "RFC 9112 §3");
        }
    }

    /// A head, one record per line; the first stands for the whole head's bytes.
    fn head(&mut self, now: Instant, conn: Token, arrow: char, head: &[u8], cite: &str) {
        let text = String::from_utf8_lossy(head);
        for (i, line) in text.split("\r\n").filter(|l| !l.is_empty()).enumerate() {
            if i == 0 {
                self.emit(Record::new(now, conn, arrow, "http", line, cite).bytes(head.len()));
            } else {
                self.emit(Record::new(now, conn, arrow, "", &format!("  {line}"), ""));
            }
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
        if !self.wants(conn) {
            return;
        }
        let fields = frame_fields(header, header_len);
        let (bytes, len) = header_bytes(header, header_len);
        let frame_len = usize::try_from(header.payload_len)
            .unwrap_or(usize::MAX)
            .saturating_add(len);
        let record = Record::new(now, conn, '←', "frame", &fields, "RFC 6455 §5.2");
        self.emit(record.header(&bytes[..len]).bytes(frame_len));
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
        if !self.wants(conn) {
            return;
        }
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
        self.emit(Record::new(now, conn, '←', what, &fields, cite));
    }

    /// A step of the closing handshake (RFC 6455 §7.1). A heartbeat's
    /// answer changes `Open { awaiting_pong }` only: no step, no line.
    pub(crate) fn ws_state(&mut self, now: Instant, conn: Token, from: State, to: State) {
        if from.name() != to.name() {
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
        if !self.wants(conn) {
            return;
        }
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
            let fields = format!("{} bytes {}", body.len(), preview(body));
            let record = Record::new(now, conn, '→', "body", &fields, "RFC 9112 §6");
            self.emit(record.bytes(body.len()));
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
            let record = Record::new(now, conn, '→', "frame", &fields, cite);
            self.emit(record.header(&bytes[..header_len]).bytes(end));
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
            let fields = fields.join(" ");
            let fields = clip(&fields, PREVIEW * 2);
            let record = Record::new(now, conn, '→', "sse", &fields, cite);
            // The block and the blank line that ends it (§9.2.5).
            self.emit(record.bytes(block.len() + 2));
        }
    }
}

/// TLS (feature `tls`): the handshake's outcome, alerts both ways.
#[cfg(feature = "tls")]
impl Tracer {
    /// One TLS line, for the sinks that want this connection's lines.
    fn tls_line(
        &mut self,
        now: Instant,
        conn: Token,
        arrow: char,
        what: &str,
        fields: &str,
        cite: &str,
    ) {
        if self.wants(conn) {
            self.emit(Record::new(now, conn, arrow, what, fields, cite));
        }
    }

    /// The handshake finished: version, cipher suite, key exchange, ALPN, SNI.
    pub(crate) fn tls_handshake(
        &mut self,
        now: Instant,
        conn: Token,
        negotiated: &crate::tls::Negotiated,
    ) {
        let cite = if negotiated.version == crate::tls::ProtocolVersion::TLSv1_2 {
            "RFC 5246 §7.4"
        } else {
            "RFC 8446 §4.1.3"
        };
        self.note(
            now,
            conn,
            "tls",
            &format!("handshake done: {negotiated}"),
            cite,
        );
    }

    /// A TLS error ended the connection: what the peer did, then what it
    /// was told.
    pub(crate) fn tls_error(&mut self, now: Instant, conn: Token, error: crate::tls::TlsError) {
        use crate::tls::{Answer, Fault};
        let cite = error.fault.section();
        match error.fault {
            Fault::PeerAlert(alert) => {
                self.tls_line(now, conn, '←', "alert", &format!("{alert:?} (fatal)"), cite)
            }
            fault => self.note(now, conn, "tls", &format!("{fault:?}"), cite),
        }
        match error.answer {
            Answer::Alert(alert) => self.tls_line(
                now,
                conn,
                '→',
                "alert",
                &format!("{alert:?} (fatal)"),
                "RFC 8446 §6.2",
            ),
            Answer::EncryptedAlert => self.tls_line(
                now,
                conn,
                '→',
                "alert",
                "fatal (encrypted)",
                "RFC 8446 §6.2",
            ),
            Answer::BadRequest => self.tls_line(
                now,
                conn,
                '→',
                "http",
                "HTTP/1.1 400 Bad Request, in plain text: this port speaks TLS",
                "RFC 9110 §15.5.1",
            ),
            Answer::Nothing => {}
        }
    }

    /// A `close_notify` alert, received (`incoming`) or sent.
    pub(crate) fn tls_close_notify(&mut self, now: Instant, conn: Token, incoming: bool) {
        let arrow = if incoming { '←' } else { '→' };
        self.tls_line(now, conn, arrow, "alert", "close_notify", "RFC 8446 §6.1");
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

/// A decoded header's bytes as they were on the wire, and how many. The
/// decoder takes one encoding of each header only — the length in the fewest
/// bytes (RFC 6455 §5.2: "the minimal number of bytes MUST be used") — so
/// the fields and the header's length give its bytes back exactly.
fn header_bytes(header: &FrameHeader, header_len: usize) -> ([u8; MAX_HEADER_LEN], usize) {
    let mut out = [0; MAX_HEADER_LEN];
    // §5.2, byte 0: FIN, RSV1, RSV2, RSV3, then the 4-bit opcode.
    out[0] = u8::from(header.fin) << 7
        | u8::from(header.rsv1) << 6
        | u8::from(header.rsv2) << 5
        | u8::from(header.rsv3) << 4
        | header.opcode as u8;
    let mask_len = if header.mask.is_some() { 4 } else { 0 };
    // Byte 1: MASK, then a 7-bit length, or 126 (a 16-bit length follows)
    // or 127 (a 64-bit length follows).
    let (short, extended) = match header_len.saturating_sub(2 + mask_len) {
        0 => ((header.payload_len & 0x7f) as u8, 0),
        2 => (126, 2),
        _ => (127, 8),
    };
    out[1] = u8::from(header.mask.is_some()) << 7 | short;
    let length = header.payload_len.to_be_bytes();
    out[2..2 + extended].copy_from_slice(&length[8 - extended..]);
    let mut len = 2 + extended;
    if let Some(key) = header.mask {
        out[len..len + 4].copy_from_slice(&key);
        len += 4;
    }
    (out, len)
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

/// `text` cut after `max` characters, with `…` for what was cut.
fn clip(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_frame;

    fn record<'a>(fields: &'a str, header: &'a [u8]) -> Record<'a> {
        Record::new(
            Instant::from_micros(1_234_567),
            Token(3),
            '←',
            "frame",
            fields,
            "RFC 6455 §5.2",
        )
        .header(header)
        .bytes(11)
    }

    #[test]
    fn header_bytes_are_the_bytes_the_decoder_read() {
        // RFC 6455 §5.7: the masked "Hello", and lengths on each side of
        // each encoding's bounds, masked and not.
        let hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d];
        let (header, header_len) = decode_header(&hello, Role::Server, 1 << 20, false)
            .unwrap()
            .unwrap();
        let (bytes, len) = header_bytes(&header, header_len);
        assert_eq!(&bytes[..len], &hello);
        for payload_len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            for (role, mask) in [(Role::Server, Some([1, 2, 3, 4])), (Role::Client, None)] {
                let mut frame = Vec::new();
                encode_frame(
                    &mut frame,
                    true,
                    OpCode::Binary,
                    mask,
                    &vec![7; payload_len],
                );
                let (header, header_len) = decode_header(&frame, role, 1 << 20, false)
                    .unwrap()
                    .unwrap();
                let (bytes, len) = header_bytes(&header, header_len);
                assert_eq!(len, header_len, "length {payload_len}");
                assert_eq!(&bytes[..len], &frame[..header_len], "length {payload_len}");
            }
        }
    }

    #[test]
    fn a_record_prints_as_trace_prints_it() {
        let text = record("FIN=1 op=0x1", &[]).text();
        assert!(
            text.starts_with("   1.234 #3     ← frame   FIN=1 op=0x1"),
            "{text}"
        );
        assert!(text.ends_with("  RFC 6455 §5.2"), "{text}");
        assert_eq!(
            text.chars().count(),
            CITE_COLUMN + "RFC 6455 §5.2".chars().count()
        );
    }

    #[test]
    fn a_record_in_json_has_its_parts_its_text_and_its_header_in_hex() {
        let header = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d];
        let fields = "len=5 \"say \\\"hi\\\"\"";
        let record = record(fields, &header);
        let mut json = Vec::new();
        record.write_json(&mut json);
        assert_eq!(crate::json::validate(&json), Ok(()));
        let text = String::from_utf8(json).unwrap();
        assert!(
            text.starts_with(r##"{"t":1234,"conn":"#3","dir":"←","what":"frame","##),
            "{text}"
        );
        assert!(
            text.contains(r##""hex":"81 85 37 fa 21 3d","bytes":11,"line":"   1.234 #3"##),
            "{text}"
        );
        assert!(
            text.contains(r#""fields":"len=5 \"say \\\"hi\\\"\"""#),
            "{text}"
        );
    }

    /// A tracer writing text into a buffer the test reads back.
    fn tracer() -> (Tracer, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
        #[derive(Clone)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared(Default::default());
        let tracer = Tracer::new(Some(TraceOutput(Box::new(out.clone()))), None).unwrap();
        (tracer, out.0)
    }

    #[test]
    fn a_pong_is_no_step_of_the_closing_handshake() {
        let (mut tracer, out) = tracer();
        let waiting = State::Open {
            awaiting_pong: true,
        };
        let open = State::Open {
            awaiting_pong: false,
        };
        tracer.ws_state(Instant::ZERO, Token(1), waiting, open);
        assert!(out.lock().unwrap().is_empty());
        tracer.ws_state(Instant::ZERO, Token(1), open, State::CloseSent);
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("· state   websocket open → close-sent"),
            "{text}"
        );
    }

    #[test]
    fn fields_past_the_limit_are_cut() {
        let long = "x".repeat(MAX_FIELD_CHARS + 10);
        let cut = clip(&long, MAX_FIELD_CHARS);
        assert_eq!(cut.chars().count(), MAX_FIELD_CHARS + 1);
        assert!(cut.ends_with('…'));
        let exact = "é".repeat(MAX_FIELD_CHARS);
        assert_eq!(clip(&exact, MAX_FIELD_CHARS), exact, "at the limit: whole");
    }
}
