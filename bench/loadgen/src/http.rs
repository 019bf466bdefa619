//! Just enough HTTP/1.1 (RFC 9112) for a load generator: find the end of a
//! response head, read its status and headers, undo chunked coding (§7.1),
//! and pull `data:` lines out of an event stream (WHATWG HTML §9.2.6).

/// Index just past the `\r\n\r\n` that ends a head, if it has arrived.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The status code of a response head.
pub fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let code = line.split(|&b| b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// The value of the first header called `name` (any case), trimmed.
pub fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Chunked transfer coding decoder (RFC 9112 §7.1): `size[;ext] CRLF data CRLF`.
#[derive(Default)]
pub struct Dechunk {
    state: ChunkState,
    size: u64,
}

#[derive(Default, PartialEq)]
enum ChunkState {
    /// Reading hex digits of the chunk size.
    #[default]
    Size,
    /// Past the size: an extension, then LF.
    SizeLine,
    /// Chunk data, `size` bytes left.
    Data,
    /// The CRLF after the data.
    DataEnd,
    /// The zero-size chunk arrived: the body is over.
    Done,
}

impl Dechunk {
    /// Decode `data`, handing every piece of body to `body`.
    /// Returns `Err` on a malformed coding.
    pub fn feed(&mut self, mut data: &[u8], mut body: impl FnMut(&[u8])) -> Result<(), &'static str> {
        while !data.is_empty() {
            match self.state {
                ChunkState::Size => {
                    let b = data[0];
                    data = &data[1..];
                    match (b as char).to_digit(16) {
                        Some(d) => self.size = self.size.checked_mul(16).ok_or("chunk size")? + d as u64,
                        None if b == b'\r' || b == b';' || b == b'\n' => {
                            self.state = ChunkState::SizeLine;
                            if b == b'\n' {
                                self.end_size_line();
                            }
                        }
                        None => return Err("chunk size"),
                    }
                }
                ChunkState::SizeLine => {
                    let b = data[0];
                    data = &data[1..];
                    if b == b'\n' {
                        self.end_size_line();
                    }
                }
                ChunkState::Data => {
                    let take = (self.size.min(data.len() as u64)) as usize;
                    body(&data[..take]);
                    data = &data[take..];
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    let b = data[0];
                    data = &data[1..];
                    if b == b'\n' {
                        self.state = ChunkState::Size;
                    }
                }
                ChunkState::Done => return Ok(()),
            }
        }
        Ok(())
    }

    fn end_size_line(&mut self) {
        self.state = if self.size == 0 { ChunkState::Done } else { ChunkState::Data };
    }
}

/// Splits an event stream into lines and reports each `data:` line's value.
#[derive(Default)]
pub struct SseLines {
    partial: Vec<u8>,
}

impl SseLines {
    /// Feed stream bytes; `on_data` gets the value of every complete `data:` line.
    pub fn feed(&mut self, mut data: &[u8], mut on_data: impl FnMut(&[u8])) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = data.split_at(nl);
            data = &rest[1..];
            if self.partial.is_empty() {
                data_line(line, &mut on_data);
            } else {
                self.partial.extend_from_slice(line);
                data_line(&self.partial, &mut on_data);
                self.partial.clear();
            }
        }
        self.partial.extend_from_slice(data);
    }
}

/// WHATWG HTML §9.2.6: `data:` then one optional space; CR before LF is part
/// of the line ending.
fn data_line(line: &[u8], on_data: &mut impl FnMut(&[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(value) = line.strip_prefix(b"data:") {
        on_data(value.strip_prefix(b" ").unwrap_or(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_head() {
        let r = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nsec-websocket-accept:  abc \r\n\r\nxx";
        let end = head_end(r).unwrap();
        assert_eq!(&r[end..], b"xx");
        assert_eq!(status(&r[..end]), Some(101));
        assert_eq!(header(&r[..end], "Sec-WebSocket-Accept"), Some("abc"));
    }

    #[test]
    fn dechunks_sse_split_at_every_index() {
        let mut wire = Vec::new();
        for (chunk, ext) in [(&b"data: 1 2\n\n"[..], ""), (b": c\ndata: 3 4\r\ndata:5 6\n\n", ";x=y"), (b"", "")] {
            wire.extend(format!("{:x}{ext}\r\n", chunk.len()).bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
        }
        for cut in 0..wire.len() {
            let (mut d, mut l, mut got) = (Dechunk::default(), SseLines::default(), Vec::new());
            for part in [&wire[..cut], &wire[cut..]] {
                d.feed(part, |b| l.feed(b, |v| got.push(v.to_vec()))).unwrap();
            }
            assert_eq!(got, [b"1 2".to_vec(), b"3 4".to_vec(), b"5 6".to_vec()], "cut at {cut}");
        }
    }
}
