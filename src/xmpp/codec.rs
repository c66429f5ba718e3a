//! Sans-IO XML stream codec (RFC 6120 §4, §11).
//!
//! An XMPP stream is one XML document that never ends while the connection lives, so a
//! document parser that wants the whole input cannot be used. The [`Decoder`] frames the
//! stream itself with a byte-level lexer that survives input split at any byte (it only
//! remembers a few bits of state: inside a tag, which quote, inside CDATA, element depth),
//! and hands every complete unit — the stream header, one top-level element, the closing
//! tag — to a small strict parser over the complete slice. Both passes are linear: the
//! lexer never rescans a byte (`scan` remembers how far it got) and each unit is parsed once.
//!
//! The parser implements the XMPP subset of XML 1.0 (RFC 6120 §11.1): no comments,
//! processing instructions, DTDs or entity references other than the five predefined ones
//! and character references. Rejecting the DOCTYPE outright is what makes entity-expansion
//! attacks ("billion laughs") harmless.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use super::conditions::StreamCondition;
use super::element::{Attr, Element, Node, NsContext, XML_NS, escape_attr};
use super::ns;

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

/// Largest stream header (prolog, optional XML declaration and the opening tag). Real
/// headers are a few hundred bytes; the bound keeps an endless "header" from growing memory.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Attributes (declarations included) on one element. With [`MAX_NS_PREFIXES`] this keeps
/// the per-element duplicate and prefix checks cheap, so a hostile stanza cannot make
/// parsing quadratic in its size (RFC 6120 §13.12 allows such local limits).
pub const MAX_ATTRIBUTES: usize = 256;

/// Namespace prefixes bound at once (stream header and the element's ancestors included).
pub const MAX_NS_PREFIXES: usize = 64;

/// Buffer capacity kept while a stream is idle: above this, an empty buffer is released so
/// that thousands of idle streams stay small after one large stanza.
const IDLE_CAPACITY: usize = 8 * 1024;

/// Consumed bytes are only moved out of the buffer once there are this many and they are at
/// least half of it, so compaction stays amortised linear.
const COMPACT_MIN: usize = 4 * 1024;

/// The opening `<stream:stream>` tag (RFC 6120 §4.7).
///
/// The typed fields (`from`, `to`, `id`, `version`, `lang`) are authoritative: `attrs` also
/// lists those attributes (in wire order, as decoded), but when the two disagree
/// [`StreamHeader::to_xml`] writes the field value, and a field set to `None` removes the
/// attribute. `attrs` thus contributes the order of the known attributes and every unknown
/// extra attribute.
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
    /// Whitespace between top-level elements (a keepalive, RFC 6120 §4.6.1). A run is
    /// reported as soon as it is seen, so a run that arrives in several reads may be
    /// reported as several events.
    Whitespace(usize),
}

/// Why a unit is not well-formed XML (XML 1.0 §2–§3, Namespaces in XML 1.0 §5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("invalid XML name")]
    BadName,
    #[error("invalid qualified name")]
    BadQName,
    #[error("expected '{0}'")]
    Expected(char),
    #[error("missing whitespace before an attribute")]
    MissingWhitespace,
    #[error("duplicate attribute '{0}'")]
    DuplicateAttribute(String),
    #[error("character U+{0:04X} is not allowed in XML")]
    BadChar(u32),
    #[error("malformed character or entity reference")]
    BadReference,
    #[error("'<' in an attribute value")]
    LtInAttribute,
    #[error("']]>' in character data")]
    CdataEndInText,
    #[error("malformed CDATA section")]
    BadCdata,
    #[error("markup ends before it is complete")]
    Incomplete,
    #[error("content after the element")]
    TrailingContent,
    #[error("malformed XML declaration")]
    BadXmlDecl,
    #[error("the stream header is a self-closing tag")]
    EmptyStreamHeader,
    #[error("end tag before the stream header")]
    EndTagBeforeHeader,
}

/// XML that XMPP forbids (RFC 6120 §11.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Restricted {
    #[error("comment")]
    Comment,
    #[error("processing instruction")]
    ProcessingInstruction,
    #[error("DTD or markup declaration")]
    Doctype,
    #[error("entity reference '&{0};'")]
    EntityReference(String),
}

/// A decoding failure. After one, the stream is dead (RFC 6120 §4.9.1.1: stream errors are
/// unrecoverable); [`CodecError::condition`] names the stream error to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("not well-formed XML: {0}")]
    NotWellFormed(Malformed),
    #[error("end tag </{found}> does not match <{expected}>")]
    MismatchedEndTag { expected: String, found: String },
    #[error("character data at the top level of the stream")]
    TextAtTopLevel,
    #[error("data after the stream was closed")]
    DataAfterClose,
    #[error("restricted XML: {0}")]
    Restricted(Restricted),
    #[error("invalid UTF-8 at byte {offset} of a unit")]
    InvalidUtf8 { offset: usize },
    #[error("unsupported encoding: {0}")]
    UnsupportedEncoding(String),
    #[error("undeclared namespace prefix '{0}'")]
    UndeclaredPrefix(String),
    #[error("illegal namespace declaration: {0}")]
    BadNamespaceDeclaration(String),
    #[error("stream root is {{{ns}}}{name}, expected {{http://etherx.jabber.org/streams}}stream")]
    BadStreamRoot { ns: String, name: String },
    #[error("element larger than {limit} bytes")]
    StanzaTooLarge { limit: usize },
    #[error("element nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("stream header larger than {limit} bytes")]
    HeaderTooLarge { limit: usize },
    #[error("whitespace run longer than {limit} bytes")]
    WhitespaceTooLong { limit: usize },
    #[error("more than {limit} attributes on one element")]
    TooManyAttributes { limit: usize },
    #[error("more than {limit} namespace prefixes in scope")]
    TooManyNamespaces { limit: usize },
}

impl CodecError {
    /// The stream error this decoding failure must be reported with (RFC 6120 §4.9.3,
    /// STR-10).
    ///
    /// ```text
    /// not-well-formed       §4.9.3.13  malformed XML, mismatched tags, top-level text
    /// restricted-xml        §4.9.3.18  comments, PIs, DTDs, entity references (§11.1)
    /// unsupported-encoding  §4.9.3.22  not UTF-8 (§11.6)
    /// bad-namespace-prefix  §4.9.3.2   undeclared prefix
    /// invalid-namespace     §4.9.3.10  root not {http://etherx.jabber.org/streams}stream
    /// policy-violation      §4.9.3.14  a limit of §13.12 exceeded
    /// ```
    pub fn condition(&self) -> StreamCondition {
        use CodecError::*;
        match self {
            NotWellFormed(_) | MismatchedEndTag { .. } | TextAtTopLevel | DataAfterClose => {
                StreamCondition::NotWellFormed
            }
            Restricted(_) => StreamCondition::RestrictedXml,
            InvalidUtf8 { .. } | UnsupportedEncoding(_) => StreamCondition::UnsupportedEncoding,
            UndeclaredPrefix(_) | BadNamespaceDeclaration(_) => StreamCondition::BadNamespacePrefix,
            BadStreamRoot { .. } => StreamCondition::InvalidNamespace,
            StanzaTooLarge { .. }
            | TooDeep { .. }
            | HeaderTooLarge { .. }
            | WhitespaceTooLong { .. }
            | TooManyAttributes { .. }
            | TooManyNamespaces { .. } => StreamCondition::PolicyViolation,
        }
    }
}

fn nwf(m: Malformed) -> CodecError {
    CodecError::NotWellFormed(m)
}

/// `</stream:stream>`: the closing tag for the conventional `stream` prefix (RFC 6120 §4.4).
pub fn encode_close() -> &'static str {
    "</stream:stream>"
}

// ---------------------------------------------------------------------------------------
// Decoder (framing)
// ---------------------------------------------------------------------------------------

/// Where the lexer is inside markup. Kept across feeds, so input may be split anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data (or, before the header, the prolog).
    Content,
    /// Just after `<`.
    Lt,
    /// Inside a tag. `quote` is the open quote byte (0: none); `slash` whether the last
    /// byte outside quotes was `/` (self-closing tag); `end` for `</…>`.
    Tag { quote: u8, slash: bool, end: bool },
    /// After `<!`, `matched` bytes of `[CDATA[` seen.
    Bang { matched: usize },
    /// Inside `<![CDATA[`, counting trailing `]` (at most 2).
    Cdata { brackets: u8 },
    /// Inside the XML declaration `<?…?>`; `q`: last byte was `?`.
    Pi { q: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the stream header (at the start, and after [`Decoder::restart`]).
    Prolog,
    /// Header seen; top-level elements follow.
    Open,
    /// `</stream:stream>` seen.
    Closed,
}

/// What a completed tag was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Start,
    Empty,
    End,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
const CDATA_OPEN: &[u8] = b"[CDATA[";

/// Incremental decoder: feed bytes in any split, pull events.
///
/// Contract (tokio-util `Decoder` style): `Ok(None)` means more bytes are needed; an `Err`
/// is final, and every later call returns the same error.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    buf: Vec<u8>,
    /// Bytes before this offset have been handed out as events.
    consumed: usize,
    /// Bytes before this offset have been lexed.
    scan: usize,
    /// Where the unit being lexed starts (meaningful when `in_unit`).
    unit_start: usize,
    in_unit: bool,
    /// Raw bytes of the last returned unit.
    raw: Range<usize>,
    lex: Lex,
    phase: Phase,
    /// Element depth inside the current top-level unit.
    depth: usize,
    /// Consecutive top-level whitespace bytes, across events.
    ws_run: usize,
    /// The qualified name of the stream root as written, to match `</stream:stream>`.
    root_qname: Option<String>,
    ctx: Option<NsContext>,
    dead: Option<CodecError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::default())
    }
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            buf: Vec::new(),
            consumed: 0,
            scan: 0,
            unit_start: 0,
            in_unit: false,
            raw: 0..0,
            lex: Lex::Content,
            phase: Phase::Prolog,
            depth: 0,
            ws_run: 0,
            root_qname: None,
            ctx: None,
            dead: None,
        }
    }

    /// Append received bytes. Nothing is parsed until [`Decoder::next_event`].
    pub fn feed(&mut self, data: &[u8]) {
        if self.dead.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete unit, `Ok(None)` if more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, CodecError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        self.compact();
        match self.step() {
            Ok(ev) => Ok(ev),
            Err(e) => {
                tracing::debug!(error = %e, "stream decoding failed");
                self.dead = Some(e.clone());
                self.buf = Vec::new();
                self.consumed = 0;
                self.scan = 0;
                self.raw = 0..0;
                Err(e)
            }
        }
    }

    /// Raw bytes of the unit last returned by [`Decoder::next_event`], exactly as received
    /// (for transcripts). Valid until the next call to `next_event`; empty after `Ok(None)`.
    pub fn last_raw(&self) -> &[u8] {
        self.buf.get(self.raw.clone()).unwrap_or(&[])
    }

    /// Expect a new stream header on the same connection (RFC 6120 §4.3.3: after STARTTLS
    /// and SASL success both sides restart the stream). Bytes not yet returned are kept and
    /// lexed again from scratch, as the first bytes of the new stream. Call it right after
    /// the event that ends the old stream (`<proceed/>`, `<success/>`), before the next
    /// `next_event`: the new stream's prolog is not valid inside the old one.
    pub fn restart(&mut self) {
        self.scan = self.consumed;
        self.in_unit = false;
        self.lex = Lex::Content;
        self.phase = Phase::Prolog;
        self.depth = 0;
        self.ws_run = 0;
        self.root_qname = None;
        self.ctx = None;
    }

    /// Bytes received but not yet returned as events. After `<proceed/>` this must be 0:
    /// anything else is plaintext injected before the TLS handshake (RFC 6120 §5.4.3.3).
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.consumed)
    }

    /// The namespace context of the open stream (the header's default namespace and
    /// prefixes), for serialising elements written into it. `None` before a header.
    pub fn context(&self) -> Option<&NsContext> {
        self.ctx.as_ref()
    }

    /// Drop the bytes already handed out (amortised) and release a large idle buffer.
    fn compact(&mut self) {
        self.raw = 0..0;
        if self.consumed >= self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > IDLE_CAPACITY {
                self.buf = Vec::new();
            }
            self.consumed = 0;
            self.scan = 0;
            self.unit_start = 0;
        } else if self.consumed >= COMPACT_MIN && self.consumed * 2 >= self.buf.len() {
            let n = self.consumed;
            self.buf.drain(..n);
            self.consumed = 0;
            self.scan -= n;
            self.unit_start = self.unit_start.saturating_sub(n);
        }
    }

    fn step(&mut self) -> Result<Option<Event>, CodecError> {
        match self.phase {
            Phase::Prolog => self.step_prolog(),
            Phase::Open => self.step_open(),
            Phase::Closed => {
                // Only whitespace may follow the end of the document (XML 1.0 §2.1 Misc).
                while let Some(&b) = self.buf.get(self.scan) {
                    if !is_ws(b) {
                        return Err(CodecError::DataAfterClose);
                    }
                    self.scan += 1;
                }
                self.consumed = self.scan;
                Ok(None)
            }
        }
    }

    /// Lex the prolog and the header tag as one unit.
    fn step_prolog(&mut self) -> Result<Option<Event>, CodecError> {
        if !self.in_unit {
            self.in_unit = true;
            self.unit_start = self.consumed;
            self.scan = self.consumed;
            self.lex = Lex::Content;
        }
        loop {
            // A quoted attribute value ends only at its quote: skip to it in one search
            // (the size limit sees the skipped bytes as lexed).
            if let Lex::Tag { quote, .. } = self.lex
                && quote != 0
            {
                let rest = self.buf.get(self.scan..).unwrap_or(&[]);
                self.scan += rest.iter().position(|&c| c == quote).unwrap_or(rest.len());
                if self.scan - self.unit_start > MAX_HEADER_BYTES {
                    return Err(CodecError::HeaderTooLarge {
                        limit: MAX_HEADER_BYTES,
                    });
                }
            }
            let Some(&b) = self.buf.get(self.scan) else {
                break;
            };
            let off = self.scan - self.unit_start;
            self.scan += 1;
            if off >= MAX_HEADER_BYTES {
                return Err(CodecError::HeaderTooLarge {
                    limit: MAX_HEADER_BYTES,
                });
            }
            match self.lex {
                Lex::Content => match b {
                    b'<' => self.lex = Lex::Lt,
                    _ if is_ws(b) => {}
                    // RFC 6120 §11.6: UTF-8 only; a UTF-16/32 byte order or NUL is not it.
                    0xFE | 0xFF | 0x00 if off < 2 => {
                        return Err(CodecError::UnsupportedEncoding(
                            "UTF-16 or UTF-32 input".into(),
                        ));
                    }
                    _ if off < 3 && b == BOM[off] => {}
                    _ => return Err(CodecError::TextAtTopLevel),
                },
                Lex::Lt => match b {
                    b'?' => {
                        let at = self.scan - 2 - self.unit_start;
                        let after_bom = at == 3
                            && self.buf.get(self.unit_start..self.unit_start + 3) == Some(&BOM[..]);
                        if at == 0 || after_bom {
                            self.lex = Lex::Pi { q: false };
                        } else {
                            // RFC 6120 §11.1: no processing instructions (the XML
                            // declaration is only allowed as the very first bytes).
                            return Err(CodecError::Restricted(Restricted::ProcessingInstruction));
                        }
                    }
                    b'!' => self.lex = Lex::Bang { matched: 0 },
                    b'/' => return Err(nwf(Malformed::EndTagBeforeHeader)),
                    0x00 => return Err(CodecError::UnsupportedEncoding("UTF-16 input".into())),
                    _ => {
                        self.lex = Lex::Tag {
                            quote: 0,
                            slash: false,
                            end: false,
                        };
                        self.scan -= 1;
                    }
                },
                Lex::Pi { q } => {
                    if q && b == b'>' {
                        self.lex = Lex::Content;
                    } else {
                        self.lex = Lex::Pi { q: b == b'?' };
                    }
                }
                Lex::Tag { .. } => {
                    if let Some(kind) = self.lex_tag_byte(b)? {
                        if kind == TagKind::Empty {
                            return Err(nwf(Malformed::EmptyStreamHeader));
                        }
                        return self.finish_header().map(Some);
                    }
                }
                // RFC 6120 §11.1: no comments, no DTD (this is what defuses entity expansion).
                Lex::Bang { .. } | Lex::Cdata { .. } => {
                    return Err(CodecError::Restricted(if b == b'-' {
                        Restricted::Comment
                    } else {
                        Restricted::Doctype
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Advance the tag state by one byte; `Some` when the tag just ended with `>`.
    /// A `<` outside quotes inside a tag can never be well-formed (XML 1.0 §3.1): fail now
    /// rather than frame past it and wait for a depth that never returns to zero.
    fn lex_tag_byte(&mut self, b: u8) -> Result<Option<TagKind>, CodecError> {
        let Lex::Tag { quote, slash, end } = self.lex else {
            return Ok(None);
        };
        if quote == 0 && b == b'<' {
            return Err(nwf(Malformed::Expected('>')));
        }
        if quote != 0 {
            if b == quote {
                self.lex = Lex::Tag {
                    quote: 0,
                    slash: false,
                    end,
                };
            }
            return Ok(None);
        }
        match b {
            b'\'' | b'"' => {
                self.lex = Lex::Tag {
                    quote: b,
                    slash: false,
                    end,
                }
            }
            b'>' => {
                self.lex = Lex::Content;
                return Ok(Some(if end {
                    TagKind::End
                } else if slash {
                    TagKind::Empty
                } else {
                    TagKind::Start
                }));
            }
            _ => {
                self.lex = Lex::Tag {
                    quote: 0,
                    slash: b == b'/',
                    end,
                }
            }
        }
        Ok(None)
    }

    fn unit_str(&self) -> Result<&str, CodecError> {
        let bytes = self.buf.get(self.unit_start..self.scan).unwrap_or(&[]);
        // RFC 6120 §11.6: streams are UTF-8; invalid sequences are unsupported-encoding.
        std::str::from_utf8(bytes).map_err(|e| CodecError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })
    }

    fn finish_unit(&mut self) {
        self.raw = self.unit_start..self.scan;
        self.consumed = self.scan;
        self.in_unit = false;
        self.depth = 0;
        self.lex = Lex::Content;
    }

    fn finish_header(&mut self) -> Result<Event, CodecError> {
        let s = self.unit_str()?;
        let mut p = Parser::new(s);
        let (header, qname, ctx) = p.header()?;
        self.finish_unit();
        self.root_qname = Some(qname);
        self.ctx = Some(ctx);
        self.phase = Phase::Open;
        self.ws_run = 0;
        Ok(Event::Header(header))
    }

    fn step_open(&mut self) -> Result<Option<Event>, CodecError> {
        if !self.in_unit {
            // Top level: whitespace, or the `<` of the next unit.
            let start = self.scan;
            while let Some(&b) = self.buf.get(self.scan) {
                if !is_ws(b) {
                    break;
                }
                self.scan += 1;
                self.ws_run += 1;
                if self.ws_run > self.limits.max_stanza_bytes {
                    return Err(CodecError::WhitespaceTooLong {
                        limit: self.limits.max_stanza_bytes,
                    });
                }
            }
            if self.scan > start {
                self.raw = start..self.scan;
                self.consumed = self.scan;
                return Ok(Some(Event::Whitespace(self.scan - start)));
            }
            match self.buf.get(self.scan) {
                None => return Ok(None),
                Some(b'<') => {}
                Some(_) => return Err(CodecError::TextAtTopLevel),
            }
            self.in_unit = true;
            self.unit_start = self.scan;
            self.scan += 1;
            self.depth = 0;
            self.ws_run = 0;
            self.lex = Lex::Lt;
        }
        let max = self.limits.max_stanza_bytes;
        loop {
            // Character data and quoted attribute values hold one byte of interest each
            // (`<`, the closing quote): skip to it in one search instead of a state step
            // per byte. The size limit sees every skipped byte as lexed.
            let skip_to = match self.lex {
                Lex::Content => Some(b'<'),
                Lex::Tag { quote, .. } if quote != 0 => Some(quote),
                _ => None,
            };
            if let Some(t) = skip_to {
                let rest = self.buf.get(self.scan..).unwrap_or(&[]);
                self.scan += rest.iter().position(|&c| c == t).unwrap_or(rest.len());
                if self.scan - self.unit_start > max {
                    return Err(CodecError::StanzaTooLarge { limit: max });
                }
            }
            let Some(&b) = self.buf.get(self.scan) else {
                break;
            };
            self.scan += 1;
            if self.scan - self.unit_start > max {
                // RFC 6120 §13.12: detected while incomplete, so at most `max` bytes are held.
                return Err(CodecError::StanzaTooLarge { limit: max });
            }
            match self.lex {
                Lex::Content => {
                    if b == b'<' {
                        self.lex = Lex::Lt;
                    }
                }
                Lex::Lt => match b {
                    b'/' => {
                        self.lex = Lex::Tag {
                            quote: 0,
                            slash: false,
                            end: true,
                        }
                    }
                    b'!' => self.lex = Lex::Bang { matched: 0 },
                    // RFC 6120 §11.1
                    b'?' => return Err(CodecError::Restricted(Restricted::ProcessingInstruction)),
                    // XML 1.0 §3.1: a tag name starts right after '<' with a NameStartChar
                    // (non-ASCII bytes are checked when the unit is parsed).
                    _ if b < 0x80 && !is_name_start(b as char) => {
                        return Err(nwf(Malformed::BadName));
                    }
                    _ => {
                        self.lex = Lex::Tag {
                            quote: 0,
                            slash: false,
                            end: false,
                        };
                        self.scan -= 1;
                    }
                },
                Lex::Bang { matched } => {
                    if matched == 0 && b == b'-' {
                        return Err(CodecError::Restricted(Restricted::Comment));
                    }
                    if matched == 0 && b != b'[' {
                        return Err(CodecError::Restricted(Restricted::Doctype));
                    }
                    if CDATA_OPEN.get(matched) != Some(&b) {
                        return Err(nwf(Malformed::BadCdata));
                    }
                    if self.depth == 0 {
                        // CDATA is character data: not allowed between stanzas.
                        return Err(CodecError::TextAtTopLevel);
                    }
                    self.lex = if matched + 1 == CDATA_OPEN.len() {
                        Lex::Cdata { brackets: 0 }
                    } else {
                        Lex::Bang {
                            matched: matched + 1,
                        }
                    };
                }
                Lex::Cdata { brackets } => {
                    self.lex = match b {
                        b']' => Lex::Cdata {
                            brackets: (brackets + 1).min(2),
                        },
                        b'>' if brackets == 2 => Lex::Content,
                        _ => Lex::Cdata { brackets: 0 },
                    };
                }
                Lex::Pi { .. } => {
                    return Err(CodecError::Restricted(Restricted::ProcessingInstruction));
                }
                Lex::Tag { .. } => match self.lex_tag_byte(b)? {
                    None => {}
                    Some(TagKind::Start) => {
                        self.depth += 1;
                        if self.depth > self.limits.max_depth {
                            return Err(CodecError::TooDeep {
                                limit: self.limits.max_depth,
                            });
                        }
                    }
                    Some(TagKind::Empty) if self.depth == 0 => {
                        return self.finish_element().map(Some);
                    }
                    Some(TagKind::Empty) => {}
                    Some(TagKind::End) => {
                        if self.depth == 0 {
                            return self.finish_close().map(Some);
                        }
                        self.depth -= 1;
                        if self.depth == 0 {
                            return self.finish_element().map(Some);
                        }
                    }
                },
            }
        }
        Ok(None)
    }

    fn finish_element(&mut self) -> Result<Event, CodecError> {
        let s = self.unit_str()?;
        let empty = NsContext::default();
        let ctx = self.ctx.as_ref().unwrap_or(&empty);
        let el = parse_element_with(s, ctx, &self.limits)?;
        self.finish_unit();
        Ok(Event::Element(el))
    }

    fn finish_close(&mut self) -> Result<Event, CodecError> {
        let s = self.unit_str()?;
        let mut p = Parser::new(s);
        let found = p.close_tag()?;
        let expected = self.root_qname.as_deref().unwrap_or("stream:stream");
        if found != expected {
            return Err(CodecError::MismatchedEndTag {
                expected: expected.into(),
                found: found.into(),
            });
        }
        self.finish_unit();
        self.phase = Phase::Closed;
        Ok(Event::Close)
    }
}

// ---------------------------------------------------------------------------------------
// Stream header
// ---------------------------------------------------------------------------------------

/// The header attributes with typed fields, in the order they are written when `attrs`
/// does not say otherwise.
const KNOWN_ATTRS: &[(&str, &str)] = &[
    ("", "from"),
    ("", "to"),
    ("", "id"),
    ("", "version"),
    (XML_NS, "lang"),
];

impl StreamHeader {
    /// A `jabber:server` stream header (RFC 6120 §4.7), with `xmlns:db` (XEP-0220 §2.1)
    /// when `dialback` is set.
    pub fn s2s(
        from: Option<&str>,
        to: Option<&str>,
        id: Option<&str>,
        version: Option<&str>,
        dialback: bool,
    ) -> Self {
        let mut declarations = vec![
            (None, ns::SERVER.to_string()),
            (Some("stream".to_string()), ns::STREAM.to_string()),
        ];
        if dialback {
            declarations.push((Some("db".to_string()), ns::DIALBACK.to_string()));
        }
        let mut h = StreamHeader {
            stream_prefix: Some("stream".into()),
            content_ns: ns::SERVER.into(),
            from: from.map(Into::into),
            to: to.map(Into::into),
            id: id.map(Into::into),
            version: version.map(Into::into),
            lang: None,
            declarations,
            attrs: Vec::new(),
        };
        h.sync_attrs();
        h
    }

    /// A `jabber:component:accept` stream header (XEP-0114 §3): `to` is the component name
    /// on the initiating side; the answer carries `from` and `id`.
    pub fn component(from: Option<&str>, to: Option<&str>, id: Option<&str>) -> Self {
        let mut h = StreamHeader {
            stream_prefix: Some("stream".into()),
            content_ns: ns::COMPONENT_ACCEPT.into(),
            from: from.map(Into::into),
            to: to.map(Into::into),
            id: id.map(Into::into),
            declarations: vec![
                (None, ns::COMPONENT_ACCEPT.to_string()),
                (Some("stream".to_string()), ns::STREAM.to_string()),
            ],
            ..StreamHeader::default()
        };
        h.sync_attrs();
        h
    }

    /// Builder: set `xml:lang` (RFC 6120 §4.7.4).
    pub fn with_lang(mut self, lang: impl Into<String>) -> Self {
        self.lang = Some(lang.into());
        self.sync_attrs();
        self
    }

    fn field(&self, ns: &str, name: &str) -> Option<&str> {
        match (ns, name) {
            ("", "from") => self.from.as_deref(),
            ("", "to") => self.to.as_deref(),
            ("", "id") => self.id.as_deref(),
            ("", "version") => self.version.as_deref(),
            (XML_NS, "lang") => self.lang.as_deref(),
            _ => None,
        }
    }

    fn is_known(a: &Attr) -> bool {
        KNOWN_ATTRS.iter().any(|(n, l)| a.ns == *n && a.name == *l)
    }

    /// The attributes as written: `attrs` order, known ones with their field value (or
    /// dropped when the field is `None`), then known fields missing from `attrs`.
    fn effective_attrs(&self) -> Vec<Attr> {
        let mut out: Vec<Attr> = Vec::with_capacity(self.attrs.len() + KNOWN_ATTRS.len());
        for a in &self.attrs {
            if Self::is_known(a) {
                if let Some(v) = self.field(&a.ns, &a.name)
                    && !out.iter().any(|o| o.ns == a.ns && o.name == a.name)
                {
                    out.push(Attr {
                        ns: a.ns.clone(),
                        name: a.name.clone(),
                        value: v.into(),
                    });
                }
            } else {
                out.push(a.clone());
            }
        }
        for (n, l) in KNOWN_ATTRS {
            if let Some(v) = self.field(n, l)
                && !out.iter().any(|o| o.ns == *n && o.name == *l)
            {
                out.push(Attr {
                    ns: (*n).into(),
                    name: (*l).into(),
                    value: v.into(),
                });
            }
        }
        out
    }

    /// Make `attrs` agree with the typed fields (what a decoder would report for
    /// [`StreamHeader::to_xml`]'s output).
    pub fn sync_attrs(&mut self) {
        self.attrs = self.effective_attrs();
    }

    /// The namespace declarations written: `declarations`, or when that is empty, the ones
    /// implied by `content_ns` and `stream_prefix`.
    fn effective_declarations(&self) -> Vec<(Option<String>, String)> {
        if !self.declarations.is_empty() {
            return self.declarations.clone();
        }
        match &self.stream_prefix {
            Some(p) if !p.is_empty() => {
                let mut d = Vec::new();
                if !self.content_ns.is_empty() {
                    d.push((None, self.content_ns.clone()));
                }
                d.push((Some(p.clone()), ns::STREAM.to_string()));
                d
            }
            _ => vec![(None, ns::STREAM.to_string())],
        }
    }

    fn root_qname(&self) -> String {
        match &self.stream_prefix {
            Some(p) if !p.is_empty() => format!("{p}:stream"),
            _ => "stream".into(),
        }
    }

    /// Serialise: `[<?xml version='1.0'?>]<stream:stream xmlns='…' xmlns:stream='…' …>`.
    /// Declarations come first, then the attributes (see the type docs for which wins).
    pub fn to_xml(&self, prolog: bool) -> String {
        let mut out = String::new();
        if prolog {
            out.push_str("<?xml version='1.0'?>");
        }
        out.push('<');
        out.push_str(&self.root_qname());
        let decls = self.effective_declarations();
        let mut ctx = NsContext::default();
        for (p, uri) in &decls {
            match p {
                Some(p) => {
                    let _ = write!(out, " xmlns:{p}='{}'", escape_attr(uri));
                }
                None => {
                    let _ = write!(out, " xmlns='{}'", escape_attr(uri));
                }
            }
            ctx.bind(p.clone(), uri.clone());
        }
        for a in self.effective_attrs() {
            out.push(' ');
            if a.ns.is_empty() {
                out.push_str(&a.name);
            } else if a.ns == XML_NS {
                out.push_str("xml:");
                out.push_str(&a.name);
            } else {
                let p = match ctx.uri_prefix(&a.ns) {
                    Some(p) => p.to_string(),
                    None => {
                        let p = format!("ns{}", ctx.prefixes.len());
                        let _ = write!(out, "xmlns:{p}='{}' ", escape_attr(&a.ns));
                        ctx.bind(Some(p.clone()), a.ns.clone());
                        p
                    }
                };
                let _ = write!(out, "{p}:{}", a.name);
            }
            let _ = write!(out, "='{}'", escape_attr(&a.value));
        }
        out.push('>');
        out
    }

    /// The closing tag matching this header's stream prefix.
    pub fn close_xml(&self) -> String {
        format!("</{}>", self.root_qname())
    }

    /// The namespace context the header establishes for the elements of the stream.
    pub fn ns_context(&self) -> NsContext {
        let mut ctx = NsContext::default();
        for (p, uri) in self.effective_declarations() {
            ctx.bind(p, uri);
        }
        ctx
    }
}

// ---------------------------------------------------------------------------------------
// Parser (complete units only)
// ---------------------------------------------------------------------------------------

/// XML 1.0 §2.3 NameStartChar, as inclusive ranges.
const NAME_START: &[(char, char)] = &[
    (':', ':'),
    ('A', 'Z'),
    ('_', '_'),
    ('a', 'z'),
    ('\u{C0}', '\u{D6}'),
    ('\u{D8}', '\u{F6}'),
    ('\u{F8}', '\u{2FF}'),
    ('\u{370}', '\u{37D}'),
    ('\u{37F}', '\u{1FFF}'),
    ('\u{200C}', '\u{200D}'),
    ('\u{2070}', '\u{218F}'),
    ('\u{2C00}', '\u{2FEF}'),
    ('\u{3001}', '\u{D7FF}'),
    ('\u{F900}', '\u{FDCF}'),
    ('\u{FDF0}', '\u{FFFD}'),
    ('\u{10000}', '\u{EFFFF}'),
];

/// XML 1.0 §2.3 NameChar, beyond NameStartChar.
const NAME_MORE: &[(char, char)] = &[
    ('-', '-'),
    ('.', '.'),
    ('0', '9'),
    ('\u{B7}', '\u{B7}'),
    ('\u{300}', '\u{36F}'),
    ('\u{203F}', '\u{2040}'),
];

/// XML 1.0 §4.6: the predefined entities, the only ones RFC 6120 §11.1 allows.
const PREDEFINED_ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("apos", '\''),
    ("quot", '"'),
];

fn in_ranges(c: char, r: &[(char, char)]) -> bool {
    r.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

fn is_name_start(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic() || c == '_' || c == ':';
    }
    in_ranges(c, NAME_START)
}

fn is_name_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.');
    }
    in_ranges(c, NAME_START) || in_ranges(c, NAME_MORE)
}

/// XML 1.0 §2.2 Char (surrogates cannot occur in a `str`).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// XML 1.0 §2.3 S.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// A name split at its colon (Namespaces in XML 1.0 §4).
#[derive(Debug, Clone, Copy)]
struct QName<'a> {
    raw: &'a str,
    prefix: Option<&'a str>,
    local: &'a str,
}

struct RawAttr<'a> {
    name: QName<'a>,
    /// Borrowed from the unit unless references or white space had to be replaced.
    value: Cow<'a, str>,
}

struct RawTag<'a> {
    name: QName<'a>,
    attrs: Vec<RawAttr<'a>>,
    empty: bool,
}

struct Frame<'a> {
    el: Element,
    qname: &'a str,
    /// The element's scope: [`Scopes::binds`] up to this length, this many prefixes.
    scope: ScopeMark,
    text: String,
}

/// Where an element's namespace scope ends in a [`Scopes`] stack.
#[derive(Debug, Clone, Copy)]
struct ScopeMark {
    binds: usize,
    prefixes: usize,
}

/// The namespace scopes of the open elements of one unit (Namespaces in XML 1.0 §6), as
/// one stack of the declarations made inside the unit over the context it is parsed in.
/// Nothing is copied per element: declarations borrow from the unit, so a stanza that
/// declares a namespace costs no context clone (DESIGN §6).
struct Scopes<'c, 'a> {
    base: &'c NsContext,
    /// Declarations in document order (`None`: the default namespace).
    binds: Vec<(Option<&'a str>, Cow<'a, str>)>,
}

impl<'c, 'a> Scopes<'c, 'a> {
    fn new(base: &'c NsContext) -> Self {
        Scopes {
            base,
            binds: Vec::new(),
        }
    }

    /// The scope before any declaration of the unit.
    fn root(&self) -> ScopeMark {
        ScopeMark {
            binds: 0,
            prefixes: self.base.prefixes.len(),
        }
    }

    /// The innermost binding of `prefix` (`None`: the default namespace) within `upto`.
    fn bound(&self, upto: usize, prefix: Option<&str>) -> Option<&str> {
        self.binds
            .get(..upto)
            .unwrap_or(&[])
            .iter()
            .rev()
            .find(|(p, _)| *p == prefix)
            .map(|(_, u)| u.as_ref())
    }

    /// Is `prefix` bound explicitly (the `xml` prefix is bound by definition, and counts
    /// only when declared, as in [`NsContext::bind`]) within `upto`?
    fn declared(&self, upto: usize, prefix: &str) -> bool {
        self.bound(upto, Some(prefix)).is_some()
            || self.base.prefixes.iter().any(|(p, _)| p == prefix)
    }

    fn default_ns(&self, upto: usize) -> &str {
        self.bound(upto, None).unwrap_or(self.base.default.as_str())
    }

    fn prefix_uri(&self, upto: usize, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some(XML_NS);
        }
        self.bound(upto, Some(prefix))
            .or_else(|| self.base.prefix_uri(prefix))
    }

    /// Forget the declarations of elements that closed.
    fn truncate(&mut self, m: ScopeMark) {
        self.binds.truncate(m.binds);
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    /// The attribute list of the previous start tag, emptied: reused by the next one, so
    /// a unit allocates one list however many tags it has.
    spare: Vec<RawAttr<'a>>,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            pos: 0,
            spare: Vec::new(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.b.get(self.pos..self.pos + lit.len()) == Some(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), CodecError> {
        let mut buf = [0u8; 4];
        if self.eat(c.encode_utf8(&mut buf)) {
            Ok(())
        } else {
            Err(nwf(Malformed::Expected(c)))
        }
    }

    fn skip_ws(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    /// XML 1.0 §2.3 Name.
    fn name(&mut self) -> Result<&'a str, CodecError> {
        let rest = self.rest();
        // ASCII fast path, byte by byte; the first non-ASCII byte goes on by `char`.
        let mut end = 0;
        let mut more = false;
        for &b in rest.as_bytes() {
            if b >= 0x80 {
                more = true;
                break;
            }
            let c = char::from(b);
            let ok = if end == 0 {
                is_name_start(c)
            } else {
                is_name_char(c)
            };
            if !ok {
                break;
            }
            end += 1;
        }
        let tail = if more {
            rest.get(end..).unwrap_or("")
        } else {
            ""
        };
        let ascii = end;
        for (i, c) in tail.char_indices() {
            let i = ascii + i;
            let ok = if i == 0 {
                is_name_start(c)
            } else {
                is_name_char(c)
            };
            if !ok {
                break;
            }
            end = i + c.len_utf8();
        }
        if end == 0 {
            return Err(nwf(if self.peek().is_none() {
                Malformed::Incomplete
            } else {
                Malformed::BadName
            }));
        }
        self.pos += end;
        Ok(rest.get(..end).unwrap_or(""))
    }

    /// Namespaces in XML 1.0 §4 QName: at most one colon, with non-empty parts.
    fn qname(&mut self) -> Result<QName<'a>, CodecError> {
        let raw = self.name()?;
        // ':' is ASCII: splitting at its byte index keeps both parts whole characters.
        let colon = raw
            .bytes()
            .position(|b| b == b':')
            .and_then(|i| Some((raw.get(..i)?, raw.get(i + 1..)?)));
        match colon {
            None => Ok(QName {
                raw,
                prefix: None,
                local: raw,
            }),
            Some((p, l))
                if !p.is_empty()
                    && !l.is_empty()
                    && !l.bytes().any(|b| b == b':')
                    && l.starts_with(is_name_start) =>
            {
                Ok(QName {
                    raw,
                    prefix: Some(p),
                    local: l,
                })
            }
            Some(_) => Err(nwf(Malformed::BadQName)),
        }
    }

    /// After `&`: a character reference or one of the predefined entities (RFC 6120 §11.1).
    fn reference(&mut self, out: &mut String) -> Result<(), CodecError> {
        if self.eat("#") {
            let hex = self.eat("x");
            let start = self.pos;
            let mut v: u32 = 0;
            while let Some(b) = self.peek() {
                let d = match (hex, b) {
                    (_, b'0'..=b'9') => b - b'0',
                    (true, b'a'..=b'f') => b - b'a' + 10,
                    (true, b'A'..=b'F') => b - b'A' + 10,
                    _ => break,
                };
                v = v
                    .checked_mul(if hex { 16 } else { 10 })
                    .and_then(|v| v.checked_add(u32::from(d)))
                    .ok_or(nwf(Malformed::BadReference))?;
                self.pos += 1;
            }
            if self.pos == start || !self.eat(";") {
                return Err(nwf(Malformed::BadReference));
            }
            // XML 1.0 §4.1 WFC: Legal Character.
            match char::from_u32(v) {
                Some(c) if is_xml_char(c) => out.push(c),
                _ => return Err(nwf(Malformed::BadChar(v))),
            }
            return Ok(());
        }
        let name = self.name().map_err(|_| nwf(Malformed::BadReference))?;
        if !self.eat(";") {
            return Err(nwf(Malformed::BadReference));
        }
        match PREDEFINED_ENTITIES.iter().find(|(n, _)| *n == name) {
            Some((_, c)) => {
                out.push(*c);
                Ok(())
            }
            None => Err(CodecError::Restricted(Restricted::EntityReference(
                name.into(),
            ))),
        }
    }

    /// Check the characters of a run of ordinary text (XML 1.0 §2.2).
    /// Byte-wise: in UTF-8 the only characters [`is_xml_char`] rules out are the C0
    /// controls but tab, LF and CR (one byte each) and U+FFFE / U+FFFF (`EF BF BE`,
    /// `EF BF BF`); `0xEF` is always a lead byte, so no sequence is misread.
    fn check_chars(run: &str) -> Result<(), CodecError> {
        let b = run.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r') {
                return Err(nwf(Malformed::BadChar(u32::from(c))));
            }
            if c == 0xEF && b.get(i + 1) == Some(&0xBF) {
                match b.get(i + 2) {
                    Some(0xBE) => return Err(nwf(Malformed::BadChar(0xFFFE))),
                    Some(0xBF) => return Err(nwf(Malformed::BadChar(0xFFFF))),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// A quoted attribute value, references decoded, normalised (XML 1.0 §3.3.3). Borrowed
    /// from the unit when nothing needs replacing, as in nearly every stanza.
    fn attr_value(&mut self) -> Result<Cow<'a, str>, CodecError> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            Some(_) => return Err(nwf(Malformed::Expected('\''))),
            None => return Err(nwf(Malformed::Incomplete)),
        };
        self.pos += 1;
        let start = self.pos;
        // Fast path: up to the closing quote, nothing to replace and no byte that could
        // start a character XML 1.0 §2.2 rules out (a control, or `EF` of U+FFFE/U+FFFF).
        // Anything else takes the general loop below from the start of the value.
        while let Some(b) = self.peek() {
            if b == q {
                let chunk = self.s.get(start..self.pos).unwrap_or("");
                self.pos += 1;
                return Ok(Cow::Borrowed(chunk));
            }
            if b < 0x20 || b == 0xEF || b == b'<' || b == b'&' {
                break;
            }
            self.pos += 1;
        }
        self.pos = start;
        let mut out = String::new();
        let mut run = start;
        loop {
            let Some(b) = self.peek() else {
                return Err(nwf(Malformed::Incomplete));
            };
            if b == q || matches!(b, b'<' | b'&' | b'\t' | b'\n' | b'\r') {
                let chunk = self.s.get(run..self.pos).unwrap_or("");
                Self::check_chars(chunk)?;
                out.push_str(chunk);
                self.pos += 1;
                match b {
                    b'<' => return Err(nwf(Malformed::LtInAttribute)),
                    b'&' => self.reference(&mut out)?,
                    b'\r' => {
                        // §2.11: CR LF is one line end, normalised to one space.
                        self.eat("\n");
                        out.push(' ');
                    }
                    b'\t' | b'\n' => out.push(' '),
                    _ => return Ok(Cow::Owned(out)),
                }
                run = self.pos;
            } else {
                self.pos += 1;
            }
        }
    }

    /// After `<`: name, attributes, `>` or `/>`.
    fn start_tag(&mut self) -> Result<RawTag<'a>, CodecError> {
        let name = self.qname()?;
        let mut attrs = std::mem::take(&mut self.spare);
        attrs.clear();
        loop {
            let ws = self.skip_ws();
            if self.eat("/>") {
                return Ok(RawTag {
                    name,
                    attrs,
                    empty: true,
                });
            }
            if self.eat(">") {
                return Ok(RawTag {
                    name,
                    attrs,
                    empty: false,
                });
            }
            if self.peek().is_none() {
                return Err(nwf(Malformed::Incomplete));
            }
            if ws == 0 {
                return Err(nwf(Malformed::MissingWhitespace));
            }
            let an = self.qname()?;
            self.skip_ws();
            self.expect('=')?;
            self.skip_ws();
            let value = self.attr_value()?;
            if attrs.len() >= MAX_ATTRIBUTES {
                return Err(CodecError::TooManyAttributes {
                    limit: MAX_ATTRIBUTES,
                });
            }
            // XML 1.0 §3.1 WFC: Unique Att Spec.
            if attrs.iter().any(|a| a.name.raw == an.raw) {
                return Err(nwf(Malformed::DuplicateAttribute(an.raw.into())));
            }
            attrs.push(RawAttr { name: an, value });
        }
    }

    /// After `</`: the name and `>`.
    fn end_tag_name(&mut self) -> Result<&'a str, CodecError> {
        let n = self.qname()?;
        self.skip_ws();
        self.expect('>')?;
        Ok(n.raw)
    }

    /// A complete `</…>` unit.
    fn close_tag(&mut self) -> Result<&'a str, CodecError> {
        if !self.eat("</") {
            return Err(nwf(Malformed::Expected('<')));
        }
        let n = self.end_tag_name()?;
        self.at_end()?;
        Ok(n)
    }

    fn at_end(&self) -> Result<(), CodecError> {
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(nwf(Malformed::TrailingContent))
        }
    }

    /// Character data up to the next `<` (or the end), into `out` (XML 1.0 §2.4, §2.11).
    fn text(&mut self, out: &mut String) -> Result<(), CodecError> {
        let mut run = self.pos;
        loop {
            let b = self.peek();
            if matches!(b, None | Some(b'<' | b'&' | b'\r' | b']')) {
                let chunk = self.s.get(run..self.pos).unwrap_or("");
                Self::check_chars(chunk)?;
                out.push_str(chunk);
                match b {
                    None | Some(b'<') => return Ok(()),
                    Some(b'&') => {
                        self.pos += 1;
                        self.reference(out)?;
                    }
                    Some(b'\r') => {
                        self.pos += 1;
                        self.eat("\n");
                        out.push('\n');
                    }
                    _ => {
                        if self.eat("]]>") {
                            return Err(nwf(Malformed::CdataEndInText));
                        }
                        self.pos += 1;
                        out.push(']');
                    }
                }
                run = self.pos;
            } else {
                self.pos += 1;
            }
        }
    }

    /// After `<![CDATA[`: up to and including `]]>`.
    fn cdata(&mut self, out: &mut String) -> Result<(), CodecError> {
        let rest = self.rest();
        let Some(end) = rest.find("]]>") else {
            return Err(nwf(Malformed::Incomplete));
        };
        let chunk = rest.get(..end).unwrap_or("");
        Self::check_chars(chunk)?;
        // §2.11 line ends apply inside CDATA too.
        for (i, part) in chunk.split('\r').enumerate() {
            if i == 0 {
                out.push_str(part);
            } else {
                out.push('\n');
                out.push_str(part.strip_prefix('\n').unwrap_or(part));
            }
        }
        self.pos += end + 3;
        Ok(())
    }

    /// Resolve a start tag's namespaces in the scope `parent` of `scopes` (Namespaces in
    /// XML 1.0 §6): its declarations are pushed onto `scopes`, and the element's own scope
    /// is returned with it. Attribute values move into the element.
    fn resolve(
        tag: RawTag<'a>,
        scopes: &mut Scopes<'_, 'a>,
        parent: ScopeMark,
    ) -> Result<(Element, ScopeMark, Vec<RawAttr<'a>>), CodecError> {
        scopes.truncate(parent);
        let mut prefixes = parent.prefixes;
        let mut plain = 0;
        let mut attrs = tag.attrs;
        // Declarations first: they apply to the element's own name and attributes.
        for a in attrs.iter_mut() {
            let decl = match (a.name.prefix, a.name.local) {
                (None, "xmlns") => None,
                (Some("xmlns"), p) => Some(p),
                _ => {
                    plain += 1;
                    continue;
                }
            };
            check_declaration(decl, &a.value)?;
            if let Some(p) = decl
                && !scopes.declared(scopes.binds.len(), p)
            {
                prefixes += 1;
            }
            scopes.binds.push((decl, std::mem::take(&mut a.value)));
            if prefixes > MAX_NS_PREFIXES {
                return Err(CodecError::TooManyNamespaces {
                    limit: MAX_NS_PREFIXES,
                });
            }
        }
        let mine = ScopeMark {
            binds: scopes.binds.len(),
            prefixes,
        };
        let sc: &Scopes<'_, 'a> = scopes;
        let lookup = |p: &str| -> Result<&str, CodecError> {
            if p == "xmlns" {
                return Err(CodecError::BadNamespaceDeclaration(
                    "element or attribute in the xmlns namespace".into(),
                ));
            }
            sc.prefix_uri(mine.binds, p)
                .ok_or_else(|| CodecError::UndeclaredPrefix(p.into()))
        };
        let ns = match tag.name.prefix {
            Some(p) => lookup(p)?,
            None => sc.default_ns(mine.binds),
        };
        let mut el = Element::new(ns, tag.name.local);
        el.prefix = tag.name.prefix.map(String::from);
        el.attrs.reserve_exact(plain);
        for a in attrs.drain(..) {
            let ans = match (a.name.prefix, a.name.local) {
                (None, "xmlns") | (Some("xmlns"), _) => continue,
                (None, _) => "",
                (Some(p), _) => lookup(p)?,
            };
            // Namespaces in XML 1.0 §6.3: no two attributes with the same expanded name.
            if el
                .attrs
                .iter()
                .any(|x| x.ns == ans && x.name == a.name.local)
            {
                return Err(nwf(Malformed::DuplicateAttribute(a.name.raw.into())));
            }
            el.attrs.push(Attr {
                ns: ans.to_string(),
                name: a.name.local.to_string(),
                value: a.value.into_owned(),
            });
        }
        Ok((el, mine, attrs))
    }

    /// One complete element starting at `<`, in scope `ctx`.
    fn element(&mut self, ctx: &NsContext, limits: &Limits) -> Result<Element, CodecError> {
        let mut scopes = Scopes::new(ctx);
        let mut stack: Vec<Frame<'a>> = Vec::new();
        self.expect('<')?;
        loop {
            // At the name of a start tag.
            let tag = self.start_tag()?;
            let (qname, empty) = (tag.name.raw, tag.empty);
            let parent = stack.last().map_or(scopes.root(), |f| f.scope);
            let (el, scope, spare) = Self::resolve(tag, &mut scopes, parent)?;
            self.spare = spare;
            if stack.len() + 1 > limits.max_depth {
                return Err(CodecError::TooDeep {
                    limit: limits.max_depth,
                });
            }
            if let Some(f) = stack.last_mut() {
                flush_text(f);
            }
            if empty {
                match stack.last_mut() {
                    Some(f) => f.el.children.push(Node::Element(el)),
                    None => return Ok(el),
                }
                scopes.truncate(parent);
            } else {
                stack.push(Frame {
                    el,
                    qname,
                    scope,
                    text: String::new(),
                });
            }
            // Content of the innermost open element, until a child start tag.
            loop {
                let Some(top) = stack.last_mut() else {
                    return Err(nwf(Malformed::Incomplete));
                };
                self.text(&mut top.text)?;
                if self.peek().is_none() {
                    return Err(nwf(Malformed::Incomplete));
                }
                if self.eat("</") {
                    let name = self.end_tag_name()?;
                    let Some(mut f) = stack.pop() else {
                        return Err(nwf(Malformed::Incomplete));
                    };
                    if name != f.qname {
                        return Err(CodecError::MismatchedEndTag {
                            expected: f.qname.into(),
                            found: name.into(),
                        });
                    }
                    flush_text(&mut f);
                    let up = stack.last().map_or(scopes.root(), |p| p.scope);
                    scopes.truncate(up);
                    match stack.last_mut() {
                        Some(p) => p.el.children.push(Node::Element(f.el)),
                        None => return Ok(f.el),
                    }
                } else if self.eat("<![CDATA[") {
                    self.cdata(&mut top.text)?;
                } else if self.eat("<!--") {
                    return Err(CodecError::Restricted(Restricted::Comment));
                } else if self.eat("<!") {
                    return Err(CodecError::Restricted(Restricted::Doctype));
                } else if self.eat("<?") {
                    return Err(CodecError::Restricted(Restricted::ProcessingInstruction));
                } else {
                    self.expect('<')?;
                    break;
                }
            }
        }
    }

    /// After `<?xml`: XML 1.0 §2.8 XMLDecl. Only UTF-8 is accepted (RFC 6120 §11.6).
    fn xml_decl(&mut self) -> Result<(), CodecError> {
        let mut seen: Vec<&str> = Vec::new();
        loop {
            let ws = self.skip_ws();
            if self.eat("?>") {
                break;
            }
            if ws == 0 {
                return Err(nwf(Malformed::BadXmlDecl));
            }
            let n = self.name().map_err(|_| nwf(Malformed::BadXmlDecl))?;
            self.skip_ws();
            self.expect('=').map_err(|_| nwf(Malformed::BadXmlDecl))?;
            self.skip_ws();
            let v = self.attr_value().map_err(|_| nwf(Malformed::BadXmlDecl))?;
            // Pseudo-attributes in this order, each at most once, version first.
            let order = ["version", "encoding", "standalone"];
            let Some(i) = order.iter().position(|o| *o == n) else {
                return Err(nwf(Malformed::BadXmlDecl));
            };
            if seen
                .last()
                .is_some_and(|l| order.iter().position(|o| o == l) >= Some(i))
                || (seen.is_empty() && i != 0)
            {
                return Err(nwf(Malformed::BadXmlDecl));
            }
            seen.push(order[i]);
            match n {
                "version" if v != "1.0" => return Err(nwf(Malformed::BadXmlDecl)),
                "encoding" if !v.eq_ignore_ascii_case("UTF-8") => {
                    return Err(CodecError::UnsupportedEncoding(v.into_owned()));
                }
                "standalone" if v != "yes" && v != "no" => return Err(nwf(Malformed::BadXmlDecl)),
                _ => {}
            }
        }
        if seen.is_empty() {
            Err(nwf(Malformed::BadXmlDecl))
        } else {
            Ok(())
        }
    }

    /// A complete header unit: `[BOM][<?xml …?>] S* <stream:stream …>`.
    fn header(&mut self) -> Result<(StreamHeader, String, NsContext), CodecError> {
        self.eat("\u{FEFF}");
        if self.eat("<?") {
            let target = self.name()?;
            if target != "xml" {
                return Err(CodecError::Restricted(Restricted::ProcessingInstruction));
            }
            self.xml_decl()?;
        }
        self.skip_ws();
        self.expect('<')?;
        let tag = self.start_tag()?;
        self.at_end()?;
        if tag.empty {
            return Err(nwf(Malformed::EmptyStreamHeader));
        }
        let qname = tag.name.raw;
        let base = NsContext::default();
        let mut scopes = Scopes::new(&base);
        let root_scope = scopes.root();
        let (root, _, _) = Self::resolve(tag, &mut scopes, root_scope)?;
        // RFC 6120 §4.8.1: the root is `stream` in the streams namespace.
        if !root.is(ns::STREAM, "stream") {
            return Err(CodecError::BadStreamRoot {
                ns: root.ns,
                name: root.name,
            });
        }
        let declarations: Vec<(Option<String>, String)> = scopes
            .binds
            .iter()
            .map(|(p, u)| (p.map(String::from), u.to_string()))
            .collect();
        let mut ctx = NsContext::default();
        for (p, u) in &declarations {
            ctx.bind(p.clone(), u.clone());
        }
        let header = StreamHeader {
            stream_prefix: root.prefix.clone(),
            content_ns: ctx.default.clone(),
            from: root.attr("from").map(String::from),
            to: root.attr("to").map(String::from),
            id: root.attr("id").map(String::from),
            version: root.attr("version").map(String::from),
            lang: root.lang().map(String::from),
            declarations,
            attrs: root.attrs,
        };
        Ok((header, qname.to_string(), ctx))
    }
}

fn flush_text(f: &mut Frame<'_>) {
    if !f.text.is_empty() {
        f.el.children.push(Node::Text(std::mem::take(&mut f.text)));
    }
}

/// Namespaces in XML 1.0 §3 constraints on a declaration of `prefix` (None: default).
fn check_declaration(prefix: Option<&str>, uri: &str) -> Result<(), CodecError> {
    const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";
    let bad = |why: &str| Err(CodecError::BadNamespaceDeclaration(why.into()));
    match prefix {
        Some("xmlns") => bad("the xmlns prefix cannot be declared"),
        Some("xml") if uri != XML_NS => bad("the xml prefix is bound to its own namespace"),
        Some(p) if p != "xml" && uri == XML_NS => {
            bad("the XML namespace cannot be bound to another prefix")
        }
        Some(_) if uri.is_empty() => bad("a prefix cannot be undeclared in XML 1.0"),
        None if uri == XML_NS => bad("the XML namespace cannot be the default"),
        _ if uri == XMLNS_NS => bad("the xmlns namespace cannot be bound"),
        _ => Ok(()),
    }
}

/// Parse one element from text, in namespace context `ctx` (templates, tests). Leading and
/// trailing whitespace is allowed; anything else around the element is an error.
pub fn parse_element(s: &str, ctx: &NsContext) -> Result<Element, CodecError> {
    parse_element_with(s, ctx, &Limits::default())
}

/// [`parse_element`] with explicit limits (the depth bound also bounds the recursion of
/// serialising and dropping the result).
pub fn parse_element_with(
    s: &str,
    ctx: &NsContext,
    limits: &Limits,
) -> Result<Element, CodecError> {
    let mut p = Parser::new(s);
    p.skip_ws();
    let el = p.element(ctx, limits)?;
    p.skip_ws();
    p.at_end()?;
    Ok(el)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A Prosody-like S2S stream: prolog, `db` prefix, features, dialback, a message with
    /// body and `xml:lang`, a keepalive, entities, CDATA, pretty-printing, close.
    const S2S: &str = concat!(
        "<?xml version='1.0'?>",
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' ",
        "xmlns:db='jabber:server:dialback' xml:lang='en' from='a.example' to='b.example' ",
        "id='c2b7d3e4-0000-4000-8000-000000000001' version='1.0'>",
        "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>",
        "<db:result from='a.example' to='b.example'>5e1b3c8f0a7d</db:result>",
        "<message from='juliet@a.example/balcony' to='romeo@b.example' type='chat' xml:lang='en' id='m1'>",
        "<body>Wherefore art thou? &amp; &#x41;&#66; &lt;3 \u{e9}\u{1F600}</body></message>",
        " ",
        "\n\n",
        "<iq type='get' id='p1' from='a.example' to='b.example'>\n  <ping xmlns='urn:xmpp:ping'/>\n</iq>",
        "<message to=\"romeo@b.example\"><body><![CDATA[<b>x</b> ]] > & ]]></body></message>",
        "</stream:stream>"
    );

    /// Decode `data` fed in chunks of the given sizes (cycled), collecting events, the raw
    /// bytes of each, and the final error.
    fn decode_chunks(
        data: &[u8],
        sizes: &[usize],
        limits: Limits,
    ) -> (Vec<Event>, Vec<u8>, Option<CodecError>) {
        let mut d = Decoder::new(limits);
        let mut events = Vec::new();
        let mut raw = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        loop {
            loop {
                match d.next_event() {
                    Ok(Some(ev)) => {
                        raw.extend_from_slice(d.last_raw());
                        events.push(ev);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        assert_eq!(d.next_event(), Err(e.clone()), "errors are sticky");
                        return (merge_ws(events), raw, Some(e));
                    }
                }
            }
            if pos >= data.len() {
                return (merge_ws(events), raw, None);
            }
            let n = sizes.get(i % sizes.len()).copied().unwrap_or(1).max(1);
            let end = (pos + n).min(data.len());
            d.feed(&data[pos..end]);
            pos = end;
            i += 1;
        }
    }

    /// Whitespace is reported as it arrives; split runs are one run.
    fn merge_ws(events: Vec<Event>) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for e in events {
            if let (Event::Whitespace(n), Some(Event::Whitespace(m))) = (&e, out.last_mut()) {
                *m += n;
                continue;
            }
            out.push(e);
        }
        out
    }

    fn decode_all(data: &[u8]) -> (Vec<Event>, Option<CodecError>) {
        let (ev, _, err) = decode_chunks(data, &[data.len().max(1)], Limits::default());
        (ev, err)
    }

    #[test]
    fn realistic_stream_decodes() {
        let (events, raw, err) = decode_chunks(S2S.as_bytes(), &[S2S.len()], Limits::default());
        assert_eq!(err, None);
        assert_eq!(raw, S2S.as_bytes(), "raw units concatenate to the input");
        assert_eq!(events.len(), 8, "{events:#?}");
        let Event::Header(h) = &events[0] else {
            panic!("header first: {events:?}")
        };
        assert_eq!(h.stream_prefix.as_deref(), Some("stream"));
        assert_eq!(h.content_ns, ns::SERVER);
        assert_eq!(h.from.as_deref(), Some("a.example"));
        assert_eq!(h.to.as_deref(), Some("b.example"));
        assert_eq!(
            h.id.as_deref(),
            Some("c2b7d3e4-0000-4000-8000-000000000001")
        );
        assert_eq!(h.version.as_deref(), Some("1.0"));
        assert_eq!(h.lang.as_deref(), Some("en"));
        assert_eq!(h.declarations.len(), 3);
        assert_eq!(h.attrs.len(), 5);
        let Event::Element(f) = &events[1] else {
            panic!()
        };
        assert!(f.is(ns::STREAM, "features"));
        assert!(f.child(ns::DIALBACK_FEATURE, "dialback").is_some());
        let Event::Element(r) = &events[2] else {
            panic!()
        };
        assert!(
            r.is(ns::DIALBACK, "result"),
            "db prefix from the header resolves: {r:?}"
        );
        assert_eq!(r.prefix.as_deref(), Some("db"));
        assert_eq!(r.text(), "5e1b3c8f0a7d");
        let Event::Element(m) = &events[3] else {
            panic!()
        };
        assert!(m.is(ns::SERVER, "message"));
        assert_eq!(m.lang(), Some("en"));
        assert_eq!(
            m.child(ns::SERVER, "body").map(|b| b.text()).as_deref(),
            Some("Wherefore art thou? & AB <3 \u{e9}\u{1F600}")
        );
        assert_eq!(events[4], Event::Whitespace(3));
        let Event::Element(iq) = &events[5] else {
            panic!()
        };
        assert!(iq.child(ns::PING, "ping").is_some());
        assert_eq!(
            iq.children.len(),
            3,
            "whitespace text inside a stanza is kept"
        );
        let Event::Element(m2) = &events[6] else {
            panic!()
        };
        assert_eq!(m2.attr("to"), Some("romeo@b.example"));
        assert_eq!(
            m2.child(ns::SERVER, "body").map(|b| b.text()).as_deref(),
            Some("<b>x</b> ]] > & ")
        );
        assert_eq!(events[7], Event::Close);
    }

    #[test]
    fn every_split_yields_the_same_events() {
        let data = S2S.as_bytes();
        let (whole, _, err) = decode_chunks(data, &[data.len()], Limits::default());
        assert_eq!(err, None);
        for i in 1..data.len() {
            let (ev, raw, err) = decode_chunks(data, &[i, data.len()], Limits::default());
            assert_eq!(err, None, "split at {i}");
            assert_eq!(ev, whole, "split at {i}");
            assert_eq!(raw, data, "split at {i}");
        }
        for sizes in [&[1][..], &[2], &[3, 1, 7], &[13, 5], &[64]] {
            let (ev, raw, err) = decode_chunks(data, sizes, Limits::default());
            assert_eq!(
                (ev, raw, err),
                (whole.clone(), data.to_vec(), None),
                "chunks {sizes:?}"
            );
        }
    }

    #[test]
    fn kamailio_double_quotes_and_redeclared_db() {
        let s = concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<stream:stream xmlns:stream=\"http://etherx.jabber.org/streams\" xmlns=\"jabber:server\" ",
            "version=\"1.0\" xmlns:db=\"jabber:server:dialback\" from=\"sip.test\">",
            "<stream:features/>",
            "<db:result xmlns:db=\"jabber:server:dialback\" from=\"sip.test\" to=\"xmpp-a.test\">",
            "0123456789abcdef0123456789abcdef01234567</db:result>",
            "<x:result xmlns:x=\"jabber:server:dialback\" type=\"valid\"/>",
        );
        let (ev, err) = decode_all(s.as_bytes());
        assert_eq!(err, None);
        let Event::Header(h) = &ev[0] else { panic!() };
        assert_eq!(h.id, None);
        assert_eq!(h.from.as_deref(), Some("sip.test"));
        let Event::Element(r) = &ev[2] else { panic!() };
        assert!(r.is(ns::DIALBACK, "result"));
        assert!(
            r.attrs.iter().all(|a| a.name != "db" && a.name != "xmlns"),
            "declarations are not attributes"
        );
        let Event::Element(x) = &ev[3] else { panic!() };
        assert!(x.is(ns::DIALBACK, "result"));
        assert_eq!(x.prefix.as_deref(), Some("x"));
    }

    #[test]
    fn unprefixed_stream_root() {
        let s = "<stream xmlns='http://etherx.jabber.org/streams' version='1.0'><q:x xmlns:q='urn:q'/></stream>";
        let (ev, err) = decode_all(s.as_bytes());
        assert_eq!(err, None);
        let Event::Header(h) = &ev[0] else { panic!() };
        assert_eq!(h.stream_prefix, None);
        assert_eq!(h.content_ns, ns::STREAM);
        assert!(matches!(&ev[1], Event::Element(e) if e.is("urn:q", "x")));
        assert_eq!(ev[2], Event::Close);
    }

    #[test]
    fn attribute_entities_and_normalisation() {
        let ctx = NsContext::new(ns::SERVER);
        let e = parse_element(
            "<message to='a&amp;b' id='&#x41;&#65;' x=\"it&apos;s &quot;q&quot;\" y='a\tb\r\nc'/>",
            &ctx,
        )
        .unwrap();
        assert_eq!(e.attr("to"), Some("a&b"));
        assert_eq!(e.attr("id"), Some("AA"));
        assert_eq!(e.attr("x"), Some("it's \"q\""));
        assert_eq!(e.attr("y"), Some("a b c"), "XML 1.0 §3.3.3 normalisation");
        let t = parse_element("<b>a\r\nb\rc</b>", &ctx).unwrap();
        assert_eq!(t.text(), "a\nb\nc", "XML 1.0 §2.11 line ends");
        let c = parse_element("<b><![CDATA[x\r\ny\rz&amp;]]>!</b>", &ctx).unwrap();
        assert_eq!(
            c.children,
            vec![Node::Text("x\ny\nz&amp;!".into())],
            "CDATA merges with text"
        );
    }

    #[rstest]
    #[case::simple(Element::new(ns::SERVER, "message").with_attr("to", "b@x.test").with_child(Element::new(ns::SERVER, "body").with_text("hi <&> ]]> 'q' \"d\"")))]
    #[case::dialback(Element::new(ns::DIALBACK, "result").with_prefix("db").with_attr("from", "a").with_text("key"))]
    #[case::foreign_child(Element::new(ns::SERVER, "iq").with_child(Element::new(ns::PING, "ping")))]
    #[case::attrs(Element::new(ns::SERVER, "presence").with_attr("x", "tab\there\nnl\r'\"<>&"))]
    #[case::lang({ let mut e = Element::new(ns::SERVER, "message"); e.set_attr_ns(XML_NS, "lang", "cs"); e })]
    #[case::foreign_attr({ let mut e = Element::new("urn:a", "x"); e.set_attr_ns("urn:b", "y", "1"); e.with_child(Element::new("urn:a", "z").with_prefix("p")) })]
    #[case::deep(Element::new("urn:a", "a").with_child(Element::new("urn:b", "b").with_child(Element::new("urn:a", "c").with_text("t"))))]
    fn element_round_trip(#[case] e: Element) {
        let ctx = NsContext::new(ns::SERVER)
            .with_prefix("db", ns::DIALBACK)
            .with_prefix("stream", ns::STREAM);
        let xml = e.to_xml(&ctx);
        assert_eq!(parse_element(&xml, &ctx), Ok(e), "{xml}");
    }

    #[rstest]
    #[case::s2s(StreamHeader::s2s(Some("a.test"), Some("b.test"), None, Some("1.0"), true))]
    #[case::s2s_plain(StreamHeader::s2s(None, Some("b.test"), Some("x'y"), Some("1.0"), false).with_lang("en"))]
    #[case::component(StreamHeader::component(None, Some("gw.test"), None))]
    #[case::decoded(match decode_all(S2S.as_bytes()).0.remove(0) { Event::Header(h) => h, _ => unreachable!() })]
    fn header_round_trip(#[case] h: StreamHeader, #[values(true, false)] prolog: bool) {
        let xml = h.to_xml(prolog);
        let mut d = Decoder::default();
        d.feed(xml.as_bytes());
        assert_eq!(d.next_event(), Ok(Some(Event::Header(h.clone()))), "{xml}");
        assert_eq!(d.last_raw(), xml.as_bytes());
        assert_eq!(d.context(), Some(&h.ns_context()));
    }

    #[test]
    fn header_without_declarations_is_completed() {
        let h = StreamHeader {
            stream_prefix: Some("stream".into()),
            content_ns: ns::SERVER.into(),
            to: Some("b.test".into()),
            ..StreamHeader::default()
        };
        assert_eq!(
            h.to_xml(false),
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='b.test'>"
        );
        let bare = StreamHeader::default();
        assert_eq!(
            bare.to_xml(false),
            "<stream xmlns='http://etherx.jabber.org/streams'>"
        );
        assert_eq!(bare.close_xml(), "</stream>");
    }

    #[test]
    fn header_fields_win_over_attrs() {
        let mut h = StreamHeader::s2s(Some("a.test"), Some("b.test"), None, Some("1.0"), true);
        h.attrs.push(Attr {
            ns: String::new(),
            name: "extra".into(),
            value: "1".into(),
        });
        h.from = Some("c.test".into());
        h.to = None;
        let xml = h.to_xml(false);
        assert_eq!(
            xml,
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
             xmlns:db='jabber:server:dialback' from='c.test' version='1.0' extra='1'>"
        );
        assert_eq!(h.close_xml(), encode_close());
        let ctx = h.ns_context();
        assert_eq!(ctx.default, ns::SERVER);
        assert_eq!(ctx.prefix_uri("db"), Some(ns::DIALBACK));
    }

    const HDR: &str =
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>";

    const BILLION_LAUGHS: &str = concat!(
        "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>",
        "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>",
        "<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>]>",
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>&lol2;"
    );

    /// One negative case per cause (STR-10): `hdr` prefixes a valid header.
    #[rstest]
    #[case::mismatched_tag(
        true,
        "<message><body>x</message></body>",
        StreamCondition::NotWellFormed
    )]
    #[case::mismatched_stream_close(true, "</stream:foo>", StreamCondition::NotWellFormed)]
    #[case::duplicate_attr(true, "<message a='1' a='2'/>", StreamCondition::NotWellFormed)]
    #[case::duplicate_expanded_attr(
        true,
        "<message xmlns:p='u' xmlns:q='u' p:a='1' q:a='2'/>",
        StreamCondition::NotWellFormed
    )]
    #[case::unquoted_attr(true, "<message a=1/>", StreamCondition::NotWellFormed)]
    #[case::no_ws_between_attrs(true, "<message a='1'b='2'/>", StreamCondition::NotWellFormed)]
    #[case::lt_in_attr(true, "<message a='<'/>", StreamCondition::NotWellFormed)]
    #[case::bad_name(true, "<1message/>", StreamCondition::NotWellFormed)]
    #[case::control_char(true, "<message>\u{1}</message>", StreamCondition::NotWellFormed)]
    #[case::bad_char_ref(true, "<message>&#0;</message>", StreamCondition::NotWellFormed)]
    #[case::bare_ampersand(true, "<message>a & b</message>", StreamCondition::NotWellFormed)]
    #[case::cdata_end_in_text(true, "<message>]]></message>", StreamCondition::NotWellFormed)]
    #[case::top_level_text(true, "hello", StreamCondition::NotWellFormed)]
    #[case::top_level_cdata(true, "<![CDATA[x]]>", StreamCondition::NotWellFormed)]
    #[case::data_after_close(true, "</stream:stream>x", StreamCondition::NotWellFormed)]
    #[case::empty_header(
        false,
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
        StreamCondition::NotWellFormed
    )]
    #[case::end_tag_first(false, "</stream:stream>", StreamCondition::NotWellFormed)]
    #[case::comment_in_stanza(
        true,
        "<message><!-- x --></message>",
        StreamCondition::RestrictedXml
    )]
    #[case::comment_top(true, "<!-- x -->", StreamCondition::RestrictedXml)]
    #[case::comment_prolog(false, "<!-- x -->", StreamCondition::RestrictedXml)]
    #[case::pi_top(true, "<?foo bar?>", StreamCondition::RestrictedXml)]
    #[case::pi_in_stanza(true, "<message><?foo?></message>", StreamCondition::RestrictedXml)]
    #[case::xml_decl_mid_stream(true, "<?xml version='1.0'?>", StreamCondition::RestrictedXml)]
    #[case::pi_prolog(false, "<?foo?><stream:stream>", StreamCondition::RestrictedXml)]
    #[case::doctype_in_stanza(
        true,
        "<message><!DOCTYPE x></message>",
        StreamCondition::RestrictedXml
    )]
    #[case::billion_laughs(false, BILLION_LAUGHS, StreamCondition::RestrictedXml)]
    #[case::entity_ref(true, "<message>&lol;</message>", StreamCondition::RestrictedXml)]
    #[case::entity_ref_in_attr(true, "<message a='&lol;'/>", StreamCondition::RestrictedXml)]
    #[case::invalid_utf8(
        true,
        "<message><body>\u{FFFD}</body></message>",
        StreamCondition::UnsupportedEncoding
    )]
    #[case::latin1_decl(
        false,
        "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>",
        StreamCondition::UnsupportedEncoding
    )]
    #[case::utf16_bom(false, "\u{FFFD}", StreamCondition::UnsupportedEncoding)]
    #[case::undeclared_prefix(true, "<foo:bar/>", StreamCondition::BadNamespacePrefix)]
    #[case::undeclared_attr_prefix(
        true,
        "<message foo:x='1'/>",
        StreamCondition::BadNamespacePrefix
    )]
    #[case::undeclared_root_prefix(false, "<stream:stream>", StreamCondition::BadNamespacePrefix)]
    #[case::rebind_xml(
        true,
        "<message xmlns:xml='urn:x'/>",
        StreamCondition::BadNamespacePrefix
    )]
    #[case::wrong_stream_ns(
        false,
        "<stream:stream xmlns:stream='urn:wrong'>",
        StreamCondition::InvalidNamespace
    )]
    #[case::wrong_root_name(
        false,
        "<stream:foo xmlns:stream='http://etherx.jabber.org/streams'>",
        StreamCondition::InvalidNamespace
    )]
    #[case::too_deep(true, &"<a>".repeat(65), StreamCondition::PolicyViolation)]
    #[case::too_large(true, &format!("<message><body>{}</body></message>", "x".repeat(300 * 1024)), StreamCondition::PolicyViolation)]
    #[case::header_too_large(false, &format!("<stream:stream a='{}'>", "x".repeat(MAX_HEADER_BYTES)), StreamCondition::PolicyViolation)]
    #[case::too_many_attrs(true, &format!("<a {}/>", (0..300).map(|i| format!("a{i}=''")).collect::<Vec<_>>().join(" ")), StreamCondition::PolicyViolation)]
    #[case::too_many_prefixes(true, &format!("<a {}/>", (0..70).map(|i| format!("xmlns:p{i}='u'")).collect::<Vec<_>>().join(" ")), StreamCondition::PolicyViolation)]
    #[case::whitespace_flood(true, &" ".repeat(300 * 1024), StreamCondition::PolicyViolation)]
    // Caught while framing, not when a depth that never returns to 0 is finally reached.
    #[case::bare_lt_in_text(
        true,
        "<message><body>1 < 2</body></message>",
        StreamCondition::NotWellFormed
    )]
    #[case::lt_inside_tag(true, "<message <body>", StreamCondition::NotWellFormed)]
    fn error_condition(#[case] hdr: bool, #[case] tail: &str, #[case] want: StreamCondition) {
        // `\u{FFFD}` marks where a raw invalid byte goes (0xFF: invalid UTF-8, and a
        // UTF-16 byte order mark when first).
        let mut data = Vec::new();
        if hdr {
            data.extend_from_slice(HDR.as_bytes());
        }
        for (i, part) in tail.split('\u{FFFD}').enumerate() {
            if i > 0 {
                data.extend_from_slice(&[0xFF, 0xFE]);
            }
            data.extend_from_slice(part.as_bytes());
        }
        let (ev, err) = decode_all(&data);
        let err = err.unwrap_or_else(|| panic!("no error; events {ev:?}"));
        assert_eq!(err.condition(), want, "{err}");
        if data.len() < 4096 {
            let (ev1, _, err1) = decode_chunks(&data, &[1], Limits::default());
            assert_eq!(
                (merge_ws(ev1), err1),
                (ev, Some(err)),
                "byte-at-a-time agrees"
            );
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let deep = format!("{HDR}{}{}", "<a>".repeat(64), "</a>".repeat(64));
        let (ev, err) = decode_all(deep.as_bytes());
        assert_eq!(
            (ev.len(), err),
            (2, None),
            "64 levels are allowed by default"
        );
        let limits = Limits {
            max_stanza_bytes: 11,
            max_depth: 2,
        };
        let (ev, _, err) = decode_chunks(
            format!("{HDR}<a><b/></a><a>aaaaaa</a>").as_bytes(),
            &[1],
            limits,
        );
        assert_eq!(ev.len(), 2);
        assert_eq!(err, Some(CodecError::StanzaTooLarge { limit: 11 }));
    }

    #[test]
    fn names_outside_ascii() {
        let ctx = NsContext::new("urn:x");
        let e = parse_element("<\u{e9}t\u{e9} \u{10000}a-b.c='1'/>", &ctx).unwrap();
        assert_eq!(e.name, "\u{e9}t\u{e9}");
        assert_eq!(e.attr("\u{10000}a-b.c"), Some("1"));
        assert!(
            parse_element("<a\u{D7}/>", &ctx).is_err(),
            "U+00D7 is not a name character"
        );
        assert!(parse_element("<-a/>", &ctx).is_err());
    }

    #[test]
    fn oversized_stanza_fails_before_it_is_buffered() {
        let limits = Limits {
            max_stanza_bytes: 10_000,
            max_depth: 16,
        };
        let mut d = Decoder::new(limits);
        d.feed(HDR.as_bytes());
        assert!(matches!(d.next_event(), Ok(Some(Event::Header(_)))));
        let stanza = format!("<message><body>{}</body></message>", "y".repeat(1_000_000));
        let mut failed_at = None;
        for (i, b) in stanza.bytes().enumerate() {
            d.feed(&[b]);
            assert!(d.buffered() <= limits.max_stanza_bytes + 1);
            if let Err(e) = d.next_event() {
                assert_eq!(e, CodecError::StanzaTooLarge { limit: 10_000 });
                failed_at = Some(i);
                break;
            }
        }
        assert_eq!(
            failed_at,
            Some(10_000),
            "fails on the first byte over the limit"
        );
        assert_eq!(d.buffered(), 0, "a dead stream holds nothing");
    }

    #[test]
    fn idle_buffer_is_released() {
        let mut d = Decoder::default();
        d.feed(HDR.as_bytes());
        let big = format!("<message><body>{}</body></message>", "z".repeat(100_000));
        d.feed(big.as_bytes());
        assert!(matches!(d.next_event(), Ok(Some(Event::Header(_)))));
        assert!(matches!(d.next_event(), Ok(Some(Event::Element(_)))));
        assert_eq!(d.last_raw(), big.as_bytes());
        assert_eq!(d.next_event(), Ok(None));
        assert!(
            d.buf.capacity() <= IDLE_CAPACITY,
            "capacity {}",
            d.buf.capacity()
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn many_units_in_one_feed_compact_linearly() {
        let mut d = Decoder::default();
        d.feed(HDR.as_bytes());
        let n = 20_000;
        d.feed("<presence/>".repeat(n).as_bytes());
        let mut count = 0;
        while let Ok(Some(ev)) = d.next_event() {
            if matches!(ev, Event::Element(_)) {
                count += 1;
                assert_eq!(d.last_raw(), b"<presence/>");
            }
        }
        assert_eq!(count, n);
    }

    #[test]
    fn restart_keeps_unread_bytes() {
        // RFC 6120 §4.3.3 / §6.4.6: after SASL success the initiator sends a new header,
        // possibly in the same read as the end of the old stream. The driver calls
        // `restart` right after the event that ends the old stream.
        let mut d = Decoder::default();
        d.feed(HDR.as_bytes());
        d.feed(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><?xml version='1.0'?><stream:stream ");
        assert!(matches!(d.next_event(), Ok(Some(Event::Header(_)))));
        assert!(matches!(d.next_event(), Ok(Some(Event::Element(e))) if e.is(ns::SASL, "success")));
        assert!(d.buffered() > 0, "the start of the next header is held");
        d.restart();
        assert_eq!(d.context(), None);
        assert_eq!(d.next_event(), Ok(None));
        d.feed(b"xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' id='2'>");
        let Ok(Some(Event::Header(h))) = d.next_event() else {
            panic!("new header")
        };
        assert_eq!(h.id.as_deref(), Some("2"));
        assert!(d.last_raw().starts_with(b"<?xml"));
        assert_eq!(d.buffered(), 0);
        assert!(d.context().is_some());
    }

    #[test]
    fn restart_relexes_bytes_already_scanned() {
        let mut d = Decoder::default();
        d.feed(HDR.as_bytes());
        d.feed(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><stream:str");
        assert!(matches!(d.next_event(), Ok(Some(Event::Header(_)))));
        assert!(matches!(d.next_event(), Ok(Some(Event::Element(_)))));
        // The partial header is lexed as the start of an element of the old stream …
        assert_eq!(d.next_event(), Ok(None));
        // … and lexed again as a header after the restart.
        d.restart();
        d.feed(b"eam xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>");
        assert!(matches!(d.next_event(), Ok(Some(Event::Header(_)))));
        assert_eq!(d.last_raw(), HDR.as_bytes());
    }

    #[test]
    fn bom_and_whitespace_before_header() {
        let mut data = BOM.to_vec();
        data.extend_from_slice(b"<?xml version='1.0' encoding='utf-8' standalone='no'?>\n");
        data.extend_from_slice(HDR.as_bytes());
        let (ev, err) = decode_all(&data);
        assert_eq!(err, None);
        assert!(matches!(ev.as_slice(), [Event::Header(_)]));
        let (ev, err) = decode_all(format!("\n {HDR}").as_bytes());
        assert_eq!((ev.len(), err), (1, None));
    }

    /// A declaration's scope is its element and the element's descendants only
    /// (Namespaces in XML 1.0 §6.1), also after siblings that redeclared the prefix.
    #[test]
    fn declarations_are_scoped_to_their_element() {
        let ctx = NsContext::new("jabber:server").with_prefix("p", "urn:outer");
        let el = parse_element(
            "<a xmlns:p='urn:one'><p:b/><c xmlns:p='urn:two' xmlns='urn:c'><p:d p:x='1'/><e/></c>\
             <p:f/><g/></a>",
            &ctx,
        )
        .expect("well-formed");
        let kids: Vec<&Element> = el.elements().collect();
        let got: Vec<(&str, &str)> = kids
            .iter()
            .map(|e| (e.ns.as_str(), e.name.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("urn:one", "b"),
                ("urn:c", "c"),
                ("urn:one", "f"),
                ("jabber:server", "g")
            ]
        );
        let inner: Vec<&Element> = kids.get(1).expect("c").elements().collect();
        assert_eq!(inner.first().map(|e| e.ns.as_str()), Some("urn:two"));
        assert_eq!(
            inner.first().and_then(|e| e.attr_ns("urn:two", "x")),
            Some("1")
        );
        assert_eq!(inner.get(1).map(|e| e.ns.as_str()), Some("urn:c"));
        // Out of scope again after `</a>`-level siblings: the context's own binding.
        let after = parse_element("<p:z/>", &ctx).expect("bound by the context");
        assert_eq!(after.ns, "urn:outer");
        assert!(matches!(
            parse_element("<a><b xmlns:q='urn:q'/><q:c/></a>", &ctx),
            Err(CodecError::UndeclaredPrefix(p)) if p == "q"
        ));
    }

    /// The prefix limit counts distinct prefixes in scope: redeclaring one does not add,
    /// and closed elements give theirs back.
    #[test]
    fn prefix_limit_counts_prefixes_in_scope() {
        let ctx = NsContext::new("jabber:server").with_prefix("stream", ns::STREAM);
        let decls = |n: usize, tag: &str| {
            let mut t = format!("<{tag}");
            for i in 0..n {
                t.push_str(&format!(" xmlns:p{i}='urn:{i}'"));
            }
            t.push_str("/>");
            t
        };
        // The context holds one prefix already.
        let fits = format!(
            "<a>{}{}</a>",
            decls(MAX_NS_PREFIXES - 1, "b"),
            decls(MAX_NS_PREFIXES - 1, "c")
        );
        assert!(parse_element(&fits, &ctx).is_ok());
        let redeclared = format!(
            "<a xmlns:stream='urn:x'>{}</a>",
            decls(MAX_NS_PREFIXES - 1, "b")
        );
        assert!(parse_element(&redeclared, &ctx).is_ok());
        assert!(matches!(
            parse_element(&decls(MAX_NS_PREFIXES, "b"), &ctx),
            Err(CodecError::TooManyNamespaces { .. })
        ));
    }

    #[test]
    fn parse_element_rejects_trailing_content() {
        let ctx = NsContext::new(ns::SERVER);
        assert!(parse_element("  <a/>\n", &ctx).is_ok());
        assert_eq!(
            parse_element("<a/>x", &ctx),
            Err(CodecError::NotWellFormed(Malformed::TrailingContent))
        );
        assert_eq!(
            parse_element("<a/><b/>", &ctx),
            Err(CodecError::NotWellFormed(Malformed::TrailingContent))
        );
        assert_eq!(
            parse_element("<a>", &ctx),
            Err(CodecError::NotWellFormed(Malformed::Incomplete))
        );
        assert_eq!(
            parse_element("", &ctx),
            Err(CodecError::NotWellFormed(Malformed::Expected('<')))
        );
    }

    /// A small deterministic fuzzer (the `fuzz/` target's oracles, always run): mutate the
    /// recorded stream and check that splits never change the outcome, raw units tile the
    /// input, and decoded elements survive serialise → parse.
    #[test]
    fn mutated_streams_are_split_invariant() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        const INSERTS: &[&[u8]] = &[
            b"<",
            b">",
            b"'",
            b"\"",
            b"/",
            b"&",
            b"]]>",
            b"<![CDATA[",
            b"<!--",
            b"<?",
            b"\xff",
            b" ",
            b"xmlns:q='u'",
            b"q:",
            b"</a>",
            b"&#x41;",
        ];
        let limits = Limits {
            max_stanza_bytes: 10_000,
            max_depth: 8,
        };
        for _ in 0..1500 {
            let mut data = S2S.as_bytes().to_vec();
            for _ in 0..=rnd(3) {
                let at = rnd(data.len());
                match rnd(3) {
                    0 => {
                        let ins = INSERTS[rnd(INSERTS.len())];
                        data.splice(at..at, ins.iter().copied());
                    }
                    1 => {
                        let end = (at + rnd(8)).min(data.len());
                        data.drain(at..end);
                    }
                    _ => data[at] = rnd(256) as u8,
                }
            }
            let whole = decode_chunks(&data, &[data.len()], limits);
            let sizes = [rnd(17) + 1, rnd(5) + 1, rnd(64) + 1];
            let split = decode_chunks(&data, &sizes, limits);
            assert_eq!(
                whole,
                split,
                "input {:?} sizes {sizes:?}",
                String::from_utf8_lossy(&data)
            );
            assert!(data.starts_with(&whole.1));
            let ctx = StreamHeader::s2s(None, None, None, None, true).ns_context();
            for ev in &whole.0 {
                if let Event::Element(e) = ev {
                    let xml = e.to_xml(&ctx);
                    assert_eq!(
                        parse_element_with(&xml, &ctx, &limits).as_ref(),
                        Ok(e),
                        "{xml}"
                    );
                }
            }
        }
    }

    #[test]
    fn no_panic_on_garbage_prefixes() {
        // Every prefix of every case must be a clean `Ok(None)` or an error, never a panic.
        for s in [
            S2S,
            BILLION_LAUGHS,
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a b='\u{e9}",
        ] {
            for i in 0..s.len() {
                let _ = decode_all(&s.as_bytes()[..i]);
            }
        }
    }
}
