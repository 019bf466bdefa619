//! micro: pushloop's sans-IO hot paths, timed one at a time.
//!
//! Plain `std::time::Instant` loops: each case runs in batches sized to take
//! about 20 ms, and the cases of a group take turns, one batch each, for 15
//! rounds. The table gives the median batch (with the middle half), and a
//! ratio to a baseline case as the median of the per-round ratios. Inputs and
//! results pass through `black_box`, so the compiler can neither precompute
//! nor drop the work. Everything is bounded: one run takes a few seconds.
//!
//! Usage: `micro [--quick] [--filter GROUP]`, groups `header`, `mask`, `utf8`,
//! `sse`, `decoder`, `deflate`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pushloop::sse;
use pushloop::ws::deflate::{Deflater, Direction, Inflater};
use pushloop::ws::frame::{apply_mask, apply_mask_bytewise};
use pushloop::ws::frame::{decode_header, encode_frame, OpCode, Role};
use pushloop::ws::frame::{MessageDecoder, MessageLimits, Step};
use pushloop::ws::utf8::Utf8Validator;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

struct Bench {
    batch: Duration,
    samples: usize,
    filter: Option<String>,
    rows: Vec<Row>,
}

/// One case of a group: a name, the bytes one operation handles (for a GB/s
/// column; 0 for none), the row it is compared with, and the operation.
struct Case<'a> {
    name: String,
    bytes: usize,
    versus: Option<&'static str>,
    /// Runs the operation n times (the loop is inside, so the operation is
    /// inlined into it: one dynamic call per batch, not per operation).
    run: Box<dyn FnMut(u64) + 'a>,
}

fn case<'a>(name: impl Into<String>, bytes: usize, mut op: impl FnMut() + 'a) -> Case<'a> {
    let run = move |n: u64| {
        for _ in 0..n {
            op();
        }
    };
    Case {
        name: name.into(),
        bytes,
        versus: None,
        run: Box::new(run),
    }
}

impl<'a> Case<'a> {
    /// Compares this case with the case called `base` (same group): the
    /// table gives their throughput ratio, above 1 = this one is faster.
    fn versus(mut self, base: &'static str) -> Self {
        self.versus = Some(base);
        self
    }
}

struct Row {
    name: String,
    /// Median nanoseconds per operation, and the quartiles.
    ns: f64,
    q1: f64,
    q3: f64,
    bytes: usize,
    /// Median over the rounds of base time ÷ this time, with the base's name.
    versus: Option<(String, f64)>,
}

impl Bench {
    /// Times a group of cases. Each case is calibrated to batches of about
    /// `batch`, then the batches are interleaved (one of each case per round,
    /// `samples` rounds), so a slow moment of a shared machine hits every
    /// case of the round alike and a ratio is taken within each round.
    fn group(&mut self, group: &str, mut cases: Vec<Case<'_>>) {
        if self.filter.as_deref().is_some_and(|f| !group.contains(f)) {
            return;
        }
        let counts: Vec<u64> = cases
            .iter_mut()
            .map(|c| calibrate(&mut c.run, self.batch))
            .collect();
        let mut per_op: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        for _ in 0..self.samples {
            for (i, c) in cases.iter_mut().enumerate() {
                let t = Instant::now();
                (c.run)(counts[i]);
                per_op[i].push(t.elapsed().as_nanos() as f64 / counts[i] as f64);
            }
        }
        for (i, c) in cases.iter().enumerate() {
            let versus = c.versus.and_then(|base| {
                let j = cases.iter().position(|b| b.name == base)?;
                let ratios: Vec<f64> = per_op[j]
                    .iter()
                    .zip(&per_op[i])
                    .map(|(b, a)| b / a)
                    .collect();
                Some((base.to_string(), quantiles(ratios).1))
            });
            let (q1, ns, q3) = quantiles(per_op[i].clone());
            self.rows.push(Row {
                name: c.name.clone(),
                ns,
                q1,
                q3,
                bytes: c.bytes,
                versus,
            });
        }
    }

    /// Median ns per operation of a case, once timed.
    fn ns(&self, name: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.name == name).map(|r| r.ns)
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

/// Operations per batch so that one batch takes about `batch` (after a warm-up).
fn calibrate(run: &mut dyn FnMut(u64), batch: Duration) -> u64 {
    let mut n: u64 = 1;
    loop {
        let t = Instant::now();
        run(n);
        let took = t.elapsed();
        if took >= batch / 4 || n >= 1 << 30 {
            return ((n as f64) * batch.as_secs_f64() / took.as_secs_f64().max(1e-9)).max(1.0)
                as u64;
        }
        n *= 2;
    }
}

/// First quartile, median and third quartile.
fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    (q(0.25), q(0.5), q(0.75))
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
        rows: Vec::new(),
    };

    // 1. Frame headers (RFC 6455 §5.2): the three length forms, masked.
    let heads: Vec<(&str, Vec<u8>)> = [
        ("decode_header, 7-bit length (20 B text)", 20usize),
        ("decode_header, 16-bit length (1 KiB)", 1024),
        ("decode_header, 64-bit length (1 MiB)", 1 << 20),
    ]
    .into_iter()
    .map(|(name, len)| {
        let mut frame = Vec::new();
        masked_frame(&mut frame, OpCode::Text, &vec![b'a'; len]);
        frame.truncate(14);
        (name, frame)
    })
    .collect();
    b.group(
        "header",
        heads
            .iter()
            .map(|(name, head)| {
                case(*name, 0, move || {
                    black_box(
                        decode_header(
                            black_box(head),
                            black_box(Role::Server),
                            black_box(16 << 20),
                            black_box(false),
                        )
                        .ok(),
                    );
                })
            })
            .collect(),
    );

    // 2. Unmasking 64 KiB (§5.3) against a plain copy of the same size.
    const MEMCPY: &str = "copy_from_slice 64 KiB (memcpy)";
    let src = vec![0x5au8; 64 * 1024];
    let (mut dst, mut a, mut u, mut r) =
        (vec![0u8; 64 * 1024], src.clone(), src.clone(), src.clone());
    b.group(
        "mask",
        vec![
            case(MEMCPY, src.len(), || {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            }),
            case("apply_mask 64 KiB", src.len(), || {
                apply_mask(black_box(&mut a), KEY, 0)
            })
            .versus(MEMCPY),
            case(
                "apply_mask 64 KiB, unaligned start, offset 3",
                src.len() - 1,
                || apply_mask(black_box(&mut u[1..]), KEY, 3),
            )
            .versus(MEMCPY),
            case(
                "apply_mask_bytewise 64 KiB (the RFC's loop)",
                src.len(),
                || apply_mask_bytewise(black_box(&mut r), KEY, 0),
            )
            .versus(MEMCPY),
        ],
    );

    // 3. UTF-8 (§8.1): the incremental validator against std, whole and in pieces.
    for (kind, data) in [("ASCII", text(false)), ("mixed 1-4 byte", text(true))] {
        let std_name: &'static str =
            Box::leak(format!("std::str::from_utf8 64 KiB {kind}").into_boxed_str());
        let data = &data;
        b.group(
            "utf8",
            vec![
                case(std_name, data.len(), move || {
                    black_box(std::str::from_utf8(black_box(data)).is_ok());
                }),
                case(
                    format!("Utf8Validator::feed 64 KiB {kind}, whole"),
                    data.len(),
                    move || {
                        let mut v = Utf8Validator::new();
                        black_box(v.feed(black_box(data)).is_ok() && v.finish().is_ok());
                    },
                )
                .versus(std_name),
                // 1000-byte pieces, so code points are split between feeds.
                case(
                    format!("Utf8Validator::feed 64 KiB {kind}, 1000 B pieces"),
                    data.len(),
                    move || {
                        let mut v = Utf8Validator::new();
                        let ok = data
                            .chunks(1000)
                            .all(|piece| v.feed(black_box(piece)).is_ok());
                        black_box(ok && v.finish().is_ok());
                    },
                )
                .versus(std_name),
            ],
        );
    }

    // 4. SSE encoding (WHATWG HTML §9.2.6): what one publish costs for event streams.
    let data64: String = "0123456789abcdef".repeat(4);
    let lines: String = (0..16)
        .map(|i| format!("line {i} {}\n", "x".repeat(56)))
        .collect();
    let (mut out1, mut out2) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
    b.group(
        "sse",
        vec![
            case("sse::encode, id + 64 B data", 0, || {
                out1.clear();
                let _ = sse::encode(
                    &sse::Event::new(black_box(&data64)).id("1732200000000000"),
                    &mut out1,
                );
                black_box(&out1);
            }),
            case(
                "sse::encode, id + event + 1 KiB in 16 lines",
                lines.len(),
                || {
                    out2.clear();
                    let event = sse::Event::new(black_box(&lines))
                        .id("1732200000000000")
                        .event("tick");
                    let _ = sse::encode(&event, &mut out2);
                    black_box(&out2);
                },
            ),
        ],
    );

    // 5. The whole decoder: a buffer of small masked text frames, every message taken out.
    const REFILL: &str = "refill 1000 frames' buffer (memcpy, part of the next row)";
    const DECODE: &str = "MessageDecoder::step, 1000 masked 20 B text frames";
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
    let (mut refill, mut work) = (pristine.clone(), pristine.clone());
    let mut decoder = MessageDecoder::new(Role::Server, limits);
    b.group(
        "decoder",
        vec![
            case(REFILL, pristine.len(), || {
                refill.copy_from_slice(black_box(&pristine));
                black_box(&mut refill);
            }),
            case(DECODE, pristine.len(), || {
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
            }),
        ],
    );

    // 6. permessage-deflate (RFC 7692): the codec a session compresses and
    // inflates with. JSON-like messages that differ, as an app's do; the
    // shared mode forgets each message (a full flush, no context takeover).
    let json = |n: usize, size: usize| {
        let mut text = String::from("[");
        while text.len() < size {
            let i = text.len() * 7 + n * 131;
            text.push_str(&format!(
                "{{\"id\":{},\"user\":\"user-{}\",\"room\":\"lobby\",\"text\":\"build {} is green\"}},",
                n * 1000 + text.len(),
                i % 97,
                i % 1013
            ));
        }
        text.truncate(size);
        text.into_bytes()
    };
    let small: Vec<Vec<u8>> = (0..64).map(|n| json(n, 124)).collect();
    let kib: Vec<Vec<u8>> = (0..64).map(|n| json(n, 1024)).collect();
    let large = vec![json(0, 16 * 1024)];
    let direction = |window_bits, context_takeover| Direction {
        window_bits,
        context_takeover,
    };
    // Compresses the messages in turn, each into a cleared buffer.
    let compress = |name: &str, messages: Vec<Vec<u8>>, direction: Direction| {
        let mut deflater = Deflater::new(direction);
        let (mut out, mut k) = (Vec::with_capacity(1 << 16), 0);
        let bytes = messages[0].len();
        case(name, bytes, move || {
            k = (k + 1) % messages.len();
            out.clear();
            deflater.compress_message(black_box(&messages[k]), &mut out);
            black_box(&out);
        })
    };
    let mut compressed_kib = Vec::new();
    Deflater::new(direction(15, false)).compress_message(&kib[0], &mut compressed_kib);
    let mut inflater = Inflater::new(direction(15, false));
    let mut inflated = Vec::with_capacity(1 << 16);
    b.group(
        "deflate",
        vec![
            compress(
                "Deflater, no context: a 124 B JSON event",
                small,
                direction(15, false),
            ),
            compress(
                "Deflater, no context: 1 KiB of JSON",
                kib.clone(),
                direction(15, false),
            ),
            compress(
                "Deflater, context takeover: 1 KiB of JSON",
                kib,
                direction(15, true),
            ),
            compress(
                "Deflater, no context: 16 KiB of JSON",
                large.clone(),
                direction(15, false),
            ),
            compress(
                "Deflater, window 10 (runs only): 16 KiB of JSON",
                large,
                direction(10, false),
            ),
            case("Inflater, no context: 1 KiB of JSON", 1024, move || {
                inflated.clear();
                let _ =
                    inflater.inflate_message(black_box(&compressed_kib), 1 << 20, &mut inflated);
                black_box(&inflated);
            }),
        ],
    );

    b.print();
    if let (Some(copy), Some(whole)) = (b.ns(REFILL), b.ns(DECODE)) {
        println!();
        println!(
            "MessageDecoder::step per 20 B frame (refill subtracted): {}",
            time((whole - copy) / frames as f64)
        );
    }
}
