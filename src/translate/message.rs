//! Instant message mapping between XMPP `<message/>` and SIP MESSAGE (RFC 7572).
//!
//! ```text
//! RFC 7572 §4 Table 1 (XMPP -> SIP)     RFC 7572 §5 Table 2 (SIP -> XMPP)
//!   <body/>      -> MESSAGE body          body             -> <body/>
//!   <subject/>   -> Subject               Subject          -> <subject/>
//!   <thread/>    -> Call-ID               Call-ID          -> <thread/>
//!   from         -> From (bare + ;gr=)    From (;gr=)      -> from (full JID)
//!   to           -> To, Request-URI       Request-URI / To -> to
//!   xml:lang     -> Content-Language      Content-Language -> xml:lang
//!   id           -> (transaction id)      (transaction id) -> id
//!   type         -> (no mapping)          (pager mode)     -> no type ("normal")
//! ```
//!
//! `<thread/>` ↔ Call-ID (D-03): the mapping is deterministic and reversible, see
//! [`thread_to_call_id`]. Transaction identifiers belong to the SIP stack, so `id` is
//! left to the driver (it is `None` on messages produced here).

use thiserror::Error;

use super::address::{AddressError, JidParts, Scheme, jid_to_sip, percent_decode, sip_to_jid};
use super::presence::LangText;
use crate::xmpp::conditions::StanzaCondition;
use crate::xmpp::element::{Element, XML_NS};

/// RFC 7572 §6 (after RFC 3428 §7): a pager-mode MESSAGE larger than this should not be
/// sent; the XMPP sender gets `<policy-violation/>` (IM-04).
pub const PAGER_MODE_LIMIT: usize = 1300;
/// RFC 7572 §7/§8: bodies are UTF-8 `text/plain`.
pub const TEXT_PLAIN_UTF8: &str = "text/plain; charset=UTF-8";
/// Prefix of Call-IDs that carry an encoded `<thread/>` ([`thread_to_call_id`]).
pub const THREAD_CALL_ID_PREFIX: &str = "th~";

/// Why a message could not be mapped. [`MessageError::condition`] and
/// [`MessageError::sip_status`] say what to answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// An address did not map (RFC 7247 §6).
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The element is not `<message/>`.
    #[error("not a <message/> element")]
    NotMessage,
    /// RFC 6120 §8.1.1.2: S2S stanzas carry `from` and `to`.
    #[error("message has no {0} address")]
    MissingAddress(&'static str),
    /// Nothing to deliver: no `<body/>`, or an empty SIP body.
    #[error("message has no <body/>")]
    NoBody,
    /// Errors become SIP responses, groupchat belongs to RFC 7702 (not pager mode).
    #[error("message type {0:?} is not translated to a SIP MESSAGE")]
    UnsupportedKind(MessageKind),
    /// RFC 7572 §6 (IM-04).
    #[error("message of {0} bytes exceeds the pager-mode limit of {PAGER_MODE_LIMIT}")]
    TooLarge(usize),
    /// RFC 7572 §7: only text/plain is translated here (text/html → XHTML-IM is open).
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
    /// RFC 7572 §8: UTF-8 only.
    #[error("unsupported charset {0:?}")]
    UnsupportedCharset(String),
    /// XML 1.0 §2.2: the text holds characters an XML stream cannot carry.
    #[error("text contains characters not allowed in XML")]
    NotXmlText,
    /// RFC 6121 §5.2.5: at most one `<thread/>`.
    #[error("more than one <thread/>")]
    MultipleThreads,
    /// RFC 6121 §5.2.3: several `<body/>` only with distinct `xml:lang`.
    #[error("two <body/> elements with the same xml:lang")]
    DuplicateBodyLang,
}

impl MessageError {
    /// The stanza error to bounce to an XMPP sender (RFC 6120 §8.3.3).
    pub fn condition(&self) -> StanzaCondition {
        match self {
            MessageError::Address(AddressError::SipsNotTranslatable) => {
                StanzaCondition::NotAcceptable
            }
            MessageError::Address(_) => StanzaCondition::JidMalformed,
            MessageError::TooLarge(_) => StanzaCondition::PolicyViolation,
            // RFC 6121 §8.5.2.2.1, §8.5.3.1 (IM-13): groupchat to a user (not a room)
            // gets an error, which SHOULD be service-unavailable.
            MessageError::UnsupportedKind(MessageKind::Groupchat) => {
                StanzaCondition::ServiceUnavailable
            }
            MessageError::UnsupportedKind(_) => StanzaCondition::FeatureNotImplemented,
            MessageError::UnsupportedContentType(_) | MessageError::UnsupportedCharset(_) => {
                StanzaCondition::NotAcceptable
            }
            _ => StanzaCondition::BadRequest,
        }
    }

    /// The SIP final response for a MESSAGE that could not be translated.
    pub fn sip_status(&self) -> u16 {
        match self {
            // RFC 7247 §8: the code for a sips: target is unspecified; 416 is
            // "Unsupported URI Scheme" (RFC 3261 §21.4.14).
            MessageError::Address(AddressError::SipsNotTranslatable) => 416,
            MessageError::Address(AddressError::UnsupportedScheme(_)) => 416,
            MessageError::Address(_) => 404,
            MessageError::TooLarge(_) => 413,
            MessageError::UnsupportedContentType(_) | MessageError::UnsupportedCharset(_) => 415,
            _ => 400,
        }
    }
}

/// RFC 6121 §5.2.2 message types. An unknown or absent type is `Normal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Single message (pager mode).
    Normal,
    /// One-to-one chat.
    Chat,
    /// Multi-user chat (RFC 7702, not mapped here).
    Groupchat,
    /// Alert, no reply expected.
    Headline,
    /// Error reply (RFC 6120 §8.3).
    Error,
}

impl MessageKind {
    /// The `type` attribute; `None` for normal (RFC 7572 §5: pager mode sends none).
    pub fn as_type_attr(self) -> Option<&'static str> {
        Some(match self {
            MessageKind::Normal => return None,
            MessageKind::Chat => "chat",
            MessageKind::Groupchat => "groupchat",
            MessageKind::Headline => "headline",
            MessageKind::Error => "error",
        })
    }

    /// RFC 6121 §5.2.2: unknown values are treated as `normal` (IM-12).
    pub fn from_type_attr(t: Option<&str>) -> Self {
        match t {
            Some("chat") => MessageKind::Chat,
            Some("groupchat") => MessageKind::Groupchat,
            Some("headline") => MessageKind::Headline,
            Some("error") => MessageKind::Error,
            _ => MessageKind::Normal,
        }
    }
}

/// The fields of an XMPP message that RFC 7572 maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmppMessage {
    /// Sender (full JID when the SIP side gave a GRUU).
    pub from: JidParts,
    /// Recipient.
    pub to: JidParts,
    /// RFC 6121 §5.2.2 `type`.
    pub kind: MessageKind,
    /// Effective `xml:lang`: the stanza's, else the stream default (IM-11).
    pub lang: Option<String>,
    /// `(xml:lang, text)`; `None` means "the message's language".
    pub bodies: Vec<LangText>,
    /// `<subject/>` ↔ Subject header.
    pub subject: Option<String>,
    /// `<thread/>` ↔ Call-ID (D-03).
    pub thread: Option<String>,
    /// Stanza `id`; transaction ids belong to the SIP stack.
    pub id: Option<String>,
}

/// The fields of a SIP MESSAGE request that RFC 7572 maps. `request_uri` is a URI;
/// `from` and `to` are header values (RFC 3261 §20.10 name-addr or addr-spec). The
/// mapping produces `<uri>` (angle brackets are required once the URI has a `;gr=`);
/// the SIP stack adds the `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    /// Request-URI (RFC 3261 §8.1.1.1).
    pub request_uri: String,
    /// From header value.
    pub from: String,
    /// To header value.
    pub to: String,
    /// Call-ID (RFC 3261 §20.8).
    pub call_id: String,
    /// Content-Type of the body.
    pub content_type: String,
    /// Content-Language (RFC 3261 §20.13).
    pub content_language: Option<String>,
    /// Subject (RFC 3261 §20.36).
    pub subject: Option<String>,
    /// The body, already decoded as UTF-8.
    pub body: String,
}

/// Pick the text in `lang` (or untagged), else the first (RFC 6121 §5.2.3 leaves the
/// choice open; IM-12).
fn pick<'a>(items: &'a [LangText], lang: Option<&str>) -> Option<&'a LangText> {
    items
        .iter()
        .find(|(l, _)| l.as_deref() == lang)
        .or_else(|| items.iter().find(|(l, _)| l.is_none()))
        .or_else(|| items.first())
}

impl XmppMessage {
    /// Read a `<message/>` stanza. `stream_lang` is the stream's default `xml:lang`
    /// (RFC 6120 §4.7.4), used when the stanza has none (IM-11).
    pub fn from_element(e: &Element, stream_lang: Option<&str>) -> Result<Self, MessageError> {
        if e.name != "message" {
            return Err(MessageError::NotMessage);
        }
        let from = JidParts::parse(e.attr("from").ok_or(MessageError::MissingAddress("from"))?)?;
        let to = JidParts::parse(e.attr("to").ok_or(MessageError::MissingAddress("to"))?)?;
        let lang = e.lang().or(stream_lang).map(str::to_owned);
        let mut bodies: Vec<LangText> = Vec::new();
        let mut subjects: Vec<LangText> = Vec::new();
        let mut thread = None;
        for c in e.elements().filter(|c| c.ns == e.ns) {
            let child_lang = c.lang().map(str::to_owned).or_else(|| lang.clone());
            match c.name.as_str() {
                "body" => {
                    if bodies.iter().any(|(l, _)| *l == child_lang) {
                        return Err(MessageError::DuplicateBodyLang);
                    }
                    bodies.push((child_lang, c.text()));
                }
                "subject" => subjects.push((child_lang, c.text())),
                "thread" => {
                    if thread.is_some() {
                        return Err(MessageError::MultipleThreads);
                    }
                    thread = Some(c.text());
                }
                _ => {}
            }
        }
        // Languages equal to the message's are stored as None ("inherits").
        let norm = |v: Vec<LangText>| -> Vec<LangText> {
            v.into_iter()
                .map(|(l, t)| if l == lang { (None, t) } else { (l, t) })
                .collect()
        };
        let bodies = norm(bodies);
        let subjects = norm(subjects);
        let subject = pick(&subjects, None).map(|(_, s)| s.clone());
        Ok(XmppMessage {
            from,
            to,
            kind: MessageKind::from_type_attr(e.attr("type")),
            lang,
            bodies,
            subject,
            thread,
            id: e.attr("id").map(str::to_owned),
        })
    }

    /// Build the stanza in `content_ns` (`jabber:server` on S2S).
    pub fn to_element(&self, content_ns: &str) -> Element {
        let mut e = Element::new(content_ns, "message")
            .with_attr("from", self.from.to_string())
            .with_attr("to", self.to.to_string());
        if let Some(t) = self.kind.as_type_attr() {
            e.set_attr("type", t);
        }
        if let Some(id) = &self.id {
            e.set_attr("id", id.clone());
        }
        if let Some(l) = &self.lang {
            e.set_attr_ns(XML_NS, "lang", l.clone());
        }
        if let Some(s) = &self.subject {
            e = e.with_child(Element::new(content_ns, "subject").with_text(s.clone()));
        }
        for (lang, text) in &self.bodies {
            let mut b = Element::new(content_ns, "body").with_text(text.clone());
            if let Some(l) = lang {
                b.set_attr_ns(XML_NS, "lang", l.clone());
            }
            e = e.with_child(b);
        }
        if let Some(t) = &self.thread {
            e = e.with_child(Element::new(content_ns, "thread").with_text(t.clone()));
        }
        e
    }
}

/// RFC 3261 §25.1 `word` characters.
fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}".contains(&b)
}

/// RFC 3261 §25.1 `callid = word [ "@" word ]`.
pub fn is_valid_call_id(s: &str) -> bool {
    let word = |w: &str| !w.is_empty() && w.bytes().all(is_word_char);
    match s.split_once('@') {
        Some((a, b)) => word(a) && word(b),
        None => word(s),
    }
}

/// D-03: `<thread/>` → Call-ID, deterministically and reversibly (RFC 7572 §4).
///
/// A thread that already is a valid Call-ID is used unchanged (the common case: UUIDs).
/// Any other thread becomes `th~` followed by its percent-encoding (every byte that is
/// not a `word` character, and `%` itself), which is a valid Call-ID; the same thread
/// always gives the same Call-ID and [`call_id_to_thread`] gives it back.
pub fn thread_to_call_id(thread: &str) -> String {
    if is_valid_call_id(thread) {
        return thread.to_owned();
    }
    let mut out = String::from(THREAD_CALL_ID_PREFIX);
    for &b in thread.as_bytes() {
        if b != b'%' && is_word_char(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// D-03: Call-ID → `<thread/>` (RFC 7572 §5), the inverse of [`thread_to_call_id`].
/// Only canonical `th~` encodings are decoded (their decoding is not itself a valid
/// Call-ID), so every Call-ID maps to exactly one thread and back.
pub fn call_id_to_thread(call_id: &str) -> String {
    if let Some(enc) = call_id.strip_prefix(THREAD_CALL_ID_PREFIX)
        && let Ok(t) = percent_decode(enc, "thread")
        && !t.is_empty()
        && !is_valid_call_id(&t)
        && thread_to_call_id(&t) == call_id
    {
        return t;
    }
    call_id.to_owned()
}

/// XML 1.0 §2.2 `Char`.
fn is_xml_text(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    })
}

/// XMPP → SIP MESSAGE (RFC 7572 §4; IM-01, IM-02, IM-04, IM-09, IM-11, IM-12).
///
/// `fallback_call_id` is used only when the stanza has no `<thread/>` (the driver
/// supplies a fresh one; pager-mode MESSAGEs are normally each a new Call-ID).
pub fn xmpp_to_sip_message(
    msg: &XmppMessage,
    fallback_call_id: &str,
) -> Result<SipMessage, MessageError> {
    match msg.kind {
        MessageKind::Error | MessageKind::Groupchat => {
            return Err(MessageError::UnsupportedKind(msg.kind));
        }
        MessageKind::Normal | MessageKind::Chat | MessageKind::Headline => {}
    }
    // RFC 7572 §4: From is the bare JID with the resource as GRUU (`;gr=`); To and
    // the Request-URI come from `to`.
    let from = jid_to_sip(&msg.from, Scheme::Sip)?;
    let to = jid_to_sip(&msg.to, Scheme::Sip)?;
    let (body_lang, body) = pick(&msg.bodies, None).ok_or(MessageError::NoBody)?;
    let size = body.len() + msg.subject.as_ref().map_or(0, String::len);
    if size > PAGER_MODE_LIMIT {
        return Err(MessageError::TooLarge(size));
    }
    let call_id = match &msg.thread {
        Some(t) if !t.is_empty() => thread_to_call_id(t),
        _ => fallback_call_id.to_owned(),
    };
    Ok(SipMessage {
        from: format!("<{from}>"),
        to: format!("<{to}>"),
        request_uri: to,
        call_id,
        content_type: TEXT_PLAIN_UTF8.to_owned(),
        content_language: body_lang.clone().or_else(|| msg.lang.clone()),
        subject: msg.subject.clone(),
        body: body.clone(),
    })
}

/// RFC 3261 §20.10: the URI of a From/To value (`name <uri>;params` or `uri;params`,
/// where in the second form the parameters belong to the header, not the URI).
pub fn header_uri(value: &str) -> &str {
    let v = value.trim();
    if let Some(start) = v.find('<') {
        let rest = &v[start + 1..];
        return rest.find('>').map_or(rest, |end| &rest[..end]);
    }
    v.split_once(';').map_or(v, |(u, _)| u)
}

/// RFC 7247 §8: a `sips:` Request-URI or To is never translated (ARCH-04).
fn refuse_sips(uri: &str) -> Result<(), MessageError> {
    let scheme = uri.split_once(':').map_or("", |(s, _)| s);
    if scheme.eq_ignore_ascii_case("sips") {
        return Err(AddressError::SipsNotTranslatable.into());
    }
    Ok(())
}

/// RFC 7572 §7: `text/plain`, UTF-8 (or US-ASCII, its subset), is what is translated.
fn check_content_type(ct: &str) -> Result<(), MessageError> {
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("text/plain") {
        return Err(MessageError::UnsupportedContentType(media.to_owned()));
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("charset")
        {
            let v = v.trim().trim_matches('"');
            if !(v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("us-ascii")) {
                return Err(MessageError::UnsupportedCharset(v.to_owned()));
            }
        }
    }
    Ok(())
}

/// RFC 3282 §2: the first language tag of a Content-Language list.
fn first_language(v: &str) -> Option<String> {
    let tag = v.split(',').next()?.trim();
    (!tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| tag.to_owned())
}

/// SIP MESSAGE → XMPP (RFC 7572 §5; IM-05, IM-06, IM-07, IM-09, IM-11).
///
/// `to` comes from the Request-URI (RFC 7572 §5 allows Request-URI or To); `from` is
/// a full JID when From carries a GRUU (`;gr=`). The message has no `type` (pager
/// mode, IM-07), the Call-ID gives the thread (D-03), Content-Language the `xml:lang`.
pub fn sip_to_xmpp_message(sip: &SipMessage) -> Result<XmppMessage, MessageError> {
    refuse_sips(header_uri(&sip.request_uri))?;
    refuse_sips(header_uri(&sip.to))?;
    check_content_type(&sip.content_type)?;
    let from = sip_to_jid(header_uri(&sip.from))?;
    // The Request-URI is a bare URI, not a header value: its `;gr=` is a URI parameter
    // (RFC 3261 §19.1.1), not a header parameter as in an addr-spec From/To (§20), so it
    // keeps the GRUU that names the XMPP resource (RFC 7247 §6.3).
    let to = sip_to_jid(sip.request_uri.trim())?;
    if sip.body.is_empty() {
        return Err(MessageError::NoBody);
    }
    if !is_xml_text(&sip.body) || sip.subject.as_deref().is_some_and(|s| !is_xml_text(s)) {
        return Err(MessageError::NotXmlText);
    }
    let call_id = sip.call_id.trim();
    Ok(XmppMessage {
        from,
        to,
        kind: MessageKind::Normal,
        lang: sip.content_language.as_deref().and_then(first_language),
        bodies: vec![(None, sip.body.clone())],
        subject: sip.subject.clone().filter(|s| !s.is_empty()),
        thread: (!call_id.is_empty()).then(|| call_id_to_thread(call_id)),
        id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::xml::parse_document;
    use crate::xmpp::ns;
    use rstest::rstest;

    fn xmpp(xml: &str) -> XmppMessage {
        XmppMessage::from_element(&parse_document(xml).expect("xml"), None).expect("message")
    }

    const TRICKY: &str = "<&>'\" \u{10d}e\u{161}tina \u{1f600}";

    #[test]
    fn xmpp_to_sip_maps_every_field() {
        // IM-01, IM-02, IM-09.
        let m = xmpp(
            "<message xmlns='jabber:server' from='juliet@x.test/yn0c' to='romeo@lync.test' \
             type='chat' id='m1' xml:lang='cs'><subject>P\u{159}edm\u{11b}t</subject>\
             <body>&lt;&amp;&gt;'\" \u{10d}e\u{161}tina \u{1f600}</body><thread>T-1</thread></message>",
        );
        let s = xmpp_to_sip_message(&m, "unused").expect("map");
        assert_eq!(s.request_uri, "sip:romeo@lync.test");
        assert_eq!(s.to, "<sip:romeo@lync.test>");
        assert_eq!(s.from, "<sip:juliet@x.test;gr=yn0c>");
        assert_eq!(s.call_id, "T-1");
        assert_eq!(s.content_type, TEXT_PLAIN_UTF8);
        assert_eq!(s.content_language.as_deref(), Some("cs"));
        assert_eq!(s.subject.as_deref(), Some("P\u{159}edm\u{11b}t"));
        assert_eq!(s.body, TRICKY);
    }

    #[test]
    fn stream_language_is_the_default() {
        // IM-11.
        let e = parse_document(
            "<message xmlns='jabber:server' from='a@x.test' to='b@y.test'><body>hallo</body></message>",
        )
        .expect("xml");
        let m = XmppMessage::from_element(&e, Some("de")).expect("message");
        let s = xmpp_to_sip_message(&m, "c1").expect("map");
        assert_eq!(s.content_language.as_deref(), Some("de"));
        assert_eq!(s.call_id, "c1");
    }

    #[test]
    fn body_in_message_language_is_chosen() {
        // IM-12: several bodies with distinct languages.
        let m = xmpp(
            "<message xmlns='jabber:server' from='a@x.test' to='b@y.test' xml:lang='en'>\
             <body xml:lang='cs'>ahoj</body><body>hello</body></message>",
        );
        let s = xmpp_to_sip_message(&m, "c").expect("map");
        assert_eq!(s.body, "hello");
        assert_eq!(s.content_language.as_deref(), Some("en"));
        let only_cs = xmpp(
            "<message xmlns='jabber:server' from='a@x.test' to='b@y.test' xml:lang='en'>\
             <body xml:lang='cs'>ahoj</body></message>",
        );
        let s = xmpp_to_sip_message(&only_cs, "c").expect("map");
        assert_eq!(
            (s.body.as_str(), s.content_language.as_deref()),
            ("ahoj", Some("cs"))
        );
    }

    #[rstest]
    #[case::two_threads(
        "<message xmlns='jabber:server' from='a@x.test' to='b@y.test'><thread>1</thread><thread>2</thread></message>",
        MessageError::MultipleThreads
    )]
    #[case::dup_body(
        "<message xmlns='jabber:server' from='a@x.test' to='b@y.test'><body>1</body><body>2</body></message>",
        MessageError::DuplicateBodyLang
    )]
    #[case::no_from(
        "<message xmlns='jabber:server' to='b@y.test'/>",
        MessageError::MissingAddress("from")
    )]
    #[case::bad_jid(
        "<message xmlns='jabber:server' from='@x' to='b@y.test'/>",
        MessageError::Address(AddressError::EmptyLocalpart)
    )]
    #[case::not_message("<presence xmlns='jabber:server'/>", MessageError::NotMessage)]
    fn stanza_errors(#[case] xml: &str, #[case] err: MessageError) {
        let e = parse_document(xml).expect("xml");
        assert_eq!(XmppMessage::from_element(&e, None), Err(err));
    }

    #[rstest]
    #[case(None, MessageKind::Normal)]
    #[case(Some("normal"), MessageKind::Normal)]
    #[case(Some("foo"), MessageKind::Normal)]
    #[case(Some("chat"), MessageKind::Chat)]
    #[case(Some("groupchat"), MessageKind::Groupchat)]
    #[case(Some("headline"), MessageKind::Headline)]
    #[case(Some("error"), MessageKind::Error)]
    fn unknown_type_is_normal(#[case] t: Option<&str>, #[case] k: MessageKind) {
        // RFC 6121 §5.2.2 (IM-12).
        assert_eq!(MessageKind::from_type_attr(t), k);
    }

    #[test]
    fn refused_messages_say_why() {
        let base = xmpp(
            "<message xmlns='jabber:server' from='a@x.test' to='b@y.test'><body>x</body></message>",
        );
        let mut err = base.clone();
        err.kind = MessageKind::Error;
        assert_eq!(
            xmpp_to_sip_message(&err, "c"),
            Err(MessageError::UnsupportedKind(MessageKind::Error))
        );
        let mut gc = base.clone();
        gc.kind = MessageKind::Groupchat;
        let e = xmpp_to_sip_message(&gc, "c").expect_err("groupchat");
        assert_eq!(e, MessageError::UnsupportedKind(MessageKind::Groupchat));
        assert_eq!(e.condition(), StanzaCondition::ServiceUnavailable); // IM-13
        let mut empty = base.clone();
        empty.bodies.clear();
        assert_eq!(xmpp_to_sip_message(&empty, "c"), Err(MessageError::NoBody));
        let mut big = base.clone();
        big.bodies = vec![(None, "x".repeat(5000))];
        let e = xmpp_to_sip_message(&big, "c").expect_err("too large");
        assert_eq!(e, MessageError::TooLarge(5000));
        assert_eq!(e.condition(), StanzaCondition::PolicyViolation); // IM-04
    }

    fn sip(body: &str) -> SipMessage {
        SipMessage {
            request_uri: "sip:juliet@x.test".into(),
            from: "\"Romeo\" <sip:romeo@lync.test;gr=dr4h>;tag=88a".into(),
            to: "<sip:juliet@x.test>".into(),
            call_id: "a84b4c76e66710@pc33.lync.test".into(),
            content_type: "text/plain; charset=UTF-8".into(),
            content_language: Some("cs".into()),
            subject: Some("Ot\u{e1}zka".into()),
            body: body.into(),
        }
    }

    #[test]
    fn sip_to_xmpp_maps_every_field() {
        // IM-05, IM-06, IM-07, IM-09.
        let m = sip_to_xmpp_message(&sip(TRICKY)).expect("map");
        assert_eq!(m.from.to_string(), "romeo@lync.test/dr4h");
        assert_eq!(m.to.to_string(), "juliet@x.test");
        assert_eq!(m.kind, MessageKind::Normal);
        assert_eq!(m.lang.as_deref(), Some("cs"));
        assert_eq!(m.subject.as_deref(), Some("Ot\u{e1}zka"));
        assert_eq!(m.thread.as_deref(), Some("a84b4c76e66710@pc33.lync.test"));
        let e = m.to_element(ns::SERVER);
        assert_eq!(e.attr("type"), None);
        let xml = e.to_xml(&crate::xmpp::element::NsContext::new(ns::SERVER));
        assert!(xml.contains("&lt;&amp;&gt;"), "{xml}");
        // UTF-8 and escaping survive serialise → parse (IM-09).
        let back =
            XmppMessage::from_element(&parse_document(&xml).expect("xml"), None).expect("msg");
        assert_eq!(back, m);
        assert_eq!(back.bodies[0].1, TRICKY);
    }

    // RFC 7247 §6.3: a GRUU in the Request-URI names the resource (ERR-02's full-JID
    // case needs it); URI parameters other than `gr` are dropped.
    #[rstest]
    #[case::bare("sip:juliet@x.test", "juliet@x.test")]
    #[case::gruu("sip:juliet@x.test;gr=balcony", "juliet@x.test/balcony")]
    #[case::gruu_and_transport(
        "sip:juliet@x.test;transport=tcp;gr=balcony",
        "juliet@x.test/balcony"
    )]
    #[case::other_params("sip:juliet@x.test;transport=udp", "juliet@x.test")]
    fn request_uri_gruu_gives_a_full_jid(#[case] ruri: &str, #[case] to: &str) {
        let mut s = sip("hi");
        s.request_uri = ruri.into();
        let m = sip_to_xmpp_message(&s).expect("map");
        assert_eq!(m.to.to_string(), to);
    }

    #[rstest]
    #[case::sips_ruri("sips:juliet@x.test", "<sip:juliet@x.test>", 416)]
    #[case::sips_to("sip:juliet@x.test", "<sips:juliet@x.test>", 416)]
    fn sips_is_never_translated(#[case] ruri: &str, #[case] to: &str, #[case] code: u16) {
        // ARCH-04, RFC 7247 §8.
        let mut s = sip("hi");
        s.request_uri = ruri.into();
        s.to = to.into();
        let e = sip_to_xmpp_message(&s).expect_err("sips");
        assert_eq!(e, MessageError::Address(AddressError::SipsNotTranslatable));
        assert_eq!(e.sip_status(), code);
    }

    #[rstest]
    #[case::html("text/html", MessageError::UnsupportedContentType("text/html".into()), 415)]
    #[case::latin1("text/plain;charset=ISO-8859-1", MessageError::UnsupportedCharset("ISO-8859-1".into()), 415)]
    fn content_type_checks(#[case] ct: &str, #[case] err: MessageError, #[case] code: u16) {
        let mut s = sip("hi");
        s.content_type = ct.into();
        assert_eq!(sip_to_xmpp_message(&s), Err(err.clone()));
        assert_eq!(err.sip_status(), code);
    }

    #[test]
    fn sip_body_must_be_xml_text() {
        assert_eq!(
            sip_to_xmpp_message(&sip("a\u{1}b")),
            Err(MessageError::NotXmlText)
        );
        assert_eq!(sip_to_xmpp_message(&sip("")), Err(MessageError::NoBody));
        let mut s = sip("ok");
        s.content_type = "TEXT/PLAIN".into();
        s.content_language = Some("en-GB, fr".into());
        assert_eq!(
            sip_to_xmpp_message(&s).map(|m| m.lang),
            Ok(Some("en-GB".into()))
        );
    }

    #[rstest]
    #[case::uuid("e5f5b1a2-7c2e-4b7e-9d2f-0c1a2b3c4d5e")]
    #[case::with_at("abc@host")]
    #[case::spaces("my thread")]
    #[case::two_ats("a@b@c")]
    #[case::percent_like("th~%41")]
    #[case::prefix_only("th~")]
    #[case::utf8("vl\u{e1}kno \u{1f682}")]
    #[case::semicolon("a;b,c")]
    fn thread_call_id_round_trip(#[case] thread: &str) {
        // D-03: deterministic, valid, and consistent both ways.
        let c = thread_to_call_id(thread);
        assert!(is_valid_call_id(&c), "{c}");
        assert_eq!(thread_to_call_id(thread), c);
        assert_eq!(call_id_to_thread(&c), thread);
    }

    #[test]
    fn thread_survives_xmpp_sip_xmpp() {
        let m = xmpp(
            "<message xmlns='jabber:server' from='a@x.test/r' to='b@y.test' xml:lang='en'>\
             <body>hi</body><thread>t 1</thread></message>",
        );
        let s = xmpp_to_sip_message(&m, "c").expect("x->s");
        let back = sip_to_xmpp_message(&s).expect("s->x");
        assert_eq!(back.thread.as_deref(), Some("t 1"));
        assert_eq!(back.from, m.from);
        assert_eq!(back.to, m.to);
        assert_eq!(back.bodies, m.bodies);
        assert_eq!(back.lang, m.lang);
    }

    #[rstest]
    #[case("\"A\" <sip:a@b;gr=x>;tag=1", "sip:a@b;gr=x")]
    #[case("sip:a@b;tag=1", "sip:a@b")]
    #[case("<sip:a@b>", "sip:a@b")]
    fn header_uri_extraction(#[case] v: &str, #[case] uri: &str) {
        assert_eq!(header_uri(v), uri);
    }
}
