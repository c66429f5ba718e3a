//! Parse a complete, small XML document (a SIP body such as PIDF) into an
//! [`Element`], with limits. Not a stream parser: the whole body is in hand.
//!
//! Robustness rules for bodies that come from the network:
//! - size and nesting depth are bounded ([`MAX_DOCUMENT_BYTES`], [`MAX_DEPTH`]);
//! - a DOCTYPE is refused, so no entity can be declared or expanded (the classic
//!   "billion laughs"); only the five predefined entities and character references
//!   are accepted (XML 1.0 §4.6);
//! - unbound prefixes, mismatched end tags and trailing content are errors.

use quick_xml::NsReader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use thiserror::Error;

use crate::xmpp::element::{Attr, Element, Node, XML_NS};

/// Largest body accepted (PIDF documents of a gateway are a few hundred bytes).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// Why a body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XmlError {
    /// Larger than [`MAX_DOCUMENT_BYTES`].
    #[error("document larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    /// Deeper than [`MAX_DEPTH`].
    #[error("elements nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A DOCTYPE was present.
    #[error("DOCTYPE is not allowed")]
    Doctype,
    /// Not one of the five predefined entities.
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
    /// Namespaces in XML §5: every prefix is declared.
    #[error("unbound namespace prefix {0:?}")]
    UnboundPrefix(String),
    /// No element at all.
    #[error("no root element")]
    NoRoot,
    /// Content after the root element.
    #[error("content after the root element")]
    TrailingContent,
    /// Any other well-formedness error.
    #[error("not well-formed: {0}")]
    Malformed(String),
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

fn ns_of(r: ResolveResult<'_>) -> Result<String, XmlError> {
    match r {
        ResolveResult::Bound(ns) => Ok(String::from_utf8_lossy(ns.as_ref()).into_owned()),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(p) => Err(XmlError::UnboundPrefix(
            String::from_utf8_lossy(&p).into_owned(),
        )),
    }
}

fn start_element(
    reader: &NsReader<&[u8]>,
    ns: String,
    e: &BytesStart<'_>,
) -> Result<Element, XmlError> {
    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
    let prefix = e
        .name()
        .prefix()
        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned());
    let mut el = Element::new(ns, name);
    el.prefix = prefix;
    for a in e.attributes() {
        let a = a.map_err(malformed)?;
        let key = a.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let value = a.unescape_value().map_err(malformed)?.into_owned();
        let (ans, local) = reader.resolve_attribute(key);
        let ans = if key.prefix().is_some_and(|p| p.as_ref() == b"xml") {
            XML_NS.to_owned()
        } else {
            ns_of(ans)?
        };
        el.attrs.push(Attr {
            ns: ans,
            name: String::from_utf8_lossy(local.as_ref()).into_owned(),
            value,
        });
    }
    Ok(el)
}

fn push_text(stack: &mut [Element], text: &str) {
    if let Some(top) = stack.last_mut() {
        match top.children.last_mut() {
            Some(Node::Text(t)) => t.push_str(text),
            _ => top.children.push(Node::Text(text.to_owned())),
        }
    }
}

/// Parse `doc` (UTF-8) into its root element.
pub fn parse_document(doc: &str) -> Result<Element, XmlError> {
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(XmlError::TooLarge);
    }
    let mut reader = NsReader::from_str(doc);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (ns, ev) = reader.read_resolved_event().map_err(malformed)?;
        let ns = match ev {
            Event::Start(_) | Event::Empty(_) => Some(ns_of(ns)?),
            _ => None,
        };
        match ev {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(XmlError::TrailingContent);
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let el = start_element(&reader, ns.unwrap_or_default(), &e)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let el = start_element(&reader, ns.unwrap_or_default(), &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| malformed("unexpected end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(malformed)?;
                if stack.is_empty() {
                    if !s.trim().is_empty() {
                        return Err(if root.is_some() {
                            XmlError::TrailingContent
                        } else {
                            malformed("text outside the root element")
                        });
                    }
                } else {
                    push_text(&mut stack, &s);
                }
            }
            Event::CData(c) => {
                if stack.is_empty() {
                    return Err(malformed("CDATA outside the root element"));
                }
                let s = c.decode().map_err(malformed)?;
                push_text(&mut stack, &s);
            }
            Event::GeneralRef(r) => {
                if stack.is_empty() {
                    return Err(malformed("reference outside the root element"));
                }
                let ch = r.resolve_char_ref().map_err(malformed)?;
                let name = r.decode().map_err(malformed)?;
                let text = match ch {
                    Some(c) => c.to_string(),
                    None => resolve_predefined_entity(&name)
                        .ok_or_else(|| XmlError::UnknownEntity(name.clone().into_owned()))?
                        .to_owned(),
                };
                push_text(&mut stack, &text);
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unexpected end of document"));
    }
    root.ok_or(XmlError::NoRoot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_attributes_and_entities() {
        let doc = "<?xml version='1.0' encoding='UTF-8'?>\n<p:a xmlns:p='urn:a' xmlns='urn:d' x='1&amp;2'>\
                   <b xml:lang='cs'>&lt;&#x10D;&gt;<![CDATA[<&>]]></b><p:c/></p:a>";
        let root = parse_document(doc).expect("parse");
        assert!(root.is("urn:a", "a"));
        assert_eq!(root.attr("x"), Some("1&2"));
        let b = root.child("urn:d", "b").expect("b");
        assert_eq!(b.lang(), Some("cs"));
        assert_eq!(b.text(), "<\u{10d}><&>");
        assert!(root.child("urn:a", "c").is_some());
    }

    #[test]
    fn refuses_hostile_or_broken_input() {
        assert_eq!(
            parse_document("<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>"),
            Err(XmlError::Doctype)
        );
        assert_eq!(
            parse_document("<a>&x;</a>"),
            Err(XmlError::UnknownEntity("x".into()))
        );
        assert_eq!(
            parse_document("<q:a/>"),
            Err(XmlError::UnboundPrefix("q".into()))
        );
        assert_eq!(parse_document("<a/><b/>"), Err(XmlError::TrailingContent));
        assert_eq!(parse_document(""), Err(XmlError::NoRoot));
        assert!(matches!(
            parse_document("<a><b></a>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(parse_document("<a>"), Err(XmlError::Malformed(_))));
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse_document(&deep), Err(XmlError::TooDeep));
        let big = format!("<a>{}</a>", "x".repeat(MAX_DOCUMENT_BYTES));
        assert_eq!(parse_document(&big), Err(XmlError::TooLarge));
    }
}
