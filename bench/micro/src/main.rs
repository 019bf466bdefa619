//! micro: pushloop's sans-IO hot paths, timed one at a time.
//!
//! Plain `std::time::Instant` loops: each case runs in batches sized to take
//! about `BATCH_MS`, `SAMPLES` batches in a row, and the table gives the median
//! batch (with the spread of the middle half). Inputs and results pass through
//! `black_box`, so the compiler can neither precompute nor drop the work.
//! Everything is bounded: one run of all cases takes a few seconds.
//!
//! Usage: `micro [--quick] [--filter GROUP]`, groups `header`, `mask`, `utf8`,
//! `sse`, `decoder`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pushloop::sse;
use pushloop::ws::frame::{decode_header, encode_frame, OpCode, Role};
use pushloop::ws::mask::{apply_mask, apply_mask_bytewise};
use pushloop::ws::message::{MessageDecoder, MessageLimits, Step};
use pushloop::ws::utf8::Utf8Validator;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

struct Bench {
    batch: Duration,
    samples: usize,
    filter: Option<String>,
    /// The group the next cases belong to; `--filter` picks groups.
    group: &'static str,
    rows: Vec<Row>,
}

struct Row {
    name: String,
    /// Median nanoseconds per operation, and the quartiles.
    ns: f64,
    q1: f64,
    q3: f64,
    /// Bytes one operation handles, for a GB/s column.
    bytes: usize,
    /// Ratio to another row, printed as "× NAME".
    versus: Option<(String, f64)>,
}

impl Bench {
    /// Times `op` (one operation per call) and records a row.
    fn run(&mut self, name: &str, bytes: usize, mut op: impl FnMut()) -> Option<f64> {
        if self
            .filter
            .as_deref()
            .is_some_and(|f| !self.group.contains(f))
        {
            return None;
        }
        // Size a batch: double the count until one batch takes `batch`.
        let mut n: u64 = 1;
        loop {
            let t = Instant::now();
            for _ in 0..n {
                op();
            }
            if t.elapsed() >= self.batch / 4 || n >= 1 << 30 {
                n = ((n as f64) * (self.batch.as_secs_f64() / t.elapsed().as_secs_f64().max(1e-9)))
                    as u64;
                break;
            }
            n *= 2;
        }
        let n = n.max(1);
        let mut per_op: Vec<f64> = (0..self.samples)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..n {
                    op();
                }
                t.elapsed().as_nanos() as f64 / n as f64
            })
            .collect();
        per_op.sort_by(f64::total_cmp);
        let q = |f: f64| per_op[((per_op.len() - 1) as f64 * f).round() as usize];
        self.rows.push(Row {
            name: name.into(),
            ns: q(0.5),
            q1: q(0.25),
            q3: q(0.75),
            bytes,
            versus: None,
        });
        Some(q(0.5))
    }

    /// Marks the last row as compared with the row called `base`: the ratio of
    /// their throughputs (above 1 = the last row is faster).
    fn versus(&mut self, base: &str) {
        let Some(b) = self.rows.iter().find(|r| r.name == base).map(|r| r.ns) else {
            return;
        };
        if let Some(last) = self.rows.last_mut() {
            last.versus = Some((base.to_string(), b / last.ns));
        }
    }

    fn print(&self) {
        println!("| case | median | middle half | throughput | vs |");
        println!("|---|---:|---:|---:|---|");
        for r in &self.rows {
            let gbs = if r.bytes > 0 {
                format!("{:.2} GB/s", r.bytes as f64 / r.ns)
            } else {
                "–".into()
            };
            let vs = r
                .versus
                .as_ref()
                .map_or("".into(), |(b, x)| format!("{x:.2}× of {b}"));
            println!(
                "| {} | {} | {}–{} | {} | {} |",
                r.name,
                time(r.ns),
                time(r.q1),
                time(r.q3),
                gbs,
                vs
            );
        }
    }
}

fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// A client frame (masked, RFC 6455 §5.3) of `payload`, appended to `out`.
fn masked_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    encode_frame(out, true, opcode, Some(KEY), payload);
}

/// 64 KiB of text: ASCII, or a mix of 1- to 4-byte code points.
fn text(mixed: bool) -> Vec<u8> {
    let unit = if mixed {
        "aé€😀 Grüße, 東京! "
    } else {
        "The quick brown fox jumps over the lazy dog. "
    };
    let mut s = String::new();
    while s.len() < 64 * 1024 {
        s.push_str(unit);
    }
    let mut cut = 64 * 1024;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.into_bytes()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: micro [--quick] [--filter header|mask|utf8|sse|decoder]");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let filter = args
        .iter()
        .position(|a| a == "--filter")
        .and_then(|i| args.get(i + 1).cloned());
    let mut b = Bench {
        batch: Duration::from_millis(if quick { 5 } else { 20 }),
        samples: if quick { 5 } else { 15 },
        filter,
        group: "",
        rows: Vec::new(),
    };

    b.group = "header";
    // 1. Frame headers (RFC 6455 §5.2): the three length forms, masked.
    for (name, len) in [
        ("decode_header, 7-bit length (20 B text)", 20usize),
        ("decode_header, 16-bit length (1 KiB)", 1024),
        ("decode_header, 64-bit length (1 MiB)", 1 << 20),
    ] {
        let mut frame = Vec::new();
        masked_frame(&mut frame, OpCode::Text, &vec![b'a'; len]);
        let head = &frame[..14.min(frame.len())];
        b.run(name, 0, || {
            black_box(decode_header(black_box(head), Role::Server, 16 << 20).ok());
        });
    }

    b.group = "mask";
    // 2. Unmasking 64 KiB (§5.3) against a plain copy of the same size.
    let src = vec![0x5au8; 64 * 1024];
    let mut dst = vec![0u8; 64 * 1024];
    b.run("copy_from_slice 64 KiB (memcpy)", src.len(), || {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
    });
    let mut buf = src.clone();
    b.run("apply_mask 64 KiB", buf.len(), || {
        apply_mask(black_box(&mut buf), KEY, 0);
    });
    b.versus("copy_from_slice 64 KiB (memcpy)");
    b.run(
        "apply_mask 64 KiB, unaligned start, offset 3",
        buf.len() - 1,
        || {
            apply_mask(black_box(&mut buf[1..]), KEY, 3);
        },
    );
    b.versus("copy_from_slice 64 KiB (memcpy)");
    b.run(
        "apply_mask_bytewise 64 KiB (the RFC's loop)",
        buf.len(),
        || {
            apply_mask_bytewise(black_box(&mut buf), KEY, 0);
        },
    );
    b.versus("copy_from_slice 64 KiB (memcpy)");

    b.group = "utf8";
    // 3. UTF-8 (§8.1): the incremental validator against std, whole and in pieces.
    for (kind, data) in [("ASCII", text(false)), ("mixed 1-4 byte", text(true))] {
        let std_name = format!("std::str::from_utf8 64 KiB {kind}");
        b.run(&std_name, data.len(), || {
            black_box(std::str::from_utf8(black_box(&data)).is_ok());
        });
        b.run(
            &format!("Utf8Validator::feed 64 KiB {kind}, whole"),
            data.len(),
            || {
                let mut v = Utf8Validator::new();
                black_box(v.feed(black_box(&data)).is_ok() && v.finish().is_ok());
            },
        );
        b.versus(&std_name);
        // 1000-byte pieces, so code points are split between feeds.
        b.run(
            &format!("Utf8Validator::feed 64 KiB {kind}, 1000 B pieces"),
            data.len(),
            || {
                let mut v = Utf8Validator::new();
                let ok = data
                    .chunks(1000)
                    .all(|piece| v.feed(black_box(piece)).is_ok());
                black_box(ok && v.finish().is_ok());
            },
        );
        b.versus(&std_name);
    }

    b.group = "sse";
    // 4. SSE encoding (WHATWG HTML §9.2.6): what one publish costs per transport encoding.
    let data64: String = "0123456789abcdef".repeat(4);
    let mut out = Vec::with_capacity(4096);
    b.run("sse::encode, id + 64 B data", 0, || {
        out.clear();
        let _ = sse::encode(
            &sse::Event::new(black_box(&data64)).id("1732200000000000"),
            &mut out,
        );
        black_box(&out);
    });
    let lines: String = (0..16)
        .map(|i| format!("line {i} {}\n", "x".repeat(56)))
        .collect();
    b.run(
        "sse::encode, id + event + 1 KiB in 16 lines",
        lines.len(),
        || {
            out.clear();
            let _ = sse::encode(
                &sse::Event::new(black_box(&lines))
                    .id("1732200000000000")
                    .event("tick"),
                &mut out,
            );
            black_box(&out);
        },
    );

    b.group = "decoder";
    // 5. The whole decoder: a buffer of small masked text frames, every message taken out.
    let frames = 1000;
    let mut pristine = Vec::new();
    for i in 0..frames {
        masked_frame(
            &mut pristine,
            OpCode::Text,
            format!("message {i:05} abcdef").as_bytes(),
        );
    }
    let limits = MessageLimits {
        max_frame_bytes: 1 << 20,
        max_message_bytes: 1 << 20,
        max_fragments: 1 << 17,
    };
    let mut work = pristine.clone();
    let copy = b.run(
        "refill 1000 frames' buffer (memcpy, part of the next row)",
        pristine.len(),
        || {
            work.copy_from_slice(black_box(&pristine));
            black_box(&mut work);
        },
    );
    let mut decoder = MessageDecoder::new(Role::Server, limits);
    let whole = b.run(
        "MessageDecoder::step, 1000 masked 20 B text frames",
        pristine.len(),
        || {
            work.copy_from_slice(&pristine);
            let mut pos = 0;
            let mut got = 0;
            while pos < work.len() {
                match decoder.step(&mut work[pos..]) {
                    Ok(Step::Message { message, used }) => {
                        black_box(message);
                        got += 1;
                        pos += used;
                    }
                    Ok(Step::Progress { used }) => pos += used,
                    _ => break,
                }
            }
            assert_eq!(got, frames);
        },
    );

    b.print();
    if let (Some(copy), Some(whole)) = (copy, whole) {
        println!();
        println!(
            "MessageDecoder::step per 20 B frame (refill subtracted): {}",
            time((whole - copy) / frames as f64)
        );
    }
}
