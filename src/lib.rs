//! pushloop (tour written with the layers)
#![deny(missing_docs)]

pub mod limits;
pub mod http;
pub mod ws;
pub mod sse;
pub mod json;
