//! Sans-IO XML stream codec (RFC 6120 §4, §11). PLACEHOLDER: API only; implemented in the codec branch.

use super::conditions::StreamCondition;
use super::element::{Attr, Element, NsContext};

/// Resource limits of one stream (RFC 6120 §13.12: a limit must allow ≥ 10000 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element (stanza) in bytes, as on the wire.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting below the stream root.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
        }
    }
}

/// The opening `<stream:stream>` tag (RFC 6120 §4.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamHeader {
    /// Prefix bound to the stream namespace on the wire (`stream` by convention, STR-12).
    pub stream_prefix: Option<String>,
    /// The default (content) namespace: `jabber:server`, `jabber:component:accept`, …
    pub content_ns: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// Every namespace declaration on the header (`None` = default namespace).
    pub declarations: Vec<(Option<String>, String)>,
    /// Every other attribute, in wire order (from/to/id/version/xml:lang included).
    pub attrs: Vec<Attr>,
}

/// One unit read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The stream header (also after a restart).
    Header(StreamHeader),
    /// A complete top-level element (stanza, negotiation element, stream error…).
    Element(Element),
    /// `</stream:stream>`.
    Close,
    /// Whitespace between top-level elements (a keepalive, RFC 6120 §4.6.1).
    Whitespace(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("not well-formed XML: {0}")]
    NotWellFormed(String),
}

impl CodecError {
    /// The stream error this decoding failure must be reported with (RFC 6120 §4.9.3).
    pub fn condition(&self) -> StreamCondition {
        StreamCondition::NotWellFormed
    }
}

/// Incremental decoder: feed bytes in any split, pull events.
#[derive(Debug, Default)]
pub struct Decoder {
    _limits: Limits,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder { _limits: limits }
    }
    pub fn feed(&mut self, _data: &[u8]) {}
    pub fn next_event(&mut self) -> Result<Option<Event>, CodecError> {
        Ok(None)
    }
    /// Raw bytes of the unit last returned by [`Decoder::next_event`].
    pub fn last_raw(&self) -> &[u8] {
        &[]
    }
    pub fn restart(&mut self) {}
    pub fn buffered(&self) -> usize {
        0
    }
    pub fn context(&self) -> Option<&NsContext> {
        None
    }
}

impl StreamHeader {
    pub fn to_xml(&self, _prolog: bool) -> String {
        String::new()
    }
    pub fn ns_context(&self) -> NsContext {
        NsContext::default()
    }
}

/// Parse one element from text, in namespace context `ctx` (templates, tests).
pub fn parse_element(_s: &str, _ctx: &NsContext) -> Result<Element, CodecError> {
    Err(CodecError::NotWellFormed("unimplemented".into()))
}
