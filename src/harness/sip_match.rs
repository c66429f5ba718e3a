//! SIP templates and SIP-aware matching (docs/scenarios.md "SIP actors").
//!
//! A `sip` template is a message as it appears on the wire, minus what the step does not
//! care about: the start line, only the headers the step names, and optionally a body.
//! Values compare as SIP values, not as text: URIs by their parts (scheme and host
//! case-insensitively, RFC 3261 §19.1.4), header parameters as a set (§7.3.1: their order
//! carries no meaning), tags and other parameters only when the template writes them, and
//! an XML body (PIDF, RFC 3863) namespace-aware through the XML template matcher. The
//! placeholders are those of XML templates (`{any}`, `{id:NAME}`, `{NAME}`, `{absent}`),
//! parsed by [`template::parse_value_pattern`].

use std::fmt;

use super::template::{self, Captures, Mismatch, Pattern, Template, TemplateError, ValuePattern};
use crate::sip::message::{canonical_name, is_list_header, names_equal, split_list};
use crate::sip::{Message, NameAddr, Via};
use crate::xmpp::codec::Event;
use crate::xmpp::element::NsContext;

/// A `sip` text that is not a usable template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipTemplateError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("SIP template is empty")]
    Empty,
    #[error(
        "start line {0:?}: write `METHOD Request-URI [SIP/2.0]` or `SIP/2.0 CODE [reason]` (RFC 3261 §7.1, §7.2)"
    )]
    BadStartLine(String),
    #[error("line {0}: header line without a colon (RFC 3261 §7.3.1)")]
    BadHeader(usize),
    #[error("body: {0}")]
    Body(String),
}

/// What the start line must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartTemplate {
    /// `METHOD Request-URI [SIP/2.0]`: the method compares case-sensitively (RFC 3261
    /// §7.1), the Request-URI as a URI.
    Request { method: String, uri: String },
    /// `SIP/2.0 CODE [reason]`: the reason phrase only when written (§7.2: it is for
    /// humans; the code is what a UAC acts on).
    Response {
        status: StatusPattern,
        reason: Option<Pattern>,
    },
}

/// A status code: exact, a class (`4xx`), or a placeholder pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusPattern {
    Code(u16),
    /// `Nxx`: any code of class N (RFC 3261 §7.2, §21).
    Class(u16),
    Pattern(Pattern),
}

/// One header line of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    /// The long form of the name (compact forms expanded, RFC 3261 §7.3.3).
    pub name: String,
    /// The value as written (placeholders unparsed): parsed per header kind when matched.
    pub raw: String,
    /// `{absent}`: the message must not carry the header.
    pub absent: bool,
}

/// What the body must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTemplate {
    /// The template has no body: any body matches.
    Any,
    /// `{absent}`: no body.
    Absent,
    /// Trimmed text.
    Text(Pattern),
    /// An XML document, matched as an XML element template.
    Xml(Template),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTemplate {
    pub start: StartTemplate,
    pub headers: Vec<HeaderTemplate>,
    pub body: BodyTemplate,
}

impl SipTemplate {
    /// Names captured by `{id:NAME}`, each once, in template order.
    pub fn capture_names(&self) -> Vec<String> {
        let mut text = String::new();
        match &self.start {
            StartTemplate::Request { uri, .. } => text.push_str(uri),
            StartTemplate::Response { status, reason } => {
                if let StatusPattern::Pattern(p) = status {
                    text.push_str(&p.to_string());
                }
                if let Some(r) = reason {
                    text.push_str(&r.to_string());
                }
            }
        }
        for h in &self.headers {
            text.push_str(&h.raw);
        }
        let mut out: Vec<String> = Vec::new();
        let mut push = |n: String| {
            if !out.contains(&n) {
                out.push(n);
            }
        };
        let mut rest = text.as_str();
        while let Some(i) = rest.find('{') {
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                rest = after;
                continue;
            }
            let Some(close) = tail.find('}') else { break };
            let inner = &tail[1..close];
            if let Some(n) = inner
                .strip_prefix("id:")
                .or_else(|| inner.strip_prefix("new:"))
            {
                push(n.to_string());
            }
            rest = &tail[close + 1..];
        }
        match &self.body {
            BodyTemplate::Xml(t) => t.capture_names().into_iter().for_each(&mut push),
            BodyTemplate::Text(p) => {
                for s in &p.0 {
                    if let template::Segment::Capture(n) = s {
                        push(n.clone());
                    }
                }
            }
            BodyTemplate::Any | BodyTemplate::Absent => {}
        }
        out
    }

    /// Whether this template is a response (`SIP/2.0 …`).
    pub fn is_response(&self) -> bool {
        matches!(self.start, StartTemplate::Response { .. })
    }
}

/// Splits a scenario's SIP text at the first empty line: (start line and headers, body).
/// Lines may end in LF or CRLF (TOML multi-line strings end lines in LF).
pub fn split_head_body(text: &str) -> (&str, Option<&str>) {
    let mut offset = 0usize;
    let mut seen_start = false;
    for line in text.split_inclusive('\n') {
        let blank = line.trim().is_empty();
        if blank && seen_start {
            let body = text.get(offset + line.len()..).unwrap_or("");
            return (text.get(..offset).unwrap_or(text), Some(body));
        }
        if !blank {
            seen_start = true;
        }
        offset += line.len();
    }
    (text, None)
}

/// Whether a body text is XML (and so compared and substituted as XML).
pub fn body_is_xml(body: &str) -> bool {
    body.trim_start().starts_with('<')
}

/// Substitute variables (SIP text as is, an XML body XML-escaped) and parse: what an
/// `expect` step with `sip` does when it runs, and the loader with dummy values.
pub fn prepare(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<SipTemplate, SipTemplateError> {
    let (head, body) = split_head_body(text);
    let head = template::substitute_for_template(head, lookup, false)?;
    let body = match body {
        Some(b) => Some(template::substitute_for_template(
            b,
            lookup,
            body_is_xml(b),
        )?),
        None => None,
    };
    parse(&head, body.as_deref())
}

/// Substitute variables in a SIP text to send: head as is, an XML body XML-escaped.
pub fn substitute_payload(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let (head, body) = split_head_body(text);
    let mut out = template::substitute_plain(head, lookup)?;
    if let Some(b) = body {
        out.push('\n');
        if body_is_xml(b) {
            out.push_str(&template::substitute(b, lookup)?);
        } else {
            out.push_str(&template::substitute_plain(b, lookup)?);
        }
    }
    Ok(out)
}

/// Parse a substituted payload to send ([`crate::sip::parse_payload`]); a status line
/// written without a reason phrase (`SIP/2.0 200`) gets the RFC 3261 §21 one, a request
/// line without version gets `SIP/2.0`, and one
/// final line break of the body is dropped (write an empty line to keep one).
pub fn payload_message(text: &str) -> Result<Message, crate::sip::ParseError> {
    let mut m = payload_message_as_written(text)?;
    // The line break before a TOML string's closing quotes ends the text, not the body.
    let body = match &mut m {
        Message::Request(r) => &mut r.body,
        Message::Response(r) => &mut r.body,
    };
    if body.ends_with(b"\n") {
        body.pop();
        if body.ends_with(b"\r") {
            body.pop();
        }
    }
    Ok(m)
}

fn payload_message_as_written(text: &str) -> Result<Message, crate::sip::ParseError> {
    let trimmed = text.trim_start_matches(['\r', '\n']);
    let first = trimmed.lines().next().unwrap_or("");
    let words: Vec<&str> = first.split_whitespace().collect();
    if let [v, code] = words.as_slice()
        && v.eq_ignore_ascii_case("SIP/2.0")
        && let Ok(n) = code.parse::<u16>()
    {
        let rest = trimmed.get(first.len()..).unwrap_or("");
        let line = format!("{v} {code} {}", crate::sip::builder::default_reason(n));
        return crate::sip::parse_payload(&format!("{line}{rest}"), &crate::sip::Limits::default());
    }
    // A request line may leave out the version, as in templates.
    if let [method, uri] = words.as_slice()
        && !method.eq_ignore_ascii_case("SIP/2.0")
    {
        let rest = trimmed.get(first.len()..).unwrap_or("");
        let line = format!("{method} {uri} SIP/2.0");
        return crate::sip::parse_payload(&format!("{line}{rest}"), &crate::sip::Limits::default());
    }
    crate::sip::parse_payload(trimmed, &crate::sip::Limits::default())
}

fn pattern(s: &str) -> Result<Pattern, SipTemplateError> {
    match template::parse_value_pattern(s)? {
        ValuePattern::Value(p) => Ok(p),
        ValuePattern::Absent => Err(TemplateError::AbsentNotWhole.into()),
    }
}

/// Parse a substituted template: `head` is the start line and headers, `body` what
/// follows the empty line.
pub fn parse(head: &str, body: Option<&str>) -> Result<SipTemplate, SipTemplateError> {
    let mut lines = head
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .skip_while(|(_, l)| l.trim().is_empty());
    let Some((_, start_line)) = lines.next() else {
        return Err(SipTemplateError::Empty);
    };
    let start = parse_start(start_line.trim())?;
    let mut headers: Vec<HeaderTemplate> = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        // RFC 3261 §7.3.1: a line starting with whitespace continues the previous header.
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some(h) => {
                    h.raw.push(' ');
                    h.raw.push_str(line.trim());
                    continue;
                }
                None => return Err(SipTemplateError::BadHeader(i + 1)),
            }
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(SipTemplateError::BadHeader(i + 1));
        };
        let name = name.trim();
        if !crate::sip::message::is_token(name) {
            return Err(SipTemplateError::BadHeader(i + 1));
        }
        let value = value.trim().to_string();
        headers.push(HeaderTemplate {
            name: canonical_name(name).to_string(),
            absent: value == "{absent}",
            raw: value,
        });
    }
    // Every value must be a valid pattern; check now so a bad placeholder is a load error.
    for h in &headers {
        if !h.absent {
            check_pattern(&h.raw)?;
        }
    }
    let body = match body.map(str::trim) {
        None | Some("") => BodyTemplate::Any,
        Some("{absent}") => BodyTemplate::Absent,
        Some(b) if body_is_xml(b) => BodyTemplate::Xml(
            template::parse_template(b, &NsContext::new(""))
                .map_err(|e| SipTemplateError::Body(e.to_string()))?,
        ),
        Some(b) => BodyTemplate::Text(pattern(b)?),
    };
    Ok(SipTemplate {
        start,
        headers,
        body,
    })
}

fn parse_start(line: &str) -> Result<StartTemplate, SipTemplateError> {
    let bad = || SipTemplateError::BadStartLine(line.to_string());
    let mut parts = line.splitn(3, ' ').filter(|p| !p.is_empty());
    let first = parts.next().ok_or_else(bad)?;
    if first.eq_ignore_ascii_case("SIP/2.0") {
        let code = parts.next().ok_or_else(bad)?;
        let status = if let Some(class) = code
            .strip_suffix("xx")
            .filter(|c| c.len() == 1)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (1..=6).contains(c))
        {
            StatusPattern::Class(class)
        } else if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) {
            let n: u16 = code.parse().map_err(|_| bad())?;
            if !(100..=699).contains(&n) {
                return Err(bad());
            }
            StatusPattern::Code(n)
        } else if code.starts_with('{') {
            StatusPattern::Pattern(pattern(code)?)
        } else {
            return Err(bad());
        };
        let reason = parts
            .next()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(pattern)
            .transpose()?;
        return Ok(StartTemplate::Response { status, reason });
    }
    if !crate::sip::message::is_token(first) {
        return Err(bad());
    }
    let mut words = line.split_whitespace().skip(1);
    let uri = words.next().ok_or_else(bad)?;
    // The version may be left out of a template; if written it must be SIP/2.0.
    if words
        .next()
        .is_some_and(|v| !v.eq_ignore_ascii_case("SIP/2.0"))
        || words.next().is_some()
    {
        return Err(bad());
    }
    check_pattern(uri)?;
    Ok(StartTemplate::Request {
        method: first.to_string(),
        uri: uri.to_string(),
    })
}

/// Check the placeholders of a structured value: `{absent}` is allowed as a whole
/// parameter value (`;tag={absent}`), everything else as in [`pattern`].
fn check_pattern(s: &str) -> Result<(), SipTemplateError> {
    pattern(&s.replace("={absent}", "={any}")).map(|_| ())
}

// ---------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------

fn mismatch(
    path: impl Into<String>,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> Mismatch {
    Mismatch {
        path: path.into(),
        expected: expected.into(),
        found: found.into(),
    }
}

/// Headers whose value is a name-addr or addr-spec with header parameters (RFC 3261
/// §20.10, §20.20, §20.30, §20.34, §20.39; RFC 3515 §2.1, RFC 3892 §3; RFC 3325 §9.1).
const NAME_ADDR_HEADERS: [&str; 9] = [
    "From",
    "To",
    "Contact",
    "Route",
    "Record-Route",
    "Reply-To",
    "Refer-To",
    "Referred-By",
    "P-Asserted-Identity",
];

/// Headers whose value is `token-ish *( SEMI param )`, parameters unordered: Content-Type
/// (§20.15), Content-Disposition (§20.11), Event and Allow-Events (RFC 6665 §8.2.1),
/// Subscription-State (RFC 6665 §8.2.3), Accept (§20.1), Retry-After (§20.33).
const PARAM_HEADERS: [&str; 7] = [
    "Content-Type",
    "Content-Disposition",
    "Event",
    "Allow-Events",
    "Subscription-State",
    "Accept",
    "Retry-After",
];

/// Match a received message against a template. Captures are returned on success.
pub fn match_message(t: &SipTemplate, m: &Message) -> Result<Captures, Mismatch> {
    let mut caps = Captures::new();
    match (&t.start, m) {
        (StartTemplate::Request { method, uri }, Message::Request(r)) => {
            if r.method.as_str() != method {
                return Err(mismatch(
                    "start line",
                    format!("a {method} request"),
                    describe(m),
                ));
            }
            if let Err((e, f)) = uri_matches(uri, r.uri.as_str(), &mut caps) {
                return Err(mismatch("Request-URI", e, f));
            }
        }
        (StartTemplate::Response { status, reason }, Message::Response(r)) => {
            let ok = match status {
                StatusPattern::Code(c) => r.status == *c,
                StatusPattern::Class(c) => r.status / 100 == *c,
                StatusPattern::Pattern(p) => p.matches(&r.status.to_string(), &mut caps),
            };
            if !ok {
                return Err(mismatch("status", status.to_string(), describe(m)));
            }
            if let Some(p) = reason {
                let mark = caps.len();
                if !p.matches(r.reason.trim(), &mut caps) {
                    caps.truncate(mark);
                    return Err(mismatch("reason phrase", p.to_string(), r.reason.clone()));
                }
            }
        }
        (StartTemplate::Request { method, .. }, _) => {
            return Err(mismatch(
                "start line",
                format!("a {method} request"),
                describe(m),
            ));
        }
        (StartTemplate::Response { status, .. }, _) => {
            return Err(mismatch(
                "start line",
                format!("a {status} response"),
                describe(m),
            ));
        }
    }
    match_headers(&t.headers, m, &mut caps)?;
    match_body(&t.body, m, &mut caps)?;
    Ok(caps)
}

impl fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusPattern::Code(c) => write!(f, "{c}"),
            StatusPattern::Class(c) => write!(f, "{c}xx"),
            StatusPattern::Pattern(p) => write!(f, "{p}"),
        }
    }
}

/// The values of a header in a message: one per line, list headers split at commas
/// (RFC 3261 §7.3.1), either name form.
fn actual_values<'a>(m: &'a Message, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for h in m.headers() {
        if names_equal(&h.name, name) {
            if is_list_header(name) {
                out.extend(split_list(&h.value));
            } else {
                out.push(h.value.as_str());
            }
        }
    }
    out
}

fn match_headers(ts: &[HeaderTemplate], m: &Message, caps: &mut Captures) -> Result<(), Mismatch> {
    // Template lines of one header name match distinct values of that header, in order.
    let mut names: Vec<&str> = Vec::new();
    for h in ts {
        if !names.iter().any(|n| names_equal(n, &h.name)) {
            names.push(&h.name);
        }
    }
    for name in names {
        // A list header's template line stands for its elements, as a message's line does
        // (RFC 3261 §7.3.1: `Allow: A, B` and two `Allow` lines are the same message).
        let wanted: Vec<HeaderTemplate> = ts
            .iter()
            .filter(|h| names_equal(&h.name, name))
            .flat_map(|h| {
                if is_list_header(name) && !h.absent {
                    split_list(&h.raw)
                        .into_iter()
                        .map(|v| HeaderTemplate {
                            name: h.name.clone(),
                            raw: v.to_string(),
                            absent: false,
                        })
                        .collect()
                } else {
                    vec![h.clone()]
                }
            })
            .collect();
        let actual = actual_values(m, name);
        if wanted.iter().any(|h| h.absent) {
            if let Some(v) = actual.first() {
                return Err(mismatch(
                    format!("header {name}"),
                    "no such header",
                    format!("{name}: {v}"),
                ));
            }
            continue;
        }
        let mut next = 0usize;
        for w in &wanted {
            let mut closest = None;
            let mut found = None;
            for (i, a) in actual.iter().enumerate().skip(next) {
                let mark = caps.len();
                match value_matches(name, &w.raw, a, caps) {
                    Ok(()) => {
                        found = Some(i);
                        break;
                    }
                    Err(e) => {
                        caps.truncate(mark);
                        closest.get_or_insert(e);
                    }
                }
            }
            match found {
                Some(i) => next = i + 1,
                None => {
                    let found = match closest {
                        Some((_, f)) if actual.len() == 1 => format!("{name}: {f}"),
                        _ if actual.is_empty() => "no such header".to_string(),
                        _ => actual
                            .iter()
                            .map(|a| format!("{name}: {a}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    };
                    return Err(mismatch(
                        format!("header {name}"),
                        format!("{name}: {}", w.raw),
                        found,
                    ));
                }
            }
        }
    }
    Ok(())
}

type ValueResult = Result<(), (String, String)>;

/// Compare one header value the way its grammar makes meaningful. A template value that
/// does not parse as the header's grammar (e.g. `{any}` alone) is matched as text.
fn value_matches(name: &str, tpl: &str, actual: &str, caps: &mut Captures) -> ValueResult {
    let is = |list: &[&str]| list.iter().any(|h| names_equal(h, name));
    if is(&NAME_ADDR_HEADERS) {
        if let Ok(t) = NameAddr::parse("template", tpl) {
            let a = NameAddr::parse("header", actual)
                .map_err(|_| (tpl.to_string(), format!("{actual} (not a name-addr)")))?;
            return name_addr_matches(&t, &a, caps)
                .map_err(|(e, f)| (e, format!("{f} in {actual}")));
        }
    } else if names_equal(name, "Via") {
        if let Ok(t) = Via::parse(tpl) {
            let a = Via::parse(actual).map_err(|_| (tpl.to_string(), actual.to_string()))?;
            return via_matches(&t, &a, caps).map_err(|(e, f)| (e, format!("{f} in {actual}")));
        }
    } else if names_equal(name, "CSeq") {
        let t: Vec<&str> = tpl.split_whitespace().collect();
        let a: Vec<&str> = actual.split_whitespace().collect();
        if let ([tn, tm], [an, am]) = (t.as_slice(), a.as_slice()) {
            let ok = pattern_ok(tn, an, caps) && pattern_ok(tm, am, caps);
            return if ok {
                Ok(())
            } else {
                Err((tpl.to_string(), actual.to_string()))
            };
        }
    } else if is(&PARAM_HEADERS) {
        return token_params_matches(tpl, actual, caps);
    }
    let collapse = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    if pattern_ok(&collapse(tpl), &collapse(actual), caps) {
        Ok(())
    } else {
        Err((tpl.to_string(), actual.to_string()))
    }
}

/// `tpl` as a pattern matches `actual` entirely; captures are kept only on success.
fn pattern_ok(tpl: &str, actual: &str, caps: &mut Captures) -> bool {
    let mark = caps.len();
    let ok = match template::parse_value_pattern(tpl) {
        Ok(ValuePattern::Value(p)) => p.matches(actual, caps),
        _ => false,
    };
    if !ok {
        caps.truncate(mark);
    }
    ok
}

/// Parameters as a set (RFC 3261 §7.3.1): each one the template writes must be present
/// with a matching value (`{absent}`: must not be present); others are allowed. Names
/// compare case-insensitively. Values compare unquoted.
fn params_match(
    t: &[(String, Option<String>)],
    a: &[(String, Option<String>)],
    caps: &mut Captures,
) -> ValueResult {
    let unquote = |v: &str| v.trim_matches('"').to_string();
    for (name, tv) in t {
        let av = a
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        let shown = |v: &Option<String>| match v {
            Some(v) => format!(";{name}={v}"),
            None => format!(";{name}"),
        };
        match (tv.as_deref(), av) {
            (Some("{absent}"), None) => {}
            (Some("{absent}"), Some(v)) => return Err((format!("no ;{name}"), shown(v))),
            (_, None) => return Err((shown(tv), format!("no ;{name}"))),
            (None, Some(_)) => {}
            (Some(tv), Some(None)) => return Err((format!(";{name}={tv}"), format!(";{name}"))),
            (Some(tv), Some(Some(v))) => {
                if !pattern_ok(&unquote(tv), &unquote(v), caps) {
                    return Err((format!(";{name}={tv}"), format!(";{name}={v}")));
                }
            }
        }
    }
    Ok(())
}

fn name_addr_matches(t: &NameAddr, a: &NameAddr, caps: &mut Captures) -> ValueResult {
    if let Some(d) = &t.display_name {
        let ad = a.display_name.as_deref().unwrap_or("");
        if !pattern_ok(d, ad, caps) {
            return Err((format!("display name {d:?}"), format!("{ad:?}")));
        }
    }
    uri_matches(t.uri.as_str(), a.uri.as_str(), caps)?;
    params_match(&t.params.0, &a.params.0, caps)
}

fn via_matches(t: &Via, a: &Via, caps: &mut Captures) -> ValueResult {
    if !pattern_ok(
        &t.transport.to_ascii_lowercase(),
        &a.transport.to_ascii_lowercase(),
        caps,
    ) {
        return Err((format!("transport {}", t.transport), a.transport.clone()));
    }
    if !pattern_ok(
        &t.sent_by().to_ascii_lowercase(),
        &a.sent_by().to_ascii_lowercase(),
        caps,
    ) {
        return Err((format!("sent-by {}", t.sent_by()), a.sent_by()));
    }
    params_match(&t.params.0, &a.params.0, caps)
}

/// A URI split for comparison (RFC 3261 §19.1.4): scheme, userinfo, host:port, URI
/// parameters, headers.
struct UriParts<'a> {
    scheme: String,
    userinfo: Option<&'a str>,
    hostport: String,
    params: Vec<(String, Option<String>)>,
    headers: Option<&'a str>,
}

fn uri_parts(s: &str) -> Option<UriParts<'_>> {
    let (scheme, rest) = s.split_once(':')?;
    let (main, headers) = match rest.split_once('?') {
        Some((m, h)) => (m, Some(h)),
        None => (rest, None),
    };
    let mut pieces = main.split(';');
    let core = pieces.next().unwrap_or("");
    let params = pieces
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (p.to_string(), None),
        })
        .collect();
    let (userinfo, hostport) = match core.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, core),
    };
    Some(UriParts {
        scheme: scheme.to_ascii_lowercase(),
        userinfo,
        hostport: hostport.to_ascii_lowercase(),
        params,
        headers,
    })
}

/// Compare a URI pattern with a received URI: the scheme and host:port case-insensitively,
/// the user part exactly (RFC 3261 §19.1.4), the parameters the template writes as a
/// set, headers when written. A template without a scheme (`{any}`) is matched as text.
pub fn uri_matches(tpl: &str, actual: &str, caps: &mut Captures) -> ValueResult {
    let whole = || (tpl.to_string(), actual.to_string());
    let t = match uri_parts(tpl) {
        Some(t) if !t.scheme.contains('{') => t,
        _ => {
            return if pattern_ok(tpl, actual, caps) {
                Ok(())
            } else {
                Err(whole())
            };
        }
    };
    let a = uri_parts(actual).ok_or_else(whole)?;
    if t.scheme != a.scheme {
        return Err(whole());
    }
    match (t.userinfo, a.userinfo) {
        (None, None) => {}
        (Some(tu), Some(au)) if pattern_ok(tu, au, caps) => {}
        _ => return Err(whole()),
    }
    if !pattern_ok(&t.hostport, &a.hostport, caps) {
        return Err(whole());
    }
    params_match(&t.params, &a.params, caps).map_err(|_| whole())?;
    if let Some(th) = t.headers
        && !pattern_ok(th, a.headers.unwrap_or(""), caps)
    {
        return Err(whole());
    }
    Ok(())
}

/// `value *( ; param )` with the value compared case-insensitively (tokens, RFC 3261
/// §7.3.1) and parameters as a set.
fn token_params_matches(tpl: &str, actual: &str, caps: &mut Captures) -> ValueResult {
    let split = |s: &str| -> (String, Vec<(String, Option<String>)>) {
        let mut it = s.split(';');
        let main = it.next().unwrap_or("").trim().to_string();
        let params = it
            .filter(|p| !p.trim().is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
                None => (p.trim().to_string(), None),
            })
            .collect();
        (main, params)
    };
    let (tm, tp) = split(tpl);
    let (am, ap) = split(actual);
    if !pattern_ok(&tm.to_ascii_lowercase(), &am.to_ascii_lowercase(), caps) {
        return Err((tpl.to_string(), actual.to_string()));
    }
    params_match(&tp, &ap, caps).map_err(|(e, f)| (e, format!("{f} in {actual}")))
}

fn match_body(t: &BodyTemplate, m: &Message, caps: &mut Captures) -> Result<(), Mismatch> {
    let body = String::from_utf8_lossy(m.body());
    let body = body.trim();
    match t {
        BodyTemplate::Any => Ok(()),
        BodyTemplate::Absent if body.is_empty() => Ok(()),
        BodyTemplate::Absent => Err(mismatch("body", "no body", excerpt(body))),
        BodyTemplate::Text(p) => {
            let mark = caps.len();
            if p.matches(body, caps) {
                Ok(())
            } else {
                caps.truncate(mark);
                Err(mismatch("body", p.to_string(), excerpt(body)))
            }
        }
        BodyTemplate::Xml(tpl) => {
            let el = parse_xml_body(body)
                .map_err(|e| mismatch("body", "an XML body", format!("{e}: {}", excerpt(body))))?;
            let got = template::match_unit(tpl, &Event::Element(el), false).map_err(|mut mm| {
                mm.path = format!("body{}", mm.path);
                mm
            })?;
            caps.extend(got);
            Ok(())
        }
    }
}

/// An XML body (PIDF, RFC 3863 §4) as an element: the prolog is skipped and no namespace
/// is assumed, so names compare as (namespace, local name) as the document declares them.
pub fn parse_xml_body(body: &str) -> Result<crate::xmpp::element::Element, String> {
    let mut s = body.trim_start();
    while let Some(rest) = s.strip_prefix("<?") {
        let end = rest.find("?>").ok_or("unterminated XML declaration")?;
        s = rest.get(end + 2..).unwrap_or("").trim_start();
    }
    crate::xmpp::codec::parse_element(s, &NsContext::new("")).map_err(|e| e.to_string())
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// One line about a message for failure reports: the start line and the dialog
/// identifiers.
pub fn describe(m: &Message) -> String {
    let start = match m {
        Message::Request(r) => format!("{} {}", r.method, r.uri),
        Message::Response(r) => format!("SIP/2.0 {} {}", r.status, r.reason),
    };
    let h = m.headers();
    let cseq = h.get("CSeq").unwrap_or("-");
    format!("{start} (CSeq: {cseq})")
}

/// The whole message as text, for reports.
pub fn render(m: &Message) -> String {
    excerpt(&String::from_utf8_lossy(&m.to_bytes()).replace("\r\n", "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Limits, parse_payload};
    use rstest::rstest;

    fn msg(text: &str) -> Message {
        parse_payload(text, &Limits::default()).expect("test message parses")
    }

    fn vars(name: &str) -> Option<String> {
        match name {
            "alice" => Some("sip:alice@sip.test".into()),
            "cid" => Some("abc@h".into()),
            "q" => Some("a'b".into()),
            _ => None,
        }
    }

    const MESSAGE: &str = "MESSAGE sip:juliet@remote.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport
Via: SIP/2.0/TCP proxy.test;branch=z9hG4bK2
Max-Forwards: 69
From: \"Alice\" <sip:alice@Sip.Test>;tag=a1;x=y
To: <sip:juliet@remote.test>
Call-ID: abc@h
CSeq: 7 MESSAGE
Content-Type: text/plain;charset=UTF-8
Content-Length: 5

hello";

    #[rstest]
    #[case("MESSAGE sip:juliet@remote.test", true)]
    #[case("MESSAGE sip:juliet@REMOTE.test SIP/2.0", true)]
    #[case("MESSAGE SIP:juliet@remote.test", true)]
    #[case("MESSAGE sip:Juliet@remote.test", false)]
    #[case("message sip:juliet@remote.test", false)]
    #[case("SUBSCRIBE sip:juliet@remote.test", false)]
    #[case("MESSAGE {any}", true)]
    #[case("MESSAGE sip:{id:u}@remote.test", true)]
    #[case("MESSAGE sip:juliet@remote.test;transport={absent}", true)]
    #[case("SIP/2.0 200 OK", false)]
    #[case("MESSAGE sip:juliet@remote.test\nFrom: <sip:alice@sip.test>", true)]
    #[case("MESSAGE sip:juliet@remote.test\nf: {alice}", true)]
    #[case(
        "MESSAGE sip:juliet@remote.test\nFrom: Alice <sip:alice@sip.test>",
        true
    )]
    #[case(
        "MESSAGE sip:juliet@remote.test\nFrom: Bob <sip:alice@sip.test>",
        false
    )]
    #[case(
        "MESSAGE sip:juliet@remote.test\nFrom: <sip:alice@sip.test>;x=y;tag=a1",
        true
    )]
    #[case(
        "MESSAGE sip:juliet@remote.test\nFrom: <sip:alice@sip.test>;tag=zz",
        false
    )]
    #[case(
        "MESSAGE sip:juliet@remote.test\nFrom: <sip:alice@sip.test>;tag={id:t}",
        true
    )]
    #[case(
        "MESSAGE sip:juliet@remote.test\nTo: <sip:juliet@remote.test>;tag={absent}",
        true
    )]
    #[case(
        "MESSAGE sip:juliet@remote.test\nFrom: <sip:alice@sip.test>;tag={absent}",
        false
    )]
    #[case(
        "MESSAGE sip:juliet@remote.test\nVia: SIP/2.0/udp 127.0.0.1:5070;rport",
        true
    )]
    #[case("MESSAGE sip:juliet@remote.test\nVia: SIP/2.0/TCP proxy.test", true)]
    #[case(
        "MESSAGE sip:juliet@remote.test\nVia: SIP/2.0/TCP proxy.test\nVia: SIP/2.0/UDP {any}",
        false
    )]
    #[case(
        "MESSAGE sip:juliet@remote.test\nVia: SIP/2.0/UDP {any}\nVia: SIP/2.0/TCP proxy.test",
        true
    )]
    #[case("MESSAGE sip:juliet@remote.test\nMax-Forwards: 69", true)]
    #[case("MESSAGE sip:juliet@remote.test\nMax-Forwards: 70", false)]
    #[case("MESSAGE sip:juliet@remote.test\nCSeq: {any} MESSAGE", true)]
    #[case("MESSAGE sip:juliet@remote.test\nCSeq: 7 NOTIFY", false)]
    #[case("MESSAGE sip:juliet@remote.test\nCall-ID: {cid}", true)]
    #[case(
        "MESSAGE sip:juliet@remote.test\nContent-Type: TEXT/plain;charset=UTF-8",
        true
    )]
    #[case("MESSAGE sip:juliet@remote.test\nContent-Type: text/plain", true)]
    #[case(
        "MESSAGE sip:juliet@remote.test\nContent-Type: text/plain;charset=latin1",
        false
    )]
    #[case("MESSAGE sip:juliet@remote.test\nSubject: {absent}", true)]
    #[case("MESSAGE sip:juliet@remote.test\nCall-ID: {absent}", false)]
    #[case("MESSAGE sip:juliet@remote.test\nSubject: hi", false)]
    #[case("MESSAGE sip:juliet@remote.test\n\nhello", true)]
    #[case("MESSAGE sip:juliet@remote.test\n\n  hello \n", true)]
    #[case("MESSAGE sip:juliet@remote.test\n\nbye", false)]
    #[case("MESSAGE sip:juliet@remote.test\n\n{absent}", false)]
    #[case("MESSAGE sip:juliet@remote.test\n\nhel{any}", true)]
    fn request_matching(#[case] tpl: &str, #[case] ok: bool) {
        let t = prepare(tpl, &vars).expect("template parses");
        let r = match_message(&t, &msg(MESSAGE));
        assert_eq!(r.is_ok(), ok, "{tpl}: {r:?}");
    }

    const OK: &str = "SIP/2.0 202 Accepted
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1
From: <sip:alice@sip.test>;tag=a1
To: <sip:juliet@remote.test>;tag=j9
Call-ID: abc@h
CSeq: 1 SUBSCRIBE
Expires: 600
Content-Length: 0

";

    #[rstest]
    #[case("SIP/2.0 202", true)]
    #[case("SIP/2.0 202 Accepted", true)]
    #[case("SIP/2.0 202 OK", false)]
    #[case("SIP/2.0 2xx", true)]
    #[case("SIP/2.0 4xx", false)]
    #[case("SIP/2.0 200", false)]
    #[case("SIP/2.0 {id:code}", true)]
    #[case("sip/2.0 202", true)]
    #[case("SIP/2.0 202\nTo: <sip:juliet@remote.test>;tag={id:totag}", true)]
    #[case("SIP/2.0 202\nExpires: {any}", true)]
    #[case("SIP/2.0 202\n\n{absent}", true)]
    #[case("SUBSCRIBE sip:x@y", false)]
    fn response_matching(#[case] tpl: &str, #[case] ok: bool) {
        let t = prepare(tpl, &vars).expect("template parses");
        let r = match_message(&t, &msg(OK));
        assert_eq!(r.is_ok(), ok, "{tpl}: {r:?}");
    }

    const ALLOW_SPLIT: &str = "SIP/2.0 405 Method Not Allowed
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1
From: <sip:alice@sip.test>;tag=a1
To: <sip:alice@sip.test>;tag=j9
Call-ID: abc@h
CSeq: 2 REGISTER
Allow: MESSAGE
Allow: SUBSCRIBE, NOTIFY
Content-Length: 0

";

    /// RFC 3261 §7.3.1: a list header's elements are the same whether on one line or several.
    #[rstest]
    #[case("SIP/2.0 405\nAllow: MESSAGE, SUBSCRIBE, NOTIFY", true)]
    #[case("SIP/2.0 405\nAllow: MESSAGE\nAllow: SUBSCRIBE\nAllow: NOTIFY", true)]
    #[case("SIP/2.0 405\nAllow: MESSAGE, {any}", true)]
    #[case("SIP/2.0 405\nAllow: {any}", true)]
    #[case("SIP/2.0 405\nAllow: MESSAGE, OPTIONS", false)]
    #[case("SIP/2.0 405\nAllow: NOTIFY, MESSAGE", false)]
    #[case("SIP/2.0 405\nAllow: {absent}", false)]
    fn list_headers_match_by_element(#[case] tpl: &str, #[case] ok: bool) {
        let t = prepare(tpl, &vars).expect("template parses");
        let r = match_message(&t, &msg(ALLOW_SPLIT));
        assert_eq!(r.is_ok(), ok, "{tpl}: {r:?}");
    }

    #[test]
    fn captures_come_back() {
        let t = prepare(
            "SIP/2.0 {id:code}\nTo: <sip:juliet@remote.test>;tag={id:totag}\nCall-ID: {id:c}",
            &vars,
        )
        .expect("parses");
        assert_eq!(t.capture_names(), vec!["code", "totag", "c"]);
        let caps = match_message(&t, &msg(OK)).expect("matches");
        assert_eq!(
            caps,
            vec![
                ("code".to_string(), "202".to_string()),
                ("totag".to_string(), "j9".to_string()),
                ("c".to_string(), "abc@h".to_string())
            ]
        );
    }

    const NOTIFY: &str = "NOTIFY sip:alice@sip.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK7
From: <sip:juliet@remote.test>;tag=j9
To: <sip:alice@sip.test>;tag=a1
Call-ID: abc@h
CSeq: 2 NOTIFY
Event: presence
Subscription-State: active;expires=599
Content-Type: application/pidf+xml

<?xml version='1.0' encoding='UTF-8'?>
<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:juliet@remote.test'>
  <tuple id='t1'><status><basic>open</basic></status><note>away</note></tuple>
</presence>";

    #[rstest]
    #[case("NOTIFY {alice}\nSubscription-State: active", true)]
    #[case("NOTIFY {alice}\nSubscription-State: active;expires={any}", true)]
    #[case("NOTIFY {alice}\nSubscription-State: terminated", false)]
    #[case("NOTIFY {alice}\nSubscription-State: active;reason={absent}", true)]
    #[case("NOTIFY {alice}\nEvent: Presence", true)]
    #[case(
        "NOTIFY {alice}\n\n<p:presence xmlns:p='urn:ietf:params:xml:ns:pidf'><p:tuple><p:status><p:basic>open</p:basic></p:status></p:tuple></p:presence>",
        true
    )]
    #[case(
        "NOTIFY {alice}\n\n<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:juliet@remote.test'><tuple id='{id:tid}'/></presence>",
        true
    )]
    #[case(
        "NOTIFY {alice}\n\n<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple><status><basic>closed</basic></status></tuple></presence>",
        false
    )]
    #[case("NOTIFY {alice}\n\n<presence xmlns='urn:other'/>", false)]
    fn pidf_bodies_compare_as_xml(#[case] tpl: &str, #[case] ok: bool) {
        let t = prepare(tpl, &vars).expect("template parses");
        let r = match_message(&t, &msg(NOTIFY));
        assert_eq!(r.is_ok(), ok, "{tpl}: {r:?}");
    }

    #[rstest]
    #[case("", SipTemplateError::Empty)]
    #[case("HELLO", SipTemplateError::BadStartLine("HELLO".into()))]
    #[case("SIP/2.0 999", SipTemplateError::BadStartLine("SIP/2.0 999".into()))]
    #[case("SIP/2.0 7xx", SipTemplateError::BadStartLine("SIP/2.0 7xx".into()))]
    #[case("MESSAGE sip:a@b SIP/3.0", SipTemplateError::BadStartLine("MESSAGE sip:a@b SIP/3.0".into()))]
    #[case("MESSAGE sip:a@b\nno colon here", SipTemplateError::BadHeader(2))]
    #[case("MESSAGE sip:a@b\nTo: {nope}", SipTemplateError::Template(TemplateError::UndefinedVariable("nope".into())))]
    #[case(
        "MESSAGE sip:a@b\nTo: x{absent}",
        SipTemplateError::Template(TemplateError::AbsentNotWhole)
    )]
    fn bad_templates(#[case] tpl: &str, #[case] want: SipTemplateError) {
        assert_eq!(prepare(tpl, &vars), Err(want));
    }

    #[test]
    fn mismatch_names_the_header() {
        let t = prepare("MESSAGE sip:juliet@remote.test\nMax-Forwards: 70", &vars).expect("parses");
        let m = match_message(&t, &msg(MESSAGE)).expect_err("differs");
        assert_eq!(m.path, "header Max-Forwards");
        assert_eq!(m.found, "Max-Forwards: 69");
    }

    #[rstest]
    #[case(
        "MESSAGE {alice}\nSubject: {q}\n\nfor {q}",
        "MESSAGE sip:alice@sip.test\nSubject: a'b\n\nfor a'b"
    )]
    #[case(
        "MESSAGE {alice}\n\n<b>{q}</b>",
        "MESSAGE sip:alice@sip.test\n\n<b>a&apos;b</b>"
    )]
    #[case("OPTIONS {alice}", "OPTIONS sip:alice@sip.test")]
    fn payload_substitution(#[case] text: &str, #[case] want: &str) {
        assert_eq!(substitute_payload(text, &vars).as_deref(), Ok(want));
    }

    #[rstest]
    #[case("MESSAGE sip:a@b\n\nhi\n", b"hi".as_slice())]
    #[case("MESSAGE sip:a@b\n\nhi\n\n", b"hi\n".as_slice())]
    #[case("MESSAGE sip:a@b\n\nhi", b"hi".as_slice())]
    #[case("MESSAGE sip:a@b\n", b"".as_slice())]
    fn one_final_line_break_is_not_body(#[case] text: &str, #[case] body: &[u8]) {
        assert_eq!(
            payload_message(text).map(|m| m.body().to_vec()),
            Ok(body.to_vec())
        );
    }

    #[rstest]
    #[case("SIP/2.0 200", 200, "OK")]
    #[case("SIP/2.0 483\n", 483, "Too Many Hops")]
    #[case("SIP/2.0 200 Fine", 200, "Fine")]
    fn status_lines_without_reason_get_one(
        #[case] text: &str,
        #[case] code: u16,
        #[case] reason: &str,
    ) {
        match payload_message(text) {
            Ok(Message::Response(r)) => assert_eq!((r.status, r.reason.as_str()), (code, reason)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn continuation_lines_join() {
        let t = parse("MESSAGE sip:a@b\nSubject: one\n  two", None).expect("parses");
        assert_eq!(t.headers[0].raw, "one two");
    }
}
