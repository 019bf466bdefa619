//! The client's side of RFC 6455, as little as a load generator needs:
//! the opening handshake request, masked client frames, and a parser for
//! server frames that counts messages without keeping their payload (but for
//! a compressed one, which it gathers and inflates, RFC 7692 §6.2, to check
//! its length; or when the caller wants the payloads).

use crate::deflate::Inflater;

/// The §1.3 example key. Servers never check the nonce, and a fixed key lets
/// us check the accept value with one comparison.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// base64(SHA-1(KEY + GUID)), RFC 6455 §1.3.
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// RFC 6455 §5.2 opcodes.
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The opening handshake request, RFC 6455 §4.1; with `deflate`, offering
/// permessage-deflate as browsers do (RFC 7692 §5).
pub fn upgrade_request(host: &str, path: &str, deflate: bool) -> Vec<u8> {
    let offer =
        if deflate { format!("Sec-WebSocket-Extensions: {}\r\n", crate::deflate::OFFER) } else { String::new() };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
    .into_bytes()
}

/// A fixed masking key per connection. RFC 6455 §5.3 wants it unpredictable;
/// a benchmark talking to its own servers only needs every frame masked, and a
/// fixed key lets the masked message be built once.
pub fn mask_key(conn: usize) -> [u8; 4] {
    ((conn as u32).wrapping_mul(0x9E37_79B1) ^ 0xA5C3_5A3C).to_be_bytes()
}

/// Append one final client frame: §5.2 header with MASK set, then the payload
/// XORed with the key (§5.3).
pub fn push_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    push_frame(out, 0x80 | opcode, payload, key);
}

/// Append one final client frame with RSV1 set: a compressed message's payload
/// (RFC 7692 §6.1).
pub fn push_compressed_frame(out: &mut Vec<u8>, opcode: u8, compressed: &[u8], key: [u8; 4]) {
    push_frame(out, 0x80 | RSV1 | opcode, compressed, key);
}

/// RSV1: "Per-Message Compressed" (RFC 7692 §6).
const RSV1: u8 = 0x40;

fn push_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], key: [u8; 4]) {
    out.push(first);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
}

/// What one [`Parser::feed`] saw.
#[derive(Default)]
pub struct Seen {
    /// Whole data messages (the final frame of a text/binary message).
    pub msgs: u64,
    /// Messages whose length differed from the expected one.
    pub wrong_len: u64,
    /// The server sent a close frame (§5.5.1).
    pub close: bool,
    /// Payloads of the messages, inflated, when the parser keeps them.
    pub payloads: Vec<Vec<u8>>,
    /// Messages that came compressed.
    pub compressed: u64,
}

/// Incremental parser of server frames (§5.2). Data payloads are skipped, not
/// stored; a ping's payload is kept so the caller can answer with a pong.
#[derive(Default)]
pub struct Parser {
    head: [u8; 14],
    have: usize,
    /// Payload bytes still to come in the current frame; `None` between frames.
    left: Option<u64>,
    opcode: u8,
    fin: bool,
    /// Length so far of the data message being received.
    msg_len: u64,
    /// Payload of the current control frame.
    control: Vec<u8>,
    /// Ping payloads the caller owes a pong for (§5.5.2).
    pub pongs_owed: Vec<Vec<u8>>,
    /// Expected length of every data message, if known.
    pub expect_len: Option<u64>,
    /// The message being received is compressed (RSV1 on its first frame).
    compressed: bool,
    /// The payload gathered: a compressed message's, or every message's when
    /// `keep_payloads`.
    payload: Vec<u8>,
    /// Hand every message's payload to the caller (`Seen::payloads`). A
    /// compressed message is inflated only for this or to check `expect_len`.
    pub keep_payloads: bool,
    /// permessage-deflate was agreed.
    deflate: bool,
    /// Made on the first compressed message (an idle connection holds none).
    inflater: Option<Box<Inflater>>,
}

impl Parser {
    /// Feed bytes from the socket. `Err` means the server broke the framing.
    pub fn feed(&mut self, mut data: &[u8], seen: &mut Seen) -> Result<(), &'static str> {
        while !data.is_empty() {
            let Some(left) = self.left else {
                // Header: 2 bytes, then 0/2/8 bytes of extended length, then a
                // 4-byte key if the (server, so unexpected) MASK bit is set.
                let want = if self.have < 2 { 2 } else { head_len(&self.head) };
                let take = (want - self.have).min(data.len());
                self.head[self.have..self.have + take].copy_from_slice(&data[..take]);
                self.have += take;
                data = &data[take..];
                if self.have >= 2 && self.have == head_len(&self.head) {
                    self.start_frame()?;
                    if self.left == Some(0) {
                        self.end_frame(seen)?;
                    }
                }
                continue;
            };
            let take = (left.min(data.len() as u64)) as usize;
            if self.opcode >= OP_CLOSE {
                self.control.extend_from_slice(&data[..take]);
            } else {
                self.msg_len += take as u64;
                if self.keep_payloads || (self.compressed && self.expect_len.is_some()) {
                    self.payload.extend_from_slice(&data[..take]);
                }
            }
            data = &data[take..];
            self.left = Some(left - take as u64);
            if left == take as u64 {
                self.end_frame(seen)?;
            }
        }
        Ok(())
    }

    fn start_frame(&mut self) -> Result<(), &'static str> {
        let h = &self.head;
        self.fin = h[0] & 0x80 != 0;
        self.opcode = h[0] & 0x0F;
        let len = match h[1] & 0x7F {
            126 => u16::from_be_bytes([h[2], h[3]]) as u64,
            127 => u64::from_be_bytes(h[2..10].try_into().unwrap()),
            n => n as u64,
        };
        if self.opcode >= OP_CLOSE && (len > 125 || !self.fin) {
            return Err("bad control frame"); // §5.5
        }
        if !matches!(self.opcode, OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
            return Err("reserved opcode");
        }
        if h[0] & RSV1 != 0 {
            // RFC 7692 §6: only on a data message's first frame, and only if agreed.
            if !matches!(self.opcode, OP_TEXT | OP_BINARY) {
                return Err("RSV1 on a control or continuation frame");
            }
            if !self.deflate {
                return Err("RSV1 without permessage-deflate");
            }
            self.compressed = true;
        }
        self.control.clear();
        self.left = Some(len);
        self.have = 0;
        Ok(())
    }

    fn end_frame(&mut self, seen: &mut Seen) -> Result<(), &'static str> {
        self.left = None;
        match self.opcode {
            OP_CLOSE => seen.close = true,
            OP_PING => self.pongs_owed.push(std::mem::take(&mut self.control)),
            OP_PONG => {}
            _ if self.fin => {
                seen.msgs += 1;
                let mut len = self.msg_len;
                if self.compressed && (self.keep_payloads || self.expect_len.is_some()) {
                    seen.compressed += 1;
                    let inflater = self.inflater.get_or_insert_with(|| Box::new(Inflater::new()));
                    let inflated = inflater.inflate(&self.payload)?;
                    len = inflated.len() as u64;
                    if self.keep_payloads {
                        seen.payloads.push(inflated.to_vec());
                    }
                } else if self.compressed {
                    // Counted, not inflated: nobody reads it (and a connection that
                    // never inflates needs no window to keep its context).
                    seen.compressed += 1;
                } else if self.keep_payloads {
                    seen.payloads.push(self.payload.clone());
                }
                if self.expect_len.is_some_and(|n| n != len) {
                    seen.wrong_len += 1;
                }
                self.msg_len = 0;
                self.compressed = false;
                self.payload.clear();
            }
            _ => {}
        }
        Ok(())
    }

    /// permessage-deflate was agreed: compressed messages may come.
    pub fn agree_deflate(&mut self) {
        self.deflate = true;
    }

    /// permessage-deflate was agreed.
    pub fn deflate_agreed(&self) -> bool {
        self.deflate
    }
}

/// Length of a frame header from its first two bytes (§5.2).
fn head_len(h: &[u8; 14]) -> usize {
    let ext = match h[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if h[1] & 0x80 != 0 { 4 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | op];
        match payload.len() {
            n if n < 126 => v.push(n as u8),
            n if n <= 0xFFFF => {
                v.push(126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn masks_hello_like_rfc_5_7() {
        let mut out = Vec::new();
        push_client_frame(&mut out, OP_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn counts_messages_split_at_every_index() {
        let mut stream = server_frame(OP_TEXT, true, b"Hello");
        stream.extend(server_frame(OP_PING, true, b"p"));
        stream.extend(server_frame(OP_BINARY, false, &[7; 200]));
        stream.extend(server_frame(OP_CONT, true, &[7; 70_000]));
        stream.extend(server_frame(OP_CLOSE, true, &[3, 232]));
        for cut in 0..stream.len() {
            let mut p = Parser::default();
            let mut seen = Seen::default();
            p.feed(&stream[..cut], &mut seen).unwrap();
            p.feed(&stream[cut..], &mut seen).unwrap();
            assert_eq!(seen.msgs, 2, "cut at {cut}");
            assert!(seen.close);
            assert_eq!(p.pongs_owed, vec![b"p".to_vec()]);
        }
    }

    #[test]
    fn checks_message_length() {
        let mut p = Parser { expect_len: Some(5), ..Parser::default() };
        let mut seen = Seen::default();
        p.feed(&server_frame(OP_TEXT, true, b"Hello"), &mut seen).unwrap();
        p.feed(&server_frame(OP_TEXT, true, b"Hell"), &mut seen).unwrap();
        assert_eq!((seen.msgs, seen.wrong_len), (2, 1));
    }
}
