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
        let mut local = ctx.clone();
        out.push('<');
        let mut decls: Vec<(Option<String>, String)> = Vec::new();
        // Element name: keep a wire prefix if it is bound to our namespace (or bind it);
        // otherwise use the default namespace.
        let qname = match &self.prefix {
            Some(p) if !p.is_empty() => {
                if local.prefix_uri(p) != Some(self.ns.as_str()) {
                    local.bind(Some(p.clone()), self.ns.clone());
                    decls.push((Some(p.clone()), self.ns.clone()));
                }
                format!("{p}:{}", self.name)
            }
            _ => {
                if local.default != self.ns {
                    local.bind(None, self.ns.clone());
                    decls.push((None, self.ns.clone()));
                }
                self.name.clone()
            }
        };
        out.push_str(&qname);
        for (p, uri) in &decls {
            match p {
                Some(p) => {
                    let _ = write!(out, " xmlns:{p}='{}'", escape_attr(uri));
                }
                None => {
                    let _ = write!(out, " xmlns='{}'", escape_attr(uri));
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
                let p = match local.uri_prefix(&a.ns) {
                    Some(p) => p.to_string(),
                    None => {
                        let p = format!("ns{}", local.prefixes.len());
                        let _ = write!(out, "xmlns:{p}='{}' ", escape_attr(&a.ns));
                        local.bind(Some(p.clone()), a.ns.clone());
                        p
                    }
                };
                out.push_str(&p);
                out.push(':');
                out.push_str(&a.name);
            }
            out.push_str("='");
            out.push_str(&escape_attr(&a.value));
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for n in &self.children {
            match n {
                Node::Text(t) => out.push_str(&escape_text(t)),
                Node::Element(e) => e.write_xml(out, &local),
            }
        }
        out.push_str("</");
        out.push_str(&qname);
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
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            c => o.push(c),
        }
    }
    o
}

/// Escape an attribute value written between single quotes.
pub fn escape_attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            '\t' => o.push_str("&#9;"),
            '\n' => o.push_str("&#10;"),
            '\r' => o.push_str("&#13;"),
            c => o.push(c),
        }
    }
    o
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
