//! The pushloop demo server (placeholder).
fn main() {}
