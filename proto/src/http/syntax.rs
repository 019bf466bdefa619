//! The shared grammar of HTTP field values (RFC 9110 §5.6): tokens, optional
//! whitespace and comma-separated lists.
//!
//! A leaf: every other module of the protocol crate that reads a header value
//! (request heads, bodies, the WebSocket handshake, `Last-Event-ID`) reads it
//! with these three functions.

use alloc::vec::Vec;

/// The elements of a comma-separated list (RFC 9110 §5.6.1):
///
/// ```text
/// #element => [ element ] *( OWS "," OWS [ element ] )
/// ```
///
/// Each element is OWS-trimmed; empty elements are skipped, as the RFC asks of
/// recipients ("a recipient MUST accept empty list elements ... and ignore them").
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// Strips optional whitespace from both ends (RFC 9110 §5.6.3:
/// `OWS = *( SP / HTAB )`).
pub fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Is `bytes` a token (RFC 9110 §5.6.2)?
///
/// ```text
/// token = 1*tchar
/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
/// ```
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Appends `n` in decimal (`1*DIGIT`: a status code, a `Content-Length`,
/// an SSE `retry` or event id), without allocating.
pub fn write_decimal(out: &mut Vec<u8>, n: u64) {
    // u64::MAX has 20 digits; fill from the right.
    let mut digits = [0u8; 20];
    let mut rest = n;
    let mut start = digits.len();
    loop {
        start -= 1;
        // `rest % 10` is below 10, so the cast loses nothing.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn decimals_are_written_without_leading_zeros() {
        for n in [0, 7, 10, 200, 65_535, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn ows_is_spaces_and_tabs_at_either_end() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(
            trim_ows(b"\r\na\r\n"),
            b"\r\na\r\n",
            "CR and LF are not OWS"
        );
        assert_eq!(trim_ows(b"  "), b"");
    }

    #[test]
    fn list_elements_skip_empty_and_trim() {
        let elements: Vec<&[u8]> = list_elements(b" a ,, \tb\t,c,").collect();
        assert_eq!(elements, [&b"a"[..], b"b", b"c"]);
        assert_eq!(list_elements(b" , ,").count(), 0);
    }

    #[test]
    fn tokens_follow_rfc_9110_tchar() {
        assert!(is_token(b"Sec-WebSocket-Key"));
        assert!(is_token(b"!#$%&'*+-.^_`|~09azAZ"));
        for bad in [&b""[..], b"a b", b"a:b", b"a\r", b"(a)", b"\xff"] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }
}
