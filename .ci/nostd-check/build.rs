//! `#![no_std]` links no C library by itself; the C runtime's start files
//! (which call `main`) and `memcpy` & co. come from libc.
fn main() {
    println!("cargo:rustc-link-lib=c");
}
