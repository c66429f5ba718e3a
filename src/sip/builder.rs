//! Requests and responses with what a SIP stack must add (RFC 3261 §8.1.1, §8.2.6).
//!
//! Scenario payloads are written as they appear on the wire, minus the bookkeeping: the
//! [`RequestBuilder`] fills in Via (with a fresh branch), the From tag, To, Call-ID, CSeq,
//! Max-Forwards, Contact where the method needs one, and Content-Length — each only when
//! the payload does not give it, so a scenario can also send deliberately odd values.
//! Randomness comes from a caller's [`RandomSource`] so tests and snapshots are repeatable.

use super::codec::{Limits, ParseError, StartLineError};
use super::framing::{Item, parse_datagram};
use super::headers::{MAGIC_COOKIE, NameAddr};
use super::message::{Message, Method, Request, Response, Uri};

/// Where tags, branches and Call-IDs get their randomness.
pub trait RandomSource {
    fn fill(&mut self, buf: &mut [u8]);
}

/// Any `FnMut(&mut [u8])` is a source, e.g. a closure over a test counter.
impl<F: FnMut(&mut [u8])> RandomSource for F {
    fn fill(&mut self, buf: &mut [u8]) {
        self(buf)
    }
}

/// The operating system's generator (getrandom). Should it fail, a SplitMix64 sequence
/// seeded from the buffer address and a counter keeps identifiers distinct, which is all
/// SIP needs of them (RFC 3261 §19.3 asks for 32 bits of randomness in tags).
#[derive(Debug, Default)]
pub struct OsRandom {
    fallback: u64,
}

impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            tracing::warn!(error = %e, "getrandom failed; using a fallback sequence");
            self.fallback = self
                .fallback
                .wrapping_add(buf.as_ptr() as u64)
                .wrapping_add(0x9E37_79B9_7F4A_7C15);
            SeededRandom(self.fallback).fill(buf);
        }
    }
}

/// A deterministic SplitMix64 sequence for tests and reproducible runs.
#[derive(Debug, Clone)]
pub struct SeededRandom(pub u64);

impl RandomSource for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            for (b, r) in chunk.iter_mut().zip(z.to_le_bytes()) {
                *b = r;
            }
        }
    }
}

fn random_hex(rng: &mut dyn RandomSource, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill(&mut buf);
    hex::encode(buf)
}

/// A branch unique in space and time, with the RFC 3261 magic cookie (§8.1.1.7).
pub fn new_branch(rng: &mut dyn RandomSource) -> String {
    format!("{MAGIC_COOKIE}{}", random_hex(rng, 8))
}

/// A tag with 64 random bits (§19.3 requires at least 32).
pub fn new_tag(rng: &mut dyn RandomSource) -> String {
    random_hex(rng, 8)
}

/// A Call-ID: random word `@` host, as §8.1.1.4 recommends.
pub fn new_call_id(rng: &mut dyn RandomSource, host: &str) -> String {
    format!("{}@{host}", random_hex(rng, 12))
}

/// Parses a payload as a scenario file writes it. Scenario text comes from TOML multi-line
/// strings, whose lines end in LF: in the head every LF becomes CRLF, the empty line ends
/// the head (appended when missing), and the body after it is kept byte for byte.
/// Content-Length may be absent, as in a datagram (RFC 3261 §18.3); it is recomputed when
/// the message is serialised. Everything else is as strict as the wire parser, so a
/// payload that is wrong on purpose must be sent as raw bytes instead.
pub fn parse_payload(text: &str, limits: &Limits) -> Result<Message, ParseError> {
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) if !text.get(..i).unwrap_or("").contains("\n\n") => {
            (text.get(..i).unwrap_or(""), text.get(i + 4..).unwrap_or(""))
        }
        _ => match text.find("\n\n") {
            Some(i) => (text.get(..i).unwrap_or(""), text.get(i + 2..).unwrap_or("")),
            None => (text.trim_end_matches(['\r', '\n']), ""),
        },
    };
    let mut wire = String::with_capacity(text.len() + 64);
    for line in head.split('\n') {
        wire.push_str(line.strip_suffix('\r').unwrap_or(line));
        wire.push_str("\r\n");
    }
    wire.push_str("\r\n");
    wire.push_str(body);
    match parse_datagram(wire.as_bytes(), limits)? {
        Item::Message(m) => Ok(m),
        Item::Keepalive(_) => Err(ParseError::BadStartLine(StartLineError::Empty)),
    }
}

/// The sending UA: its address of record and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// The From identity (without tag), e.g. `<sip:alice@sip.example>`.
    pub aor: NameAddr,
    /// Via transport token: `UDP`, `TCP`, `TLS`.
    pub transport: String,
    /// Via sent-by: `host[:port]` where responses come back (§18.1.1).
    pub sent_by: String,
    /// The Contact URI for dialog-creating and target-refresh requests.
    pub contact: Option<Uri>,
}

impl Local {
    /// The top Via for a new request.
    pub fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch}",
            self.transport, self.sent_by
        )
    }

    fn host(&self) -> &str {
        super::message::split_host_port(&self.sent_by).0
    }
}

/// Max-Forwards a UAC starts with (RFC 3261 §8.1.1.6: "SHOULD be 70").
pub const DEFAULT_MAX_FORWARDS: u32 = 70;

/// Methods whose requests must carry a Contact: those that create a dialog or refresh its
/// target (RFC 3261 §8.1.1.8, §12.1; RFC 6665 §4.1.2.1 and §4.2.2 for SUBSCRIBE and
/// NOTIFY; REFER, RFC 3515, and UPDATE, RFC 3311, likewise).
const NEEDS_CONTACT: [Method; 5] = [
    Method::Invite,
    Method::Subscribe,
    Method::Notify,
    Method::Refer,
    Method::Update,
];

/// Builds a request, completing it at [`RequestBuilder::build`].
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    request: Request,
    cseq: Option<u32>,
}

impl RequestBuilder {
    pub fn new(method: Method, uri: Uri) -> Self {
        RequestBuilder {
            request: Request::new(method, uri),
            cseq: None,
        }
    }

    /// Starts from a request as written in a scenario: only what is missing gets added.
    pub fn from_request(request: Request) -> Self {
        RequestBuilder {
            request,
            cseq: None,
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.headers.push(name, value);
        self
    }

    /// The CSeq number used if the request has no CSeq header (default 1).
    pub fn cseq(mut self, seq: u32) -> Self {
        self.cseq = Some(seq);
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.request.headers.set("Content-Type", content_type);
        self.request.body = body.into();
        self
    }

    /// Completes the request (RFC 3261 §8.1.1). Given headers stay where they are; added
    /// ones go to the top in the customary order (Via, Max-Forwards, From, To, Call-ID,
    /// CSeq), Contact before the body headers, Content-Length last. A From without a tag
    /// gets one (§8.1.1.3: "the From field MUST contain a new tag parameter"), and so does
    /// a given top Via without a branch (§8.1.1.7).
    pub fn build(self, local: &Local, rng: &mut dyn RandomSource) -> Request {
        let mut r = self.request;
        let mut at = 0;
        if !r.headers.contains("Via") {
            r.headers.insert(at, "Via", local.via(&new_branch(rng)));
            at += 1;
        } else {
            add_missing_branch(&mut r, rng);
            at = r
                .headers
                .iter()
                .rposition(|h| super::message::names_equal(&h.name, "Via"))
                .map_or(0, |i| i + 1);
        }
        if !r.headers.contains("Max-Forwards") {
            r.headers
                .insert(at, "Max-Forwards", DEFAULT_MAX_FORWARDS.to_string());
            at += 1;
        }
        match r.headers.from() {
            Ok(from) if from.tag().is_none() => {
                r.headers
                    .set("From", from.with_tag(&new_tag(rng)).to_string());
            }
            Ok(_) => {}
            // A malformed From is the scenario's choice: leave it for the peer to judge.
            Err(_) if r.headers.contains("From") => {}
            Err(_) => {
                let from = local.aor.clone().with_tag(&new_tag(rng));
                r.headers.insert(at, "From", from.to_string());
                at += 1;
            }
        }
        if !r.headers.contains("To") {
            // §8.1.1.2: To is normally the Request-URI's target.
            r.headers
                .insert(at, "To", NameAddr::new(r.uri.clone()).to_string());
            at += 1;
        }
        if !r.headers.contains("Call-ID") {
            r.headers
                .insert(at, "Call-ID", new_call_id(rng, local.host()));
            at += 1;
        }
        if !r.headers.contains("CSeq") {
            let seq = self.cseq.unwrap_or(1);
            r.headers.insert(at, "CSeq", format!("{seq} {}", r.method));
        }
        if !r.headers.contains("Contact")
            && NEEDS_CONTACT.contains(&r.method)
            && let Some(contact) = &local.contact
        {
            let index = r
                .headers
                .iter()
                .position(|h| {
                    super::message::names_equal(&h.name, "Content-Type")
                        || super::message::names_equal(&h.name, "Content-Length")
                })
                .unwrap_or(r.headers.len());
            r.headers
                .insert(index, "Contact", NameAddr::new(contact.clone()).to_string());
        }
        r.headers.set("Content-Length", r.body.len().to_string());
        r
    }
}

/// A given top Via without a branch gets a fresh one (RFC 3261 §8.1.1.7: "The Via header
/// field value MUST contain a branch parameter"); a Via that does not parse stays as it is.
fn add_missing_branch(r: &mut Request, rng: &mut dyn RandomSource) {
    let Ok(mut via) = r.headers.top_via() else {
        return;
    };
    if via.branch().is_some() {
        return;
    }
    via.params.set("branch", Some(&new_branch(rng)));
    let Some(line) = r.headers.get("Via") else {
        return;
    };
    let mut values: Vec<String> = super::message::split_list(line)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(first) = values.first_mut() {
        *first = via.to_string();
    }
    if let Some(h) = r.headers.first_mut("Via") {
        h.value = values.join(", ");
    }
}

/// Default reason phrases (RFC 3261 §21; 202 and 489 from event notification, RFC 6665;
/// 204 from RFC 5839).
const REASONS: [(u16, &str); 53] = [
    (100, "Trying"),
    (180, "Ringing"),
    (181, "Call Is Being Forwarded"),
    (182, "Queued"),
    (183, "Session Progress"),
    (200, "OK"),
    (202, "Accepted"),
    (204, "No Notification"),
    (300, "Multiple Choices"),
    (301, "Moved Permanently"),
    (302, "Moved Temporarily"),
    (305, "Use Proxy"),
    (380, "Alternative Service"),
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (402, "Payment Required"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (406, "Not Acceptable"),
    (407, "Proxy Authentication Required"),
    (408, "Request Timeout"),
    (410, "Gone"),
    (413, "Request Entity Too Large"),
    (414, "Request-URI Too Long"),
    (415, "Unsupported Media Type"),
    (416, "Unsupported URI Scheme"),
    (420, "Bad Extension"),
    (421, "Extension Required"),
    (423, "Interval Too Brief"),
    (480, "Temporarily Unavailable"),
    (481, "Call/Transaction Does Not Exist"),
    (482, "Loop Detected"),
    (483, "Too Many Hops"),
    (484, "Address Incomplete"),
    (485, "Ambiguous"),
    (486, "Busy Here"),
    (487, "Request Terminated"),
    (488, "Not Acceptable Here"),
    (489, "Bad Event"),
    (491, "Request Pending"),
    (493, "Undecipherable"),
    (500, "Server Internal Error"),
    (501, "Not Implemented"),
    (502, "Bad Gateway"),
    (503, "Service Unavailable"),
    (504, "Server Time-out"),
    (505, "Version Not Supported"),
    (513, "Message Too Large"),
    (600, "Busy Everywhere"),
    (603, "Decline"),
    (604, "Does Not Exist Anywhere"),
    (606, "Not Acceptable"),
];

/// The reason phrase RFC 3261 §21 gives a code, or a class-generic one.
pub fn default_reason(status: u16) -> &'static str {
    REASONS
        .iter()
        .find(|(code, _)| *code == status)
        .map(|(_, r)| *r)
        .unwrap_or(match status / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        })
}

/// Headers a UAS copies from the request into every response (RFC 3261 §8.2.6.2).
const COPIED: [&str; 4] = ["From", "Call-ID", "CSeq", "To"];

/// Builds a response to a request (RFC 3261 §8.2.6).
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'a> {
    request: &'a Request,
    status: u16,
    reason: Option<String>,
    to_tag: Option<String>,
    extra: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

impl<'a> ResponseBuilder<'a> {
    pub fn new(request: &'a Request, status: u16) -> Self {
        ResponseBuilder {
            request,
            status,
            reason: None,
            to_tag: None,
            extra: Vec::new(),
            body: None,
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The To tag to add when the request's To has none (the dialog's local tag). Without
    /// it a fresh tag is drawn.
    pub fn to_tag(mut self, tag: impl Into<String>) -> Self {
        self.to_tag = Some(tag.into());
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type.to_owned(), body.into()));
        self
    }

    /// §8.2.6.2: Via values copied in order, From, Call-ID, CSeq and To copied; a To
    /// without a tag gets one unless the response is 100 (Trying), for which §8.2.6.1
    /// also copies Timestamp.
    pub fn build(self, rng: &mut dyn RandomSource) -> Response {
        let status = self.status;
        let reason = self
            .reason
            .unwrap_or_else(|| default_reason(status).to_owned());
        let mut r = Response::new(status, reason);
        let req = &self.request.headers;
        for via in req.get_all("Via") {
            r.headers.push("Via", via);
        }
        for name in COPIED {
            let Some(value) = req.get(name) else { continue };
            if name == "To"
                && status != 100
                && let Ok(to) = req.to()
                && to.tag().is_none()
            {
                let tag = self.to_tag.clone().unwrap_or_else(|| new_tag(rng));
                r.headers.push("To", to.with_tag(&tag).to_string());
                continue;
            }
            r.headers.push(name, value);
        }
        if status == 100
            && let Some(ts) = req.get("Timestamp")
        {
            r.headers.push("Timestamp", ts);
        }
        for (name, value) in self.extra {
            r.headers.push(name, value);
        }
        if let Some((ct, body)) = self.body {
            r.headers.push("Content-Type", ct);
            r.body = body;
        }
        r.headers.push("Content-Length", r.body.len().to_string());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::validate::{validate_request, validate_response};

    fn local() -> Local {
        Local {
            aor: NameAddr::parse("From", "\"Alice\" <sip:alice@sip.example>").expect("valid"),
            transport: "UDP".into(),
            sent_by: "127.0.0.1:5070".into(),
            contact: Some(Uri::parse("sip:alice@127.0.0.1:5070").expect("valid")),
        }
    }

    fn uri(s: &str) -> Uri {
        Uri::parse(s).expect("valid uri")
    }

    #[test]
    fn fills_every_mandatory_header() {
        let mut rng = SeededRandom(1);
        let r = RequestBuilder::new(Method::Message, uri("sip:juliet@xmpp.example"))
            .body("text/plain", "Hello")
            .build(&local(), &mut rng);
        assert_eq!(validate_request(&r), Ok(()));
        let names: Vec<_> = r.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Via",
                "Max-Forwards",
                "From",
                "To",
                "Call-ID",
                "CSeq",
                "Content-Type",
                "Content-Length"
            ]
        );
        let via = r.headers.top_via().expect("via");
        assert!(
            via.branch()
                .is_some_and(|b| b.starts_with("z9hG4bK") && b.len() == 23)
        );
        assert_eq!(via.sent_by(), "127.0.0.1:5070");
        assert_eq!(
            r.headers.from().expect("from").tag().map(|t| t.len()),
            Some(16)
        );
        assert_eq!(
            r.headers.to().expect("to").uri.as_str(),
            "sip:juliet@xmpp.example"
        );
        assert!(r.headers.call_id().is_ok_and(|c| c.ends_with("@127.0.0.1")));
        assert_eq!(r.headers.get("CSeq"), Some("1 MESSAGE"));
        assert_eq!(r.headers.get("Content-Length"), Some("5"));
        assert_eq!(r.headers.get("Contact"), None, "MESSAGE needs no Contact");
    }

    #[test]
    fn same_seed_same_request() {
        let build = |seed| {
            RequestBuilder::new(Method::Options, uri("sip:a@b"))
                .build(&local(), &mut SeededRandom(seed))
        };
        assert_eq!(build(7), build(7));
        assert_ne!(build(7), build(8));
        let mut counter = 0u8;
        let mut closure = |buf: &mut [u8]| {
            for b in buf {
                counter = counter.wrapping_add(1);
                *b = counter;
            }
        };
        let r = RequestBuilder::new(Method::Options, uri("sip:a@b")).build(&local(), &mut closure);
        assert_eq!(
            r.headers.top_via().ok().and_then(|v| v.branch()).as_deref(),
            Some("z9hG4bK0102030405060708")
        );
    }

    #[test]
    fn given_headers_are_kept_and_from_gets_a_tag() {
        let r = RequestBuilder::new(Method::Subscribe, uri("sip:juliet@xmpp.example"))
            .header("From", "<sip:romeo@sip.example>")
            .header("CSeq", "10 SUBSCRIBE")
            .header("Event", "presence")
            .header("Max-Forwards", "0")
            .build(&local(), &mut SeededRandom(3));
        let from = r.headers.from().expect("from");
        assert_eq!(from.uri.as_str(), "sip:romeo@sip.example");
        assert!(from.tag().is_some());
        assert_eq!(r.headers.get("CSeq"), Some("10 SUBSCRIBE"));
        assert_eq!(r.headers.max_forwards(), Ok(Some(0)));
        assert_eq!(r.headers.get("Contact"), Some("<sip:alice@127.0.0.1:5070>"));
        assert_eq!(validate_request(&r), Ok(()));
    }

    #[test]
    fn a_given_via_without_branch_gets_one() {
        let r = RequestBuilder::new(Method::Message, uri("sip:a@b"))
            .header(
                "v",
                "SIP/2.0/TCP 127.0.0.1:5090;rport, SIP/2.0/UDP proxy;branch=z9hG4bKp",
            )
            .build(&local(), &mut SeededRandom(4));
        let vias = r.headers.vias().expect("vias");
        assert_eq!(vias.len(), 2);
        assert!(
            vias[0]
                .branch()
                .is_some_and(|b| b.starts_with(MAGIC_COOKIE))
        );
        assert_eq!(vias[0].rport(), Some(None));
        assert_eq!(vias[1].branch().as_deref(), Some("z9hG4bKp"));
        assert_eq!(r.headers.iter().next().map(|h| h.name.as_str()), Some("v"));
    }

    #[test]
    fn explicit_cseq_number() {
        let r = RequestBuilder::new(Method::Message, uri("sip:a@b"))
            .cseq(42)
            .build(&local(), &mut SeededRandom(0));
        assert_eq!(r.headers.cseq().map(|c| c.seq), Ok(42));
    }

    #[test]
    fn response_copies_and_tags() {
        let req = RequestBuilder::new(Method::Message, uri("sip:juliet@xmpp.example"))
            .header("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp")
            .header("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa")
            .body("text/plain", "x")
            .build(&local(), &mut SeededRandom(1));
        let resp = ResponseBuilder::new(&req, 200)
            .to_tag("mytag")
            .build(&mut SeededRandom(2));
        assert_eq!(resp.reason, "OK");
        assert_eq!(validate_response(&resp), Ok(()));
        assert_eq!(resp.headers.get_all("Via").count(), 2);
        assert_eq!(resp.headers.vias().expect("vias")[0].host, "proxy");
        assert_eq!(
            resp.headers.to().expect("to").tag().as_deref(),
            Some("mytag")
        );
        assert_eq!(resp.headers.get("From"), req.headers.get("From"));
        assert_eq!(resp.headers.get("CSeq"), Some("1 MESSAGE"));
        assert!(resp.body.is_empty());

        let trying = ResponseBuilder::new(&req, 100).build(&mut SeededRandom(2));
        assert_eq!(
            trying.headers.to().expect("to").tag(),
            None,
            "100 gets no tag"
        );
        let drawn = ResponseBuilder::new(&req, 404).build(&mut SeededRandom(2));
        assert!(drawn.headers.to().expect("to").tag().is_some());
        assert_eq!(drawn.reason, "Not Found");
    }

    #[test]
    fn existing_to_tag_is_kept() {
        let req = RequestBuilder::new(Method::Notify, uri("sip:a@b"))
            .header("To", "<sip:a@b>;tag=peer")
            .build(&local(), &mut SeededRandom(1));
        let resp = ResponseBuilder::new(&req, 200)
            .to_tag("other")
            .build(&mut SeededRandom(2));
        assert_eq!(
            resp.headers.to().expect("to").tag().as_deref(),
            Some("peer")
        );
    }

    #[test]
    fn scenario_payloads_with_lf_line_ends() {
        let text =
            "MESSAGE sip:juliet@xmpp.example SIP/2.0\nContent-Type: text/plain\n\nHello\nthere\n";
        let Ok(Message::Request(r)) = parse_payload(text, &Limits::default()) else {
            panic!("parses");
        };
        assert_eq!(r.body, b"Hello\nthere\n");
        let r = RequestBuilder::from_request(r).build(&local(), &mut SeededRandom(1));
        assert_eq!(validate_request(&r), Ok(()));
        assert_eq!(r.headers.get("Content-Length"), Some("12"));

        let Ok(Message::Response(resp)) = parse_payload("SIP/2.0 200 OK\n", &Limits::default())
        else {
            panic!("parses");
        };
        assert_eq!((resp.status, resp.headers.len()), (200, 0));
        let crlf = "OPTIONS sip:a@b SIP/2.0\r\nSubject: x\r\n\r\nbody\n\nmore";
        let Ok(Message::Request(r)) = parse_payload(crlf, &Limits::default()) else {
            panic!("parses");
        };
        assert_eq!(r.body, b"body\n\nmore");
        assert_eq!(
            parse_payload("OPTIONS sip:a@b SIP/2.0\nVia\n", &Limits::default()),
            Err(ParseError::HeaderWithoutColon { line: 2 })
        );
    }

    #[test]
    fn os_random_gives_distinct_identifiers() {
        let mut rng = OsRandom::default();
        let tags: std::collections::HashSet<_> = (0..50).map(|_| new_tag(&mut rng)).collect();
        assert_eq!(tags.len(), 50);
        assert!(new_branch(&mut rng).starts_with(MAGIC_COOKIE));
    }

    #[test]
    fn reasons() {
        assert_eq!(default_reason(489), "Bad Event");
        assert_eq!(default_reason(499), "Client Error");
        assert_eq!(default_reason(699), "Global Failure");
    }
}
