//! One flat JSON object per run, written by hand (no serde for a dozen fields),
//! and read back by `report` with an equally small reader.

pub struct Json {
    s: String,
}

impl Json {
    pub fn new(mode: &str) -> Json {
        let mut j = Json { s: String::from("{") };
        j.str("mode", mode);
        j
    }

    fn key(&mut self, k: &str) -> &mut String {
        if self.s.len() > 1 {
            self.s.push(',');
        }
        self.s.push('"');
        self.s.push_str(k);
        self.s.push_str("\":");
        &mut self.s
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        let s = self.key(k);
        s.push('"');
        for c in v.chars() {
            match c {
                '"' | '\\' => {
                    s.push('\\');
                    s.push(c);
                }
                c if (c as u32) < 0x20 => s.push(' '),
                c => s.push(c),
            }
        }
        s.push('"');
        self
    }

    pub fn int(&mut self, k: &str, v: u64) -> &mut Self {
        let s = self.key(k);
        s.push_str(&v.to_string());
        self
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        let s = self.key(k);
        s.push_str(if v { "true" } else { "false" });
        self
    }

    /// A number, rounded to 4 decimals; `null` if not finite.
    pub fn num(&mut self, k: &str, v: f64) -> &mut Self {
        self.opt(k, Some(v))
    }

    pub fn opt(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        let s = self.key(k);
        match v {
            Some(v) if v.is_finite() => s.push_str(&format!("{}", (v * 1e4).round() / 1e4)),
            _ => s.push_str("null"),
        }
        self
    }

    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.s);
        s.push('}');
        s
    }
}

/// A value of a flat JSON object.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// Parse one flat object `{"k": v, ...}` whose values are strings, numbers,
/// booleans or null — what [`Json`] writes. `None` for anything else.
pub fn parse_flat(line: &str) -> Option<Vec<(String, Value)>> {
    let mut p = line.trim().strip_prefix('{')?.strip_suffix('}')?.trim_start();
    let mut out = Vec::new();
    while !p.is_empty() {
        let (k, rest) = string(p)?;
        p = rest.trim_start().strip_prefix(':')?.trim_start();
        let (v, rest) = if p.starts_with('"') {
            let (s, rest) = string(p)?;
            (Value::Str(s), rest)
        } else {
            let end = p.find(|c: char| c == ',' || c.is_whitespace()).unwrap_or(p.len());
            let v = match &p[..end] {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                n => Value::Num(n.parse().ok()?),
            };
            (v, &p[end..])
        };
        out.push((k, v));
        p = rest.trim_start();
        p = p.strip_prefix(',').unwrap_or(p).trim_start();
    }
    Some(out)
}

fn string(p: &str) -> Option<(String, &str)> {
    let mut s = String::new();
    let mut chars = p.strip_prefix('"')?.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((s, &p[i + 2..])),
            '\\' => s.push(chars.next()?.1),
            c => s.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let line = Json::new("echo").str("label", "a \"b\"").int("n", 3).num("x", 1.23456).opt("y", None).bool("z", true).finish();
        assert_eq!(line, r#"{"mode":"echo","label":"a \"b\"","n":3,"x":1.2346,"y":null,"z":true}"#);
        let kv = parse_flat(&line).unwrap();
        assert_eq!(kv[1], ("label".into(), Value::Str("a \"b\"".into())));
        assert_eq!(kv[3], ("x".into(), Value::Num(1.2346)));
        assert_eq!(kv[4].1, Value::Null);
    }
}
