//! The URLs a client connects to: `ws://`, `wss://`, `http://`, `https://`.
//!
//! Reading list:
//! - RFC 6455 §3 (WebSocket URIs: default ports 80 and 443, "/" for an empty
//!   path, fragments "MUST NOT be used"), §4.1 items 3-4 (the request target
//!   and the Host field).
//! - RFC 3986 §3.1 (schemes are case-insensitive), §3.2 (authority), §3.2.2
//!   (hosts: IP literals in brackets, reg-names), §3.2.3 (port), §3.3-3.5
//!   (path, query, fragment).
//! - RFC 9110 §7.2 (the Host field: the port is left out when it is the
//!   scheme's default), §4.2.4 (userinfo is deprecated).
//!
//! Deliberately small: no userinfo, no internationalized host names (write
//! them in punycode), no IPv6 zone ids. Bytes of the path and query that are
//! not visible ASCII (spaces, UTF-8) are percent-encoded, as a browser does.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// The four schemes pushloop's clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `ws://`, WebSocket over TCP (RFC 6455 §3), port 80.
    Ws,
    /// `wss://`, WebSocket over TLS (RFC 6455 §3), port 443.
    Wss,
    /// `http://` (RFC 9110 §4.2.1), port 80.
    Http,
    /// `https://` (RFC 9110 §4.2.2), port 443.
    Https,
}

impl Scheme {
    /// The port when the URL names none (RFC 6455 §3, RFC 9110 §4.2).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Ws | Scheme::Http => 80,
            Scheme::Wss | Scheme::Https => 443,
        }
    }

    /// Does the scheme need TLS under the protocol?
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Wss | Scheme::Https)
    }

    /// The scheme's name, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed URL: where to connect and what to ask for.
///
/// ```
/// use pushloop::client::url::{Scheme, Url};
/// let url = Url::parse("ws://[::1]:6788/chat?topics=a,b")?;
/// assert_eq!((url.scheme(), url.host(), url.port()), (Scheme::Ws, "::1", 6788));
/// assert_eq!((url.authority(), url.target()), ("[::1]:6788".into(), "/chat?topics=a,b"));
/// assert_eq!(Url::parse("https://Example.com")?.to_string(), "https://example.com/");
/// # Ok::<(), pushloop::client::url::UrlError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    scheme: Scheme,
    /// The host without brackets, lowercase.
    host: String,
    /// The host is an IPv6 literal, written in brackets in the authority.
    ipv6: bool,
    port: u16,
    /// Path and query, origin-form (RFC 9112 §3.2.1).
    target: String,
}

impl Url {
    /// Parses an absolute `ws`, `wss`, `http` or `https` URL. Leading and
    /// trailing whitespace is ignored.
    ///
    /// ```text
    /// URL       = scheme "://" authority path-abempty [ "?" query ] [ "#" fragment ]
    /// authority = host [ ":" port ]          ; RFC 3986 §3.2, without userinfo
    /// host      = "[" IPv6address "]" / reg-name
    /// ```
    pub fn parse(input: &str) -> Result<Url, UrlError> {
        let input = input.trim();
        let (scheme, rest) = input.split_once("://").ok_or(UrlError::NotAbsolute)?;
        // RFC 3986 §3.1: "schemes are case-insensitive".
        let scheme = [Scheme::Ws, Scheme::Wss, Scheme::Http, Scheme::Https]
            .into_iter()
            .find(|known| known.as_str().eq_ignore_ascii_case(scheme))
            .ok_or(UrlError::UnsupportedScheme)?;
        // RFC 3986 §3.2: the authority ends at the first "/", "?" or "#".
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let (path_and_query, fragment) = match rest.split_once('#') {
            Some((before, fragment)) => (before, Some(fragment)),
            None => (rest, None),
        };
        // RFC 6455 §3: "Fragment identifiers are meaningless in the context of
        // WebSocket URIs and MUST NOT be used on these URIs." An HTTP fragment
        // is the client's own business and is never sent (RFC 9110 §4.2.5).
        if fragment.is_some() && matches!(scheme, Scheme::Ws | Scheme::Wss) {
            return Err(UrlError::Fragment);
        }
        let (host, ipv6, port) = parse_authority(authority, scheme)?;
        Ok(Url {
            scheme,
            host,
            ipv6,
            port,
            target: origin_form(path_and_query),
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host to connect to: a name, an IPv4 address, or an IPv6 address
    /// without its brackets. Lowercase (RFC 3986 §3.2.2: case-insensitive).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port: the URL's, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request target: path and query (`/` when the URL has no path,
    /// RFC 6455 §3), percent-encoded where needed, never a fragment.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// This URL with the query parameter `name` set to `value`: every
    /// `name=…` pair of the query is removed and `name=value` is appended
    /// (RFC 3986 §3.4; pairs joined by `&`, the form-urlencoded convention
    /// of the WHATWG URL Standard §5). Both are percent-encoded but for
    /// unreserved characters (RFC 3986 §2.3). A reconnecting client moves its
    /// cursor this way:
    ///
    /// ```
    /// use pushloop::client::url::Url;
    /// let url = Url::parse("ws://h/chat?after=1&topics=a,b")?;
    /// assert_eq!(url.with_query_param("after", "42").target(), "/chat?topics=a,b&after=42");
    /// assert_eq!(Url::parse("ws://h")?.with_query_param("after", "7").target(), "/?after=7");
    /// # Ok::<(), pushloop::client::url::UrlError>(())
    /// ```
    pub fn with_query_param(&self, name: &str, value: &str) -> Url {
        let name = percent_encode_unreserved(name);
        let (path, query) = self
            .target
            .split_once('?')
            .unwrap_or((self.target.as_str(), ""));
        let mut target = String::with_capacity(self.target.len() + name.len() + value.len() + 2);
        target.push_str(path);
        let mut separator = '?';
        let kept = query.split('&').filter(|pair| {
            let pair_name = pair
                .split_once('=')
                .map_or(*pair, |(pair_name, _)| pair_name);
            !pair.is_empty() && pair_name != name
        });
        for pair in kept {
            target.push(separator);
            target.push_str(pair);
            separator = '&';
        }
        target.push(separator);
        target.push_str(&name);
        target.push('=');
        target.push_str(&percent_encode_unreserved(value));
        Url {
            target,
            ..self.clone()
        }
    }

    /// The `Host` field value: the host (IPv6 in brackets) and the port unless
    /// it is the scheme's default (RFC 9110 §7.2, RFC 6455 §4.1 item 4).
    pub fn authority(&self) -> String {
        let host = if self.ipv6 {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.target
        )
    }
}

impl FromStr for Url {
    type Err = UrlError;

    fn from_str(input: &str) -> Result<Url, UrlError> {
        Url::parse(input)
    }
}

/// `host [ ":" port ]` → (host, is IPv6, port).
fn parse_authority(authority: &str, scheme: Scheme) -> Result<(String, bool, u16), UrlError> {
    // RFC 9110 §4.2.4: userinfo in http(s) URIs is deprecated; leaving it out
    // means no credentials leak into logs or Host fields.
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    // RFC 3986 §3.2.2: IP-literal = "[" IPv6address "]".
    let (host, ipv6, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (literal, after) = bracketed.split_once(']').ok_or(UrlError::BadHost)?;
        literal.parse::<Ipv6Addr>().map_err(|_| UrlError::BadHost)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(UrlError::BadHost)?),
        };
        (literal, true, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, false, Some(port)),
            None => (authority, false, None),
        }
    };
    // reg-name = *( unreserved / pct-encoded / sub-delims ), narrowed to what
    // DNS names and IPv4 addresses use: unreserved characters only.
    let reg_name = |host: &str| {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    if !ipv6 && !reg_name(host) {
        return Err(UrlError::BadHost);
    }
    // RFC 3986 §3.2.3: port = *DIGIT; port 0 cannot be connected to.
    let port = match port {
        None => scheme.default_port(),
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            match digits.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(UrlError::BadPort),
            }
        }
        Some(_) => return Err(UrlError::BadPort),
    };
    Ok((host.to_ascii_lowercase(), ipv6, port))
}

/// The origin-form request target for `path [ "?" query ]`: `/` in front when
/// the path is empty (RFC 6455 §3: "/" if the path component is empty), and
/// every byte that is not visible ASCII percent-encoded (RFC 3986 §2.1), so
/// the target is always one token of the request line.
fn origin_form(path_and_query: &str) -> String {
    let mut target = String::with_capacity(path_and_query.len() + 1);
    if !path_and_query.starts_with('/') {
        target.push('/');
    }
    for &byte in path_and_query.as_bytes() {
        if byte.is_ascii_graphic() {
            target.push(char::from(byte));
        } else {
            target.push_str(&format!("%{byte:02X}"));
        }
    }
    target
}

/// `text` with every byte but the unreserved ones (RFC 3986 §2.3: `ALPHA /
/// DIGIT / "-" / "." / "_" / "~"`) percent-encoded (§2.1).
fn percent_encode_unreserved(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Why a string is not a URL these clients can use. Each variant names the
/// part at fault; nothing was sent anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// No `scheme://`: a relative URL, or not a URL at all.
    NotAbsolute,
    /// A scheme other than `ws`, `wss`, `http` and `https`.
    UnsupportedScheme,
    /// `user:password@` in the authority, which these clients do not send
    /// (RFC 9110 §4.2.4); use an `Authorization` header.
    UserInfo,
    /// An empty host, a name with characters DNS does not use (write
    /// international names in punycode), or a malformed IPv6 literal.
    BadHost,
    /// A port that is empty, not a number, 0, or above 65535.
    BadPort,
    /// A `#fragment` on a `ws`/`wss` URL (RFC 6455 §3: "MUST NOT be used").
    Fragment,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::NotAbsolute => "not an absolute URL (scheme://host/path)",
            UrlError::UnsupportedScheme => "the scheme is not ws, wss, http or https",
            UrlError::UserInfo => "user:password@ in URLs is not supported",
            UrlError::BadHost => "the host is empty or malformed",
            UrlError::BadPort => "the port is not a number from 1 to 65535",
            UrlError::Fragment => "a ws/wss URL may not have a #fragment",
        })
    }
}

impl std::error::Error for UrlError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme_host_kind_and_default() {
        // (input, scheme, host, port, authority, target)
        let cases = [
            (
                "ws://example.com",
                Scheme::Ws,
                "example.com",
                80,
                "example.com",
                "/",
            ),
            (
                "wss://example.com/chat",
                Scheme::Wss,
                "example.com",
                443,
                "example.com",
                "/chat",
            ),
            (
                "http://127.0.0.1:6788/events?topics=a,b",
                Scheme::Http,
                "127.0.0.1",
                6788,
                "127.0.0.1:6788",
                "/events?topics=a,b",
            ),
            (
                "https://example.com:443/x",
                Scheme::Https,
                "example.com",
                443,
                "example.com",
                "/x",
            ),
            (
                "http://example.com:443/x",
                Scheme::Http,
                "example.com",
                443,
                "example.com:443",
                "/x",
            ),
            (
                "HTTP://Example.COM?q=1",
                Scheme::Http,
                "example.com",
                80,
                "example.com",
                "/?q=1",
            ),
            (
                "ws://[::1]:9001/",
                Scheme::Ws,
                "::1",
                9001,
                "[::1]:9001",
                "/",
            ),
            (
                "wss://[2001:DB8::7]",
                Scheme::Wss,
                "2001:db8::7",
                443,
                "[2001:db8::7]",
                "/",
            ),
            ("  ws://a/b  ", Scheme::Ws, "a", 80, "a", "/b"),
            ("http://a/b#top", Scheme::Http, "a", 80, "a", "/b"),
            ("http://a#top", Scheme::Http, "a", 80, "a", "/"),
            (
                "http://a/caf\u{e9} au lait?x=\"1\"",
                Scheme::Http,
                "a",
                80,
                "a",
                "/caf%C3%A9%20au%20lait?x=\"1\"",
            ),
            (
                "ws://my-host_1.local:00080/a?b=c&d",
                Scheme::Ws,
                "my-host_1.local",
                80,
                "my-host_1.local",
                "/a?b=c&d",
            ),
        ];
        for (input, scheme, host, port, authority, target) in cases {
            let url = Url::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(url.scheme(), scheme, "{input}");
            assert_eq!(url.host(), host, "{input}");
            assert_eq!(url.port(), port, "{input}");
            assert_eq!(url.authority(), authority, "{input}");
            assert_eq!(url.target(), target, "{input}");
            // Display gives a URL that parses back to the same thing.
            assert_eq!(url.to_string().parse::<Url>(), Ok(url.clone()), "{input}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_connect_to() {
        let cases = [
            ("", UrlError::NotAbsolute),
            ("/events", UrlError::NotAbsolute),
            ("example.com:80", UrlError::NotAbsolute),
            ("ftp://example.com", UrlError::UnsupportedScheme),
            ("wsx://example.com", UrlError::UnsupportedScheme),
            ("://example.com", UrlError::UnsupportedScheme),
            ("http://user:pw@example.com/", UrlError::UserInfo),
            ("http:///path", UrlError::BadHost),
            ("http://:80/", UrlError::BadHost),
            ("http://exa mple.com/", UrlError::BadHost),
            ("http://b\u{fc}cher.example/", UrlError::BadHost),
            ("ws://[::1/", UrlError::BadHost),
            ("ws://[::g]/", UrlError::BadHost),
            ("ws://[fe80::1%25eth0]/", UrlError::BadHost),
            ("ws://[::1]x/", UrlError::BadHost),
            ("ws://::1/", UrlError::BadHost),
            ("http://a:/", UrlError::BadPort),
            ("http://a:0/", UrlError::BadPort),
            ("http://a:65536/", UrlError::BadPort),
            ("http://a:-1/", UrlError::BadPort),
            ("http://a:8o/", UrlError::BadPort),
            ("ws://a/chat#x", UrlError::Fragment),
            ("wss://a#", UrlError::Fragment),
        ];
        for (input, error) in cases {
            assert_eq!(Url::parse(input), Err(error), "{input}");
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn tls_schemes_are_marked() {
        assert!(Url::parse("wss://a").unwrap().scheme().is_tls());
        assert!(Url::parse("https://a").unwrap().scheme().is_tls());
        assert!(!Url::parse("ws://a").unwrap().scheme().is_tls());
        assert!(!Url::parse("http://a").unwrap().scheme().is_tls());
    }

    #[test]
    fn a_query_param_is_replaced_and_the_other_pairs_kept_in_order() {
        let url = |s: &str| Url::parse(s).unwrap();
        let cases = [
            ("ws://h/chat", "/chat?after=9"),
            ("ws://h/chat?", "/chat?after=9"),
            ("ws://h/chat?topics=a", "/chat?topics=a&after=9"),
            ("ws://h/chat?after=1", "/chat?after=9"),
            ("ws://h/chat?after", "/chat?after=9"),
            (
                "ws://h/chat?after=1&topics=a&after=2",
                "/chat?topics=a&after=9",
            ),
            (
                "ws://h/chat?afterwards=1&&x=",
                "/chat?afterwards=1&x=&after=9",
            ),
        ];
        for (input, target) in cases {
            let moved = url(input).with_query_param("after", "9");
            assert_eq!(moved.target(), target, "{input}");
            assert_eq!(moved.authority(), url(input).authority());
        }
        // Reserved and non-ASCII bytes are escaped, so a value cannot add a pair.
        assert_eq!(
            url("ws://h/").with_query_param("a b", "1&c=2 é").target(),
            "/?a%20b=1%26c%3D2%20%C3%A9"
        );
    }
}
