//! JSON string literals, for the short-poll, long-poll and `/stats` answers.
//!
//! Reading list:
//! - RFC 8259 §7 (Strings): the grammar, and which characters must be escaped.
//! - ECMAScript 2019, the "JSON superset" change: before it, U+2028 LINE SEPARATOR
//!   and U+2029 PARAGRAPH SEPARATOR were line terminators that a JavaScript string
//!   literal could not hold, so valid JSON was not always valid JavaScript.
//!
//! Only writing strings lives here: a number needs no escaping, and pushloop never
//! parses JSON.

use alloc::vec::Vec;

/// Appends `s` to `out` as a JSON string literal, quotes included.
///
/// RFC 8259 §7: `"` and `\` are escaped, and so is every control character
/// U+0000–U+001F — with the short forms `\b` `\f` `\n` `\r` `\t` where they exist
/// and `\u00XX` (lowercase hex, as `JSON.stringify` writes it) otherwise. U+2028
/// and U+2029 are escaped too, so the literal is also a valid JavaScript string on
/// engines older than ECMAScript 2019 (for example when embedded in a script).
/// Escaping does not make the text safe to paste into HTML: a `</script>` inside
/// `s` still ends a `<script>` element.
///
/// Everything else, including all other non-ASCII text, is copied through as
/// UTF-8. Nothing is allocated besides the growth of `out`; never panics.
///
/// ```
/// let mut out = Vec::new();
/// pushloop_proto::json::write_str(&mut out, "say \"hi\"\n");
/// assert_eq!(out, br#""say \"hi\"\n""#);
/// ```
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    // Copy runs of characters that need no escape in one go; `start` is where the
    // current run began. Every split below is at a char boundary: the escaped
    // characters are either ASCII or whole 3-byte sequences found by `char_indices`.
    let mut start = 0;
    for (at, c) in s.char_indices() {
        let Some(escape) = escape(c) else { continue };
        out.extend_from_slice(s.as_bytes().get(start..at).unwrap_or_default());
        out.extend_from_slice(escape.as_bytes());
        start = at + c.len_utf8();
    }
    out.extend_from_slice(s.as_bytes().get(start..).unwrap_or_default());
    out.push(b'"');
}

/// The escape sequence for `c`, or `None` when `c` is written as itself.
fn escape(c: char) -> Option<&'static str> {
    // RFC 8259 §7: "All Unicode characters may be placed within the quotation
    // marks, except for the characters that MUST be escaped: quotation mark,
    // reverse solidus, and the control characters (U+0000 through U+001F)."
    const CONTROL: [&str; 0x20] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011",
        "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
        "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ];
    match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        '\u{0}'..='\u{1f}' => CONTROL.get(c as usize).copied(),
        // Pre-2019 JavaScript ends a string literal at these two line terminators.
        '\u{2028}' => Some("\\u2028"),
        '\u{2029}' => Some("\\u2029"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).expect("write_str writes UTF-8")
    }

    /// A small RFC 8259 §7 string decoder, so the tests check meaning and not only
    /// bytes: returns the decoded text, or `None` if `literal` is not one valid JSON
    /// string (unescaped control characters included).
    fn decode(literal: &str) -> Option<String> {
        let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' | '\u{0}'..='\u{1f}' => return None,
                '\\' => match chars.next()? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        let unit = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == 4)?;
                        // The encoder never escapes outside the BMP, so no surrogate pairs.
                        out.push(char::from_u32(unit)?);
                    }
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        Some(out)
    }

    #[test]
    fn rfc8259_examples_of_short_escapes() {
        assert_eq!(json("\"\\/"), r#""\"\\/""#);
        assert_eq!(json("\u{8}\u{c}\n\r\t"), r#""\b\f\n\r\t""#);
    }

    #[test]
    fn escapes_every_control_character() {
        for code in 0u32..0x20 {
            let c = char::from_u32(code).expect("control characters are chars");
            let written = json(&c.to_string());
            let expected = match c {
                '\u{8}' => r#""\b""#.to_string(),
                '\t' => r#""\t""#.to_string(),
                '\n' => r#""\n""#.to_string(),
                '\u{c}' => r#""\f""#.to_string(),
                '\r' => r#""\r""#.to_string(),
                _ => format!("\"\\u{code:04x}\""),
            };
            assert_eq!(written, expected, "U+{code:04X}");
            assert_eq!(decode(&written), Some(c.to_string()), "U+{code:04X}");
        }
    }

    #[test]
    fn leaves_delete_and_c1_controls_unescaped() {
        // RFC 8259 §7 only requires U+0000–U+001F; U+007F and U+0080–U+009F pass.
        assert_eq!(json("\u{7f}\u{85}"), "\"\u{7f}\u{85}\"");
    }

    #[test]
    fn escapes_quote_and_backslash() {
        assert_eq!(json(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json("\\\""), r#""\\\"""#);
    }

    #[test]
    fn escapes_line_and_paragraph_separators() {
        assert_eq!(json("a\u{2028}b\u{2029}c"), r#""a\u2028b\u2029c""#);
    }

    #[test]
    fn passes_non_ascii_through() {
        let text = "héllo, 世界 🦀 \u{feff}\u{ffff}";
        assert_eq!(json(text), format!("\"{text}\""));
        assert_eq!(decode(&json(text)).as_deref(), Some(text));
    }

    #[test]
    fn writes_empty_string_as_two_quotes() {
        assert_eq!(json(""), r#""""#);
    }

    #[test]
    fn appends_after_existing_bytes() {
        let mut out = b"[".to_vec();
        write_str(&mut out, "a");
        out.push(b',');
        write_str(&mut out, "\n");
        assert_eq!(out, br#"["a","\n""#);
    }

    #[test]
    fn round_trips_through_decoder() {
        let samples = [
            "",
            "plain",
            "\u{0}\u{1f} \u{7f}",
            "quote \" and \\ backslash",
            "line\r\nbreaks\u{2028}\u{2029}",
            "ünïcödé 🦀",
            "\\u0041 stays text",
        ];
        for sample in samples {
            assert_eq!(decode(&json(sample)).as_deref(), Some(sample), "{sample:?}");
        }
        let every_ascii: String = (0u8..128).map(char::from).collect();
        assert_eq!(decode(&json(&every_ascii)), Some(every_ascii));
    }
}
