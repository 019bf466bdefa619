//! zlib-rs alone, through its safe `Deflate` / `Inflate`, window 9.
use std::io::{Read, Write};
use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush};
fn main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).unwrap();
    let bits = std::hint::black_box(9u8);
    let mut d = Deflate::new(std::hint::black_box(6), false, bits);
    let mut z = vec![0u8; input.len() * 2 + 64];
    d.compress(&input, &mut z, DeflateFlush::SyncFlush).unwrap();
    let n = d.total_out() as usize;
    let mut i = Inflate::new(false, bits);
    let mut out = vec![0u8; input.len() + 16];
    i.decompress(&z[..n], &mut out, InflateFlush::SyncFlush)
        .unwrap();
    let m = i.total_out() as usize;
    std::io::stdout().write_all(&out[..m]).unwrap();
    std::io::stdout().write_all(&z[..n]).unwrap();
}
