//! Percent-decoding of request targets: path segments and query strings.
//!
//! Reading list:
//! - RFC 3986 §2.1 (percent-encoding: `%` HEXDIG HEXDIG is one octet), §3.3
//!   (a path is segments separated by `/`), §3.4 (the query).
//! - WHATWG URL §5.1 "application/x-www-form-urlencoded parsing": how
//!   browsers read a query (`URLSearchParams`, HTML forms): split on `&`,
//!   then on the first `=`, `+` means a space, percent-decode, then UTF-8
//!   decode without BOM (invalid bytes become U+FFFD). WHATWG URL §1.3
//!   "percent-decode": a `%` not followed by two hex digits stays as it is.
//!
//! Nothing here fails: like a browser, a malformed escape is kept as text
//! and invalid UTF-8 becomes U+FFFD, so what an application sees is always a
//! string, and the common case (nothing to decode) borrows without copying.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

/// Decodes `%XX` escapes (RFC 3986 §2.1); with `plus_is_space`, `+` is a
/// space too (WHATWG URL §5.1, for queries). A `%` without two hex digits
/// after it is kept (WHATWG URL §1.3); bytes that are not UTF-8 once decoded
/// become U+FFFD. Borrows when there is nothing to decode.
///
/// ```
/// use pushloop_proto::http::uri::percent_decode;
/// assert_eq!(percent_decode("my%20event", false), "my event");
/// assert_eq!(percent_decode("a+b%2Bc", true), "a b+c");
/// assert_eq!(percent_decode("100%", false), "100%");
/// assert_eq!(percent_decode("%C3%A9t%C3%A9", false), "été");
/// ```
pub fn percent_decode(text: &str, plus_is_space: bool) -> Cow<'_, str> {
    let needs = |b: &u8| *b == b'%' || (plus_is_space && *b == b'+');
    if !text.as_bytes().iter().any(needs) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'%' => match (hex(bytes.get(at + 1)), hex(bytes.get(at + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    at += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
        at += 1;
    }
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

/// The value of a hex digit.
fn hex(byte: Option<&u8>) -> Option<u8> {
    match byte? {
        digit @ b'0'..=b'9' => Some(digit - b'0'),
        letter @ b'a'..=b'f' => Some(letter - b'a' + 10),
        letter @ b'A'..=b'F' => Some(letter - b'A' + 10),
        _ => None,
    }
}

/// The `name=value` pairs of a query, decoded as a browser encodes them
/// (WHATWG URL §5.1): split on `&`, empty pairs skipped, a pair without `=`
/// has an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
}

/// The segments of a path (RFC 3986 §3.3), each percent-decoded (a `+` is a
/// `+` in a path): `/rooms/a%20b/` gives `rooms`, `a b`, `` (the empty
/// segment after the last slash).
pub fn path_segments(path: &str) -> impl Iterator<Item = Cow<'_, str>> {
    path.strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|segment| percent_decode(segment, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3986_escapes_decode_to_octets() {
        // RFC 3986 §2.1: "%20" is the space character.
        assert_eq!(percent_decode("a%20b", false), "a b");
        assert_eq!(percent_decode("%31", false), "1");
        assert_eq!(percent_decode("%7e%7E", false), "~~", "either case of hex");
        assert!(matches!(percent_decode("plain", true), Cow::Borrowed(_)));
    }

    #[test]
    fn malformed_escapes_stay_and_bad_utf8_is_replaced() {
        // WHATWG URL §1.3: a "%" not followed by two hex digits is kept.
        assert_eq!(percent_decode("%", false), "%");
        assert_eq!(percent_decode("%4", false), "%4");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
        // WHATWG URL §5.1: UTF-8 decode without BOM, U+FFFD for errors.
        assert_eq!(percent_decode("%FF", false), "\u{FFFD}");
    }

    #[test]
    fn plus_is_a_space_only_in_queries() {
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }

    #[test]
    fn query_pairs_read_like_urlsearchparams() {
        let pairs: Vec<(String, String)> = query_pairs("topics=a%2Cb&after=%31&&flag&q=x+y")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = [
            ("topics", "a,b"),
            ("after", "1"),
            ("flag", ""),
            ("q", "x y"),
        ];
        assert_eq!(pairs.len(), expected.len());
        for ((k, v), (ek, ev)) in pairs.iter().zip(expected) {
            assert_eq!((k.as_str(), v.as_str()), (ek, ev));
        }
    }

    #[test]
    fn path_segments_are_decoded_one_by_one() {
        let segments: Vec<String> = path_segments("/rooms/a%20b%2Fc/")
            .map(Cow::into_owned)
            .collect();
        assert_eq!(
            segments,
            ["rooms", "a b/c", ""],
            "an encoded slash stays inside its segment"
        );
        let root: Vec<String> = path_segments("/").map(Cow::into_owned).collect();
        assert_eq!(root, [""]);
    }
}
