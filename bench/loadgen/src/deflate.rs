//! permessage-deflate (RFC 7692) for the client side, on miniz_oxide: the
//! offer, compressing the messages it sends (once, before the run), and
//! inflating what the server sends.
//!
//! The client compresses every message alone (a full flush before each:
//! nothing refers to an earlier message), which is valid whatever context
//! the server agreed to (§7.1.1: keeping a window is the receiver's business,
//! referring to it the sender's choice). It inflates with one stream per
//! connection that keeps its 32 KiB window, which reads a server that keeps
//! context (Node `ws`'s default) as well as one that does not (pushloop's
//! shared mode).

use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

/// What browsers offer (RFC 7692 §7.1.2.2: any window the server asks for).
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The tail a sync flush ends with and a message leaves out (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses messages each on their own, with zlib's default level.
pub struct Compressor {
    inner: Box<CompressorOxide>,
}

impl Compressor {
    pub fn new() -> Self {
        // Raw DEFLATE (negative window): no zlib header, §7.2.1.
        let flags = create_comp_flags_from_zip_params(6, -15, 0);
        Compressor { inner: Box::new(CompressorOxide::new(flags)) }
    }

    /// `message` compressed alone, the `00 00 ff ff` tail removed (§7.2.1).
    pub fn compress(&mut self, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() / 2 + 16);
        // A full flush also forgets the message, so the next starts afresh.
        let (status, _) = compress_to_output(&mut self.inner, message, TDEFLFlush::Full, |bytes| {
            out.extend_from_slice(bytes);
            true
        });
        assert_eq!(status, TDEFLStatus::Okay);
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out
    }
}

/// Inflates one connection's messages, keeping the window between them.
pub struct Inflater {
    state: Box<InflateState>,
    out: Vec<u8>,
}

impl Inflater {
    pub fn new() -> Self {
        Inflater { state: InflateState::new_boxed(DataFormat::Raw), out: Vec::new() }
    }

    /// The inflated form of one message's payload (§7.2.2: the tail put back).
    pub fn inflate(&mut self, compressed: &[u8]) -> Result<&[u8], &'static str> {
        self.out.clear();
        for input in [compressed, &TAIL[..]] {
            let mut input = input;
            loop {
                let start = self.out.len();
                self.out.resize(start + (input.len() * 4).max(4096), 0);
                let result = inflate(&mut self.state, input, &mut self.out[start..], MZFlush::Sync);
                self.out.truncate(start + result.bytes_written);
                input = &input[result.bytes_consumed..];
                match result.status {
                    Ok(MZStatus::StreamEnd) => {
                        // A final block (§7.2.3.4): the next message starts a new stream.
                        self.state.reset(DataFormat::Raw);
                        if input.is_empty() {
                            break;
                        }
                    }
                    Ok(_) if input.is_empty() && result.bytes_written == 0 => break,
                    Ok(_) => {}
                    Err(_) if input.is_empty() => break,
                    Err(_) => return Err("the server sent invalid DEFLATE data"),
                }
            }
        }
        Ok(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_inflates_rfc7692_hello() {
        let mut inflater = Inflater::new();
        // RFC 7692 §7.2.3.1, then §7.2.3.2's second message, which refers to the first.
        assert_eq!(inflater.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(), b"Hello");
        assert_eq!(inflater.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(), b"Hello");
        let mut compressor = Compressor::new();
        let message = b"{\"id\":1,\"text\":\"hello hello hello hello\"}".repeat(30);
        for _ in 0..3 {
            let compressed = compressor.compress(&message);
            assert!(compressed.len() < message.len() / 4);
            assert_eq!(inflater.inflate(&compressed).unwrap(), &message[..]);
        }
    }
}
