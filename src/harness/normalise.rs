//! Transcript normaliser: a readable, deterministic text of a run for insta snapshots
//! (docs/scenarios.md "Transcript and snapshot").
//!
//! Rewrites work on the parsed units, never on raw text: attributes are sorted, namespace
//! declarations are dropped except where an element leaves the namespace in scope (RFC 6120
//! §4.8.3: the namespace, not its declaration, is what counts), and volatile values get stable
//! labels numbered by first appearance — stream ids `[streamN]` (a `db:verify` id names a
//! stream, XEP-0220 §2.1.2, so it shares the stream's label), stanza ids `[idN]`, dialback
//! keys `[keyN]`, the SUT's domains `{sut}`, TCP ports `[port]`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use super::transcript::{Dir, Entry, Transcript, Unit};
use crate::xmpp::codec::StreamHeader;
use crate::xmpp::element::{Element, Node, XML_NS, escape_attr, escape_text};
use crate::xmpp::ns;

#[path = "sip_normalise.rs"]
mod sip_normalise;

/// What the normaliser needs to know about the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NormaliseContext {
    /// The SUT's XMPP domains; each is shown as `{sut}`.
    pub sut_domains: Vec<String>,
    /// The SUT's gateway domains (SIP users' domain, RFC 7247 §6); each is shown as `{gw}`,
    /// so transcripts of SIP scenarios are the same against every target.
    pub gw_domains: Vec<String>,
}

/// Lines longer than this are wrapped, one child element per indented line.
const WRAP_AT: usize = 160;
/// Longest excerpt of undecodable bytes shown.
const UNDECODABLE_MAX: usize = 200;

/// Render a transcript, one entry per line (long elements wrap with indentation).
pub fn normalise(t: &Transcript, ctx: &NormaliseContext) -> String {
    let mut n = Normaliser {
        ctx,
        labels: Labels::default(),
        content_ns: HashMap::new(),
    };
    let mut out = String::new();
    for e in &t.entries {
        n.entry(e, &mut out);
    }
    out
}

/// Stable labels, numbered by first appearance per kind.
#[derive(Debug, Default)]
struct Labels {
    map: HashMap<(&'static str, String), String>,
    counts: HashMap<&'static str, usize>,
}

impl Labels {
    fn get(&mut self, kind: &'static str, value: &str) -> String {
        if let Some(l) = self.map.get(&(kind, value.to_string())) {
            return l.clone();
        }
        let c = self.counts.entry(kind).or_insert(0);
        *c += 1;
        let l = format!("[{kind}{c}]");
        self.map.insert((kind, value.to_string()), l.clone());
        l
    }

    /// The label already given to `value` as a `kind`, if any.
    fn known(&self, kind: &'static str, value: &str) -> Option<String> {
        self.map.get(&(kind, value.to_string())).cloned()
    }
}

struct Normaliser<'a> {
    ctx: &'a NormaliseContext,
    labels: Labels,
    /// Content namespace of each (actor, stream), from its last header.
    content_ns: HashMap<(String, String), String>,
}

impl Normaliser<'_> {
    fn entry(&mut self, e: &Entry, out: &mut String) {
        let arrow = match e.dir {
            Dir::ToSut => "→",
            Dir::FromSut => "←",
        };
        let prefix = format!("{}/{} {arrow} ", e.actor, e.stream);
        let key = (e.actor.clone(), e.stream.clone());
        match &e.unit {
            Unit::Note(text) => {
                for (i, l) in text.lines().enumerate() {
                    out.push_str(if i == 0 { "# " } else { "#   " });
                    out.push_str(l);
                    out.push('\n');
                }
                if text.is_empty() {
                    out.push_str("#\n");
                }
            }
            Unit::Connected { local, peer } => {
                // The side that opened the connection is written first.
                let (a, b) = match e.dir {
                    Dir::ToSut => (local, peer),
                    Dir::FromSut => (peer, local),
                };
                let _ = writeln!(out, "{prefix}(connected {} → {})", addr(a), addr(b));
            }
            Unit::Header(h) => {
                self.content_ns.insert(key, h.content_ns.clone());
                let line = self.header(h);
                let _ = writeln!(out, "{prefix}{line}");
            }
            Unit::Element(el) => {
                let default_ns = self
                    .content_ns
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| ns::SERVER.to_string());
                let one = self.element(el, &default_ns);
                if prefix.chars().count() + one.chars().count() <= WRAP_AT
                    || el.elements().next().is_none()
                {
                    let _ = writeln!(out, "{prefix}{one}");
                } else {
                    let mut lines = Vec::new();
                    self.element_lines(el, &default_ns, 0, &mut lines);
                    for (i, l) in lines.iter().enumerate() {
                        if i == 0 {
                            let _ = writeln!(out, "{prefix}{l}");
                        } else {
                            let _ = writeln!(out, "{:w$}{l}", "", w = prefix.chars().count());
                        }
                    }
                }
            }
            Unit::StreamClose => {
                let _ = writeln!(out, "{prefix}</stream:stream>");
            }
            Unit::Whitespace(n) => {
                let _ = writeln!(out, "{prefix}(whitespace ×{n})");
            }
            Unit::Undecodable { bytes, reason } => {
                let _ = writeln!(
                    out,
                    "{prefix}(undecodable \"{}\": {reason})",
                    printable(bytes)
                );
            }
            Unit::Eof => {
                let _ = writeln!(out, "{prefix}(eof)");
            }
            Unit::Reset => {
                let _ = writeln!(out, "{prefix}(reset)");
            }
            Unit::Tls {
                version,
                alpn,
                peer,
            } => {
                let alpn = alpn.as_deref().unwrap_or("none");
                let _ = writeln!(
                    out,
                    "{prefix}(tls {version}, alpn {alpn}; peer certificate: {peer})"
                );
            }
            // Retransmissions depend on timing: recorded, not snapshotted.
            Unit::Sip {
                message,
                retransmission: false,
            } => self.sip_message(message, &prefix, out),
            Unit::Sip { .. } => {}
        }
    }

    /// A domain or JID with any gateway domain as its domainpart replaced by `{gw}`, any
    /// SUT domain by `{sut}` (RFC 7622 §3.2: `[local@]domain[/resource]`).
    fn jid(&self, v: &str) -> String {
        let (bare, resource) = match v.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (v, None),
        };
        let (local, domain) = match bare.rsplit_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, bare),
        };
        let is = |list: &[String]| list.iter().any(|d| d.eq_ignore_ascii_case(domain));
        let label = if is(&self.ctx.gw_domains) {
            "{gw}"
        } else if is(&self.ctx.sut_domains) {
            "{sut}"
        } else {
            return v.to_string();
        };
        let mut s = String::new();
        if let Some(l) = local {
            s.push_str(l);
            s.push('@');
        }
        s.push_str(label);
        if let Some(r) = resource {
            s.push('/');
            s.push_str(r);
        }
        s
    }

    fn header(&mut self, h: &StreamHeader) -> String {
        let mut attrs: Vec<(String, String)> = Vec::new();
        let fields = [
            ("", "from", &h.from),
            ("", "to", &h.to),
            ("", "id", &h.id),
            ("", "version", &h.version),
            (XML_NS, "lang", &h.lang),
        ];
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (ns_, name, v) in fields {
            if let Some(v) = v {
                attrs.push((attr_label(ns_, name), self.header_value(name, v)));
                seen.push((ns_, name));
            }
        }
        for a in &h.attrs {
            if !seen.contains(&(a.ns.as_str(), a.name.as_str())) {
                let v = if a.ns.is_empty() {
                    self.header_value(&a.name, &a.value)
                } else {
                    a.value.clone()
                };
                attrs.push((attr_label(&a.ns, &a.name), v));
            }
        }
        // Declarations that change meaning: a content namespace other than jabber:server
        // (RFC 6120 §4.8.2) and the dialback declaration (XEP-0220 §2.4.1, DB-01).
        if h.content_ns != ns::SERVER {
            attrs.push(("xmlns".into(), h.content_ns.clone()));
        }
        if let Some((p, u)) = h
            .declarations
            .iter()
            .find(|(p, u)| p.is_some() && u == ns::DIALBACK)
        {
            attrs.push((format!("xmlns:{}", p.as_deref().unwrap_or("db")), u.clone()));
        }
        attrs.sort();
        let prefix = h
            .stream_prefix
            .as_deref()
            .map_or(String::new(), |p| format!("{p}:"));
        let mut s = format!("<{prefix}stream");
        for (k, v) in attrs {
            let _ = write!(s, " {k}='{}'", escape_attr(&v));
        }
        s.push('>');
        s
    }

    fn header_value(&mut self, name: &str, v: &str) -> String {
        match name {
            "id" => self.labels.get("stream", v),
            "from" | "to" => self.jid(v),
            _ => v.to_string(),
        }
    }

    /// Qualified name as shown, and whether the default namespace changes (needs `xmlns`).
    fn qname(el: &Element, default_ns: &str) -> (String, Option<String>) {
        if el.ns == ns::STREAM {
            (format!("stream:{}", el.name), None)
        } else if el.ns == ns::DIALBACK {
            (format!("db:{}", el.name), None)
        } else if el.ns != default_ns {
            (el.name.clone(), Some(el.ns.clone()))
        } else {
            (el.name.clone(), None)
        }
    }

    /// The default namespace in scope inside `el`.
    fn inner_default(el: &Element, default_ns: &str) -> String {
        if el.ns == ns::STREAM || el.ns == ns::DIALBACK {
            default_ns.to_string()
        } else {
            el.ns.clone()
        }
    }

    fn open_tag(&mut self, el: &Element, default_ns: &str, empty: bool) -> String {
        let (qname, xmlns) = Self::qname(el, default_ns);
        let is_verify = el.ns == ns::DIALBACK && el.name == "verify";
        let mut attrs: Vec<(String, String)> = el
            .attrs
            .iter()
            .map(|a| {
                let v = if a.ns.is_empty() && a.name == "id" {
                    // XEP-0220 §2.1.2: the db:verify id is the stream id it vouches for.
                    self.labels
                        .get(if is_verify { "stream" } else { "id" }, &a.value)
                } else if a.ns.is_empty() {
                    self.jid(&a.value)
                } else {
                    a.value.clone()
                };
                (attr_label(&a.ns, &a.name), v)
            })
            .collect();
        attrs.sort();
        let mut s = format!("<{qname}");
        if let Some(x) = xmlns {
            let _ = write!(s, " xmlns='{}'", escape_attr(&x));
        }
        for (k, v) in attrs {
            let _ = write!(s, " {k}='{}'", escape_attr(&v));
        }
        s.push_str(if empty { "/>" } else { ">" });
        s
    }

    /// Significant children: whitespace-only text is dropped when the element has element
    /// children (RFC 6120 §11.7).
    fn children(el: &Element) -> Vec<&Node> {
        let has_el = el.elements().next().is_some();
        el.children
            .iter()
            .filter(|n| !matches!(n, Node::Text(t) if has_el && t.trim().is_empty()))
            .collect()
    }

    fn text(&mut self, el: &Element, t: &str) -> String {
        // A gateway may carry a SIP Call-ID into <thread> (RFC 7572 §5, D-03): it keeps
        // the Call-ID's label (src/harness/sip_normalise.rs).
        if let Some(l) = self.labels.known("call", t.trim()) {
            return l;
        }
        // XEP-0220 §2.1.1: the text of a db:result / db:verify request is the key.
        if el.ns == ns::DIALBACK
            && (el.name == "result" || el.name == "verify")
            && !t.trim().is_empty()
        {
            return self.labels.get("key", t.trim());
        }
        // XEP-0114 §3: the handshake digest depends on the stream id, so it varies per run.
        if el.ns == ns::COMPONENT_ACCEPT && el.name == "handshake" && !t.trim().is_empty() {
            return self.labels.get("digest", t.trim());
        }
        escape_text(t)
    }

    fn element(&mut self, el: &Element, default_ns: &str) -> String {
        let children = Self::children(el);
        if children.is_empty() {
            return self.open_tag(el, default_ns, true);
        }
        let mut s = self.open_tag(el, default_ns, false);
        let inner = Self::inner_default(el, default_ns);
        for c in children {
            match c {
                Node::Element(e) => s.push_str(&self.element(e, &inner)),
                Node::Text(t) => s.push_str(&self.text(el, t)),
            }
        }
        let (qname, _) = Self::qname(el, default_ns);
        let _ = write!(s, "</{qname}>");
        s
    }

    fn element_lines(
        &mut self,
        el: &Element,
        default_ns: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        let pad = "  ".repeat(depth);
        let one = self.element(el, default_ns);
        if pad.len() + one.chars().count() <= WRAP_AT || el.elements().next().is_none() {
            out.push(format!("{pad}{one}"));
            return;
        }
        out.push(format!("{pad}{}", self.open_tag(el, default_ns, false)));
        let inner = Self::inner_default(el, default_ns);
        for c in Self::children(el) {
            match c {
                Node::Element(e) => self.element_lines(e, &inner, depth + 1, out),
                Node::Text(t) => {
                    let t = self.text(el, t);
                    out.push(format!("{pad}  {}", t.trim()));
                }
            }
        }
        let (qname, _) = Self::qname(el, default_ns);
        out.push(format!("{pad}</{qname}>"));
    }
}

fn attr_label(ns_: &str, name: &str) -> String {
    if ns_.is_empty() {
        name.to_string()
    } else if ns_ == XML_NS {
        format!("xml:{name}")
    } else {
        format!("{{{ns_}}}{name}")
    }
}

/// The address with its port hidden (ports are chosen by the OS per run).
fn addr(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{}:[port]", v.ip()),
        SocketAddr::V6(v) => format!("[{}]:[port]", v.ip()),
    }
}

/// A printable, escaped excerpt of raw bytes.
fn printable(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(UNDECODABLE_MAX) {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > UNDECODABLE_MAX {
        let _ = write!(s, "… ({} bytes)", bytes.len());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hdr(from: &str, to: &str, id: Option<&str>) -> StreamHeader {
        StreamHeader {
            stream_prefix: Some("stream".into()),
            content_ns: ns::SERVER.into(),
            from: Some(from.into()),
            to: Some(to.into()),
            id: id.map(Into::into),
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

    fn db(name: &str) -> Element {
        Element::new(ns::DIALBACK, name).with_prefix("db")
    }

    fn ctx() -> NormaliseContext {
        NormaliseContext {
            sut_domains: vec!["sut.test".into()],
            gw_domains: Vec::new(),
        }
    }

    fn sample() -> Transcript {
        let mut t = Transcript::default();
        let at = Duration::from_millis(5);
        let push = |t: &mut Transcript, stream: &str, dir: Dir, unit: Unit| {
            t.push(at, "rx", stream, dir, unit, Vec::new())
        };
        let (l, p) = (
            SocketAddr::from(([127, 0, 0, 1], 40001)),
            SocketAddr::from(([127, 0, 0, 1], 5269)),
        );
        push(
            &mut t,
            "in",
            Dir::ToSut,
            Unit::Note("dialback: originating".into()),
        );
        push(
            &mut t,
            "in",
            Dir::ToSut,
            Unit::Connected { local: l, peer: p },
        );
        push(
            &mut t,
            "in",
            Dir::ToSut,
            Unit::Header(hdr("remote.test", "sut.test", None)),
        );
        push(
            &mut t,
            "in",
            Dir::FromSut,
            Unit::Header(hdr("sut.test", "remote.test", Some("a1b2"))),
        );
        push(&mut t, "in", Dir::FromSut, Unit::Whitespace(2));
        push(
            &mut t,
            "in",
            Dir::ToSut,
            Unit::Element(
                db("result")
                    .with_attr("to", "sut.test")
                    .with_attr("from", "remote.test")
                    .with_text("k3y"),
            ),
        );
        push(
            &mut t,
            "in_verify",
            Dir::FromSut,
            Unit::Connected { local: p, peer: l },
        );
        push(
            &mut t,
            "in_verify",
            Dir::FromSut,
            Unit::Header(hdr("sut.test", "remote.test", Some("zz9"))),
        );
        push(
            &mut t,
            "in_verify",
            Dir::FromSut,
            Unit::Element(
                db("verify")
                    .with_attr("to", "remote.test")
                    .with_attr("from", "sut.test")
                    .with_attr("id", "a1b2")
                    .with_text("k3y"),
            ),
        );
        let msg = |id: &str| {
            Element::new(ns::SERVER, "message")
                .with_attr("type", "chat")
                .with_attr("to", "juliet@sut.test/balcony")
                .with_attr("from", "romeo@remote.test")
                .with_attr("id", id)
                .with_text("\n ")
                .with_child(Element::new(ns::SERVER, "body").with_text("hi <3"))
                .with_child(Element::new(ns::PING, "ping"))
        };
        push(&mut t, "in", Dir::ToSut, Unit::Element(msg("m-1")));
        push(&mut t, "in", Dir::ToSut, Unit::Element(msg("m-2")));
        push(&mut t, "in", Dir::FromSut, Unit::Element(msg("m-1")));
        push(
            &mut t,
            "in",
            Dir::FromSut,
            Unit::Undecodable {
                bytes: b"<a\x00\"b\n".to_vec(),
                reason: "not well-formed".into(),
            },
        );
        push(&mut t, "in", Dir::FromSut, Unit::StreamClose);
        push(&mut t, "in", Dir::FromSut, Unit::Eof);
        push(&mut t, "in_verify", Dir::ToSut, Unit::Reset);
        t
    }

    const EXPECTED: &str = "\
# dialback: originating
rx/in → (connected 127.0.0.1:[port] → 127.0.0.1:[port])
rx/in → <stream:stream from='remote.test' to='{sut}' version='1.0' xmlns:db='jabber:server:dialback'>
rx/in ← <stream:stream from='{sut}' id='[stream1]' to='remote.test' version='1.0' xmlns:db='jabber:server:dialback'>
rx/in ← (whitespace ×2)
rx/in → <db:result from='remote.test' to='{sut}'>[key1]</db:result>
rx/in_verify ← (connected 127.0.0.1:[port] → 127.0.0.1:[port])
rx/in_verify ← <stream:stream from='{sut}' id='[stream2]' to='remote.test' version='1.0' xmlns:db='jabber:server:dialback'>
rx/in_verify ← <db:verify from='{sut}' id='[stream1]' to='remote.test'>[key1]</db:verify>
rx/in → <message from='romeo@remote.test' id='[id1]' to='juliet@{sut}/balcony' type='chat'><body>hi &lt;3</body><ping xmlns='urn:xmpp:ping'/></message>
rx/in → <message from='romeo@remote.test' id='[id2]' to='juliet@{sut}/balcony' type='chat'><body>hi &lt;3</body><ping xmlns='urn:xmpp:ping'/></message>
rx/in ← <message from='romeo@remote.test' id='[id1]' to='juliet@{sut}/balcony' type='chat'><body>hi &lt;3</body><ping xmlns='urn:xmpp:ping'/></message>
rx/in ← (undecodable \"<a\\x00\\\"b\\n\": not well-formed)
rx/in ← </stream:stream>
rx/in ← (eof)
rx/in_verify → (reset)
";

    #[test]
    fn normalises_with_stable_labels() {
        let got = normalise(&sample(), &ctx());
        assert_eq!(got, EXPECTED, "\n{got}");
    }

    #[test]
    fn deterministic_and_independent_of_volatile_values() {
        let a = normalise(&sample(), &ctx());
        // Other ids, keys, ports and times: the same text.
        let mut t = sample();
        for e in &mut t.entries {
            e.at += Duration::from_secs(3);
            match &mut e.unit {
                Unit::Header(h) => {
                    if let Some(id) = &mut h.id {
                        id.push('X');
                    }
                }
                Unit::Element(el) => {
                    if let Some(id) = el.attr("id").map(|s| format!("{s}X")) {
                        el.set_attr("id", id);
                    }
                    if el.ns == ns::DIALBACK {
                        el.children = vec![Node::Text("other-key".into())];
                    }
                }
                Unit::Connected { local, .. } => local.set_port(50000),
                _ => {}
            }
        }
        assert_eq!(normalise(&t, &ctx()), a);
        assert_eq!(normalise(&sample(), &ctx()), a);
    }

    #[test]
    fn different_values_get_different_labels() {
        let mut t = Transcript::default();
        for key in ["k1", "k2", "k1"] {
            t.push(
                Duration::ZERO,
                "rx",
                "in",
                Dir::ToSut,
                Unit::Element(db("result").with_text(key)),
                Vec::new(),
            );
        }
        let got = normalise(&t, &ctx());
        let labels: Vec<&str> = got
            .lines()
            .filter_map(|l| l.split('>').nth(1))
            .map(|s| s.trim_end_matches("</db:result"))
            .collect();
        assert_eq!(labels, vec!["[key1]", "[key2]", "[key1]"]);
    }

    #[test]
    fn component_handshake_digests_are_labelled() {
        let mut t = Transcript::default();
        for d in ["ab12", "cd34", "ab12"] {
            t.push(
                Duration::ZERO,
                "gw",
                "c",
                Dir::ToSut,
                Unit::Element(Element::new(ns::COMPONENT_ACCEPT, "handshake").with_text(d)),
                Vec::new(),
            );
        }
        let got = normalise(&t, &ctx());
        assert!(!got.contains("ab12") && !got.contains("cd34"), "{got}");
        assert_eq!(got.matches("[digest1]").count(), 2, "{got}");
        assert_eq!(got.matches("[digest2]").count(), 1, "{got}");
    }

    #[test]
    fn attributes_sorted_and_namespaces_compact() {
        let mut t = Transcript::default();
        let mut h = hdr("sut.test", "c.test", Some("s"));
        h.content_ns = ns::COMPONENT_ACCEPT.into();
        h.declarations.truncate(2);
        h.stream_prefix = Some("s".into());
        t.push(
            Duration::ZERO,
            "c",
            "c",
            Dir::FromSut,
            Unit::Header(h),
            Vec::new(),
        );
        let err = Element::new(ns::STREAM, "error")
            .with_prefix("s")
            .with_child(Element::new(ns::STREAMS_ERR, "host-unknown"))
            .with_child(Element::new(ns::STREAMS_ERR, "text").with_text("no"));
        t.push(
            Duration::ZERO,
            "c",
            "c",
            Dir::FromSut,
            Unit::Element(err),
            Vec::new(),
        );
        let mut el = Element::new(ns::COMPONENT_ACCEPT, "iq")
            .with_attr("z", "1")
            .with_attr("a", "2");
        el.set_attr_ns(XML_NS, "lang", "en");
        t.push(
            Duration::ZERO,
            "c",
            "c",
            Dir::ToSut,
            Unit::Element(el),
            Vec::new(),
        );
        let got = normalise(&t, &ctx());
        assert_eq!(
            got,
            "c/c ← <s:stream from='{sut}' id='[stream1]' to='c.test' version='1.0' xmlns='jabber:component:accept'>\n\
             c/c ← <stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no</text></stream:error>\n\
             c/c → <iq a='2' xml:lang='en' z='1'/>\n"
        );
    }

    #[test]
    fn long_elements_wrap_with_indentation() {
        let mut el = Element::new(ns::SERVER, "message").with_attr("to", "a@sut.test");
        for i in 0..6 {
            el = el.with_child(
                Element::new(ns::SERVER, "body")
                    .with_text(format!("line number {i} of a long message, long enough")),
            );
        }
        let mut t = Transcript::default();
        t.push(
            Duration::ZERO,
            "rx",
            "in",
            Dir::ToSut,
            Unit::Element(el),
            Vec::new(),
        );
        let got = normalise(&t, &ctx());
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 8, "{got}");
        assert_eq!(
            lines.first().copied(),
            Some("rx/in → <message to='a@{sut}'>")
        );
        assert_eq!(
            lines.get(1).copied(),
            Some("          <body>line number 0 of a long message, long enough</body>")
        );
        assert_eq!(lines.last().copied(), Some("        </message>"));
    }

    #[test]
    fn long_undecodable_is_cut() {
        let mut t = Transcript::default();
        let bytes = vec![0xffu8; 500];
        t.push(
            Duration::ZERO,
            "rx",
            "in",
            Dir::FromSut,
            Unit::Undecodable {
                bytes,
                reason: "utf-8".into(),
            },
            Vec::new(),
        );
        let got = normalise(&t, &ctx());
        assert_eq!(got.matches("\\xff").count(), UNDECODABLE_MAX);
        assert!(got.contains("… (500 bytes)"), "{got}");
    }
}
