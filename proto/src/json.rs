//! JSON string literals, for the short-poll, long-poll and `/stats` answers.
//!
//! Reading list:
//! - RFC 8259 §7 (Strings): the grammar, and which characters must be escaped.
//! - ECMAScript 2019, the "JSON superset" change: before it, U+2028 LINE SEPARATOR
//!   and U+2029 PARAGRAPH SEPARATOR were line terminators that a JavaScript string
//!   literal could not hold, so valid JSON was not always valid JavaScript.
//!
//! Writing strings ([`write_str`]) is what the feeds need to wrap text; the
//! one reading job is [`validate`]: a publisher may hand over a JSON value to
//! be sent as-is, and one broken value would break every poll answer that
//! includes it, so it is checked first (RFC 8259 §2-§7 grammar).

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

/// Containers nested deeper than this are refused: the check keeps a stack
/// of open containers, and the bound keeps it small. 128 is also the default
/// recursion limit of `serde_json`, so what passes here parses there.
pub const MAX_DEPTH: usize = 128;

/// Why a text is not one JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Not one value per RFC 8259 (`at`: the byte offset where it went wrong).
    Syntax {
        /// Byte offset of the first byte that does not fit the grammar.
        at: usize,
    },
    /// Containers nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Checks that `text` is exactly one JSON value, with optional whitespace
/// around it (RFC 8259 §2: `JSON-text = ws value ws`). Strings must be valid
/// UTF-8 (§8.1) with legal escapes (§7); numbers follow §6. Linear time, no
/// allocation besides a stack of at most [`MAX_DEPTH`] bytes; never panics.
///
/// ```
/// use pushloop_proto::json::{validate, JsonError};
/// assert_eq!(validate(br#" {"a": [1, 2.5e3, "x\u00e9", true, null]} "#), Ok(()));
/// assert!(matches!(validate(b"{\"a\":}"), Err(JsonError::Syntax { at: 5 })));
/// ```
pub fn validate(text: &[u8]) -> Result<(), JsonError> {
    let mut checker = Checker { text, at: 0 };
    checker.whitespace();
    checker.value()?;
    checker.whitespace();
    match checker.at == text.len() {
        true => Ok(()),
        false => Err(checker.error()),
    }
}

/// A cursor over the text being checked.
struct Checker<'a> {
    text: &'a [u8],
    at: usize,
}

impl Checker<'_> {
    fn error(&self) -> JsonError {
        JsonError::Syntax { at: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.at += 1;
        }
        matched
    }

    /// §2: `ws = *( %x20 / %x09 / %x0A / %x0D )`.
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// §3: `value = false / null / true / object / array / number / string`,
    /// walked without recursion: `open` holds the containers entered.
    fn value(&mut self) -> Result<(), JsonError> {
        // The containers entered: true for an object, false for an array.
        let mut open: Vec<bool> = Vec::new();
        loop {
            // One value starts here.
            match self.peek() {
                Some(b'{') | Some(b'[') => {
                    let object = self.peek() == Some(b'{');
                    self.at += 1;
                    if open.len() == MAX_DEPTH {
                        return Err(JsonError::TooDeep);
                    }
                    open.push(object);
                    self.whitespace();
                    let close = if object { b'}' } else { b']' };
                    if !self.eat(close) {
                        if object {
                            self.member_name()?;
                        }
                        continue;
                    }
                    open.pop();
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return Err(self.error()),
            }
            // The value is done: close containers, or go on to the next value.
            loop {
                let Some(&object) = open.last() else {
                    return Ok(());
                };
                self.whitespace();
                if self.eat(b',') {
                    self.whitespace();
                    if object {
                        self.member_name()?;
                    }
                    break;
                }
                let close = if object { b'}' } else { b']' };
                if !self.eat(close) {
                    return Err(self.error());
                }
                open.pop();
            }
        }
    }

    /// §4: `member = string name-separator value`, up to the value.
    fn member_name(&mut self) -> Result<(), JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.error());
        }
        self.string()?;
        self.whitespace();
        if !self.eat(b':') {
            return Err(self.error());
        }
        self.whitespace();
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.text.get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// §6: `number = [ minus ] int [ frac ] [ exp ]`, `int = zero / ( digit1-9 *DIGIT )`.
    fn number(&mut self) -> Result<(), JsonError> {
        self.eat(b'-');
        if !self.eat(b'0') {
            if !matches!(self.peek(), Some(b'1'..=b'9')) {
                return Err(self.error());
            }
            self.digits();
        }
        if self.eat(b'.') {
            self.at_least_one_digit()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.at_least_one_digit()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Result<(), JsonError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error());
        }
        self.digits();
        Ok(())
    }

    /// §7: a quoted string: no raw control characters, legal escapes only,
    /// and valid UTF-8 (§8.1).
    fn string(&mut self) -> Result<(), JsonError> {
        self.at += 1;
        let start = self.at;
        loop {
            match self.peek() {
                None | Some(0..=0x1f) => return Err(self.error()),
                Some(b'"') => break,
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u') => {
                            let hex = self.text.get(self.at + 1..self.at + 5);
                            if !hex.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.error());
                            }
                            self.at += 5;
                        }
                        _ => return Err(self.error()),
                    }
                }
                Some(_) => self.at += 1,
            }
        }
        if core::str::from_utf8(&self.text[start..self.at]).is_err() {
            return Err(JsonError::Syntax { at: start });
        }
        self.at += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_8259_examples_are_valid() {
        // RFC 8259 §13, the two examples.
        let image = br#"{
          "Image": {
              "Width":  800,
              "Height": 600,
              "Title":  "View from 15th Floor",
              "Thumbnail": {
                  "Url":    "http://www.example.com/image/481989943",
                  "Height": 125,
                  "Width":  100
              },
              "Animated" : false,
              "IDs": [116, 943, 234, 38793]
            }
        }"#;
        assert_eq!(validate(image), Ok(()));
        let places = br#"[{"precision": "zip", "Latitude": 37.7668, "Longitude": -122.3959,
            "Address": "", "City": "SAN FRANCISCO", "State": "CA", "Zip": "94107",
            "Country": "US"}]"#;
        assert_eq!(validate(places), Ok(()));
        // §2: any value is a JSON text, not only objects and arrays.
        for scalar in [
            &b"\"Hello world!\""[..],
            b"42",
            b"null",
            b"-0.5e-3",
            b"[]",
            b"{}",
        ] {
            assert_eq!(validate(scalar), Ok(()), "{scalar:?}");
        }
    }

    #[test]
    fn broken_values_are_refused() {
        for bad in [
            &b""[..],
            b" ",
            b"{",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{1:2}",
            b"01",
            b"1.",
            b"1e",
            b"+1",
            b"tru",
            b"nul",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"a\nb\"",
            b"\"\xff\"",
            b"1 2",
            b"[1] x",
        ] {
            assert!(validate(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let deep = |n: usize| {
            let mut text = "[".repeat(n);
            text.push_str(&"]".repeat(n));
            text
        };
        assert_eq!(validate(deep(MAX_DEPTH).as_bytes()), Ok(()));
        assert_eq!(
            validate(deep(MAX_DEPTH + 1).as_bytes()),
            Err(JsonError::TooDeep)
        );
        // A million open brackets: refused at the bound, no stack overflow.
        assert_eq!(
            validate("[".repeat(1_000_000).as_bytes()),
            Err(JsonError::TooDeep)
        );
    }

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
