//! SIP message model (RFC 3261 §7): requests, responses and the ordered header multimap.
//!
//! Header values are kept as received (folding collapsed, surrounding whitespace trimmed)
//! and header names keep their spelling, so a parsed message serialises back to the same
//! header order and names. Typed views of the headers live in [`super::headers`].

use std::fmt;

/// A SIP method (RFC 3261 §7.1, §27.4). Methods are case-sensitive: `invite` is an
/// extension method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    /// RFC 3428.
    Message,
    /// RFC 6665.
    Subscribe,
    /// RFC 6665.
    Notify,
    /// RFC 3903.
    Publish,
    /// RFC 6086.
    Info,
    /// RFC 3311.
    Update,
    /// RFC 3515.
    Refer,
    /// RFC 3262.
    Prack,
    /// Any other `token` (RFC 3261 §27.4: extension methods are legal).
    Other(String),
}

/// The methods we name, written once (RFC 3261 §27.4 registry subset).
const METHODS: [(&str, Method); 14] = [
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("OPTIONS", Method::Options),
    ("REGISTER", Method::Register),
    ("MESSAGE", Method::Message),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
    ("PUBLISH", Method::Publish),
    ("INFO", Method::Info),
    ("UPDATE", Method::Update),
    ("REFER", Method::Refer),
    ("PRACK", Method::Prack),
];

impl Method {
    /// Parses a method `token` (RFC 3261 §25.1). `None` if it is not a token.
    pub fn parse(s: &str) -> Option<Method> {
        if !is_token(s) {
            return None;
        }
        Some(
            METHODS
                .iter()
                .find(|(name, _)| *name == s)
                .map(|(_, m)| m.clone())
                .unwrap_or_else(|| Method::Other(s.to_owned())),
        )
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(s) => s,
            known => METHODS
                .iter()
                .find(|(_, m)| m == known)
                .map(|(name, _)| *name)
                .unwrap_or(""),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT` (RFC 3261 §7.1, §25.1). Only 2.0 is
/// current; other versions parse so that the receiver can answer 505 (§8.2.6 / §21.5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub const SIP_2_0: Version = Version { major: 2, minor: 0 };

    /// Parses `SIP/x.y`; the literal "SIP" is case-insensitive (RFC 3261 §7.1).
    pub fn parse(s: &str) -> Option<Version> {
        let (name, num) = s.split_once('/')?;
        if !name.eq_ignore_ascii_case("SIP") {
            return None;
        }
        let (major, minor) = num.split_once('.')?;
        Some(Version {
            major: parse_digits(major)?,
            minor: parse_digits(minor)?,
        })
    }
}

impl Default for Version {
    fn default() -> Self {
        Version::SIP_2_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/{}.{}", self.major, self.minor)
    }
}

fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A URI as it appears in a Request-URI or inside `<...>` (RFC 3261 §19.1, RFC 3986 §3.1).
/// Only the outer syntax is checked (a scheme, no whitespace, no angle brackets): address
/// mapping is the translator's business. Accessors pick apart `sip:`/`sips:` URIs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uri(String);

impl Uri {
    /// `scheme ":" ...` with `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
    pub fn parse(s: &str) -> Option<Uri> {
        let (scheme, rest) = s.split_once(':')?;
        let mut chars = scheme.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        let body_ok = !rest.is_empty()
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'));
        (first_ok && rest_ok && body_ok).then(|| Uri(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scheme, lower-cased as schemes compare case-insensitively (RFC 3261 §19.1.4).
    pub fn scheme(&self) -> String {
        self.0
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// True for `sip:` and `sips:` URIs, whose structure the accessors below understand.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme().as_str(), "sip" | "sips")
    }

    /// `userinfo host [":" port]` without parameters and headers (RFC 3261 §19.1.1).
    fn hostport_part(&self) -> Option<(Option<&str>, &str)> {
        if !self.is_sip() {
            return None;
        }
        let (_, rest) = self.0.split_once(':')?;
        let end = rest.find([';', '?']).unwrap_or(rest.len());
        let core = rest.get(..end)?;
        Some(match core.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, core),
        })
    }

    /// The user part (still percent-encoded), without a password.
    pub fn user(&self) -> Option<&str> {
        let (userinfo, _) = self.hostport_part()?;
        userinfo.map(|u| u.split_once(':').map_or(u, |(user, _)| user))
    }

    /// The host: a domain name, IPv4 address or bracketed IPv6 reference.
    pub fn host(&self) -> Option<&str> {
        let (_, hostport) = self.hostport_part()?;
        Some(split_host_port(hostport).0)
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        let (_, hostport) = self.hostport_part()?;
        split_host_port(hostport).1
    }

    /// A URI parameter (`;name=value`, names case-insensitive); `Some("")` for a flag.
    pub fn param(&self, name: &str) -> Option<&str> {
        if !self.is_sip() {
            return None;
        }
        let (_, rest) = self.0.split_once(':')?;
        let rest = rest.split('?').next()?;
        rest.split(';').skip(1).find_map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }
}

/// Splits `host[:port]`, keeping IPv6 brackets on the host. A port that is not a number
/// is left on the host so that the caller sees the odd value.
pub(crate) fn split_host_port(s: &str) -> (&str, Option<u16>) {
    let colon = if s.starts_with('[') {
        s.find(']')
            .and_then(|i| s.get(i + 1..))
            .and_then(|after| after.strip_prefix(':').map(|_| s.len() - after.len()))
    } else {
        s.rfind(':')
    };
    match colon {
        Some(i) => match s.get(i + 1..).and_then(parse_digits::<u16>) {
            Some(port) => (s.get(..i).unwrap_or(s), Some(port)),
            None => (s, None),
        },
        None => (s, None),
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One header field as received: name spelling kept, value unfolded and trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Compact header forms (RFC 3261 §7.3.3, §20; IANA "Header Fields" registry).
const COMPACT_FORMS: [(&str, &str); 19] = [
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("d", "Request-Disposition"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("j", "Reject-Contact"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
];

/// Headers whose grammar is a comma-separated list, so several values may share one
/// header line and several lines may be combined (RFC 3261 §7.3.1). Authorization-style
/// headers are deliberately absent: their values contain commas that are not separators.
const LIST_HEADERS: [&str; 21] = [
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Call-Info",
    "Contact",
    "Content-Encoding",
    "Content-Language",
    "Error-Info",
    "In-Reply-To",
    "Proxy-Require",
    "Record-Route",
    "Require",
    "Route",
    "Supported",
    "Unsupported",
    "Via",
    "Warning",
    "Path",
];

/// The long form of a header name: compact forms expanded, anything else unchanged.
pub fn canonical_name(name: &str) -> &str {
    COMPACT_FORMS
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
        .map_or(name, |(_, long)| long)
}

/// Header names compare case-insensitively, a compact form equal to its long form
/// (RFC 3261 §7.3.1, §7.3.3).
pub fn names_equal(a: &str, b: &str) -> bool {
    canonical_name(a).eq_ignore_ascii_case(canonical_name(b))
}

/// Whether the header's values are a comma-separated list (RFC 3261 §7.3.1).
pub fn is_list_header(name: &str) -> bool {
    let name = canonical_name(name);
    LIST_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Ordered header multimap with case-insensitive names and compact forms (RFC 3261 §7.3).
/// Order matters: Via and Route values are processed top-down (§7.3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Appends a header line.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Inserts a header line before every other one (a proxy's or UAC's new top Via).
    pub fn push_front(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(
            0,
            Header {
                name: name.into(),
                value: value.into(),
            },
        );
    }

    /// Inserts a header line at `index` (clamped to the end).
    pub fn insert(&mut self, index: usize, name: impl Into<String>, value: impl Into<String>) {
        let index = index.min(self.0.len());
        self.0.insert(
            index,
            Header {
                name: name.into(),
                value: value.into(),
            },
        );
    }

    /// Replaces the first line of `name` in place and removes the others, or appends.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter().position(|h| names_equal(&h.name, &name)) {
            Some(i) => {
                if let Some(h) = self.0.get_mut(i) {
                    h.value = value;
                }
                let mut index = 0;
                self.0.retain(|h| {
                    let keep = index <= i || !names_equal(&h.name, &name);
                    index += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    /// The first line of `name`, for editing in place.
    pub fn first_mut(&mut self, name: &str) -> Option<&mut Header> {
        self.0.iter_mut().find(|h| names_equal(&h.name, name))
    }

    /// Removes every line of `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.0.len();
        self.0.retain(|h| !names_equal(&h.name, name));
        before - self.0.len()
    }

    /// The first line's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| names_equal(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Every line's value in order (a line may still hold several comma-separated values).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| names_equal(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Every value in order: for list headers (§7.3.1) each line is split at commas outside
    /// quoted strings and angle brackets; other headers yield one value per line.
    pub fn values(&self, name: &str) -> Vec<&str> {
        let list = is_list_header(name);
        let mut out = Vec::new();
        for h in self.0.iter().filter(|h| names_equal(&h.name, name)) {
            if list {
                out.extend(split_list(&h.value).into_iter().filter(|v| !v.is_empty()));
            } else {
                out.push(h.value.as_str());
            }
        }
        out
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Splits a list value at commas that are outside `"..."` (with `\` escapes) and `<...>`.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quote, mut escaped, mut in_angle) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if in_quote {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                out.push(value.get(start..i).unwrap_or("").trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value.get(start..).unwrap_or("").trim());
    out
}

/// A SIP request (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A SIP response (RFC 3261 §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: Version,
    /// 100..=699 (RFC 3261 §7.2, §21).
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// Either kind of message, as a transport delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Request {
    pub fn new(method: Method, uri: Uri) -> Self {
        Request {
            method,
            uri,
            version: Version::SIP_2_0,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Serialises the request; Content-Length is recomputed from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} {}", self.method, self.uri, self.version);
        serialise(&start, &self.headers, &self.body)
    }
}

impl Response {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Response {
            version: Version::SIP_2_0,
            status,
            reason: reason.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// 1xx (RFC 3261 §7.2).
    pub fn is_provisional(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// Serialises the response; Content-Length is recomputed from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} {}", self.version, self.status, self.reason);
        serialise(&start, &self.headers, &self.body)
    }
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}

/// Writes start line, headers and body. The first Content-Length line (either form) is
/// rewritten in place with the real body length and later ones dropped; without one,
/// `Content-Length` is appended, as stream transports require it (RFC 3261 §18.3, §20.14).
fn serialise(start: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(start.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut wrote_length = false;
    for h in headers {
        if names_equal(&h.name, "Content-Length") {
            if !wrote_length {
                out.extend_from_slice(format!("{}: {}\r\n", h.name, body.len()).as_bytes());
                wrote_length = true;
            }
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !wrote_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `token` (RFC 3261 §25.1).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("INVITE", Method::Invite)]
    #[case("PRACK", Method::Prack)]
    #[case("invite", Method::Other("invite".into()))]
    #[case("FOO-BAR", Method::Other("FOO-BAR".into()))]
    fn method_parse(#[case] s: &str, #[case] m: Method) {
        assert_eq!(Method::parse(s), Some(m.clone()));
        assert_eq!(m.as_str(), s);
    }

    #[rstest]
    #[case("")]
    #[case("IN VITE")]
    #[case("INV:ITE")]
    fn method_rejects_non_tokens(#[case] s: &str) {
        assert_eq!(Method::parse(s), None);
    }

    #[test]
    fn every_named_method_round_trips() {
        for (name, m) in METHODS {
            assert_eq!(Method::parse(name), Some(m.clone()));
            assert_eq!(m.as_str(), name);
        }
    }

    #[rstest]
    #[case("SIP/2.0", Some(Version::SIP_2_0))]
    #[case("sip/2.0", Some(Version::SIP_2_0))]
    #[case("SIP/3.1", Some(Version { major: 3, minor: 1 }))]
    #[case("SIP/2", None)]
    #[case("HTTP/1.1", None)]
    #[case("SIP/2.x", None)]
    fn version_parse(#[case] s: &str, #[case] v: Option<Version>) {
        assert_eq!(Version::parse(s), v);
    }

    #[rstest]
    #[case("sip:alice@example.com", Some("alice"), Some("example.com"), None)]
    #[case(
        "sip:alice:pw@example.com:5070;transport=tcp",
        Some("alice"),
        Some("example.com"),
        Some(5070)
    )]
    #[case("sips:[2001:db8::1]:5061", None, Some("[2001:db8::1]"), Some(5061))]
    #[case("sip:[2001:db8::1]", None, Some("[2001:db8::1]"), None)]
    #[case(
        "sip:alice*xmpp-a.test@sip.test",
        Some("alice*xmpp-a.test"),
        Some("sip.test"),
        None
    )]
    #[case("tel:+1-201-555-0123", None, None, None)]
    fn uri_parts(
        #[case] s: &str,
        #[case] user: Option<&str>,
        #[case] host: Option<&str>,
        #[case] port: Option<u16>,
    ) {
        let uri = Uri::parse(s).expect("valid uri");
        assert_eq!(uri.user(), user);
        assert_eq!(uri.host(), host);
        assert_eq!(uri.port(), port);
    }

    #[test]
    fn uri_params() {
        let uri = Uri::parse("sip:foo@sip.test;gr=bar;LR?subject=x").expect("valid");
        assert_eq!(uri.param("gr"), Some("bar"));
        assert_eq!(uri.param("lr"), Some(""));
        assert_eq!(uri.param("subject"), None);
    }

    #[rstest]
    #[case("")]
    #[case("alice@example.com")]
    #[case("sip:")]
    #[case("1sip:x")]
    #[case("sip:a b")]
    #[case("sip:<a>")]
    fn uri_rejects(#[case] s: &str) {
        assert_eq!(Uri::parse(s), None);
    }

    #[test]
    fn compact_and_case_insensitive_lookup() {
        let mut h = Headers::new();
        h.push("v", "SIP/2.0/UDP a;branch=z9hG4bK1");
        h.push(
            "VIA",
            "SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c;branch=z9hG4bK3",
        );
        h.push("i", "abc");
        assert_eq!(h.get("Via"), Some("SIP/2.0/UDP a;branch=z9hG4bK1"));
        assert_eq!(h.get("call-id"), Some("abc"));
        assert_eq!(h.get("I"), Some("abc"));
        assert_eq!(h.values("via").len(), 3);
        assert_eq!(h.get_all("v").count(), 2);
    }

    #[rstest]
    #[case("v", "Via")]
    #[case("f", "From")]
    #[case("t", "To")]
    #[case("i", "Call-ID")]
    #[case("m", "Contact")]
    #[case("l", "Content-Length")]
    #[case("c", "Content-Type")]
    #[case("e", "Content-Encoding")]
    #[case("k", "Supported")]
    #[case("o", "Event")]
    #[case("u", "Allow-Events")]
    #[case("s", "Subject")]
    fn compact_forms(#[case] short: &str, #[case] long: &str) {
        assert_eq!(canonical_name(short), long);
        assert_eq!(canonical_name(&short.to_ascii_uppercase()), long);
        assert!(names_equal(short, &long.to_ascii_lowercase()));
        let mut h = Headers::new();
        h.push(short, "x");
        assert_eq!(h.get(long), Some("x"));
    }

    #[test]
    fn non_list_headers_are_not_split() {
        let mut h = Headers::new();
        h.push("Authorization", "Digest username=\"a\", realm=\"b\"");
        h.push("Subject", "hello, world");
        assert_eq!(h.values("Authorization").len(), 1);
        assert_eq!(h.values("s"), vec!["hello, world"]);
    }

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        assert_eq!(
            split_list(r#""Doe, \"J\"" <sip:a@b;x=1,2>, <sip:c@d>"#),
            vec![r#""Doe, \"J\"" <sip:a@b;x=1,2>"#, "<sip:c@d>"]
        );
    }

    #[test]
    fn set_replaces_first_and_removes_rest() {
        let mut h = Headers::new();
        h.push("Expires", "1");
        h.push("X", "y");
        h.push("expires", "2");
        h.set("EXPIRES", "3");
        assert_eq!(h.get_all("Expires").collect::<Vec<_>>(), vec!["3"]);
        assert_eq!(h.iter().next().map(|h| h.name.as_str()), Some("Expires"));
        assert_eq!(h.remove("x"), 1);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn serialise_recomputes_content_length() {
        let mut r = Request::new(Method::Message, Uri::parse("sip:a@b").expect("uri"));
        r.headers.push("l", "999");
        r.headers.push("Content-Length", "7");
        r.body = b"hi".to_vec();
        let bytes = r.to_bytes();
        assert_eq!(bytes, b"MESSAGE sip:a@b SIP/2.0\r\nl: 2\r\n\r\nhi".to_vec());
        let r = Response::new(200, "OK");
        assert_eq!(
            r.to_bytes(),
            b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()
        );
    }
}
