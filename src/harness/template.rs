//! Scenario templates: variable substitution, parsing of `xml` templates with placeholders,
//! and XML-aware matching of a received unit against a template (docs/scenarios.md
//! "Templates").
//!
//! Matching compares what RFC 6120 makes significant and ignores what it does not: names are
//! (namespace, local name) pairs (RFC 6120 §4.8, Namespaces in XML §5), so prefixes, attribute
//! order and namespace declarations are not compared; whitespace between elements carries no
//! meaning (RFC 6120 §11.7).

use std::fmt;

use crate::xmpp::codec::{self, Event, StreamHeader};
use crate::xmpp::element::{Element, NsContext, XML_NS, escape_attr};
use crate::xmpp::ns;

/// Values captured by `{id:NAME}` placeholders, in capture order.
pub type Captures = Vec<(String, String)>;

/// Placeholder names the matcher interprets itself; they can never be variables.
pub const RESERVED_NAMES: &[&str] = &["any", "absent", "sut"];

/// Per-stream variables `{S.FIELD}`: the stream id the SUT sent (`id`), the XEP-0185
/// dialback key for it (`key`), the XEP-0114 §3 handshake digest for it (`handshake`).
pub const STREAM_FIELDS: &[&str] = &["id", "key", "handshake"];

/// Longest excerpt of a unit shown in a mismatch or report line.
const DESCRIBE_MAX: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("undefined variable {{{0}}}")]
    UndefinedVariable(String),
    #[error("unterminated placeholder starting at byte {0} (write `{{{{` for a literal brace)")]
    Unterminated(usize),
    #[error(
        "malformed placeholder {{{0}}}: expected {{NAME}}, {{S.id}}, {{S.key}}, {{any}}, {{absent}} or {{id:NAME}}"
    )]
    BadPlaceholder(String),
    #[error("{{absent}} must be a whole attribute value")]
    AbsentNotWhole,
    #[error("unresolved variable {{{0}}} in a template (substitute variables first)")]
    Unresolved(String),
    #[error("template is empty")]
    Empty,
    #[error("a stream header template must be the open tag alone")]
    HeaderNotAlone,
    #[error("template is not well-formed XML: {0}")]
    Xml(String),
}

// ---------------------------------------------------------------------------------------
// Substitution
// ---------------------------------------------------------------------------------------

/// Replace every variable `{NAME}`, `{S.id}`, `{S.key}`, `{S.handshake}` by its XML-escaped value (for
/// `send`). `{any}`, `{absent}` and `{id:NAME}` stay as they are; `{{` and `}}` become literal
/// braces. An undefined variable is an error naming it.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    substitute_inner(text, lookup, false, true)
}

/// [`substitute`] without XML escaping, for SIP text (src/harness/sip_match.rs): values go
/// in as they are, `{{`/`}}` become braces.
pub fn substitute_plain(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    substitute_inner(text, lookup, false, false)
}

/// Substitute variables without XML escaping but keep `{{`/`}}` doubled and placeholders
/// in place, as [`prepare_template`] does before parsing: the input of a SIP template
/// (src/harness/sip_match.rs). `xml_escape` escapes substituted values (for XML bodies).
pub fn substitute_for_template(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    xml_escape: bool,
) -> Result<String, TemplateError> {
    substitute_inner(text, lookup, true, xml_escape)
}

/// Parse one value pattern (placeholders `{any}`, `{id:NAME}`, literal `{{`/`}}`; a whole
/// `{absent}`), for matchers of other wire formats (src/harness/sip_match.rs).
pub fn parse_value_pattern(value: &str) -> Result<ValuePattern, TemplateError> {
    Pattern::parse(value, true)
}

/// Substitute variables, then parse: what an `expect` step does with its `xml`.
///
/// Unlike [`substitute`] followed by [`parse_template`], braces stay escaped through the
/// parse (`{{any}}` is the literal text `{any}`, and a variable's value containing braces is
/// not mistaken for a placeholder). A `{NAME}` after `{id:NAME}` in the same template means
/// "the same value again" (RFC-independent harness rule, docs/scenarios.md).
pub fn prepare_template(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    ctx: &NsContext,
) -> Result<Template, TemplateError> {
    let substituted = substitute_inner(text, lookup, true, true)?;
    parse_template(&substituted, ctx)
}

fn substitute_inner(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    keep_escapes: bool,
    xml_escape: bool,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut captured_here: Vec<String> = Vec::new();
    let mut rest = text;
    let mut pos = 0usize;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            out.push_str(if keep_escapes { &tail[..2] } else { &tail[..1] });
            pos += i + 2;
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            // A lone `}` is not ambiguous: keep it.
            out.push('}');
            pos += i + 1;
            rest = after;
            continue;
        }
        let close = tail.find('}').ok_or(TemplateError::Unterminated(pos + i))?;
        let inner = &tail[1..close];
        match Placeholder::parse(inner)? {
            Placeholder::Any | Placeholder::Absent => out.push_str(&tail[..=close]),
            Placeholder::Capture(name) => {
                captured_here.push(name.to_string());
                out.push_str(&tail[..=close]);
            }
            Placeholder::Var(name) => {
                if keep_escapes && captured_here.iter().any(|c| c == name) {
                    out.push_str("{id:");
                    out.push_str(name);
                    out.push('}');
                } else {
                    let value = lookup(name)
                        .ok_or_else(|| TemplateError::UndefinedVariable(name.to_string()))?;
                    let escaped = if xml_escape {
                        escape_attr(&value)
                    } else {
                        value
                    };
                    if keep_escapes {
                        out.push_str(&escaped.replace('{', "{{").replace('}', "}}"));
                    } else {
                        out.push_str(&escaped);
                    }
                }
            }
        }
        pos += i + close + 1;
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Names captured with `{new:NAME}` in a template text: values that must be fresh, i.e.
/// differ from every value captured or stream id seen earlier in the scenario (RFC 6120
/// §4.7.3: stream ids are unique; DB-16).
pub fn fresh_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{new:") {
        let tail = &rest[i + 5..];
        match tail.find('}') {
            Some(j) => {
                out.push(tail[..j].to_string());
                rest = &tail[j..];
            }
            None => break,
        }
    }
    out
}

/// One `{…}` placeholder, syntactically.
enum Placeholder<'a> {
    Any,
    Absent,
    Capture(&'a str),
    /// `NAME` or `S.FIELD` (see [`STREAM_FIELDS`]).
    Var(&'a str),
}

impl<'a> Placeholder<'a> {
    fn parse(inner: &'a str) -> Result<Placeholder<'a>, TemplateError> {
        let bad = || TemplateError::BadPlaceholder(inner.to_string());
        match inner {
            "any" => return Ok(Placeholder::Any),
            "absent" => return Ok(Placeholder::Absent),
            _ => {}
        }
        // `{new:NAME}` captures like `{id:NAME}`; the runner also checks the value was never
        // seen before in the scenario (see [`fresh_names`]).
        if let Some(name) = inner
            .strip_prefix("id:")
            .or_else(|| inner.strip_prefix("new:"))
        {
            return if is_name(name) && !RESERVED_NAMES.contains(&name) {
                Ok(Placeholder::Capture(name))
            } else {
                Err(bad())
            };
        }
        let ok = match inner.split_once('.') {
            Some((s, field)) => is_name(s) && STREAM_FIELDS.contains(&field),
            None => is_name(inner),
        };
        if ok {
            Ok(Placeholder::Var(inner))
        } else {
            Err(bad())
        }
    }
}

/// Scenario names: `[a-z][a-z0-9_]*`.
pub fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

// ---------------------------------------------------------------------------------------
// Template model
// ---------------------------------------------------------------------------------------

/// A piece of a value pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Lit(String),
    /// `{any}`: any text, possibly empty.
    Any,
    /// `{id:NAME}`: any non-empty text, captured.
    Capture(String),
}

/// An attribute value or text pattern: literal text mixed with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub Vec<Segment>);

impl Pattern {
    /// Parse a value as it came out of the XML parser (entities decoded, braces still
    /// doubled where literal).
    fn parse(value: &str, whole_absent_ok: bool) -> Result<ValuePattern, TemplateError> {
        let mut segs: Vec<Segment> = Vec::new();
        let mut lit = String::new();
        let mut rest = value;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
                lit.push_str(&tail[..1]);
                rest = after;
                continue;
            }
            if let Some(after) = tail.strip_prefix('}') {
                lit.push('}');
                rest = after;
                continue;
            }
            let close = tail
                .find('}')
                .ok_or(TemplateError::Unterminated(value.len() - tail.len()))?;
            let seg = match Placeholder::parse(&tail[1..close])? {
                Placeholder::Any => Segment::Any,
                Placeholder::Capture(n) => Segment::Capture(n.to_string()),
                Placeholder::Absent => {
                    if whole_absent_ok && value == "{absent}" {
                        return Ok(ValuePattern::Absent);
                    }
                    return Err(TemplateError::AbsentNotWhole);
                }
                Placeholder::Var(v) => return Err(TemplateError::Unresolved(v.to_string())),
            };
            if !lit.is_empty() {
                segs.push(Segment::Lit(std::mem::take(&mut lit)));
            }
            segs.push(seg);
            rest = &tail[close + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            segs.push(Segment::Lit(lit));
        }
        Ok(ValuePattern::Value(Pattern(segs)))
    }

    /// Match `s` entirely; on success the captures made are appended to `caps`.
    pub fn matches(&self, s: &str, caps: &mut Captures) -> bool {
        match_segs(&self.0, s, caps)
    }

    fn capture_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        for s in &self.0 {
            if let Segment::Capture(n) = s {
                out.push(n);
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.0 {
            match s {
                Segment::Lit(l) => f.write_str(&l.replace('{', "{{").replace('}', "}}"))?,
                Segment::Any => f.write_str("{any}")?,
                Segment::Capture(n) => write!(f, "{{id:{n}}}")?,
            }
        }
        Ok(())
    }
}

fn match_segs(segs: &[Segment], s: &str, caps: &mut Captures) -> bool {
    let Some((first, rest)) = segs.split_first() else {
        return s.is_empty();
    };
    match first {
        Segment::Lit(l) => s
            .strip_prefix(l.as_str())
            .is_some_and(|t| match_segs(rest, t, caps)),
        Segment::Any => {
            let mark = caps.len();
            for (i, _) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
                if match_segs(rest, &s[i..], caps) {
                    return true;
                }
                caps.truncate(mark);
            }
            false
        }
        Segment::Capture(name) => {
            if let Some(v) = caps.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()) {
                return s
                    .strip_prefix(v.as_str())
                    .is_some_and(|t| !v.is_empty() && match_segs(rest, t, caps));
            }
            let mark = caps.len();
            for (i, _) in s
                .char_indices()
                .skip(1)
                .chain(std::iter::once((s.len(), ' ')))
            {
                if i == 0 {
                    continue;
                }
                caps.push((name.clone(), s[..i].to_string()));
                if match_segs(rest, &s[i..], caps) {
                    return true;
                }
                caps.truncate(mark);
            }
            false
        }
    }
}

/// An attribute's expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuePattern {
    Value(Pattern),
    /// `{absent}`: the attribute must not be present.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrTemplate {
    /// Namespace of the attribute (`""` for unqualified, [`XML_NS`] for `xml:lang`).
    pub ns: String,
    pub name: String,
    pub value: ValuePattern,
}

impl AttrTemplate {
    fn label(&self) -> String {
        attr_label(&self.ns, &self.name)
    }
}

fn attr_label(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_string()
    } else if ns == XML_NS {
        format!("xml:{name}")
    } else {
        format!("{{{ns}}}{name}")
    }
}

/// A template for one element (a stanza or negotiation element, or a child).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementTemplate {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<AttrTemplate>,
    /// Trimmed text pattern, when the template has non-whitespace text.
    pub text: Option<Pattern>,
    pub children: Vec<ElementTemplate>,
}

impl ElementTemplate {
    /// Turn a parsed element into a template: placeholders in attribute values and text
    /// become patterns; whitespace-only text is dropped.
    pub fn from_element(e: &Element) -> Result<ElementTemplate, TemplateError> {
        let mut attrs = Vec::with_capacity(e.attrs.len());
        for a in &e.attrs {
            attrs.push(AttrTemplate {
                ns: a.ns.clone(),
                name: a.name.clone(),
                value: Pattern::parse(&a.value, true)?,
            });
        }
        let text = e.text();
        let text = match text.trim() {
            "" => None,
            t => match Pattern::parse(t, false)? {
                ValuePattern::Value(p) => Some(p),
                ValuePattern::Absent => return Err(TemplateError::AbsentNotWhole),
            },
        };
        let children = e
            .elements()
            .map(ElementTemplate::from_element)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ElementTemplate {
            ns: e.ns.clone(),
            name: e.name.clone(),
            attrs,
            text,
            children,
        })
    }

    fn capture_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        for a in &self.attrs {
            if let ValuePattern::Value(p) = &a.value {
                p.capture_names(out);
            }
        }
        if let Some(t) = &self.text {
            t.capture_names(out);
        }
        for c in &self.children {
            c.capture_names(out);
        }
    }
}

/// A template for a stream header (RFC 6120 §4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    /// Namespace of the `stream` element as written (must be the stream namespace to match).
    pub stream_ns: String,
    /// The content namespace (`xmlns='…'`), if the template declares one.
    pub content_ns: Option<String>,
    /// Other prefixed namespace declarations the header must carry (e.g. `xmlns:db`, which
    /// signals dialback support, XEP-0220 §2.4.1), with the prefix written.
    pub declarations: Vec<(String, String)>,
    /// `from`, `to`, `id`, `version`, `xml:lang` and any other attribute written.
    pub attrs: Vec<AttrTemplate>,
}

/// A parsed `xml` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    Header(HeaderTemplate),
    Element(ElementTemplate),
    /// `</stream:stream>`.
    Close,
}

impl Template {
    /// Names captured by `{id:NAME}` in this template, in document order, each once.
    pub fn capture_names(&self) -> Vec<String> {
        let mut v: Vec<&str> = Vec::new();
        match self {
            Template::Header(h) => {
                for a in &h.attrs {
                    if let ValuePattern::Value(p) = &a.value {
                        p.capture_names(&mut v);
                    }
                }
            }
            Template::Element(e) => e.capture_names(&mut v),
            Template::Close => {}
        }
        let mut out: Vec<String> = Vec::new();
        for n in v {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        }
        out
    }

    fn kind(&self) -> String {
        match self {
            Template::Header(_) => "a stream header".to_string(),
            Template::Element(e) => format!("<{}>", e.name),
            Template::Close => "</stream:stream>".to_string(),
        }
    }
}

/// The namespace context element templates of a stream are parsed in: default namespace
/// `content_ns`, and the `stream` and `db` prefixes bound as on a header (RFC 6120 §4.8.5,
/// XEP-0220 §2).
pub fn stream_context(content_ns: &str) -> NsContext {
    NsContext::new(content_ns)
        .with_prefix("stream", ns::STREAM)
        .with_prefix("db", ns::DIALBACK)
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// Parse a template whose variables are already substituted. A stream header open tag
/// (after an optional prolog) gives [`Template::Header`], `</stream:stream>` gives
/// [`Template::Close`], anything else must be one element, parsed in `ctx`.
pub fn parse_template(text: &str, ctx: &NsContext) -> Result<Template, TemplateError> {
    use quick_xml::events::Event as Qx;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = false;
    loop {
        let start = usize::try_from(reader.buffer_position()).unwrap_or(0);
        let ev = match reader.read_event() {
            Ok(ev) => ev,
            // The reader rejects a close tag without an open one: recognise it by hand.
            Err(e) => {
                return if text.get(start..).is_some_and(is_stream_close) {
                    Ok(Template::Close)
                } else {
                    Err(TemplateError::Xml(e.to_string()))
                };
            }
        };
        let after = usize::try_from(reader.buffer_position()).unwrap_or(text.len());
        let rest_blank = text.get(after..).is_some_and(|r| r.trim().is_empty());
        match ev {
            Qx::Decl(_) | Qx::PI(_) | Qx::Comment(_) | Qx::DocType(_) => continue,
            Qx::Text(t) if t.iter().all(u8::is_ascii_whitespace) => continue,
            Qx::Eof => return Err(TemplateError::Empty),
            Qx::End(e) if e.local_name().as_ref() == b"stream" => {
                return if rest_blank {
                    Ok(Template::Close)
                } else {
                    Err(TemplateError::HeaderNotAlone)
                };
            }
            Qx::Start(e) if e.local_name().as_ref() == b"stream" => {
                if !rest_blank {
                    return Err(TemplateError::HeaderNotAlone);
                }
                return parse_header(&e, ctx).map(Template::Header);
            }
            _ => {
                let body = text.get(start..).unwrap_or(text);
                let el = codec::parse_element(body, ctx)
                    .map_err(|e| TemplateError::Xml(e.to_string()))?;
                return ElementTemplate::from_element(&el).map(Template::Element);
            }
        }
    }
}

/// `</stream:stream>` with any prefix (RFC 6120 §4.4), optional whitespace around it.
fn is_stream_close(s: &str) -> bool {
    let Some(inner) = s
        .trim()
        .strip_prefix("</")
        .and_then(|r| r.strip_suffix('>'))
    else {
        return false;
    };
    let qname = inner.trim_end();
    let local = qname.rsplit_once(':').map_or(qname, |(_, l)| l);
    local == "stream" && !qname.contains(char::is_whitespace)
}

fn parse_header(
    e: &quick_xml::events::BytesStart<'_>,
    ctx: &NsContext,
) -> Result<HeaderTemplate, TemplateError> {
    let xml_err = |m: String| TemplateError::Xml(m);
    let mut local = ctx.clone();
    let mut content_ns = None;
    let mut decls: Vec<(String, String)> = Vec::new();
    let mut raw_attrs: Vec<(String, String)> = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| xml_err(e.to_string()))?;
        let key = std::str::from_utf8(a.key.as_ref())
            .map_err(|e| xml_err(e.to_string()))?
            .to_string();
        let value = a
            .unescape_value()
            .map_err(|e| xml_err(e.to_string()))?
            .into_owned();
        if key == "xmlns" {
            local.bind(None, value.clone());
            content_ns = Some(value);
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            local.bind(Some(p.to_string()), value.clone());
            decls.push((p.to_string(), value));
        } else {
            raw_attrs.push((key, value));
        }
    }
    let qname = std::str::from_utf8(e.name().as_ref())
        .map_err(|e| xml_err(e.to_string()))?
        .to_string();
    let stream_ns = match qname.split_once(':') {
        Some((p, _)) => local
            .prefix_uri(p)
            .ok_or_else(|| xml_err(format!("unbound prefix {p}:")))?
            .to_string(),
        None => local.default.clone(),
    };
    let stream_prefix = qname.split_once(':').map(|(p, _)| p.to_string());
    decls.retain(|(p, _)| Some(p) != stream_prefix.as_ref());
    let mut attrs = Vec::with_capacity(raw_attrs.len());
    for (key, value) in raw_attrs {
        let (ns, name) = match key.split_once(':') {
            Some((p, n)) => (
                local
                    .prefix_uri(p)
                    .ok_or_else(|| xml_err(format!("unbound prefix {p}:")))?
                    .to_string(),
                n.to_string(),
            ),
            None => (String::new(), key),
        };
        attrs.push(AttrTemplate {
            ns,
            name,
            value: Pattern::parse(&value, true)?,
        });
    }
    Ok(HeaderTemplate {
        stream_ns,
        content_ns,
        declarations: decls,
        attrs,
    })
}

// ---------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------

/// Why a unit did not match: where, what the template wanted, what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Location in the received unit, e.g. `/message/body`, `/message/@type`,
    /// `/stream:stream/@id`.
    pub path: String,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at {}: expected {}, found {}",
            self.path, self.expected, self.found
        )
    }
}

impl std::error::Error for Mismatch {}

fn mismatch(path: &str, expected: impl Into<String>, found: impl Into<String>) -> Mismatch {
    Mismatch {
        path: path.to_string(),
        expected: expected.into(),
        found: found.into(),
    }
}

/// Match one received unit against a template (docs/scenarios.md "Templates").
/// `exact` also forbids attributes and children the template does not list.
pub fn match_unit(t: &Template, actual: &Event, exact: bool) -> Result<Captures, Mismatch> {
    let mut caps = Captures::new();
    match (t, actual) {
        (Template::Header(h), Event::Header(a)) => match_header(h, a, exact, &mut caps)?,
        (Template::Element(e), Event::Element(a)) => match_element(e, a, exact, "", &mut caps)?,
        (Template::Close, Event::Close) => {}
        _ => return Err(mismatch("/", t.kind(), describe_event(actual))),
    }
    Ok(caps)
}

fn match_attr_value(
    t: &AttrTemplate,
    actual: Option<&str>,
    path: &str,
    caps: &mut Captures,
) -> Result<(), Mismatch> {
    let label = t.label();
    let p = format!("{path}/@{label}");
    match (&t.value, actual) {
        (ValuePattern::Absent, None) => Ok(()),
        (ValuePattern::Absent, Some(v)) => {
            Err(mismatch(&p, "no attribute", format!("{label}='{v}'")))
        }
        (ValuePattern::Value(pat), None) => {
            Err(mismatch(&p, format!("{label}='{pat}'"), "no attribute"))
        }
        (ValuePattern::Value(pat), Some(v)) => {
            let mark = caps.len();
            if pat.matches(v, caps) {
                Ok(())
            } else {
                caps.truncate(mark);
                Err(mismatch(
                    &p,
                    format!("{label}='{pat}'"),
                    format!("{label}='{v}'"),
                ))
            }
        }
    }
}

/// `exact`: every attribute present must be listed (as a value pattern) in the template.
fn check_no_extra<'a>(
    t: &[AttrTemplate],
    actual: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
    path: &str,
) -> Result<(), Mismatch> {
    for (ns, name, value) in actual {
        let listed = t
            .iter()
            .any(|a| a.ns == ns && a.name == name && matches!(a.value, ValuePattern::Value(_)));
        if !listed {
            let label = attr_label(ns, name);
            return Err(mismatch(
                &format!("{path}/@{label}"),
                "no attribute (exact)",
                format!("{label}='{value}'"),
            ));
        }
    }
    Ok(())
}

fn header_attr<'a>(h: &'a StreamHeader, ns_: &str, name: &str) -> Option<&'a str> {
    let field = match (ns_, name) {
        ("", "from") => h.from.as_deref(),
        ("", "to") => h.to.as_deref(),
        ("", "id") => h.id.as_deref(),
        ("", "version") => h.version.as_deref(),
        (XML_NS, "lang") => h.lang.as_deref(),
        _ => None,
    };
    field.or_else(|| {
        h.attrs
            .iter()
            .find(|a| a.ns == ns_ && a.name == name)
            .map(|a| a.value.as_str())
    })
}

fn match_header(
    t: &HeaderTemplate,
    a: &StreamHeader,
    exact: bool,
    caps: &mut Captures,
) -> Result<(), Mismatch> {
    let path = "/stream:stream";
    // RFC 6120 §4.8.1: the stream element is qualified by the stream namespace, whatever
    // prefix is used (STR-12).
    let actual_stream_ns = a
        .declarations
        .iter()
        .find(|(p, _)| *p == a.stream_prefix)
        .map(|(_, u)| u.as_str())
        .unwrap_or(ns::STREAM);
    if actual_stream_ns != t.stream_ns {
        return Err(mismatch(
            path,
            format!("stream namespace '{}'", t.stream_ns),
            format!("'{actual_stream_ns}'"),
        ));
    }
    if let Some(c) = &t.content_ns
        && *c != a.content_ns
    {
        return Err(mismatch(
            &format!("{path}/@xmlns"),
            format!("xmlns='{c}'"),
            format!("xmlns='{}'", a.content_ns),
        ));
    }
    for (p, uri) in &t.declarations {
        if !a.declarations.iter().any(|(q, u)| q.is_some() && u == uri) {
            return Err(mismatch(
                &format!("{path}/@xmlns:{p}"),
                format!("xmlns:{p}='{uri}'"),
                "no such declaration",
            ));
        }
    }
    for at in &t.attrs {
        match_attr_value(at, header_attr(a, &at.ns, &at.name), path, caps)?;
    }
    if exact {
        let fields = [
            ("", "from", &a.from),
            ("", "to", &a.to),
            ("", "id", &a.id),
            ("", "version", &a.version),
            (XML_NS, "lang", &a.lang),
        ];
        let named = fields
            .iter()
            .filter_map(|(n, k, v)| v.as_deref().map(|v| (*n, *k, v)));
        let others = a
            .attrs
            .iter()
            .map(|x| (x.ns.as_str(), x.name.as_str(), x.value.as_str()));
        check_no_extra(&t.attrs, named.chain(others), path)?;
    }
    Ok(())
}

fn match_element(
    t: &ElementTemplate,
    a: &Element,
    exact: bool,
    parent: &str,
    caps: &mut Captures,
) -> Result<(), Mismatch> {
    let path = format!("{parent}/{}", t.name);
    if t.ns != a.ns || t.name != a.name {
        return Err(mismatch(
            &path,
            element_label(&t.ns, &t.name),
            element_label(&a.ns, &a.name),
        ));
    }
    for at in &t.attrs {
        match_attr_value(at, a.attr_ns(&at.ns, &at.name), &path, caps)?;
    }
    if exact {
        check_no_extra(
            &t.attrs,
            a.attrs
                .iter()
                .map(|x| (x.ns.as_str(), x.name.as_str(), x.value.as_str())),
            &path,
        )?;
    }
    let text = a.text();
    let text = text.trim();
    match &t.text {
        Some(p) => {
            let mark = caps.len();
            if !p.matches(text, caps) {
                caps.truncate(mark);
                return Err(mismatch(
                    &format!("{path}/text()"),
                    format!("'{p}'"),
                    format!("'{}'", excerpt(text)),
                ));
            }
        }
        None if exact && !text.is_empty() => {
            return Err(mismatch(
                &format!("{path}/text()"),
                "no text (exact)",
                format!("'{}'", excerpt(text)),
            ));
        }
        None => {}
    }
    let actual: Vec<&Element> = a.elements().collect();
    if exact {
        if actual.len() != t.children.len() {
            return Err(mismatch(
                &path,
                format!("{} child element(s) (exact)", t.children.len()),
                format!("{}: {}", actual.len(), child_names(&actual)),
            ));
        }
        for (tc, ac) in t.children.iter().zip(actual.iter()) {
            match_element(tc, ac, exact, &path, caps)?;
        }
        return Ok(());
    }
    // Each template child matches a distinct actual child, in order (a subsequence).
    let mut next = 0usize;
    for tc in &t.children {
        let mut closest: Option<Mismatch> = None;
        let mut found = None;
        for (i, ac) in actual.iter().enumerate().skip(next) {
            let mark = caps.len();
            match match_element(tc, ac, exact, &path, caps) {
                Ok(()) => {
                    found = Some(i);
                    break;
                }
                Err(m) => {
                    caps.truncate(mark);
                    // A same-named child that failed deeper says more than "missing".
                    if closest.is_none() && ac.ns == tc.ns && ac.name == tc.name {
                        closest = Some(m);
                    }
                }
            }
        }
        match found {
            Some(i) => next = i + 1,
            None => {
                return Err(closest.unwrap_or_else(|| {
                    let rest: Vec<&Element> = actual.iter().skip(next).copied().collect();
                    mismatch(
                        &format!("{path}/{}", tc.name),
                        format!("child {}", element_label(&tc.ns, &tc.name)),
                        if rest.is_empty() {
                            "no further child".to_string()
                        } else {
                            child_names(&rest)
                        },
                    )
                }));
            }
        }
    }
    Ok(())
}

fn element_label(ns_: &str, name: &str) -> String {
    format!("<{name} xmlns='{ns_}'>")
}

fn child_names(els: &[&Element]) -> String {
    if els.is_empty() {
        return "none".to_string();
    }
    els.iter()
        .map(|e| format!("<{}>", e.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn excerpt(s: &str) -> String {
    if s.len() <= DESCRIBE_MAX {
        return s.to_string();
    }
    let mut end = DESCRIBE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Short canonical text of a received unit, for mismatch reports.
pub fn describe_event(e: &Event) -> String {
    match e {
        Event::Header(h) => describe_header(h),
        Event::Element(el) => excerpt(&el.to_xml(&stream_context(ns::SERVER))),
        Event::Close => "</stream:stream>".to_string(),
        Event::Whitespace(n) => format!("(whitespace ×{n})"),
    }
}

fn describe_header(h: &StreamHeader) -> String {
    let mut s = String::from("<stream:stream");
    for (k, v) in [
        ("from", &h.from),
        ("to", &h.to),
        ("id", &h.id),
        ("version", &h.version),
        ("xml:lang", &h.lang),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}='{}'", escape_attr(v)));
        }
    }
    s.push_str(&format!(" xmlns='{}'", escape_attr(&h.content_ns)));
    s.push('>');
    excerpt(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn vars(name: &str) -> Option<String> {
        match name {
            "sut" => Some("sut.test".into()),
            "rx" => Some("remote.test".into()),
            "in.id" => Some("abc".into()),
            "q" => Some("a'b&c".into()),
            "br" => Some("x{y}".into()),
            _ => None,
        }
    }

    #[rstest]
    #[case("to='{sut}'", "to='sut.test'")]
    #[case("{rx}/{in.id}", "remote.test/abc")]
    #[case("v='{q}'", "v='a&apos;b&amp;c'")]
    #[case("{any} {absent} {id:sid}", "{any} {absent} {id:sid}")]
    #[case("{{sut}} }}", "{sut} }")]
    #[case("a } b", "a } b")]
    #[case("no vars", "no vars")]
    fn substitute_ok(#[case] text: &str, #[case] want: &str) {
        assert_eq!(substitute(text, &vars), Ok(want.to_string()));
    }

    #[rstest]
    #[case("{nope}", TemplateError::UndefinedVariable("nope".into()))]
    #[case("{out.id}", TemplateError::UndefinedVariable("out.id".into()))]
    #[case("{c.handshake}", TemplateError::UndefinedVariable("c.handshake".into()))]
    #[case("x {sut", TemplateError::Unterminated(2))]
    #[case("{Bad}", TemplateError::BadPlaceholder("Bad".into()))]
    #[case("{in.port}", TemplateError::BadPlaceholder("in.port".into()))]
    #[case("{id:}", TemplateError::BadPlaceholder("id:".into()))]
    #[case("{id:any}", TemplateError::BadPlaceholder("id:any".into()))]
    fn substitute_err(#[case] text: &str, #[case] want: TemplateError) {
        assert_eq!(substitute(text, &vars), Err(want));
    }

    fn header(from: &str, to: &str, id: &str) -> StreamHeader {
        StreamHeader {
            stream_prefix: Some("stream".into()),
            content_ns: ns::SERVER.into(),
            from: Some(from.into()),
            to: Some(to.into()),
            id: Some(id.into()),
            version: Some("1.0".into()),
            lang: None,
            declarations: vec![
                (None, ns::SERVER.into()),
                (Some("stream".into()), ns::STREAM.into()),
                (Some("db".into()), ns::DIALBACK.into()),
            ],
            attrs: vec![],
        }
    }

    const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
        xmlns:stream='http://etherx.jabber.org/streams' from='{sut}' to='{rx}' id='{id:sid}' version='1.0'>";

    fn tpl(text: &str) -> Template {
        match prepare_template(text, &vars, &stream_context(ns::SERVER)) {
            Ok(t) => t,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn header_template_matches_and_captures() {
        let t = tpl(HDR);
        let got = match_unit(
            &t,
            &Event::Header(header("sut.test", "remote.test", "s1")),
            false,
        );
        assert_eq!(got, Ok(vec![("sid".to_string(), "s1".to_string())]));
        assert_eq!(t.capture_names(), vec!["sid".to_string()]);
    }

    #[rstest]
    #[case(header("other.test", "remote.test", "s1"), "/stream:stream/@from")]
    #[case(header("sut.test", "remote.test", ""), "/stream:stream/@id")]
    #[case(StreamHeader { content_ns: ns::CLIENT.into(), ..header("sut.test", "remote.test", "s") }, "/stream:stream/@xmlns")]
    #[case(StreamHeader { version: None, ..header("sut.test", "remote.test", "s") }, "/stream:stream/@version")]
    #[case(StreamHeader { declarations: vec![(Some("stream".into()), "urn:wrong".into())], ..header("sut.test", "remote.test", "s") }, "/stream:stream")]
    fn header_template_mismatches(#[case] h: StreamHeader, #[case] path: &str) {
        let got = match_unit(&tpl(HDR), &Event::Header(h), false);
        assert_eq!(got.map_err(|m| m.path), Err(path.to_string()));
    }

    #[test]
    fn header_db_declaration_and_exact() {
        let t = tpl(
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
             xmlns:db='jabber:server:dialback' from='{sut}' to='{rx}' id='{any}' version='1.0' xml:lang='{absent}'>",
        );
        let h = header("sut.test", "remote.test", "s");
        assert!(match_unit(&t, &Event::Header(h.clone()), true).is_ok());
        let no_db = StreamHeader {
            declarations: h.declarations[..2].to_vec(),
            ..h.clone()
        };
        let m = match_unit(&t, &Event::Header(no_db), false)
            .err()
            .map(|m| m.path);
        assert_eq!(m.as_deref(), Some("/stream:stream/@xmlns:db"));
        let lang = StreamHeader {
            lang: Some("en".into()),
            ..h.clone()
        };
        let m = match_unit(&t, &Event::Header(lang), false)
            .err()
            .map(|m| m.path);
        assert_eq!(m.as_deref(), Some("/stream:stream/@xml:lang"));
        // exact: an attribute the template does not list fails.
        let t2 = tpl(
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='{sut}' to='{rx}' version='1.0'>",
        );
        let m = match_unit(&t2, &Event::Header(h.clone()), true)
            .err()
            .map(|m| m.path);
        assert_eq!(m.as_deref(), Some("/stream:stream/@id"));
        assert!(match_unit(&t2, &Event::Header(h), false).is_ok());
    }

    #[test]
    fn close_and_kind_mismatch() {
        assert_eq!(tpl("</stream:stream>"), Template::Close);
        assert_eq!(
            match_unit(&Template::Close, &Event::Close, false),
            Ok(vec![])
        );
        let m = match_unit(&Template::Close, &Event::Whitespace(1), false).err();
        assert_eq!(
            m.map(|m| m.to_string()),
            Some("at /: expected </stream:stream>, found (whitespace ×1)".to_string())
        );
        let m = match_unit(&tpl(HDR), &Event::Close, false)
            .err()
            .map(|m| m.expected);
        assert_eq!(m.as_deref(), Some("a stream header"));
    }

    #[rstest]
    #[case("", TemplateError::Empty)]
    #[case("<?xml version='1.0'?>  ", TemplateError::Empty)]
    #[case(
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><x/>",
        TemplateError::HeaderNotAlone
    )]
    #[case("<message type='{absent}x'/>", TemplateError::AbsentNotWhole)]
    #[case("<message>{absent}</message>", TemplateError::AbsentNotWhole)]
    #[case("<message to='{rx2}'/>", TemplateError::Unresolved("rx2".into()))]
    fn parse_errors(#[case] text: &str, #[case] want: TemplateError) {
        assert_eq!(parse_template(text, &stream_context(ns::SERVER)), Err(want));
    }

    #[rstest]
    #[case(&[Segment::Lit("x-".into()), Segment::Capture("n".into())], "x-42", Some(vec![("n", "42")]))]
    #[case(&[Segment::Lit("x-".into()), Segment::Capture("n".into())], "x-", None)]
    #[case(&[Segment::Lit("x-".into()), Segment::Capture("n".into())], "y-1", None)]
    #[case(&[Segment::Any], "", Some(vec![]))]
    #[case(&[Segment::Any, Segment::Lit("@b".into())], "a@b", Some(vec![]))]
    #[case(&[Segment::Capture("a".into()), Segment::Lit("/".into()), Segment::Capture("a".into())], "ü/ü", Some(vec![("a", "ü")]))]
    #[case(&[Segment::Capture("a".into()), Segment::Lit("/".into()), Segment::Capture("a".into())], "x/y", None)]
    #[case(&[Segment::Capture("a".into()), Segment::Lit(".".into()), Segment::Capture("b".into())], "p.q.r", Some(vec![("a", "p"), ("b", "q.r")]))]
    fn pattern_matching(
        #[case] segs: &[Segment],
        #[case] s: &str,
        #[case] want: Option<Vec<(&str, &str)>>,
    ) {
        let mut caps = Captures::new();
        let ok = Pattern(segs.to_vec()).matches(s, &mut caps);
        let want = want.map(|w| {
            w.into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Captures>()
        });
        assert_eq!(if ok { Some(caps) } else { None }, want);
    }

    // --- element templates, built through from_element so they do not depend on the XML
    // parser (parse_template tests on element text live with the codec-backed tests below).

    fn el(name: &str) -> Element {
        Element::new(ns::SERVER, name)
    }

    fn et(e: Element) -> Template {
        match ElementTemplate::from_element(&e) {
            Ok(t) => Template::Element(t),
            Err(err) => panic!("{err}"),
        }
    }

    fn msg() -> Element {
        el("message")
            .with_attr("from", "a@remote.test/r")
            .with_attr("to", "b@sut.test")
            .with_attr("id", "m1")
            .with_attr("type", "chat")
            .with_text("\n  ")
            .with_child(el("thread").with_text("t1"))
            .with_child(el("body").with_text("  hello  "))
            .with_child(Element::new(ns::PING, "ping"))
    }

    #[rstest]
    // attributes: subset, order ignored, values, placeholders
    #[case(el("message").with_attr("to", "b@sut.test").with_attr("from", "a@remote.test/r"), false, Ok(vec![]))]
    #[case(el("message").with_attr("id", "{id:mid}"), false, Ok(vec![("mid", "m1")]))]
    #[case(el("message").with_attr("from", "{id:u}@remote.test/{any}"), false, Ok(vec![("u", "a")]))]
    #[case(el("message").with_attr("type", "normal"), false, Err("/message/@type"))]
    #[case(el("message").with_attr("xml:lang", "en"), false, Err("/message/@xml:lang"))]
    #[case(el("message").with_attr("lang", "{any}"), false, Err("/message/@lang"))]
    #[case(el("message").with_attr("type", "{absent}"), false, Err("/message/@type"))]
    #[case(el("message").with_attr("xtype", "{absent}"), false, Ok(vec![]))]
    #[case(el("message").with_attr("id", "{id:x}").with_attr("type", "{id:x}"), false, Err("/message/@type"))]
    // names: namespace and local name
    #[case(el("presence"), false, Err("/presence"))]
    #[case(Element::new(ns::CLIENT, "message"), false, Err("/message"))]
    // children: subsequence in order
    #[case(el("message").with_child(el("body")), false, Ok(vec![]))]
    #[case(el("message").with_child(el("thread")).with_child(el("body")), false, Ok(vec![]))]
    #[case(el("message").with_child(el("body")).with_child(el("thread")), false, Err("/message/thread"))]
    #[case(el("message").with_child(el("body")).with_child(el("body")), false, Err("/message/body"))]
    #[case(el("message").with_child(Element::new(ns::PING, "ping")), false, Ok(vec![]))]
    #[case(el("message").with_child(el("ping")), false, Err("/message/ping"))]
    // text: trimmed comparison, placeholders in text
    #[case(el("message").with_child(el("body").with_text("hello")), false, Ok(vec![]))]
    #[case(el("message").with_child(el("body").with_text("\n hello\n")), false, Ok(vec![]))]
    #[case(el("message").with_child(el("body").with_text("hell")), false, Err("/message/body/text()"))]
    #[case(el("message").with_child(el("body").with_text("{id:b}")), false, Ok(vec![("b", "hello")]))]
    #[case(el("message").with_child(el("body").with_text("he{any}")), false, Ok(vec![]))]
    #[case(el("message").with_child(el("body").with_text("   ")), false, Ok(vec![]))]
    // exact
    #[case(msg(), true, Ok(vec![]))]
    #[case(el("message").with_attr("from", "{any}").with_attr("to", "{any}").with_attr("id", "{any}"), true, Err("/message/@type"))]
    #[case(el("message").with_attr("from", "{any}").with_attr("to", "{any}").with_attr("id", "{any}").with_attr("type", "{any}").with_child(el("body")), true, Err("/message"))]
    fn element_rules(
        #[case] t: Element,
        #[case] exact: bool,
        #[case] want: Result<Vec<(&str, &str)>, &str>,
    ) {
        let got = match_unit(&et(t), &Event::Element(msg()), exact).map_err(|m| m.path);
        let want = want
            .map(|w| {
                w.into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Captures>()
            })
            .map_err(str::to_string);
        assert_eq!(got, want);
    }

    #[test]
    fn exact_text_and_child_order() {
        let t = msg();
        let mut other = msg();
        other.children.swap(1, 2);
        let got = match_unit(&et(t), &Event::Element(other), true).map_err(|m| m.path);
        assert_eq!(got, Err("/message/thread".to_string()));
        let t = el("a").with_child(el("b"));
        let actual = el("a").with_child(el("b").with_text("x"));
        assert!(match_unit(&et(t.clone()), &Event::Element(actual.clone()), false).is_ok());
        let got = match_unit(&et(t), &Event::Element(actual), true).map_err(|m| m.path);
        assert_eq!(got, Err("/a/b/text()".to_string()));
    }

    #[test]
    fn nested_mismatch_is_reported_deep() {
        let t = el("message").with_child(el("body").with_text("bye"));
        let m = match match_unit(&et(t), &Event::Element(msg()), false) {
            Err(m) => m,
            Ok(c) => panic!("matched: {c:?}"),
        };
        assert_eq!(m.path, "/message/body/text()");
        assert_eq!(
            m.to_string(),
            "at /message/body/text(): expected 'bye', found 'hello'"
        );
    }

    #[test]
    fn prepare_keeps_literal_braces_and_same_template_captures() {
        // Same-template reuse: `{n}` after `{id:n}` becomes a second capture of `n`.
        let s = substitute_inner(
            "<m id='{id:n}' to='{n}' v='{br}' w='{{any}}'/>",
            &vars,
            true,
            true,
        );
        assert_eq!(
            s.as_deref(),
            Ok("<m id='{id:n}' to='{id:n}' v='x{{y}}' w='{{any}}'/>")
        );
        match Pattern::parse("x{{y}}", true) {
            Ok(ValuePattern::Value(p)) => assert_eq!(p.0, vec![Segment::Lit("x{y}".into())]),
            other => panic!("{other:?}"),
        }
    }

    #[rstest]
    #[case("<message to='{rx}' id='{id:i}'><body>{any}</body></message>", Ok(vec![("i", "m1")]))]
    #[case("<?xml version='1.0'?>\n<message><body>hello</body></message>", Ok(vec![]))]
    #[case("<message xml:lang='{absent}'><ping xmlns='urn:xmpp:ping'/></message>", Ok(vec![]))]
    #[case("<message><ping/></message>", Err("/message/ping"))]
    #[case("<db:result type='valid'/>", Err("/result"))]
    #[case("<message><body>{{any}}</body></message>", Err("/message/body/text()"))]
    fn element_templates_from_text(
        #[case] text: &str,
        #[case] want: Result<Vec<(&str, &str)>, &str>,
    ) {
        let actual = el("message")
            .with_attr("to", "remote.test")
            .with_attr("id", "m1")
            .with_child(el("body").with_text("hello"))
            .with_child(Element::new(ns::PING, "ping"));
        let got = match_unit(&tpl(text), &Event::Element(actual), false).map_err(|m| m.path);
        let want = want
            .map(|w| {
                w.into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Captures>()
            })
            .map_err(str::to_string);
        assert_eq!(got, want);
    }

    #[test]
    fn dialback_template_in_stream_context() {
        let t = tpl("<db:result from='{sut}' to='{rx}' type='valid'/>");
        let actual = Element::new(ns::DIALBACK, "result")
            .with_prefix("xdb")
            .with_attr("type", "valid")
            .with_attr("to", "remote.test")
            .with_attr("from", "sut.test");
        assert_eq!(match_unit(&t, &Event::Element(actual), true), Ok(vec![]));
    }

    #[test]
    fn describe_units() {
        let h = header("sut.test", "remote.test", "s1");
        assert_eq!(
            describe_event(&Event::Header(h)),
            "<stream:stream from='sut.test' to='remote.test' id='s1' version='1.0' xmlns='jabber:server'>"
        );
        let e = el("message").with_child(Element::new(ns::PING, "ping"));
        assert_eq!(
            describe_event(&Event::Element(e)),
            "<message><ping xmlns='urn:xmpp:ping'/></message>"
        );
        let long = el("message").with_child(el("body").with_text("x".repeat(1000)));
        assert!(describe_event(&Event::Element(long)).chars().count() <= DESCRIBE_MAX + 1);
    }
}
