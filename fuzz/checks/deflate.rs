//! Fuzz property of permessage-deflate's codec (`ws::deflate`, RFC 7692 §7.2).
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/deflate_inflate.rs`) and the
//! stable corpus replay (`tests/fuzz_corpus.rs`, with `--features deflate`),
//! so: deterministic, fast, and only `pushloop` + std.
//!
//! - The input as a compressed message, inflated by each kind of `Inflater`
//!   (no context; context with a 512-byte and a 32 KiB window), twice in a row
//!   so the second may refer to the first: no panic; the output never passes
//!   the limit; every error closes with 1007 or 1009 and leaves the output
//!   buffer as it was.
//! - The input as a message, compressed for window 15 with and without
//!   context takeover and for windows 8 and 12 (runs only), then its first
//!   half after it: each inflates back to itself with a limit of exactly its
//!   length.

//!
//! Seeds (`fuzz/corpus/deflate_inflate/seed-*`): the RFC 7692 §7.2.3.1-§7.2.3.6
//! payloads as printed there; a reserved block type (`06`); a JSON event, plain;
//! and two made with python3's zlib, tail dropped as §7.2.1 says:
//!
//! ```text
//! c = zlib.compressobj(9, zlib.DEFLATED, -15)   # seed-zero-bomb-1mib
//! (c.compress(b"\0" * (1 << 20)) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
//! c = zlib.compressobj(6, zlib.DEFLATED, -10)   # seed-zlib-window-10-json
//! (c.compress(seed_plain_json * 8) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
//! ```

use pushloop::ws::deflate::{Deflater, Direction, Inflater};

/// A limit short inputs cross (DEFLATE inflates up to ~1032:1), and a tiny one.
const LIMITS: [usize; 2] = [64 * 1024, 100];

/// What the caller's buffer held before the message.
const HELD: &[u8] = b"held";

pub fn deflate_inflate(data: &[u8]) {
    inflate_anything(data);
    round_trip(data);
}

fn inflate_anything(data: &[u8]) {
    let directions =
        [(15, false), (9, true), (15, true)].map(|(window_bits, context_takeover)| Direction {
            window_bits,
            context_takeover,
        });
    for limit in LIMITS {
        for direction in directions {
            let mut inflater = Inflater::new(direction);
            for _ in 0..2 {
                let mut out = HELD.to_vec();
                match inflater.inflate_message(data, limit, &mut out) {
                    Ok(()) => assert!(out.len() - HELD.len() <= limit, "{direction:?}"),
                    Err(error) => {
                        let code = error.close_code();
                        assert!(
                            matches!(code.0, 1007 | 1009),
                            "{error:?} closes with {code}"
                        );
                        assert_eq!(out, HELD, "{error:?} left output behind");
                        // With context takeover the connection is failing now.
                        if direction.context_takeover {
                            break;
                        }
                    }
                }
            }
        }
    }
}

fn round_trip(data: &[u8]) {
    // Each small window takes the same path (runs only), so two of them do.
    for (window_bits, context_takeover) in [(8, true), (12, false), (15, false), (15, true)] {
        let direction = Direction {
            window_bits,
            context_takeover,
        };
        let mut deflater = Deflater::new(direction);
        let mut inflater = Inflater::new(direction);
        for message in [data, &data[..data.len() / 2]] {
            let mut compressed = Vec::new();
            deflater.compress_message(message, &mut compressed);
            let mut out = Vec::new();
            let inflated = inflater.inflate_message(&compressed, message.len(), &mut out);
            assert_eq!(inflated, Ok(()), "{direction:?}");
            assert!(
                out == message,
                "{direction:?}: round trip changed the message"
            );
        }
    }
}
