//! The baseline: read stdin, copy it, write it; std only.
use std::io::{Read, Write};
fn main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).unwrap();
    let out = std::hint::black_box(input.clone());
    std::io::stdout().write_all(&out).unwrap();
}
