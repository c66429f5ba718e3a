//! Typed views of the headers an IM/presence peer needs (RFC 3261 §20, RFC 6665 §8.2).
//!
//! Each type parses from a header value and prints back in canonical form; the accessors on
//! [`Headers`] find the header (either name form) and report a missing or malformed one
//! with [`HeaderError`], naming the header so that a receiver can answer 400 with it.

use std::fmt;

use super::message::{Headers, Method, Uri, is_token, split_host_port};

/// A header that is absent or does not match its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("malformed {name} header {value:?}: {rule}")]
    Invalid {
        name: &'static str,
        value: String,
        /// The rule that broke, in words.
        rule: &'static str,
    },
}

fn invalid(name: &'static str, value: &str, rule: &'static str) -> HeaderError {
    HeaderError::Invalid {
        name,
        value: value.to_owned(),
        rule,
    }
}

/// Generic parameters `*( SEMI generic-param )` (RFC 3261 §25.1), in order. Names compare
/// case-insensitively; a value keeps its quotes so that it prints back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Parses `;a=b;c` (the leading semicolon optional). `None` on an empty or non-token name.
    pub fn parse(s: &str) -> Option<Params> {
        let s = s.trim();
        let s = s.strip_prefix(';').unwrap_or(s);
        if s.trim().is_empty() {
            return Some(Params::default());
        }
        let mut out = Vec::new();
        for part in split_outside_quotes(s, ';') {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (part.trim(), None),
            };
            if !is_token(name) || value.is_some_and(str::is_empty) {
                return None;
            }
            out.push((name.to_owned(), value.map(str::to_owned)));
        }
        Some(Params(out))
    }

    /// `Some(None)` for a flag parameter, `Some(Some(v))` for a value (quotes removed).
    pub fn get(&self, name: &str) -> Option<Option<String>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().map(unquote))
    }

    /// The value of `name`, `None` if absent or a flag.
    pub fn value(&self, name: &str) -> Option<String> {
        self.get(name).flatten()
    }

    /// Sets or adds a parameter.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.0 {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

/// Removes the quotes and `\` escapes of a `quoted-string`; other text is returned as is.
fn unquote(s: &str) -> String {
    let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return s.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits at `sep` outside quoted strings.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quote, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        if in_quote {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quote = false,
                _ => {}
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == sep {
            out.push(s.get(start..i).unwrap_or(""));
            start = i + 1;
        }
    }
    out.push(s.get(start..).unwrap_or(""));
    out
}

/// `name-addr / addr-spec` with header parameters (From, To, Contact, Route, Record-Route;
/// RFC 3261 §20.10, §20.20, §20.39, §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted.
    pub display_name: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display_name: None,
            uri,
            params: Params::default(),
        }
    }

    /// Parses one value. Without `<>`, everything after the first `;` is a header
    /// parameter, not a URI parameter (RFC 3261 §20: "if the URI is not enclosed in angle
    /// brackets, any semicolon-delimited parameters are header-parameters").
    pub fn parse(name: &'static str, value: &str) -> Result<NameAddr, HeaderError> {
        let s = value.trim();
        let (display_name, rest) = if let Some(after) = s.strip_prefix('"') {
            let end = closing_quote(after)
                .ok_or_else(|| invalid(name, value, "unterminated quoted display name"))?;
            let display = unquote(s.get(..end + 2).unwrap_or(""));
            let rest = after.get(end + 1..).unwrap_or("").trim_start();
            if !rest.starts_with('<') {
                return Err(invalid(name, value, "quoted display name without <URI>"));
            }
            (Some(display), rest)
        } else if let Some(lt) = s.find('<') {
            let display = s.get(..lt).unwrap_or("").trim();
            if !display.split_whitespace().all(is_token) {
                return Err(invalid(
                    name,
                    value,
                    "display name is neither tokens nor quoted",
                ));
            }
            (
                (!display.is_empty()).then(|| display.to_owned()),
                s.get(lt..).unwrap_or(""),
            )
        } else {
            (None, s)
        };
        let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
            let gt = inner
                .find('>')
                .ok_or_else(|| invalid(name, value, "'<' without '>'"))?;
            (
                inner.get(..gt).unwrap_or(""),
                inner.get(gt + 1..).unwrap_or(""),
            )
        } else {
            match rest.find(';') {
                Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
                None => (rest, ""),
            }
        };
        let uri = Uri::parse(uri.trim()).ok_or_else(|| invalid(name, value, "not a URI"))?;
        let params_text = params.trim();
        if !params_text.is_empty() && !params_text.starts_with(';') {
            return Err(invalid(
                name,
                value,
                "text after the address is not a parameter",
            ));
        }
        let params =
            Params::parse(params_text).ok_or_else(|| invalid(name, value, "bad parameter"))?;
        Ok(NameAddr {
            display_name,
            uri,
            params,
        })
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<String> {
        self.params.value("tag")
    }

    pub fn with_tag(mut self, tag: &str) -> Self {
        self.params.set("tag", Some(tag));
        self
    }
}

/// Index of the closing quote in the text after an opening quote.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Some(i),
            _ => {}
        }
    }
    None
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display_name {
            write!(f, "{} ", quote(d))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// One Via value (RFC 3261 §20.42, §18.2.1; RFC 3581 for `rport`):
/// `SIP / 2.0 / transport SP sent-by *( SEMI via-params )`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper-cased transport: UDP, TCP, TLS, SCTP, WS, ...
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

/// The branch prefix of RFC 3261-compliant transactions (§8.1.1.7, §17.2.3).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    pub fn parse(value: &str) -> Result<Via, HeaderError> {
        let bad = |rule| invalid("Via", value, rule);
        let (proto, rest) = split_sent_protocol(value)
            .ok_or_else(|| bad("sent-protocol is not SIP/2.0/transport"))?;
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
            None => (rest, ""),
        };
        let sent_by = sent_by.trim();
        if sent_by.is_empty() || sent_by.contains(char::is_whitespace) {
            return Err(bad("sent-by is not host[:port]"));
        }
        let (host, port) = split_host_port(sent_by);
        if host.is_empty() || (port.is_none() && host.contains(':') && !host.starts_with('[')) {
            return Err(bad("sent-by is not host[:port]"));
        }
        let params = Params::parse(params).ok_or_else(|| bad("bad via-param"))?;
        Ok(Via {
            transport: proto,
            host: host.to_owned(),
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<String> {
        self.params.value("branch")
    }

    pub fn received(&self) -> Option<String> {
        self.params.value("received")
    }

    /// RFC 3581: `Some(None)` for the bare `rport` a client sends, `Some(Some(port))` for
    /// the value a server fills in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `sent-by` as printed: host and optional port.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// `"SIP" LWS? "/" LWS? "2.0" LWS? "/" LWS? transport LWS rest` → (TRANSPORT, rest).
fn split_sent_protocol(value: &str) -> Option<(String, &str)> {
    let mut rest = value.trim_start();
    let mut parts = Vec::new();
    for i in 0..3 {
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(rest.len());
        parts.push(rest.get(..end)?);
        rest = rest.get(end..)?.trim_start();
        if i < 2 {
            rest = rest.strip_prefix('/')?.trim_start();
        }
    }
    let [name, version, transport] = parts.as_slice() else {
        return None;
    };
    (name.eq_ignore_ascii_case("SIP") && *version == "2.0" && is_token(transport))
        .then(|| (transport.to_ascii_uppercase(), rest))
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SIP/2.0/{} {}{}",
            self.transport,
            self.sent_by(),
            self.params
        )
    }
}

/// `CSeq: 1*DIGIT LWS Method` (RFC 3261 §20.16; the number is below 2**31, §8.1.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(value: &str) -> Result<CSeq, HeaderError> {
        let bad = |rule| invalid("CSeq", value, rule);
        let mut parts = value.split_whitespace();
        let (Some(n), Some(m), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not 'number method'"));
        };
        let seq = n
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| n.parse::<u32>().ok())
            .flatten()
            .filter(|s| *s < 1 << 31)
            .ok_or_else(|| bad("sequence number is not 32-bit below 2**31"))?;
        let method = Method::parse(m).ok_or_else(|| bad("method is not a token"))?;
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// `Event: event-type *( SEMI event-param )` (RFC 6665 §8.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The package, e.g. `presence`; compared case-insensitively (RFC 6665 §8.2.1).
    pub package: String,
    pub params: Params,
}

impl Event {
    pub fn parse(value: &str) -> Result<Event, HeaderError> {
        let (package, params) = value.split_once(';').unwrap_or((value, ""));
        let package = package.trim();
        if !is_token(package) {
            return Err(invalid("Event", value, "event-type is not a token"));
        }
        let params =
            Params::parse(params).ok_or_else(|| invalid("Event", value, "bad event-param"))?;
        Ok(Event {
            package: package.to_owned(),
            params,
        })
    }

    /// The `id` parameter that tells subscriptions in one dialog apart (RFC 6665 §8.2.1).
    pub fn id(&self) -> Option<String> {
        self.params.value("id")
    }

    /// Package and id equal (RFC 6665 §8.2.1: the package compares case-insensitively, the
    /// id case-sensitively).
    pub fn matches(&self, other: &Event) -> bool {
        self.package.eq_ignore_ascii_case(&other.package) && self.id() == other.id()
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.package, self.params)
    }
}

/// `substate-value` (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    Active,
    Pending,
    Terminated,
    /// An extension value, lower-cased, kept apart so that the caller decides.
    Other(String),
}

impl SubState {
    fn parse(s: &str) -> Option<SubState> {
        if !is_token(s) {
            return None;
        }
        Some(match s.to_ascii_lowercase().as_str() {
            "active" => SubState::Active,
            "pending" => SubState::Pending,
            "terminated" => SubState::Terminated,
            other => SubState::Other(other.to_owned()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            SubState::Active => "active",
            SubState::Pending => "pending",
            SubState::Terminated => "terminated",
            SubState::Other(s) => s,
        }
    }
}

/// `Subscription-State: substate-value *( SEMI subexp-params )` (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub state: SubState,
    /// `reason`, e.g. `timeout`, `rejected`, `noresource` (RFC 6665 §4.1.3).
    pub reason: Option<String>,
    /// Seconds the subscription has left.
    pub expires: Option<u32>,
    pub retry_after: Option<u32>,
    /// Extension parameters (`subexp-extension`), the three above excluded.
    pub params: Params,
}

impl SubscriptionState {
    pub fn new(state: SubState) -> Self {
        SubscriptionState {
            state,
            reason: None,
            expires: None,
            retry_after: None,
            params: Params::default(),
        }
    }

    pub fn parse(value: &str) -> Result<SubscriptionState, HeaderError> {
        let bad = |rule| invalid("Subscription-State", value, rule);
        let (state, params) = value.split_once(';').unwrap_or((value, ""));
        let state =
            SubState::parse(state.trim()).ok_or_else(|| bad("substate-value is not a token"))?;
        let params = Params::parse(params).ok_or_else(|| bad("bad subexp-params"))?;
        let number = |name| -> Result<Option<u32>, HeaderError> {
            match params.get(name) {
                None => Ok(None),
                Some(v) => v
                    .and_then(|v| v.parse().ok())
                    .map(Some)
                    .ok_or_else(|| bad("expires/retry-after is not delta-seconds")),
            }
        };
        let reason = params.value("reason").map(|r| r.to_ascii_lowercase());
        let expires = number("expires")?;
        let retry_after = number("retry-after")?;
        let mut params = params;
        params.0.retain(|(n, _)| !is_known_subexp(n));
        Ok(SubscriptionState {
            state,
            reason,
            expires,
            retry_after,
            params,
        })
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.state.as_str())?;
        if let Some(r) = &self.reason {
            write!(f, ";reason={r}")?;
        }
        if let Some(e) = self.expires {
            write!(f, ";expires={e}")?;
        }
        if let Some(r) = self.retry_after {
            write!(f, ";retry-after={r}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// The parameters [`SubscriptionState`] has fields for.
fn is_known_subexp(name: &str) -> bool {
    ["reason", "expires", "retry-after"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(name))
}

/// `Content-Type: m-type SLASH m-subtype *(SEMI m-parameter)` (RFC 3261 §20.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// Lower-cased type, e.g. `application`.
    pub mtype: String,
    /// Lower-cased subtype, e.g. `pidf+xml`.
    pub subtype: String,
    pub params: Params,
}

impl ContentType {
    pub fn parse(value: &str) -> Result<ContentType, HeaderError> {
        let bad = |rule| invalid("Content-Type", value, rule);
        let (media, params) = value.split_once(';').unwrap_or((value, ""));
        let (t, s) = media
            .split_once('/')
            .ok_or_else(|| bad("no '/' in media type"))?;
        let (t, s) = (t.trim(), s.trim());
        if !is_token(t) || !is_token(s) {
            return Err(bad("type or subtype is not a token"));
        }
        Ok(ContentType {
            mtype: t.to_ascii_lowercase(),
            subtype: s.to_ascii_lowercase(),
            params: Params::parse(params).ok_or_else(|| bad("bad m-parameter"))?,
        })
    }

    /// `type/subtype`, lower case, without parameters.
    pub fn essence(&self) -> String {
        format!("{}/{}", self.mtype, self.subtype)
    }

    pub fn charset(&self) -> Option<String> {
        self.params.value("charset")
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.mtype, self.subtype, self.params)
    }
}

fn delta_seconds(name: &'static str, value: &str) -> Result<u32, HeaderError> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(name, value, "not delta-seconds (1*DIGIT)"));
    }
    // An overlarge value is clamped to 2**32-1, the largest RFC 3261 §20.19 allows,
    // rather than rejected.
    Ok(v.parse::<u32>().unwrap_or(u32::MAX))
}

/// Typed accessors. Mandatory headers return `Missing` when absent; optional ones `Ok(None)`.
impl Headers {
    /// `Call-ID` (RFC 3261 §20.8): `word [ "@" word ]`, compared byte for byte.
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        let v = self.get("Call-ID").ok_or(HeaderError::Missing("Call-ID"))?;
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(invalid("Call-ID", v, "empty or contains whitespace"));
        }
        Ok(v)
    }

    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        self.single_name_addr("From")
    }

    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        self.single_name_addr("To")
    }

    fn single_name_addr(&self, name: &'static str) -> Result<NameAddr, HeaderError> {
        let mut all = self.get_all(name);
        let v = all.next().ok_or(HeaderError::Missing(name))?;
        if all.next().is_some() {
            return Err(invalid(name, v, "appears more than once"));
        }
        NameAddr::parse(name, v)
    }

    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.get("CSeq").ok_or(HeaderError::Missing("CSeq"))?)
    }

    /// Every Via value, top first (RFC 3261 §20.42, §7.3.1).
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        let values = self.values("Via");
        if values.is_empty() {
            return Err(HeaderError::Missing("Via"));
        }
        values.into_iter().map(Via::parse).collect()
    }

    /// The topmost Via: the one that identifies the transaction (RFC 3261 §17.1.3).
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        let v = self
            .values("Via")
            .into_iter()
            .next()
            .ok_or(HeaderError::Missing("Via"))?;
        Via::parse(v)
    }

    /// `Max-Forwards` (RFC 3261 §20.22): `1*DIGIT`, 0..=255 in practice.
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.get("Max-Forwards")
            .map(|v| delta_seconds("Max-Forwards", v))
            .transpose()
    }

    /// `Expires` in seconds (RFC 3261 §20.19).
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.get("Expires")
            .map(|v| delta_seconds("Expires", v))
            .transpose()
    }

    /// Contact values (RFC 3261 §20.10), empty when absent. The `*` wildcard of REGISTER is
    /// reported by [`Self::contact_is_wildcard`] instead.
    pub fn contacts(&self) -> Result<Vec<NameAddr>, HeaderError> {
        if self.contact_is_wildcard() {
            return Ok(Vec::new());
        }
        self.values("Contact")
            .into_iter()
            .map(|v| NameAddr::parse("Contact", v))
            .collect()
    }

    pub fn contact_is_wildcard(&self) -> bool {
        self.values("Contact") == ["*"]
    }

    /// `Record-Route` values in order (RFC 3261 §20.30).
    pub fn record_route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.values("Record-Route")
            .into_iter()
            .map(|v| NameAddr::parse("Record-Route", v))
            .collect()
    }

    /// `Route` values in order (RFC 3261 §20.34).
    pub fn route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.values("Route")
            .into_iter()
            .map(|v| NameAddr::parse("Route", v))
            .collect()
    }

    pub fn event(&self) -> Result<Option<Event>, HeaderError> {
        self.get("Event").map(Event::parse).transpose()
    }

    pub fn subscription_state(&self) -> Result<Option<SubscriptionState>, HeaderError> {
        self.get("Subscription-State")
            .map(SubscriptionState::parse)
            .transpose()
    }

    pub fn content_type(&self) -> Result<Option<ContentType>, HeaderError> {
        self.get("Content-Type").map(ContentType::parse).transpose()
    }

    /// `Content-Language` tags in order (RFC 3261 §20.13), empty when absent.
    pub fn content_language(&self) -> Result<Vec<String>, HeaderError> {
        self.values("Content-Language")
            .into_iter()
            .map(|tag| {
                let ok = !tag.is_empty()
                    && tag.split('-').all(|p| {
                        (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())
                    });
                ok.then(|| tag.to_owned())
                    .ok_or_else(|| invalid("Content-Language", tag, "not a language tag"))
            })
            .collect()
    }

    /// `Subject` text (RFC 3261 §20.36).
    pub fn subject(&self) -> Option<&str> {
        self.get("Subject")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.push(*n, *v);
        }
        h
    }

    #[rstest]
    #[case(
        "\"Bob \\\"B\\\"\" <sip:bob@biloxi.com>;tag=a6c85cf",
        Some("Bob \"B\""),
        "sip:bob@biloxi.com",
        Some("a6c85cf")
    )]
    #[case(
        "Bob Smith <sip:bob@biloxi.com;transport=tcp>",
        Some("Bob Smith"),
        "sip:bob@biloxi.com;transport=tcp",
        None
    )]
    #[case("<sip:alice@atlanta.com>", None, "sip:alice@atlanta.com", None)]
    #[case(
        "sip:carol@sip-users.test;tag=1928301774",
        None,
        "sip:carol@sip-users.test",
        Some("1928301774")
    )]
    #[case("  sip:carol@chicago.com  ", None, "sip:carol@chicago.com", None)]
    #[case("\"\" <sip:x@y>;TAG=Q", Some(""), "sip:x@y", Some("Q"))]
    fn name_addr(
        #[case] value: &str,
        #[case] display: Option<&str>,
        #[case] uri: &str,
        #[case] tag: Option<&str>,
    ) {
        let na = NameAddr::parse("From", value).expect("parses");
        assert_eq!(na.display_name.as_deref(), display);
        assert_eq!(na.uri.as_str(), uri);
        assert_eq!(na.tag().as_deref(), tag);
        // Canonical form parses back to the same value.
        assert_eq!(NameAddr::parse("From", &na.to_string()), Ok(na));
    }

    #[rstest]
    #[case("\"Bob <sip:bob@b>")]
    #[case("\"Bob\" sip:bob@b")]
    #[case("<sip:bob@b")]
    #[case("Bob, Jr. <sip:bob@b>")]
    #[case("<sip:bob@b> junk")]
    #[case("<bob@b>")]
    #[case("<sip:bob@b>;=x")]
    fn name_addr_rejects(#[case] value: &str) {
        assert!(matches!(
            NameAddr::parse("To", value),
            Err(HeaderError::Invalid { name: "To", .. })
        ));
    }

    #[rstest]
    #[case(
        "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
        "UDP",
        "pc33.atlanta.com",
        None
    )]
    #[case(
        "SIP / 2.0 / tcp 127.0.0.1:5070 ;branch=z9hG4bKx;rport",
        "TCP",
        "127.0.0.1",
        Some(5070)
    )]
    #[case(
        "SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKy",
        "TLS",
        "[2001:db8::9]",
        Some(5061)
    )]
    #[case("SIP/2.0/UDP sip.test;branch=z9hG4bK9ea1.0", "UDP", "sip.test", None)]
    fn via(
        #[case] value: &str,
        #[case] transport: &str,
        #[case] host: &str,
        #[case] port: Option<u16>,
    ) {
        let via = Via::parse(value).expect("parses");
        assert_eq!(via.transport, transport);
        assert_eq!(via.host, host);
        assert_eq!(via.port, port);
        assert!(via.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE)));
        assert_eq!(Via::parse(&via.to_string()), Ok(via));
    }

    #[test]
    fn via_received_and_rport() {
        let via = Via::parse("SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport").expect("parses");
        assert_eq!(via.rport(), Some(None));
        assert_eq!(via.received(), None);
        let via = Via::parse("SIP/2.0/UDP h;branch=z9hG4bK1;received=192.0.2.1;rport=9988")
            .expect("parses");
        assert_eq!(via.rport(), Some(Some(9988)));
        assert_eq!(via.received().as_deref(), Some("192.0.2.1"));
    }

    #[rstest]
    #[case("SIP/2.0 h")]
    #[case("SIP/3.0/UDP h")]
    #[case("SIP/2.0/UDP")]
    #[case("SIP/2.0/UDP a b")]
    #[case("SIP/2.0/UDP h:x:y")]
    #[case("SIP/2.0/UDP h;=1")]
    fn via_rejects(#[case] value: &str) {
        assert!(matches!(
            Via::parse(value),
            Err(HeaderError::Invalid { name: "Via", .. })
        ));
    }

    #[test]
    fn multiple_vias_in_one_line_and_many_lines() {
        let headers = h(&[
            (
                "v",
                "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
            ),
            ("Via", "SIP/2.0/TCP c;branch=z9hG4bK3"),
        ]);
        let vias = headers.vias().expect("parses");
        assert_eq!(
            vias.iter().map(|v| v.host.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(headers.top_via().map(|v| v.host), Ok("a".to_owned()));
    }

    #[rstest]
    #[case("314159 INVITE", 314159, Method::Invite)]
    #[case("10   MESSAGE", 10, Method::Message)]
    #[case("1 FOO", 1, Method::Other("FOO".into()))]
    fn cseq(#[case] value: &str, #[case] seq: u32, #[case] method: Method) {
        assert_eq!(CSeq::parse(value), Ok(CSeq { seq, method }));
    }

    #[rstest]
    #[case("INVITE")]
    #[case("1")]
    #[case("-1 INVITE")]
    #[case("2147483648 INVITE")]
    #[case("1 INVITE x")]
    fn cseq_rejects(#[case] value: &str) {
        assert!(CSeq::parse(value).is_err());
    }

    #[rstest]
    #[case("active;expires=599", SubState::Active, None, Some(599))]
    #[case("Pending", SubState::Pending, None, None)]
    #[case(
        "terminated;reason=Timeout",
        SubState::Terminated,
        Some("timeout"),
        None
    )]
    #[case(
        "terminated;reason=rejected;retry-after=30",
        SubState::Terminated,
        Some("rejected"),
        None
    )]
    #[case("waiting", SubState::Other("waiting".into()), None, None)]
    fn subscription_state(
        #[case] value: &str,
        #[case] state: SubState,
        #[case] reason: Option<&str>,
        #[case] expires: Option<u32>,
    ) {
        let s = SubscriptionState::parse(value).expect("parses");
        assert_eq!(s.state, state);
        assert_eq!(s.reason.as_deref(), reason);
        assert_eq!(s.expires, expires);
        assert_eq!(SubscriptionState::parse(&s.to_string()), Ok(s));
    }

    #[rstest]
    #[case("active;expires=soon")]
    #[case("active;expires")]
    #[case("")]
    fn subscription_state_rejects(#[case] value: &str) {
        assert!(SubscriptionState::parse(value).is_err());
    }

    #[test]
    fn event_and_id() {
        let e = Event::parse("Presence;id=7").expect("parses");
        assert_eq!(e.package, "Presence");
        assert_eq!(e.id().as_deref(), Some("7"));
        assert!(e.matches(&Event::parse("presence;id=7").expect("parses")));
        assert!(!e.matches(&Event::parse("presence").expect("parses")));
        assert!(Event::parse("pres ence").is_err());
    }

    #[test]
    fn content_type() {
        let c = ContentType::parse("Text/Plain;charset=UTF-8").expect("parses");
        assert_eq!(c.essence(), "text/plain");
        assert_eq!(c.charset().as_deref(), Some("UTF-8"));
        assert!(ContentType::parse("text").is_err());
        assert!(ContentType::parse("text/pl ain").is_err());
    }

    #[test]
    fn accessors_report_missing_and_invalid() {
        let headers = h(&[
            ("Expires", "abc"),
            ("From", "<sip:a@b>"),
            ("f", "<sip:c@d>"),
        ]);
        assert_eq!(headers.call_id(), Err(HeaderError::Missing("Call-ID")));
        assert_eq!(headers.cseq(), Err(HeaderError::Missing("CSeq")));
        assert_eq!(headers.top_via(), Err(HeaderError::Missing("Via")));
        assert!(matches!(
            headers.expires(),
            Err(HeaderError::Invalid {
                name: "Expires",
                ..
            })
        ));
        assert!(matches!(
            headers.from(),
            Err(HeaderError::Invalid { name: "From", .. })
        ));
        assert_eq!(headers.max_forwards(), Ok(None));
        assert_eq!(headers.event(), Ok(None));
    }

    #[test]
    fn contacts_and_language_lists() {
        let headers = h(&[
            (
                "m",
                "sip:juliet@127.0.0.2, \"J, C\" <sip:j@h;transport=tcp>;expires=60",
            ),
            ("Content-Language", "en, cs-CZ"),
            ("Expires", "99999999999"),
        ]);
        let contacts = headers.contacts().expect("parses");
        assert_eq!(contacts.len(), 2);
        assert_eq!(contacts[1].display_name.as_deref(), Some("J, C"));
        assert_eq!(contacts[1].params.value("expires").as_deref(), Some("60"));
        assert_eq!(
            headers.content_language(),
            Ok(vec!["en".to_owned(), "cs-CZ".to_owned()])
        );
        assert_eq!(headers.expires(), Ok(Some(u32::MAX)));
        assert!(h(&[("Contact", "*")]).contact_is_wildcard());
        assert!(
            h(&[("Content-Language", "english language")])
                .content_language()
                .is_err()
        );
    }
}
