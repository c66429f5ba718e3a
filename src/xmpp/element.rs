//! An owned, namespace-resolved XML element: what the stream codec yields for each
//! top-level stanza or negotiation element, and what the harness matches against.
//!
//! Names are kept as (namespace URI, local name) pairs because RFC 6120 §4.8 makes the
//! namespace, not the prefix, what identifies an element. The wire prefix is kept only so a
//! transcript can show what the peer actually wrote (XEP-0220 `db:` elements, STR-12).

use std::fmt::Write as _;

/// The `xml:` namespace, bound by definition (Namespaces in XML 1.0 §3).
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// One attribute, with its namespace resolved (`""` for an unqualified attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ns: String,
    pub name: String,
    pub value: String,
}

/// A child node: element or character data (entities already decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An XML element with resolved namespaces. Namespace declarations themselves are not
/// attributes here; the serializer re-creates the ones needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI of the element (`""` when in no namespace).
    pub ns: String,
    /// Local name.
    pub name: String,
    /// The prefix used on the wire, if any (informative only).
    pub prefix: Option<String>,
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(ns: impl Into<String>, name: impl Into<String>) -> Self {
        Element {
            ns: ns.into(),
            name: name.into(),
            prefix: None,
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: set an unqualified attribute.
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: append a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: append character data.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Builder: the wire prefix to use (e.g. `db` for XEP-0220 elements).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// Value of an unqualified attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attr_ns("", name)
    }

    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// Set (or replace) an unqualified attribute.
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.set_attr_ns("", name, value)
    }

    pub fn set_attr_ns(
        &mut self,
        ns: impl Into<String>,
        name: impl Into<String>,
        value: impl Into<String>,
    ) {
        let (ns, name, value) = (ns.into(), name.into(), value.into());
        match self.attrs.iter_mut().find(|a| a.ns == ns && a.name == name) {
            Some(a) => a.value = value,
            None => self.attrs.push(Attr { ns, name, value }),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let i = self
            .attrs
            .iter()
            .position(|a| a.ns.is_empty() && a.name == name)?;
        Some(self.attrs.remove(i).value)
    }

    /// `xml:lang`, if present on this element.
    pub fn lang(&self) -> Option<&str> {
        self.attr_ns(XML_NS, "lang")
    }

    /// Child elements, in document order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// First child element with this namespace and name.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(ns, name))
    }

    /// All character data directly under this element, concatenated.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Serialize. `ctx` is the namespace context the element will be written into (for a
    /// stanza on an S2S stream: default `jabber:server`, prefixes bound on the stream header),
    /// so the output declares only what that context lacks.
    pub fn to_xml(&self, ctx: &NsContext) -> String {
        let mut out = String::new();
        self.write_xml(&mut out, ctx);
        out
    }

    pub fn write_xml(&self, out: &mut String, ctx: &NsContext) {
        // The context is copied only when this element binds something new: a stanza in its
        // stream's namespace is written without a single allocation besides `out` (DESIGN §6).
        let mut local: Option<NsContext> = None;
        out.push('<');
        // Element name: keep a wire prefix if it is bound to our namespace (or bind it);
        // otherwise use the default namespace.
        let prefix = self.prefix.as_deref().filter(|p| !p.is_empty());
        match prefix {
            Some(p) => {
                out.push_str(p);
                out.push(':');
                out.push_str(&self.name);
                if ctx.prefix_uri(p) != Some(self.ns.as_str()) {
                    local
                        .get_or_insert_with(|| ctx.clone())
                        .bind(Some(p.to_string()), self.ns.clone());
                    let _ = write!(out, " xmlns:{p}='");
                    push_escaped_attr(out, &self.ns);
                    out.push('\'');
                }
            }
            None => {
                out.push_str(&self.name);
                if ctx.default != self.ns {
                    local
                        .get_or_insert_with(|| ctx.clone())
                        .bind(None, self.ns.clone());
                    out.push_str(" xmlns='");
                    push_escaped_attr(out, &self.ns);
                    out.push('\'');
                }
            }
        }
        for a in &self.attrs {
            out.push(' ');
            if a.ns.is_empty() {
                out.push_str(&a.name);
            } else if a.ns == XML_NS {
                out.push_str("xml:");
                out.push_str(&a.name);
            } else {
                let scope = local.as_ref().unwrap_or(ctx);
                match scope.uri_prefix(&a.ns) {
                    Some(p) => out.push_str(p),
                    None => {
                        let l = local.get_or_insert_with(|| ctx.clone());
                        let p = format!("ns{}", l.prefixes.len());
                        let _ = write!(out, "xmlns:{p}='");
                        push_escaped_attr(out, &a.ns);
                        out.push_str("' ");
                        out.push_str(&p);
                        l.bind(Some(p), a.ns.clone());
                    }
                }
                out.push(':');
                out.push_str(&a.name);
            }
            out.push_str("='");
            push_escaped_attr(out, &a.value);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        let inner = local.as_ref().unwrap_or(ctx);
        for n in &self.children {
            match n {
                Node::Text(t) => push_escaped_text(out, t),
                Node::Element(e) => e.write_xml(out, inner),
            }
        }
        out.push_str("</");
        if let Some(p) = prefix {
            out.push_str(p);
            out.push(':');
        }
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Namespace bindings in scope where an element is written or parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NsContext {
    /// The default namespace (`xmlns='…'`).
    pub default: String,
    /// Prefix bindings, innermost last.
    pub prefixes: Vec<(String, String)>,
}

impl NsContext {
    pub fn new(default: impl Into<String>) -> Self {
        NsContext {
            default: default.into(),
            prefixes: Vec::new(),
        }
    }

    pub fn with_prefix(mut self, prefix: impl Into<String>, uri: impl Into<String>) -> Self {
        self.bind(Some(prefix.into()), uri.into());
        self
    }

    pub fn bind(&mut self, prefix: Option<String>, uri: String) {
        match prefix {
            None => self.default = uri,
            Some(p) => {
                self.prefixes.retain(|(q, _)| *q != p);
                self.prefixes.push((p, uri));
            }
        }
    }

    pub fn prefix_uri(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some(XML_NS);
        }
        self.prefixes
            .iter()
            .rev()
            .find(|(p, _)| p == prefix)
            .map(|(_, u)| u.as_str())
    }

    pub fn uri_prefix(&self, uri: &str) -> Option<&str> {
        self.prefixes
            .iter()
            .rev()
            .find(|(_, u)| u == uri)
            .map(|(p, _)| p.as_str())
    }
}

/// Escape character data (XML 1.0 §2.4): `&`, `<`, `>`.
pub fn escape_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    push_escaped_text(&mut o, s);
    o
}

/// Escape an attribute value written between single quotes.
pub fn escape_attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    push_escaped_attr(&mut o, s);
    o
}

/// The replacement of a byte in character data, if it needs one.
fn text_entity(b: u8) -> Option<&'static str> {
    match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        _ => None,
    }
}

/// The replacement of a byte in a single-quoted attribute value, if it needs one
/// (whitespace other than the space as character references, so that attribute-value
/// normalisation, XML 1.0 §3.3.3, gives it back unchanged).
fn attr_entity(b: u8) -> Option<&'static str> {
    match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'\'' => Some("&apos;"),
        b'"' => Some("&quot;"),
        b'\t' => Some("&#9;"),
        b'\n' => Some("&#10;"),
        b'\r' => Some("&#13;"),
        _ => None,
    }
}

/// Append `s` with the bytes `entity` names replaced, copying unchanged runs whole. Every
/// byte replaced is ASCII, so each run ends on a character boundary.
fn push_escaped(out: &mut String, s: &str, entity: fn(u8) -> Option<&'static str>) {
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        if let Some(rep) = entity(b) {
            out.push_str(s.get(run..i).unwrap_or(""));
            out.push_str(rep);
            run = i + 1;
        }
    }
    out.push_str(s.get(run..).unwrap_or(""));
}

/// [`escape_text`] into an existing buffer.
pub fn push_escaped_text(out: &mut String, s: &str) {
    push_escaped(out, s, text_entity)
}

/// [`escape_attr`] into an existing buffer.
pub fn push_escaped_attr(out: &mut String, s: &str) {
    push_escaped(out, s, attr_entity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_relative_to_context() {
        let ctx = NsContext::new("jabber:server").with_prefix("db", "jabber:server:dialback");
        let r = Element::new("jabber:server:dialback", "result")
            .with_prefix("db")
            .with_attr("from", "a.test")
            .with_attr("to", "b.test")
            .with_text("k&y");
        assert_eq!(
            r.to_xml(&ctx),
            "<db:result from='a.test' to='b.test'>k&amp;y</db:result>"
        );
        let m = Element::new("jabber:server", "message")
            .with_child(Element::new("jabber:server", "body").with_text("<hi>"))
            .with_child(Element::new("urn:xmpp:ping", "ping"));
        assert_eq!(
            m.to_xml(&ctx),
            "<message><body>&lt;hi&gt;</body><ping xmlns='urn:xmpp:ping'/></message>"
        );
    }

    #[test]
    fn unbound_prefix_is_declared() {
        let e = Element::new("jabber:server:dialback", "verify").with_prefix("db");
        assert_eq!(
            e.to_xml(&NsContext::new("jabber:server")),
            "<db:verify xmlns:db='jabber:server:dialback'/>"
        );
    }
}
