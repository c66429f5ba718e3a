//! Presence values and their mapping to PIDF (RFC 8048 §6, RFC 3863; RFC 7248 §5 as
//! the legacy variant).
//!
//! ```text
//! RFC 8048 §6.2 / §6.3 (XMPP presence <-> PIDF), as encoded here:
//!   no 'type'              <-> <tuple><status><basic>open</basic></status></tuple>
//!   type='unavailable'     <-> <basic>closed</basic>
//!   other types            --  not a notification (subscription, probe, error)
//!   from / to              <-> From / To (see address.rs)
//!   resourcepart           --> tuple id with the prefix "ID-" (xs:ID cannot start
//!                              with a digit; RFC 7248 §5.2 note 2)
//!   <show/>                <-> <show xmlns='jabber:client'/> inside <status>
//!                              (RFC 7248 §5.2 note 7, §5.3 note 4)
//!   <status xml:lang/>     <-> <note xml:lang/>
//!   <priority/> 0..127     <-> <contact priority> 0..1; negative never mapped
//!                              (RFC 7248 §5.2 note 6)
//! ```

use thiserror::Error;

use super::address::{AddressError, JidParts, Scheme, jid_to_sip};
use super::xml::{XmlError, parse_document};
use crate::xmpp::element::{Element, NsContext, XML_NS};
use crate::xmpp::ns;

/// RFC 3863 §4.1: the PIDF namespace.
pub const PIDF_NS: &str = "urn:ietf:params:xml:ns:pidf";
/// RFC 3863 §4: the SIP body type of a PIDF document.
pub const PIDF_CONTENT_TYPE: &str = "application/pidf+xml";
/// Upper bound on tuples read from one document (robustness, not an RFC limit).
pub const MAX_TUPLES: usize = 64;

/// Why a presence value could not be read or mapped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PresenceError {
    /// An address did not map (RFC 7247 §6).
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The body is not usable XML.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The element is not `<presence/>`.
    #[error("not a <presence/> element")]
    NotPresence,
    /// RFC 3863 §4.1.1: the root is `<presence xmlns='urn:ietf:params:xml:ns:pidf'>`.
    #[error("root element is not a PIDF <presence/>")]
    NotPidf,
    /// RFC 3863 §4.1.1: `entity` is mandatory.
    #[error("PIDF <presence/> has no entity")]
    MissingEntity,
    /// RFC 3863 §4.1.2: `id` is mandatory on each tuple.
    #[error("PIDF <tuple/> has no id")]
    MissingTupleId,
    /// RFC 3863 §4.1.4: `<basic>` is `open` or `closed`.
    #[error("invalid <basic/> value {0:?}")]
    InvalidBasic(String),
    /// RFC 3863 (extensibility): an unknown element marked mustUnderstand makes the document
    /// unusable.
    #[error("extension {0:?} is marked mustUnderstand")]
    MustUnderstand(String),
    /// More tuples than [`MAX_TUPLES`].
    #[error("more than {MAX_TUPLES} tuples")]
    TooManyTuples,
    /// RFC 6121 §4.7.1.
    #[error("unknown presence type {0:?}")]
    UnknownType(String),
    /// RFC 6121 §4.7.2.1: at most one `<show/>`, with one of four values.
    #[error("more than one <show/>")]
    MultipleShow,
    /// Not away, chat, dnd or xa.
    #[error("invalid <show/> value {0:?}")]
    InvalidShow(String),
    /// RFC 6121 §4.7.2.2: several `<status/>` only with distinct `xml:lang`.
    #[error("two <status/> elements with the same xml:lang")]
    DuplicateStatusLang,
    /// RFC 6121 §4.7.2.3: an integer in -128..=127, at most once.
    #[error("invalid <priority/> {0:?}")]
    InvalidPriority(String),
}

/// The `type` of an XMPP presence stanza (RFC 6121 §4.7.1), `Available` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceKind {
    /// No `type`: available.
    Available,
    /// End of availability.
    Unavailable,
    /// Subscription request (RFC 6121 §3.1).
    Subscribe,
    /// Subscription approval.
    Subscribed,
    /// Cancel own subscription (RFC 6121 §3.3).
    Unsubscribe,
    /// Deny or cancel a subscription (RFC 6121 §3.2).
    Unsubscribed,
    /// Request for current presence (RFC 6121 §4.3).
    Probe,
    /// Error reply (RFC 6120 §8.3).
    Error,
}

impl PresenceKind {
    /// The `type` attribute value (`None` for available presence).
    pub fn as_type_attr(self) -> Option<&'static str> {
        Some(match self {
            PresenceKind::Available => return None,
            PresenceKind::Unavailable => "unavailable",
            PresenceKind::Subscribe => "subscribe",
            PresenceKind::Subscribed => "subscribed",
            PresenceKind::Unsubscribe => "unsubscribe",
            PresenceKind::Unsubscribed => "unsubscribed",
            PresenceKind::Probe => "probe",
            PresenceKind::Error => "error",
        })
    }

    /// Parse the `type` attribute; `None` (absent) is available presence.
    pub fn from_type_attr(t: Option<&str>) -> Option<Self> {
        Some(match t {
            None => PresenceKind::Available,
            Some("unavailable") => PresenceKind::Unavailable,
            Some("subscribe") => PresenceKind::Subscribe,
            Some("subscribed") => PresenceKind::Subscribed,
            Some("unsubscribe") => PresenceKind::Unsubscribe,
            Some("unsubscribed") => PresenceKind::Unsubscribed,
            Some("probe") => PresenceKind::Probe,
            Some("error") => PresenceKind::Error,
            Some(_) => return None,
        })
    }

    /// RFC 8048 §6.2 (PNOT-01): only available and unavailable presence are
    /// notifications and become NOTIFY bodies.
    pub fn is_notification(self) -> bool {
        matches!(self, PresenceKind::Available | PresenceKind::Unavailable)
    }
}

/// RFC 6121 §4.7.2.1 `<show/>` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Show {
    /// Temporarily away.
    Away,
    /// Free for chat.
    Chat,
    /// Do not disturb.
    Dnd,
    /// Extended away.
    Xa,
}

impl Show {
    /// The four values of RFC 6121 §4.7.2.1.
    pub const ALL: [Show; 4] = [Show::Away, Show::Chat, Show::Dnd, Show::Xa];

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Show::Away => "away",
            Show::Chat => "chat",
            Show::Dnd => "dnd",
            Show::Xa => "xa",
        }
    }

    /// Parse a wire value; `None` if unknown.
    pub fn from_name(s: &str) -> Option<Self> {
        Show::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Language-tagged text: `(xml:lang, text)`.
pub type LangText = (Option<String>, String);

/// The mapped content of an XMPP presence stanza (RFC 6121 §4.7). Addresses travel
/// beside it, not inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct XmppPresence {
    /// The stanza `type`.
    pub kind: PresenceKind,
    /// At most one `<show/>` (RFC 6121 §4.7.2.1).
    pub show: Option<Show>,
    /// `<status/>` texts with their `xml:lang`.
    pub status: Vec<LangText>,
    /// `<priority/>` (RFC 6121 §4.7.2.3).
    pub priority: Option<i8>,
}

impl XmppPresence {
    /// A presence of `kind` with no children.
    pub fn new(kind: PresenceKind) -> Self {
        XmppPresence {
            kind,
            show: None,
            status: Vec::new(),
            priority: None,
        }
    }

    /// Read a `<presence/>` stanza (RFC 6121 §4.7). Strict where RFC 6121 says MUST
    /// (one `<show/>`, distinct status languages, integer priority), so the gateway can
    /// answer `bad-request` instead of guessing.
    pub fn from_element(e: &Element) -> Result<Self, PresenceError> {
        if e.name != "presence" {
            return Err(PresenceError::NotPresence);
        }
        let t = e.attr("type");
        let kind = PresenceKind::from_type_attr(t)
            .ok_or_else(|| PresenceError::UnknownType(t.unwrap_or_default().to_owned()))?;
        let mut p = XmppPresence::new(kind);
        let stanza_lang = e.lang();
        let mut seen_priority = false;
        for c in e.elements().filter(|c| c.ns == e.ns) {
            match c.name.as_str() {
                "show" => {
                    if p.show.is_some() {
                        return Err(PresenceError::MultipleShow);
                    }
                    let v = c.text();
                    p.show = Some(Show::from_name(v.trim()).ok_or(PresenceError::InvalidShow(v))?);
                }
                "status" => {
                    let lang = c.lang().or(stanza_lang).map(str::to_owned);
                    if p.status.iter().any(|(l, _)| *l == lang) {
                        return Err(PresenceError::DuplicateStatusLang);
                    }
                    p.status.push((lang, c.text()));
                }
                "priority" => {
                    let v = c.text();
                    if seen_priority {
                        return Err(PresenceError::InvalidPriority(v));
                    }
                    seen_priority = true;
                    p.priority = Some(
                        v.trim()
                            .parse::<i8>()
                            .map_err(|_| PresenceError::InvalidPriority(v.clone()))?,
                    );
                }
                _ => {}
            }
        }
        Ok(p)
    }

    /// Build the stanza in `content_ns` (`jabber:server` on S2S), `from`/`to` as given.
    pub fn to_element(&self, content_ns: &str, from: &JidParts, to: &JidParts) -> Element {
        let mut e = Element::new(content_ns, "presence")
            .with_attr("from", from.to_string())
            .with_attr("to", to.to_string());
        if let Some(t) = self.kind.as_type_attr() {
            e.set_attr("type", t);
        }
        if let Some(s) = self.show {
            e = e.with_child(Element::new(content_ns, "show").with_text(s.as_str()));
        }
        for (lang, text) in &self.status {
            let mut s = Element::new(content_ns, "status").with_text(text.clone());
            if let Some(l) = lang {
                s.set_attr_ns(XML_NS, "lang", l.clone());
            }
            e = e.with_child(s);
        }
        if let Some(p) = self.priority {
            e = e.with_child(Element::new(content_ns, "priority").with_text(p.to_string()));
        }
        e
    }
}

/// RFC 3863 §4.1.4 `<basic/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basic {
    /// Available for communication.
    Open,
    /// Not available.
    Closed,
}

impl Basic {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Basic::Open => "open",
            Basic::Closed => "closed",
        }
    }
}

/// One PIDF `<tuple/>` (RFC 3863 §4.1.2), with the `jabber:client` `<show/>`
/// extension inside `<status/>` (RFC 7248 §5.2 note 7, PNOT-03).
#[derive(Debug, Clone, PartialEq)]
pub struct Tuple {
    /// Tuple `id` (an `xs:ID`).
    pub id: String,
    /// RFC 3863 §4.1.4 makes `<basic/>` optional; a tuple without one says nothing
    /// about availability.
    pub basic: Option<Basic>,
    /// The `jabber:client` `<show/>` extension.
    pub show: Option<Show>,
    /// `<contact/>` URI (RFC 3863 §4.1.5).
    pub contact: Option<String>,
    /// `priority` of `<contact/>`, a qvalue in 0..=1 (RFC 3863 §4.1.5).
    pub priority: Option<f32>,
    /// `<note/>`s with their `xml:lang` (RFC 3863 §4.1.6).
    pub note: Vec<LangText>,
}

impl Tuple {
    /// A tuple with only an id and a basic status.
    pub fn new(id: impl Into<String>, basic: Basic) -> Self {
        Tuple {
            id: id.into(),
            basic: Some(basic),
            show: None,
            contact: None,
            priority: None,
            note: Vec::new(),
        }
    }
}

/// A PIDF document (RFC 3863 §4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Pidf {
    /// The presentity URI (`pres:` form here, RFC 3863 §4.1.1).
    pub entity: String,
    /// The tuples, in document order.
    pub tuples: Vec<Tuple>,
    /// Presence-level `<note/>`s (RFC 3863 §4.1.6).
    pub notes: Vec<LangText>,
}

fn note_element(lang: &Option<String>, text: &str) -> Element {
    let mut n = Element::new(PIDF_NS, "note").with_text(text);
    if let Some(l) = lang {
        n.set_attr_ns(XML_NS, "lang", l.clone());
    }
    n
}

/// Format a qvalue with at most three decimals (RFC 3261 §20.10 `qvalue`).
fn format_qvalue(q: f32) -> String {
    let s = format!("{:.3}", q.clamp(0.0, 1.0));
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

impl Pidf {
    /// Serialize as a complete `application/pidf+xml` body (RFC 3863 §4).
    pub fn to_xml(&self) -> String {
        let mut root = Element::new(PIDF_NS, "presence").with_attr("entity", self.entity.clone());
        for t in &self.tuples {
            let mut status = Element::new(PIDF_NS, "status");
            if let Some(b) = t.basic {
                status = status.with_child(Element::new(PIDF_NS, "basic").with_text(b.as_str()));
            }
            if let Some(s) = t.show {
                status = status.with_child(Element::new(ns::CLIENT, "show").with_text(s.as_str()));
            }
            let mut tuple = Element::new(PIDF_NS, "tuple")
                .with_attr("id", t.id.clone())
                .with_child(status);
            if let Some(c) = &t.contact {
                let mut contact = Element::new(PIDF_NS, "contact").with_text(c.clone());
                if let Some(p) = t.priority {
                    contact.set_attr("priority", format_qvalue(p));
                }
                tuple = tuple.with_child(contact);
            }
            for (lang, text) in &t.note {
                tuple = tuple.with_child(note_element(lang, text));
            }
            root = root.with_child(tuple);
        }
        for (lang, text) in &self.notes {
            root = root.with_child(note_element(lang, text));
        }
        let mut out = String::from("<?xml version='1.0' encoding='UTF-8'?>\n");
        root.write_xml(&mut out, &NsContext::new(""));
        out
    }

    /// The Content-Language for a NOTIFY carrying this document (PNOT-04, RFC 7248
    /// Table 1: `xml:lang` ↔ Content-Language): the language of the first note that
    /// has one, tuple notes first.
    pub fn content_language(&self) -> Option<&str> {
        self.tuples
            .iter()
            .flat_map(|t| t.note.iter())
            .chain(self.notes.iter())
            .find_map(|(lang, _)| lang.as_deref())
    }

    /// RFC 7248 Table 2 (`Content-Language` → `xml:lang`, PNOT-04): a NOTIFY's
    /// Content-Language is the language of every note that does not carry its own
    /// `xml:lang`, so it reaches the XMPP `<status/>`. Of a list (RFC 3261 §20.13) the
    /// first tag is taken.
    pub fn apply_content_language(&mut self, lang: &str) {
        let lang = lang.split(',').next().unwrap_or_default().trim();
        if lang.is_empty() {
            return;
        }
        let notes = self
            .tuples
            .iter_mut()
            .flat_map(|t| t.note.iter_mut())
            .chain(self.notes.iter_mut());
        for (l, _) in notes.filter(|(l, _)| l.is_none()) {
            *l = Some(lang.to_owned());
        }
    }

    /// Parse an `application/pidf+xml` body (RFC 3863 §4.1). Structure is checked
    /// strictly (root, entity, tuple ids, `<basic/>` values, mustUnderstand); advisory
    /// values are read leniently (an unknown `<show/>` or an out-of-range priority is
    /// dropped, not fatal).
    pub fn parse(body: &str) -> Result<Self, PresenceError> {
        let root = parse_document(body)?;
        if !root.is(PIDF_NS, "presence") {
            return Err(PresenceError::NotPidf);
        }
        check_must_understand(&root)?;
        let entity = root
            .attr("entity")
            .filter(|e| !e.trim().is_empty())
            .ok_or(PresenceError::MissingEntity)?
            .trim()
            .to_owned();
        let mut tuples = Vec::new();
        for t in root.elements().filter(|c| c.is(PIDF_NS, "tuple")) {
            if tuples.len() >= MAX_TUPLES {
                return Err(PresenceError::TooManyTuples);
            }
            tuples.push(parse_tuple(t)?);
        }
        Ok(Pidf {
            entity,
            tuples,
            notes: notes_of(&root),
        })
    }
}

fn notes_of(e: &Element) -> Vec<LangText> {
    e.elements()
        .filter(|c| c.is(PIDF_NS, "note"))
        .map(|n| (n.lang().map(str::to_owned), n.text()))
        .collect()
}

fn parse_tuple(t: &Element) -> Result<Tuple, PresenceError> {
    let id = t
        .attr("id")
        .filter(|i| !i.is_empty())
        .ok_or(PresenceError::MissingTupleId)?
        .to_owned();
    let status = t.child(PIDF_NS, "status");
    let basic = match status.and_then(|s| s.child(PIDF_NS, "basic")) {
        None => None,
        Some(b) => Some(match b.text().trim() {
            "open" => Basic::Open,
            "closed" => Basic::Closed,
            other => return Err(PresenceError::InvalidBasic(other.to_owned())),
        }),
    };
    // PNOT-03: the jabber:client <show/> extension; RFC 3921-era peers may use
    // jabber:server, accepted too. At most one is taken.
    let show = status
        .into_iter()
        .flat_map(|s| s.elements())
        .find(|c| c.name == "show" && (c.ns == ns::CLIENT || c.ns == ns::SERVER))
        .and_then(|s| Show::from_name(s.text().trim()));
    let contact_el = t.child(PIDF_NS, "contact");
    let contact = contact_el
        .map(|c| c.text().trim().to_owned())
        .filter(|c| !c.is_empty());
    let priority = contact_el
        .and_then(|c| c.attr("priority"))
        .and_then(|p| p.trim().parse::<f32>().ok())
        .filter(|p| (0.0..=1.0).contains(p));
    Ok(Tuple {
        id,
        basic,
        show,
        contact,
        priority,
        note: notes_of(t),
    })
}

/// RFC 3863 (extensibility): the `mustUnderstand` attribute on an extension element we do not
/// implement means the whole document must be rejected.
fn check_must_understand(e: &Element) -> Result<(), PresenceError> {
    for c in e.elements() {
        let understood = c.ns == PIDF_NS || c.ns == ns::CLIENT || c.ns == ns::SERVER;
        let mu = c
            .attr("mustUnderstand")
            .or_else(|| c.attr_ns(PIDF_NS, "mustUnderstand"));
        if !understood && matches!(mu.map(str::trim), Some("true" | "1")) {
            return Err(PresenceError::MustUnderstand(c.name.clone()));
        }
        check_must_understand(c)?;
    }
    Ok(())
}

/// PNOT-05 (RFC 7248 §5.2 note 2): the tuple id for a resourcepart. `ID-` makes it a
/// valid `xs:ID`; bytes outside `[A-Za-z0-9.-]` become `_HH`, so the id is always a
/// valid NCName and the mapping is reversible. A bare JID gives `ID`.
pub fn tuple_id_for_resource(resource: Option<&str>) -> String {
    let Some(r) = resource else {
        return "ID".to_owned();
    };
    let mut id = String::from("ID-");
    for &b in r.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("_{b:02X}"));
        }
    }
    id
}

/// Inverse of [`tuple_id_for_resource`]; `None` for ids it did not produce.
pub fn resource_from_tuple_id(id: &str) -> Option<String> {
    let enc = id.strip_prefix("ID-")?;
    let mut out = Vec::with_capacity(enc.len());
    let bytes = enc.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = enc.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// The XMPP resource a PIDF tuple stands for (RFC 8048 §6.3: tuple `id` → XMPP
/// resource identifier). An id made by [`tuple_id_for_resource`] is decoded; any other
/// id (`t1`, `a8f3`: SIP UAs choose freely, RFC 3863 §4.1.2) is taken as it is, so two
/// tuples of one presentity stay two resources. `None` only for the bare-JID id `ID`
/// or an id that is no usable resourcepart (RFC 7622 §3.4: not empty, at most 1023
/// bytes, no control characters).
pub fn tuple_resource(id: &str) -> Option<String> {
    if id == "ID" {
        return None;
    }
    if let Some(r) = resource_from_tuple_id(id) {
        return Some(r);
    }
    let usable = !id.is_empty() && id.len() <= 1023 && !id.chars().any(char::is_control);
    usable.then(|| id.to_owned())
}

/// PNOT-06 (RFC 7248 §5.2 note 6, RFC 8048 §6.2): XMPP priority 0..=127 onto PIDF
/// 0..=1, keeping distinct values distinct (127 → 1, three decimals suffice since the
/// step 1/127 exceeds 0.001). A negative priority is never mapped.
pub fn xmpp_priority_to_pidf(p: i8) -> Option<f32> {
    if p < 0 {
        return None;
    }
    Some((f32::from(p) / 127.0 * 1000.0).round() / 1000.0)
}

/// Inverse of [`xmpp_priority_to_pidf`] (SIP→XMPP priority is a MAY, RFC 8048 §6.3).
pub fn pidf_priority_to_xmpp(q: f32) -> Option<i8> {
    if !q.is_finite() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    // In range by the check above: 0.0..=127.0 after rounding.
    Some((q * 127.0).round() as i8)
}

/// Map an XMPP presence from `from` to a PIDF document (RFC 8048 §6.2; PNOT-01..06).
///
/// `Ok(None)` for presence that is not a notification (subscription types, probe,
/// error; PNOT-01). The entity is the `pres:` URI of the bare JID; the tuple carries
/// the resource as id, open/closed, `<show/>`, notes from `<status/>` with their
/// languages, and a `<contact/>` (the `sip:` URI of the full JID) with the mapped
/// priority.
pub fn xmpp_presence_to_pidf(
    p: &XmppPresence,
    from: &JidParts,
) -> Result<Option<Pidf>, PresenceError> {
    if !p.kind.is_notification() {
        return Ok(None);
    }
    let entity = jid_to_sip(&from.bare(), Scheme::Pres)?;
    let contact = jid_to_sip(from, Scheme::Sip)?;
    let basic = if p.kind == PresenceKind::Available {
        Basic::Open
    } else {
        Basic::Closed
    };
    let tuple = Tuple {
        id: tuple_id_for_resource(from.resource.as_deref()),
        basic: Some(basic),
        // RFC 6121 §4.7.2.1: <show/> only qualifies available presence.
        show: if basic == Basic::Open { p.show } else { None },
        contact: Some(contact),
        priority: p.priority.and_then(xmpp_priority_to_pidf),
        note: p.status.clone(),
    };
    Ok(Some(Pidf {
        entity,
        tuples: vec![tuple],
        notes: Vec::new(),
    }))
}

/// Map one tuple to XMPP presence (RFC 8048 §6.3): open → available, closed or no
/// `<basic/>` → unavailable; `<show/>` and notes carried over; priority mapped back.
/// `fallback_notes` (presence-level notes) are used when the tuple has none.
pub fn tuple_to_xmpp_presence(t: &Tuple, fallback_notes: &[LangText]) -> XmppPresence {
    let open = t.basic == Some(Basic::Open);
    XmppPresence {
        kind: if open {
            PresenceKind::Available
        } else {
            PresenceKind::Unavailable
        },
        show: if open { t.show } else { None },
        status: if t.note.is_empty() {
            fallback_notes.to_vec()
        } else {
            t.note.clone()
        },
        priority: if open {
            t.priority.and_then(pidf_priority_to_xmpp)
        } else {
            None
        },
    }
}

/// The tuple that [`pidf_to_xmpp_presence`] summarises a document by: the open tuple
/// with the highest priority (first on ties), else the first tuple.
pub fn select_tuple(pidf: &Pidf) -> Option<&Tuple> {
    let prio = |t: &Tuple| t.priority.unwrap_or(0.0);
    let mut best: Option<&Tuple> = None;
    for t in pidf.tuples.iter().filter(|t| t.basic == Some(Basic::Open)) {
        if best.is_none_or(|b| prio(t) > prio(b)) {
            best = Some(t);
        }
    }
    best.or(pidf.tuples.first())
}

/// Map a PIDF document to one XMPP presence (RFC 8048 §6.3; PNOT-02..04).
///
/// A presentity with several tuples is summarised as its "most available" one: the
/// open tuple with the highest priority (first in document order on ties); with no
/// open tuple the result is unavailable (from the first tuple's notes, if any).
pub fn pidf_to_xmpp_presence(pidf: &Pidf) -> XmppPresence {
    match select_tuple(pidf) {
        Some(t) => tuple_to_xmpp_presence(t, &pidf.notes),
        None => XmppPresence {
            kind: PresenceKind::Unavailable,
            show: None,
            status: pidf.notes.clone(),
            priority: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn juliet(res: Option<&str>) -> JidParts {
        JidParts::new(Some("juliet"), "xmpp.test", res)
    }

    #[rstest]
    #[case(PresenceKind::Available, true)]
    #[case(PresenceKind::Unavailable, true)]
    #[case(PresenceKind::Subscribe, false)]
    #[case(PresenceKind::Subscribed, false)]
    #[case(PresenceKind::Unsubscribe, false)]
    #[case(PresenceKind::Unsubscribed, false)]
    #[case(PresenceKind::Probe, false)]
    #[case(PresenceKind::Error, false)]
    fn only_availability_becomes_pidf(#[case] kind: PresenceKind, #[case] notify: bool) {
        // PNOT-01, RFC 8048 §6.2.
        let out = xmpp_presence_to_pidf(&XmppPresence::new(kind), &juliet(Some("r")));
        assert_eq!(out.map(|o| o.is_some()), Ok(notify));
        assert_eq!(
            PresenceKind::from_type_attr(kind.as_type_attr()),
            Some(kind)
        );
    }

    #[rstest]
    #[case(PresenceKind::Available, Basic::Open)]
    #[case(PresenceKind::Unavailable, Basic::Closed)]
    fn open_closed_both_ways(#[case] kind: PresenceKind, #[case] basic: Basic) {
        // PNOT-02.
        let pidf = xmpp_presence_to_pidf(&XmppPresence::new(kind), &juliet(Some("balcony")))
            .expect("map")
            .expect("notification");
        assert_eq!(pidf.entity, "pres:juliet@xmpp.test");
        assert_eq!(pidf.tuples[0].basic, Some(basic));
        assert_eq!(pidf.tuples[0].id, "ID-balcony");
        let back = Pidf::parse(&pidf.to_xml()).expect("parse");
        assert_eq!(back, pidf);
        assert_eq!(pidf_to_xmpp_presence(&back).kind, kind);
    }

    #[rstest]
    #[case(Show::Away)]
    #[case(Show::Chat)]
    #[case(Show::Dnd)]
    #[case(Show::Xa)]
    fn show_travels_as_jabber_client_extension(#[case] show: Show) {
        // PNOT-03: exactly one <show xmlns='jabber:client'/> inside <status/>.
        let mut p = XmppPresence::new(PresenceKind::Available);
        p.show = Some(show);
        let xml = xmpp_presence_to_pidf(&p, &juliet(None))
            .expect("map")
            .expect("notification")
            .to_xml();
        let needle = format!(
            "<status><basic>open</basic><show xmlns='jabber:client'>{}</show></status>",
            show.as_str()
        );
        assert!(xml.contains(&needle), "{xml}");
        assert_eq!(xml.matches("<show").count(), 1);
        let back = pidf_to_xmpp_presence(&Pidf::parse(&xml).expect("parse"));
        assert_eq!(back.show, Some(show));
        let stanza = back.to_element(ns::SERVER, &juliet(None), &juliet(None));
        assert_eq!(XmppPresence::from_element(&stanza), Ok(back));
    }

    #[test]
    fn status_and_note_keep_languages() {
        // PNOT-04.
        let mut p = XmppPresence::new(PresenceKind::Available);
        p.status = vec![
            (Some("en".into()), "In a meeting".into()),
            (Some("cs".into()), "Na sch\u{16f}zi <&>".into()),
        ];
        let pidf = xmpp_presence_to_pidf(&p, &juliet(Some("r")))
            .expect("map")
            .expect("n");
        assert_eq!(pidf.content_language(), Some("en"));
        let xml = pidf.to_xml();
        assert!(
            xml.contains("<note xml:lang='en'>In a meeting</note>"),
            "{xml}"
        );
        assert!(xml.contains("&lt;&amp;&gt;"), "{xml}");
        assert_eq!(
            pidf_to_xmpp_presence(&Pidf::parse(&xml).expect("parse")).status,
            p.status
        );
    }

    #[rstest]
    #[case(None, "ID")]
    #[case(Some("balcony"), "ID-balcony")]
    #[case(Some("1abc"), "ID-1abc")]
    #[case(Some("a b/\u{e9}_"), "ID-a_20b_2F_C3_A9_5F")]
    fn resource_tuple_id(#[case] res: Option<&str>, #[case] id: &str) {
        // PNOT-05.
        assert_eq!(tuple_id_for_resource(res), id);
        assert_eq!(resource_from_tuple_id(id).as_deref(), res);
    }

    #[test]
    fn foreign_tuple_ids_have_no_resource() {
        assert_eq!(resource_from_tuple_id("t8a7"), None);
        assert_eq!(resource_from_tuple_id("ID-_Z1"), None);
        assert_eq!(resource_from_tuple_id("ID-_C3"), None);
    }

    #[rstest]
    #[case(-128, None)]
    #[case(-5, None)]
    #[case(-1, None)]
    #[case(0, Some(0.0))]
    #[case(127, Some(1.0))]
    fn priority_mapping(#[case] p: i8, #[case] q: Option<f32>) {
        // PNOT-06.
        assert_eq!(xmpp_priority_to_pidf(p), q);
    }

    #[test]
    fn every_non_negative_priority_round_trips_distinctly() {
        let mut seen = Vec::new();
        for p in 0..=127i8 {
            let q = xmpp_priority_to_pidf(p).expect("non-negative");
            let text = format_qvalue(q);
            assert!(!seen.contains(&text), "{p} collides");
            let parsed: f32 = text.parse().expect("qvalue");
            assert_eq!(pidf_priority_to_xmpp(parsed), Some(p));
            seen.push(text);
        }
        assert_eq!(pidf_priority_to_xmpp(1.5), None);
        assert_eq!(pidf_priority_to_xmpp(f32::NAN), None);
    }

    #[test]
    fn negative_priority_leaves_no_attribute() {
        let mut p = XmppPresence::new(PresenceKind::Available);
        p.priority = Some(-5);
        let xml = xmpp_presence_to_pidf(&p, &juliet(Some("r")))
            .expect("m")
            .expect("n")
            .to_xml();
        assert!(!xml.contains("priority"), "{xml}");
    }

    #[test]
    fn most_available_tuple_wins() {
        let body = "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:romeo@lync.test'>\
            <tuple id='a'><status><basic>closed</basic></status><note>gone</note></tuple>\
            <tuple id='b'><status><basic>open</basic><show xmlns='jabber:client'>away</show></status>\
              <contact priority='0.2'>sip:romeo@lync.test</contact></tuple>\
            <tuple id='c'><status><basic>open</basic><show xmlns='jabber:client'>dnd</show></status>\
              <contact priority='0.9'>sip:romeo@lync.test;gr=x</contact><note xml:lang='en'>Busy</note></tuple>\
            <note>presence-level</note></presence>";
        let pidf = Pidf::parse(body).expect("parse");
        let p = pidf_to_xmpp_presence(&pidf);
        assert_eq!(p.kind, PresenceKind::Available);
        assert_eq!(p.show, Some(Show::Dnd));
        assert_eq!(p.priority, Some(114));
        assert_eq!(p.status, vec![(Some("en".into()), "Busy".into())]);
        let closed = tuple_to_xmpp_presence(&pidf.tuples[0], &pidf.notes);
        assert_eq!(closed.kind, PresenceKind::Unavailable);
        let none = Pidf {
            entity: "pres:a@b".into(),
            tuples: vec![],
            notes: vec![],
        };
        assert_eq!(pidf_to_xmpp_presence(&none).kind, PresenceKind::Unavailable);
    }

    #[rstest]
    #[case::not_pidf("<presence xmlns='jabber:client'/>", PresenceError::NotPidf)]
    #[case::no_entity(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf'/>",
        PresenceError::MissingEntity
    )]
    #[case::no_id(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@b'><tuple><status/></tuple></presence>",
        PresenceError::MissingTupleId
    )]
    #[case::bad_basic("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@b'><tuple id='t'><status><basic>half</basic></status></tuple></presence>", PresenceError::InvalidBasic("half".into()))]
    #[case::must_understand("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@b'><tuple id='t'><status/><x:geo xmlns:x='urn:x' mustUnderstand='true'/></tuple></presence>", PresenceError::MustUnderstand("geo".into()))]
    #[case::xml("<presence", PresenceError::Xml(XmlError::Malformed(String::new())))]
    fn pidf_parse_errors(#[case] body: &str, #[case] err: PresenceError) {
        match (Pidf::parse(body), err) {
            (
                Err(PresenceError::Xml(XmlError::Malformed(_))),
                PresenceError::Xml(XmlError::Malformed(_)),
            ) => {}
            (got, want) => assert_eq!(got, Err(want)),
        }
    }

    #[test]
    fn pidf_parse_is_lenient_on_advisory_values() {
        let body = "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:a@b'>\
            <tuple id='t'><status><basic>open</basic><show xmlns='jabber:client'>sleepy</show></status>\
            <contact priority='7'>sip:a@b</contact><e:x xmlns:e='urn:e' mustUnderstand='false'/></tuple></presence>";
        let t = &Pidf::parse(body).expect("parse").tuples[0];
        assert_eq!(t.show, None);
        assert_eq!(t.priority, None);
        assert_eq!(t.contact.as_deref(), Some("sip:a@b"));
    }

    #[rstest]
    #[case::two_shows(
        "<presence xmlns='jabber:server'><show>away</show><show>dnd</show></presence>",
        PresenceError::MultipleShow
    )]
    #[case::bad_show("<presence xmlns='jabber:server'><show>busy</show></presence>", PresenceError::InvalidShow("busy".into()))]
    #[case::dup_lang(
        "<presence xmlns='jabber:server' xml:lang='en'><status>a</status><status xml:lang='en'>b</status></presence>",
        PresenceError::DuplicateStatusLang
    )]
    #[case::bad_priority("<presence xmlns='jabber:server'><priority>300</priority></presence>", PresenceError::InvalidPriority("300".into()))]
    #[case::bad_type("<presence xmlns='jabber:server' type='invisible'/>", PresenceError::UnknownType("invisible".into()))]
    #[case::not_presence("<message xmlns='jabber:server'/>", PresenceError::NotPresence)]
    fn stanza_parse_errors(#[case] xml: &str, #[case] err: PresenceError) {
        let e = parse_document(xml).expect("xml");
        assert_eq!(XmppPresence::from_element(&e), Err(err));
    }

    #[test]
    fn stanza_status_inherits_stanza_lang() {
        let e = parse_document("<presence xmlns='jabber:server' xml:lang='de'><status>weg</status><priority>-1</priority></presence>").expect("xml");
        let p = XmppPresence::from_element(&e).expect("presence");
        assert_eq!(p.status, vec![(Some("de".into()), "weg".into())]);
        assert_eq!(p.priority, Some(-1));
    }

    // ---------------------------------------------------------------------------------
    // The mapping tables row by row: RFC 8048 §6.2 (XMPP → SIP) and §6.3 (SIP → XMPP),
    // with RFC 7248 §5.2 Table 1 / §5.3 Table 2 and their notes where RFC 8048 kept
    // them. Rows about addresses (from ↔ From, to ↔ To) are mapped by `address.rs` and
    // the gateway; here the PIDF side of `from` (entity, contact) is checked. RFC 7248's
    // `id` ↔ CSeq row was dropped by RFC 8048 (D-01) and has no mapping.
    // ---------------------------------------------------------------------------------

    fn stanza(xml: &str) -> XmppPresence {
        let e = parse_document(xml).expect("xml");
        XmppPresence::from_element(&e).expect("presence")
    }

    fn pidf_of(xml: &str, from: &JidParts) -> Option<String> {
        xmpp_presence_to_pidf(&stanza(xml), from)
            .expect("maps")
            .map(|p| p.to_xml())
    }

    const S: &str = "xmlns='jabber:server'";

    /// Table 1: each row as (stanza, sender resource, what the PIDF must contain);
    /// `None`: not a notification, no PIDF at all.
    #[rstest]
    #[case::presence_stanza_is_the_presence_event(
        "<presence S/>",
        None,
        Some("<tuple id='ID'><status><basic>open</basic></status>")
    )]
    #[case::resource_becomes_tuple_id_note_1(
        "<presence S/>",
        Some("balcony"),
        Some("<tuple id='ID-balcony'>")
    )]
    #[case::resource_starting_with_a_digit_gets_the_prefix(
        "<presence S/>",
        Some("1abc"),
        Some("<tuple id='ID-1abc'>")
    )]
    #[case::from_becomes_the_presentity(
        "<presence S/>",
        Some("balcony"),
        Some("entity='pres:juliet@xmpp.test'")
    )]
    #[case::full_from_becomes_the_contact(
        "<presence S/>",
        Some("balcony"),
        Some("<contact>sip:juliet@xmpp.test;gr=balcony</contact>")
    )]
    #[case::no_type_is_open_note_4("<presence S/>", Some("r"), Some("<basic>open</basic>"))]
    #[case::unavailable_is_closed_note_5(
        "<presence S type='unavailable'/>",
        Some("r"),
        Some("<basic>closed</basic>")
    )]
    #[case::subscribe_is_no_notification("<presence S type='subscribe'/>", Some("r"), None)]
    #[case::subscribed_is_no_notification("<presence S type='subscribed'/>", Some("r"), None)]
    #[case::unsubscribe_is_no_notification("<presence S type='unsubscribe'/>", Some("r"), None)]
    #[case::unsubscribed_is_no_notification("<presence S type='unsubscribed'/>", Some("r"), None)]
    #[case::probe_is_no_notification("<presence S type='probe'/>", Some("r"), None)]
    #[case::error_is_no_notification("<presence S type='error'/>", Some("r"), None)]
    #[case::show_becomes_the_extension_note_7(
        "<presence S><show>dnd</show></presence>",
        Some("r"),
        Some("<basic>open</basic><show xmlns='jabber:client'>dnd</show></status>")
    )]
    #[case::show_is_dropped_when_unavailable(
        "<presence S type='unavailable'><show>dnd</show></presence>",
        Some("r"),
        Some("<status><basic>closed</basic></status>")
    )]
    #[case::status_becomes_note(
        "<presence S><status>Out</status></presence>",
        Some("r"),
        Some("<note>Out</note>")
    )]
    #[case::xml_lang_travels_with_the_note(
        "<presence S xml:lang='fr'><status>Sorti</status></presence>",
        Some("r"),
        Some("<note xml:lang='fr'>Sorti</note>")
    )]
    #[case::priority_127_is_1_note_6(
        "<presence S><priority>127</priority></presence>",
        Some("r"),
        Some("priority='1'")
    )]
    #[case::priority_64_is_distinct(
        "<presence S><priority>64</priority></presence>",
        Some("r"),
        Some("priority='0.504'")
    )]
    #[case::priority_0_is_0(
        "<presence S><priority>0</priority></presence>",
        Some("r"),
        Some("priority='0'")
    )]
    fn rfc8048_table_xmpp_to_sip(
        #[case] xml: &str,
        #[case] resource: Option<&str>,
        #[case] want: Option<&str>,
    ) {
        let xml = xml.replace(" S", &format!(" {S}"));
        let got = pidf_of(&xml, &juliet(resource));
        match (want, got) {
            (None, None) => {}
            (Some(w), Some(g)) => assert!(g.contains(w), "{w} not in {g}"),
            (w, g) => panic!("want {w:?}, got {g:?}"),
        }
    }

    #[test]
    fn rfc8048_table_xmpp_to_sip_negative_priority_and_language_header() {
        // Note 6: a negative priority is not mapped at all.
        let xml = format!("<presence {S}><priority>-1</priority></presence>");
        let g = pidf_of(&xml, &juliet(Some("r"))).expect("pidf");
        assert!(!g.contains("priority"), "{g}");
        // xml:lang → Content-Language (RFC 7248 Table 1).
        let p = stanza(&format!(
            "<presence {S} xml:lang='de'><status>weg</status></presence>"
        ));
        let pidf = xmpp_presence_to_pidf(&p, &juliet(None))
            .expect("m")
            .expect("n");
        assert_eq!(pidf.content_language(), Some("de"));
        let bare =
            xmpp_presence_to_pidf(&XmppPresence::new(PresenceKind::Available), &juliet(None))
                .expect("m")
                .expect("n");
        assert_eq!(bare.content_language(), None);
    }

    fn pidf_doc(tuples: &str, notes: &str) -> Pidf {
        Pidf::parse(&format!(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:romeo@lync.test'>{tuples}{notes}</presence>"
        ))
        .expect("pidf")
    }

    /// Table 2: each row as (PIDF tuples, presence-level notes, expected presence).
    #[rstest]
    #[case::open_is_available_note_3("<tuple id='t'><status><basic>open</basic></status></tuple>", "", PresenceKind::Available, None, vec![], None)]
    #[case::closed_is_unavailable("<tuple id='t'><status><basic>closed</basic></status></tuple>", "", PresenceKind::Unavailable, None, vec![], None)]
    #[case::no_basic_says_nothing_available("<tuple id='t'><status/></tuple>", "", PresenceKind::Unavailable, None, vec![], None)]
    #[case::show_extension_becomes_show_note_5("<tuple id='t'><status><basic>open</basic><show xmlns='jabber:client'>xa</show></status></tuple>", "", PresenceKind::Available, Some(Show::Xa), vec![], None)]
    #[case::rfc3921_show_namespace_accepted("<tuple id='t'><status><basic>open</basic><show xmlns='jabber:server'>chat</show></status></tuple>", "", PresenceKind::Available, Some(Show::Chat), vec![], None)]
    #[case::show_not_carried_when_closed("<tuple id='t'><status><basic>closed</basic><show xmlns='jabber:client'>xa</show></status></tuple>", "", PresenceKind::Unavailable, None, vec![], None)]
    #[case::note_becomes_status("<tuple id='t'><status><basic>open</basic></status><note>Lunch</note></tuple>", "", PresenceKind::Available, None, vec![(None, "Lunch")], None)]
    #[case::note_lang_becomes_status_lang("<tuple id='t'><status><basic>open</basic></status><note xml:lang='en'>Lunch</note></tuple>", "", PresenceKind::Available, None, vec![(Some("en"), "Lunch")], None)]
    #[case::presence_note_when_the_tuple_has_none("<tuple id='t'><status><basic>open</basic></status></tuple>", "<note>Doc</note>", PresenceKind::Available, None, vec![(None, "Doc")], None)]
    #[case::priority_maps_back_note_4("<tuple id='t'><status><basic>open</basic></status><contact priority='1'>sip:r@l</contact></tuple>", "", PresenceKind::Available, None, vec![], Some(127))]
    #[case::priority_half("<tuple id='t'><status><basic>open</basic></status><contact priority='0.5'>sip:r@l</contact></tuple>", "", PresenceKind::Available, None, vec![], Some(64))]
    fn rfc8048_table_sip_to_xmpp(
        #[case] tuples: &str,
        #[case] notes: &str,
        #[case] kind: PresenceKind,
        #[case] show: Option<Show>,
        #[case] status: Vec<(Option<&str>, &str)>,
        #[case] priority: Option<i8>,
    ) {
        let p = pidf_to_xmpp_presence(&pidf_doc(tuples, notes));
        let status: Vec<LangText> = status
            .into_iter()
            .map(|(l, t)| (l.map(str::to_owned), t.to_owned()))
            .collect();
        assert_eq!(
            p,
            XmppPresence {
                kind,
                show,
                status,
                priority
            }
        );
    }

    /// Table 2, tuple `id` → XMPP resource identifier (note 1), including ids a SIP UA
    /// chose itself.
    #[rstest]
    #[case::prefixed("ID-balcony", Some("balcony"))]
    #[case::escaped("ID-a_20b", Some("a b"))]
    #[case::bare("ID", None)]
    #[case::foreign_id_is_the_resource("t1", Some("t1"))]
    #[case::foreign_id_with_bad_escape("ID-_Z1", Some("ID-_Z1"))]
    #[case::empty("", None)]
    fn rfc8048_table_tuple_id_to_resource(#[case] id: &str, #[case] res: Option<&str>) {
        assert_eq!(tuple_resource(id).as_deref(), res);
    }

    #[test]
    fn rfc8048_table_content_language_to_xml_lang() {
        // RFC 7248 Table 2: Content-Language → xml:lang, for notes without their own.
        let mut d = pidf_doc(
            "<tuple id='t'><status><basic>open</basic></status><note>Lunch</note><note xml:lang='cs'>Oběd</note></tuple>",
            "<note>Doc</note>",
        );
        d.apply_content_language(" en ");
        assert_eq!(
            d.tuples[0].note,
            vec![
                (Some("en".into()), "Lunch".into()),
                (Some("cs".into()), "Oběd".into())
            ]
        );
        assert_eq!(d.notes, vec![(Some("en".into()), "Doc".into())]);
        let mut listed = pidf_doc("", "<note>x</note>");
        listed.apply_content_language("fr, en");
        assert_eq!(listed.notes, vec![(Some("fr".into()), "x".into())]);
        let before = d.clone();
        d.apply_content_language("");
        assert_eq!(d, before);
    }
}
