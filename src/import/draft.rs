//! A [`Trace`] becomes a [`Draft`]: actor declarations and steps (docs/import.md).
//!
//! Rules, in the order the records come:
//! - an actor's transport events become `connect`/`accept`/`close`/`reset` steps, what it
//!   sent becomes a `send` of the bytes as captured (byte for byte, so a draft replays odd
//!   input exactly), what the SUT sent becomes an `expect` of the unit as captured;
//! - values the SUT chose fresh for this run — stream ids (RFC 6120 §4.7.3), stanza `id`s,
//!   dialback keys (XEP-0185), SIP tags, Call-IDs (RFC 3261 §8.1.1) — are captured
//!   (`{id:NAME}`) where they first appear and referenced (`{NAME}`) wherever the capture
//!   has the same value again, in later expectations and in what actors send back;
//! - a dialback key an actor sent that is the key for its stream is `{S.key}`, a component
//!   handshake that is the digest for its stream `{S.handshake}`: a re-run gets a new stream
//!   id, so the key must be computed again, not replayed;
//! - the SUT's domains are `{sut}` (so the draft runs against another target);
//! - STARTTLS followed by a handshake becomes the `starttls`/`accept_starttls` step (the
//!   handshake itself cannot be replayed from bytes);
//! - each wait gets a timeout from the gap the capture shows, with a margin; a pause before
//!   an actor's action becomes an `expect_none` window of the same length, so timing the
//!   SUT depends on (keepalives, idle timeouts) is kept.
//!
//! Expectations across streams keep the capture's order, which is not brittle: each stream
//! has its own inbox, so an `expect` on one stream takes its unit whenever it arrived.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{ActorDecl, ActorSpec, Kind, Record, Trace};
use crate::harness::transcript::Dir;
use crate::xmpp::codec::{Decoder, Event, Limits, StreamHeader};
use crate::xmpp::element::{Element, Node, NsContext};
use crate::xmpp::ns;
use crate::xmpp::s2s::features::base64_encode;

/// A value in a step table.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    List(Vec<String>),
}

/// One `[[step]]`: its keys in order (the action key first), with comments above it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DraftStep {
    pub comments: Vec<String>,
    pub keys: Vec<(String, Value)>,
}

impl DraftStep {
    fn new(action: &str, value: &str) -> Self {
        DraftStep {
            comments: Vec::new(),
            keys: vec![(action.to_string(), Value::Str(value.to_string()))],
        }
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.keys.push((key.to_string(), value));
        self
    }

    fn str(self, key: &str, value: impl Into<String>) -> Self {
        self.with(key, Value::Str(value.into()))
    }

    /// The action key and its value.
    pub fn action(&self) -> Option<(&str, &str)> {
        match self.keys.first() {
            Some((k, Value::Str(v))) => Some((k.as_str(), v.as_str())),
            _ => None,
        }
    }
}

/// A draft scenario, before it is written as TOML.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Draft {
    /// Lines of the comment header (source file, flows taken, notes).
    pub header: Vec<String>,
    pub title: String,
    pub requires: Vec<String>,
    pub actors: Vec<ActorDecl>,
    pub steps: Vec<DraftStep>,
    /// Comments after the last step.
    pub trailer: Vec<String>,
}

/// Shortest values replaced inside text an actor sends: shorter ones could match by
/// accident (an `id='1'` the SUT chose and the digit 1 in a body).
const MIN_SUBSTITUTED_LEN: usize = 6;
/// Pauses shorter than this before an actor's action are scheduling noise, not waits.
const MIN_PAUSE: Duration = Duration::from_millis(150);
/// Timeout of a wait: the gap the capture shows, times this, plus [`TIMEOUT_FLOOR`].
const TIMEOUT_FACTOR: u32 = 2;
const TIMEOUT_FLOOR: Duration = Duration::from_millis(1000);
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The note the harness writes before the units no step consumed (src/harness/run.rs).
const LEFTOVERS_NOTE: &str = "received but not consumed by any step:";

/// Attributes whose value is a time the SUT writes (XEP-0203 `stamp`): any value.
const ANY_VALUE_ATTRS: &[&str] = &["stamp"];

/// SIP headers left out of an expectation: routing and transport details that change with
/// every run's ports (Via, Contact, Route, Record-Route) or that the harness checks anyway
/// (Content-Length), and clocks (Date).
const SIP_EXPECT_SKIP: &[&str] = &[
    "via",
    "v",
    "contact",
    "m",
    "route",
    "record-route",
    "content-length",
    "l",
    "date",
    "timestamp",
];
/// SIP headers an actor's request leaves to the harness, which fills them for the re-run's
/// own socket (RFC 3261 §8.1.1.7: Via with the actor's address and a fresh branch) and
/// its body (Content-Length, last, as the harness writes it).
const SIP_REQUEST_DROP: &[&str] = &["via", "v", "content-length", "l"];
/// SIP headers an actor's response leaves to the harness, which copies them from the
/// request it answers (RFC 3261 §8.2.6.2).
const SIP_RESPONSE_DROP: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "content-length",
    "l",
];
/// SIP headers a request inside a known dialog takes from the dialog.
const SIP_DIALOG_HEADERS: &[&str] = &["from", "f", "to", "t", "cseq"];
/// SIP headers whose value is an opaque token the SUT chose (a capture, not a literal).
const SIP_TOKEN_HEADERS: &[&str] = &["call-id", "i"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The actor opened it (`connect`).
    Actor,
    /// The SUT opened it (`accept`).
    Sut,
}

struct StreamState {
    actor: String,
    origin: Origin,
    /// Decodes what the SUT sent on the stream, for its namespace context.
    decoder: Option<Decoder>,
    closed: bool,
    /// The id of the SUT's latest header on the stream (RFC 6120 §4.7.3): what `{S.key}`
    /// and `{S.handshake}` are computed from.
    sut_id: Option<String>,
}

struct Engine<'a> {
    trace: &'a Trace,
    sut: String,
    /// Volatile value → the expression that stands for it from here on.
    known: Vec<(String, String)>,
    /// Values actors sent as literals: the SUT echoing one is checked literally.
    literals: HashSet<String>,
    names: HashSet<String>,
    counters: HashMap<&'static str, usize>,
    streams: HashMap<String, StreamState>,
    steps: Vec<DraftStep>,
    pending_comments: Vec<String>,
    pending_note: Option<String>,
    /// Comments after the last step (what the recording had after it).
    trailer: Vec<String>,
    last_at: Duration,
}

/// Draft a scenario from a trace.
pub fn draft(trace: &Trace) -> Draft {
    let sut = trace
        .sut_domains
        .first()
        .cloned()
        .unwrap_or_else(|| "sut.invalid".into());
    let mut names: HashSet<String> = trace.actors.iter().map(|a| a.name.clone()).collect();
    for r in ["sut", "any", "absent"] {
        names.insert(r.to_string());
    }
    let mut e = Engine {
        trace,
        sut,
        known: Vec::new(),
        literals: HashSet::new(),
        names,
        counters: HashMap::new(),
        streams: HashMap::new(),
        steps: Vec::new(),
        pending_comments: Vec::new(),
        pending_note: None,
        trailer: Vec::new(),
        last_at: Duration::ZERO,
    };
    e.run();
    let mut header = vec![format!(
        "Draft scenario imported by `fedcheck import` from {}.",
        trace.source
    )];
    if !trace.taken.is_empty() {
        header.push("Taken:".into());
        header.extend(trace.taken.iter().map(|t| format!("  {t}")));
    }
    if !trace.notes.is_empty() {
        header.push("Notes:".into());
        header.extend(trace.notes.iter().map(|t| format!("  {t}")));
    }
    header.push(
        "Review it against the spec, fill in `covers`, and tighten the expectations that matter."
            .into(),
    );
    Draft {
        header,
        title: trace
            .title
            .clone()
            .map(|t| format!("Imported: {t}"))
            .unwrap_or_else(|| format!("Imported from {}", trace.source)),
        requires: trace.requires.clone(),
        actors: trace.actors.clone(),
        steps: e.steps,
        trailer: e.trailer,
    }
}

/// A Contact the harness made for its actor: a loopback address with this run's port
/// (`<sip:alice@127.0.0.1:40123>`).
fn is_run_contact(value: &str) -> bool {
    value.split("@127.").skip(1).any(|rest| {
        rest.split(['>', ';', ' ', ','])
            .next()
            .and_then(|host| host.rsplit_once(':'))
            .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Round up to 100 ms.
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis().div_ceil(100) * 100;
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn timeout_for(gap: Duration) -> String {
    let t = (gap * TIMEOUT_FACTOR + TIMEOUT_FLOOR).min(MAX_TIMEOUT);
    fmt_duration(t)
}

/// `{` and `}` are the template language's; literal braces are doubled.
fn escape_braces(s: &str) -> String {
    s.replace('{', "{{").replace('}', "}}")
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Replace `needle` where it stands alone: not inside a longer name or token (so
/// `sut.test` is not replaced inside `sip.sut.test`).
fn replace_bounded(hay: &str, needle: &str, with: &str, dot_is_inner: bool) -> String {
    if needle.is_empty() {
        return hay.to_string();
    }
    let mut out = String::with_capacity(hay.len());
    let mut rest = hay;
    let mut prev: Option<char> = None;
    while let Some(i) = rest.find(needle) {
        let (before, tail) = rest.split_at(i);
        let after = tail.get(needle.len()..).unwrap_or("");
        let p = before.chars().last().or(prev);
        let mut next = after.chars();
        let n = next.next();
        let n2 = next.next();
        let inner = |c: char| is_domain_char(c) || (dot_is_inner && c == '.');
        let bad_before = p.is_some_and(inner);
        let bad_after = n.is_some_and(is_domain_char)
            || (dot_is_inner && n == Some('.') && n2.is_some_and(is_domain_char));
        out.push_str(before);
        if bad_before || bad_after {
            out.push_str(needle);
        } else {
            out.push_str(with);
        }
        prev = needle.chars().last();
        rest = after;
    }
    out.push_str(rest);
    out
}

impl<'a> Engine<'a> {
    fn fresh(&mut self, base: &str) -> String {
        let base = sanitize(base);
        if !self.names.contains(&base) {
            self.names.insert(base.clone());
            return base;
        }
        loop {
            let n = self.counters.entry("fresh").or_insert(1);
            *n += 1;
            let name = format!("{base}{n}");
            if !self.names.contains(&name) {
                self.names.insert(name.clone());
                return name;
            }
        }
    }

    fn numbered(&mut self, base: &'static str) -> String {
        loop {
            let n = self.counters.entry(base).or_insert(0);
            *n += 1;
            let name = format!("{base}{n}");
            if !self.names.contains(&name) {
                self.names.insert(name.clone());
                return name;
            }
        }
    }

    fn lookup(&self, value: &str) -> Option<&str> {
        self.known
            .iter()
            .rev()
            .find(|(v, _)| v == value)
            .map(|(_, e)| e.as_str())
    }

    fn remember(&mut self, value: &str, expr: String) {
        if !value.is_empty() && !value.contains(['{', '}']) {
            self.known.push((value.to_string(), expr));
        }
    }

    /// A literal for a template: braces doubled, the SUT's domains as `{sut}`.
    fn literal(&self, s: &str) -> String {
        let out = escape_braces(s);
        // Only the domain `{sut}` stands for: another of the SUT's domains (a gateway's
        // `sip.sut.test`) stays literal.
        match self.trace.sut_domains.first() {
            Some(d) => replace_bounded(&out, d, "{sut}", true),
            None => out,
        }
    }

    /// Text an actor sends: literal, with volatile values the SUT chose replaced by their
    /// captures (longest first, so a key is not replaced piecewise).
    fn send_text(&self, s: &str) -> String {
        let mut out = self.literal(s);
        let mut known: Vec<&(String, String)> = self
            .known
            .iter()
            .filter(|(v, _)| v.len() >= MIN_SUBSTITUTED_LEN)
            .collect();
        // Latest first for a value known twice, then longest first.
        known.reverse();
        known.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        let mut done = HashSet::new();
        for (v, e) in known {
            if done.insert(v.clone()) {
                out = replace_bounded(&out, &escape_braces(v), e, false);
            }
        }
        out
    }

    /// A value the SUT sent, in an expectation: a reference if it is known, a literal if an
    /// actor sent it, a new capture if `volatile`.
    fn expect_value(&mut self, value: &str, volatile: Option<&'static str>) -> String {
        if value.is_empty() {
            return String::new();
        }
        if let Some(e) = self.lookup(value) {
            return e.to_string();
        }
        if self.literals.contains(value) {
            return self.literal(value);
        }
        match volatile {
            Some(base) => {
                let name = self.numbered(base);
                self.remember(value, format!("{{{name}}}"));
                format!("{{id:{name}}}")
            }
            None => self.literal(value),
        }
    }

    fn push(&mut self, mut step: DraftStep) {
        step.comments.append(&mut self.pending_comments);
        if let Some(n) = self.pending_note.take() {
            step.keys.push(("note".into(), Value::Str(n)));
        }
        self.steps.push(step);
    }

    fn gap(&self, at: Duration) -> Duration {
        at.saturating_sub(self.last_at)
    }

    fn actor(&self, name: &str) -> Option<&ActorDecl> {
        self.trace.actors.iter().find(|a| a.name == name)
    }

    fn is_sip_actor(&self, name: &str) -> bool {
        matches!(
            self.actor(name).map(|a| &a.spec),
            Some(ActorSpec::Sip { .. })
        )
    }

    fn run(&mut self) {
        let records = &self.trace.records;
        let mut skip: HashSet<usize> = HashSet::new();
        let mut leftovers = false;
        for (i, r) in records.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            if r.kind == Kind::Note {
                if r.detail == LEFTOVERS_NOTE {
                    leftovers = true;
                    self.pending_comments
                        .push("the run ended with units no step consumed; left out".into());
                } else if let Some(text) = step_note(&r.detail) {
                    self.pending_note = Some(text.to_string());
                } else if !r.detail.is_empty() {
                    self.pending_comments.push(format!("harness: {}", r.detail));
                }
                continue;
            }
            if leftovers {
                continue;
            }
            if r.kind == Kind::SipRetransmission
                || r.kind == Kind::Whitespace && r.dir == Dir::FromSut
            {
                continue;
            }
            if r.dir == Dir::ToSut {
                self.pause_before(i, r);
            }
            self.record(i, r, &mut skip);
            // A unit consumed late arrived earlier: time only moves forward.
            self.last_at = self.last_at.max(r.at);
        }
        self.failure();
        self.trailer = std::mem::take(&mut self.pending_comments);
        if let Some(n) = self.pending_note.take() {
            self.trailer.push(format!("note: {n}"));
        }
    }

    /// A pause the capture shows before an actor acts: keep it as an `expect_none`
    /// window on a stream where nothing the SUT sent during the pause waits unconsumed.
    fn pause_before(&mut self, i: usize, r: &Record) {
        if r.kind == Kind::Connected
            && !self.streams.contains_key(&r.stream)
            && self.streams.is_empty()
        {
            return;
        }
        let gap = self.gap(r.at);
        if gap < MIN_PAUSE {
            return;
        }
        let mut candidates: Vec<(String, String)> = Vec::new();
        if self.is_sip_actor(&r.actor) {
            candidates.push((r.actor.clone(), r.stream.clone()));
        } else if self.streams.get(&r.stream).is_some_and(|s| !s.closed) {
            candidates.push((r.stream.clone(), r.stream.clone()));
        }
        let mut others: Vec<&String> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.closed)
            .map(|(n, _)| n)
            .collect();
        others.sort();
        for o in others {
            candidates.push((o.clone(), o.clone()));
        }
        let later = self.trace.records.get(i + 1..).unwrap_or_default();
        let safe = |stream: &str| {
            !later.iter().any(|l| {
                l.dir == Dir::FromSut
                    && l.stream == stream
                    && !matches!(
                        l.kind,
                        Kind::Whitespace | Kind::Note | Kind::SipRetransmission
                    )
                    && l.at < r.at
            })
        };
        if let Some((target, _)) = candidates.into_iter().find(|(_, s)| safe(s)) {
            let window = Duration::from_millis((gap.as_millis() / 10 * 10) as u64);
            let mut st = DraftStep::new("expect_none", &target);
            st = st.str("window", format!("{}ms", window.as_millis()));
            st.comments.push(format!(
                "the capture paused {} ms here before the actor went on",
                gap.as_millis()
            ));
            self.push(st);
        }
    }

    fn record(&mut self, i: usize, r: &Record, skip: &mut HashSet<usize>) {
        let gap = self.gap(r.at);
        match (r.dir, r.kind) {
            (Dir::ToSut, Kind::Connected) => {
                let port = matches!(
                    self.actor(&r.actor).map(|a| &a.spec),
                    Some(ActorSpec::Component { .. })
                );
                let mut st = DraftStep::new("connect", &r.stream).str("actor", r.actor.clone());
                if port {
                    st = st.str("port", "component");
                }
                self.streams.insert(
                    r.stream.clone(),
                    StreamState {
                        actor: r.actor.clone(),
                        origin: Origin::Actor,
                        decoder: None,
                        closed: false,
                        sut_id: None,
                    },
                );
                self.push(st);
            }
            (Dir::FromSut, Kind::Connected) => {
                let st = DraftStep::new("accept", &r.stream)
                    .str("actor", r.actor.clone())
                    .str("timeout", timeout_for(gap));
                self.streams.insert(
                    r.stream.clone(),
                    StreamState {
                        actor: r.actor.clone(),
                        origin: Origin::Sut,
                        decoder: None,
                        closed: false,
                        sut_id: None,
                    },
                );
                self.push(st);
            }
            (Dir::ToSut, Kind::Sip) => self.sip_send(r),
            (Dir::FromSut, Kind::Sip) => self.sip_expect(r, gap),
            (Dir::ToSut, Kind::Element) if is_starttls(&r.raw) => {
                if let Some(used) = self.tls_helper(i, r, Dir::ToSut) {
                    skip.extend(used);
                    let st = DraftStep::new("starttls", &r.stream).str("timeout", timeout_for(gap));
                    self.push(st);
                } else {
                    self.send(r);
                }
            }
            (Dir::FromSut, Kind::Element) if is_starttls(&r.raw) => {
                if let Some(used) = self.tls_helper(i, r, Dir::FromSut) {
                    skip.extend(used);
                    let st = DraftStep::new("accept_starttls", &r.stream)
                        .str("timeout", timeout_for(gap));
                    self.push(st);
                } else {
                    self.xml_expect(r, gap);
                }
            }
            (Dir::ToSut, Kind::Element) if is_sasl(&r.raw, "auth") => {
                match self.next_on_stream(i, &r.stream, 1).as_slice() {
                    [(si, s)] if s.dir == Dir::FromSut && is_sasl(&s.raw, "success") => {
                        skip.insert(*si);
                        let mut st = DraftStep::new("sasl_external", &r.stream);
                        if let Some(a) = self.authzid(&r.stream, &r.raw) {
                            st = st.str("authzid", a);
                        }
                        self.push(st.str("timeout", timeout_for(gap)));
                    }
                    _ => self.send(r),
                }
            }
            (Dir::FromSut, Kind::Header) if self.accept_sasl(i, r, skip) => {
                let st = DraftStep::new("accept_sasl", &r.stream).str("timeout", timeout_for(gap));
                self.push(st);
            }
            // A SIP actor's deliberately broken message (`raw = true` when it was sent by
            // a scenario, or bytes a capture's SIP peer sent that do not parse): replayed
            // byte for byte.
            (Dir::ToSut, Kind::Undecodable) if self.is_sip_actor(&r.actor) => {
                let st = DraftStep::new("send", &r.actor)
                    .str("sip", self.send_text(&r.text()))
                    .with("raw", Value::Bool(true));
                self.push(st);
            }
            (
                Dir::ToSut,
                Kind::Header
                | Kind::Element
                | Kind::StreamClose
                | Kind::Whitespace
                | Kind::Undecodable,
            ) => self.send(r),
            (Dir::FromSut, Kind::Header | Kind::Element | Kind::StreamClose) => {
                self.xml_expect(r, gap)
            }
            (Dir::FromSut, Kind::Undecodable) => {
                self.pending_comments.push(format!(
                    "the SUT sent bytes that do not decode ({}): {:?}",
                    r.detail,
                    r.text()
                ));
            }
            (Dir::ToSut, Kind::Eof) => {
                self.push(DraftStep::new("close", &r.stream));
            }
            (Dir::ToSut, Kind::Reset) => {
                if let Some(s) = self.streams.get_mut(&r.stream) {
                    s.closed = true;
                }
                self.push(DraftStep::new("reset", &r.stream));
            }
            (Dir::FromSut, Kind::Eof | Kind::Reset) => {
                if let Some(s) = self.streams.get_mut(&r.stream) {
                    s.closed = true;
                }
                let st = DraftStep::new("expect_eof", &r.stream).str("timeout", timeout_for(gap));
                self.push(st);
            }
            (_, Kind::Tls) => {
                self.pending_comments.push(format!(
                    "TLS on {} ({}) without STARTTLS before it",
                    r.stream, r.detail
                ));
            }
            _ => {}
        }
    }

    /// `<starttls/>`, `<proceed/>` and a completed handshake on one stream: the records
    /// the `starttls` (actor initiates) or `accept_starttls` (SUT initiates) step stands for.
    fn tls_helper(&self, i: usize, r: &Record, dir: Dir) -> Option<Vec<usize>> {
        let later = self.trace.records.iter().enumerate().skip(i + 1);
        let mut on_stream = later.filter(|(_, l)| l.stream == r.stream && l.kind != Kind::Note);
        let (pi, p) = on_stream.next()?;
        if p.dir == dir
            || p.kind != Kind::Element
            || !String::from_utf8_lossy(&p.raw).contains("<proceed")
        {
            return None;
        }
        let (ti, t) = on_stream.next()?;
        (t.kind == Kind::Tls).then(|| vec![pi, ti])
    }

    /// The next `n` records on `stream` after record `i` (notes aside).
    fn next_on_stream(&self, i: usize, stream: &str, n: usize) -> Vec<(usize, &'a Record)> {
        let records: &'a [Record] = &self.trace.records;
        records
            .iter()
            .enumerate()
            .skip(i + 1)
            .filter(|(_, l)| l.stream == stream && l.kind != Kind::Note)
            .take(n)
            .collect()
    }

    /// The `authzid` key of a `sasl_external` step for the `<auth>` an actor sent: the
    /// default (base64 of its domain) is left out.
    fn authzid(&self, stream: &str, raw: &[u8]) -> Option<String> {
        let text = element_name_and_text(&String::from_utf8_lossy(raw))
            .map(|(_, t)| t.trim().to_string())
            .unwrap_or_default();
        let domain = self
            .streams
            .get(stream)
            .and_then(|s| self.actor(&s.actor))
            .map(|a| a.domain().to_string())
            .unwrap_or_default();
        match text.as_str() {
            "" => Some("empty".into()),
            "=" => Some("=".into()),
            t if t == base64_encode(domain.as_bytes()) => None,
            t => Some(t.to_string()),
        }
    }

    /// The SUT's header after TLS on a stream it opened, answered with a header and
    /// features offering EXTERNAL, its `<auth>`, the actor's `<success/>`: the records the
    /// `accept_sasl` step stands for (RFC 6120 §6; XEP-0178 §3). Marks them used.
    fn accept_sasl(&self, i: usize, r: &Record, skip: &mut HashSet<usize>) -> bool {
        if self.streams.get(&r.stream).map(|s| s.origin) != Some(Origin::Sut) {
            return false;
        }
        let next = self.next_on_stream(i, &r.stream, 4);
        let ok = match next.as_slice() {
            [(_, h), (_, f), (_, a), (_, s)] => {
                h.dir == Dir::ToSut
                    && h.kind == Kind::Header
                    && f.dir == Dir::ToSut
                    && f.text().contains("<mechanisms")
                    && a.dir == Dir::FromSut
                    && is_sasl(&a.raw, "auth")
                    && s.dir == Dir::ToSut
                    && is_sasl(&s.raw, "success")
            }
            _ => false,
        };
        if ok {
            skip.extend(next.iter().map(|(k, _)| *k));
        }
        ok
    }

    fn send(&mut self, r: &Record) {
        let text = r.text();
        let Ok(_) = std::str::from_utf8(&r.raw) else {
            self.pending_comments.push(format!(
                "the actor sent {} bytes that are not UTF-8; a TOML string cannot hold them, so the draft leaves them out",
                r.raw.len()
            ));
            return;
        };
        // Values an actor chose itself are literals: the SUT echoing them must echo them.
        for v in attr_values(&text) {
            self.literals.insert(v);
        }
        let mut out = self.send_text(&text);
        if r.kind == Kind::Element {
            out = self.dialback_expr(&r.stream, &text, out);
        }
        if r.kind == Kind::Header {
            self.pending_header_literal(&text);
        }
        let st = DraftStep::new("send", &r.stream).str("xml", out);
        self.push(st);
    }

    /// The actor's own stream id on a stream the SUT opened is its choice: a literal.
    fn pending_header_literal(&mut self, text: &str) {
        let mut d = Decoder::new(Limits::default());
        d.feed(text.as_bytes());
        if let Ok(Some(Event::Header(h))) = d.next_event()
            && let Some(id) = h.id
        {
            self.literals.insert(id);
        }
    }

    /// A `<db:result>` or `<handshake>` whose text is what the harness computes for the
    /// stream (`{S.key}`, `{S.handshake}`): written as that variable, so a re-run, with its
    /// new stream id, sends a correct key again (XEP-0185 §3; XEP-0114 §3).
    fn dialback_expr(&mut self, stream: &str, raw: &str, out: String) -> String {
        let Some((name, text)) = element_name_and_text(raw) else {
            return out;
        };
        let text = text.trim().to_string();
        if text.is_empty() {
            return out;
        }
        let Some(st) = self.streams.get(stream) else {
            return out;
        };
        if st.origin != Origin::Actor {
            return out;
        }
        let Some(sid) = self.stream_id(stream) else {
            return out;
        };
        let Some(actor) = self.actor(&st.actor) else {
            return out;
        };
        let exact_only = self.trace.from_report && !actor.inferred;
        let expr = match (&actor.spec, name.as_str()) {
            // `{S.key}` is the key for the actor's own domain; a result for another sender
            // domain multiplexed on the stream (XEP-0220 §2.6.1) stays as written.
            (ActorSpec::Xmpp { domain, .. }, "db:result")
                if attr_values(raw).iter().any(|v| v == domain) =>
            {
                let exact = crate::xmpp::dialback::key(&actor.secret(), &self.sut, domain, &sid);
                // With the secret known (a report, actors from its scenario) a deliberately
                // wrong key stays a literal; otherwise any key on the stream is taken as the
                // key for it.
                (exact == text || !exact_only).then(|| format!("{{{stream}.key}}"))
            }
            (ActorSpec::Component { .. }, "handshake") => {
                let exact = crate::xmpp::component::handshake_digest(&sid, &actor.secret());
                (exact == text || !exact_only).then(|| format!("{{{stream}.handshake}}"))
            }
            _ => None,
        };
        match expr {
            Some(e) => {
                self.remember(&text, e.clone());
                self.literals.remove(&text);
                replace_bounded(&out, &escape_braces(&text), &e, false)
            }
            None => out,
        }
    }

    fn stream_id(&self, stream: &str) -> Option<String> {
        self.streams.get(stream).and_then(|s| s.sut_id.clone())
    }

    fn xml_expect(&mut self, r: &Record, gap: Duration) {
        let text = r.text();
        let template = match r.kind {
            Kind::StreamClose => Some("</stream:stream>".to_string()),
            Kind::Header => self.header_template(&r.stream, &r.raw),
            _ => self.element_template(&r.stream, &r.raw),
        };
        let Some(template) = template else {
            self.pending_comments.push(format!(
                "the SUT sent a unit the importer could not parse; left out: {text:?}"
            ));
            return;
        };
        let st = DraftStep::new("expect", &r.stream)
            .str("xml", template)
            .str("timeout", timeout_for(gap));
        self.push(st);
    }

    fn header_template(&mut self, stream: &str, raw: &[u8]) -> Option<String> {
        let mut d = Decoder::new(Limits::default());
        d.feed(raw);
        let Ok(Some(Event::Header(h))) = d.next_event() else {
            return None;
        };
        if let Some(st) = self.streams.get_mut(stream) {
            st.decoder = Some(d);
        }
        Some(self.header_text(stream, &h))
    }

    fn header_text(&mut self, stream: &str, h: &StreamHeader) -> String {
        let prefix = h.stream_prefix.clone().unwrap_or_else(|| "stream".into());
        let mut out = format!(
            "<{prefix}:stream xmlns='{}' xmlns:{prefix}='{}'",
            h.content_ns,
            ns::STREAM
        );
        for (p, uri) in &h.declarations {
            if let Some(p) = p
                && *p != prefix
            {
                out.push_str(&format!(" xmlns:{p}='{uri}'"));
            }
        }
        for a in &h.attrs {
            let name = if a.ns == crate::xmpp::element::XML_NS {
                format!("xml:{}", a.name)
            } else {
                a.name.clone()
            };
            let value = if a.name == "id" && a.ns.is_empty() && !a.value.is_empty() {
                if let Some(st) = self.streams.get_mut(stream) {
                    st.sut_id = Some(a.value.clone());
                }
                match self.lookup(&a.value) {
                    Some(e) => e.to_string(),
                    None => {
                        let cap = self.fresh(&format!("{stream}_id"));
                        self.remember(&a.value, format!("{{{cap}}}"));
                        format!("{{id:{cap}}}")
                    }
                }
            } else {
                self.expect_value(&a.value, None)
            };
            out.push_str(&format!(
                " {name}='{}'",
                crate::xmpp::element::escape_attr(&value)
            ));
        }
        out.push('>');
        out
    }

    fn element_template(&mut self, stream: &str, raw: &[u8]) -> Option<String> {
        let decoded = self
            .streams
            .get_mut(stream)
            .and_then(|st| st.decoder.as_mut())
            .and_then(|d| {
                d.feed(raw);
                match d.next_event() {
                    Ok(Some(Event::Element(el))) => Some(el),
                    _ => None,
                }
            });
        let el = match decoded {
            Some(el) => el,
            None => {
                // No header seen, or the decoder is out of step (a unit it did not see):
                // parse the unit alone in the default S2S context.
                let ctx = NsContext::new(ns::SERVER)
                    .with_prefix("stream", ns::STREAM)
                    .with_prefix("db", ns::DIALBACK);
                crate::xmpp::codec::parse_element(&String::from_utf8_lossy(raw), &ctx).ok()?
            }
        };
        let templ = self.element(&el);
        // Every namespace declared explicitly: the template means the same in any stream
        // context it is matched in (a `jabber:client` leak stays visible).
        Some(templ.to_xml(&NsContext::new("")))
    }

    fn element(&mut self, el: &Element) -> Element {
        let mut out = el.clone();
        for a in &mut out.attrs {
            a.value = if !a.ns.is_empty() {
                self.literal(&a.value)
            } else if ANY_VALUE_ATTRS.contains(&a.name.as_str()) && !a.value.is_empty() {
                "{any}".into()
            } else if a.name == "id" {
                self.expect_value(&a.value, Some("id"))
            } else {
                self.expect_value(&a.value, None)
            };
        }
        let dialback = el.ns == ns::DIALBACK;
        let mut children = Vec::new();
        for c in &el.children {
            children.push(match c {
                Node::Element(e) => Node::Element(self.element(e)),
                Node::Text(t) => {
                    let trimmed = t.trim();
                    if trimmed.is_empty() {
                        Node::Text(t.clone())
                    } else {
                        let v = self.expect_value(trimmed, dialback.then_some("key"));
                        Node::Text(v)
                    }
                }
            });
        }
        out.children = children;
        out
    }

    // ---- SIP ----------------------------------------------------------------------------

    fn sip_send(&mut self, r: &Record) {
        let text = r.text();
        let Some((head, body)) = split_sip(&text) else {
            // Not a message: it went out as written (`raw = true`).
            let st = DraftStep::new("send", &r.actor)
                .str("sip", self.send_text(&text))
                .with("raw", Value::Bool(true));
            self.push(st);
            return;
        };
        let mut lines = head.lines();
        let start = lines.next().unwrap_or("");
        let response = start.starts_with("SIP/2.0");
        let drop = if response {
            SIP_RESPONSE_DROP
        } else {
            SIP_REQUEST_DROP
        };
        // A request inside a dialog the SUT created (its Call-ID is the SUT's): From, To
        // and CSeq come from the dialog (RFC 3261 §12.2.1.1), whose tags are new in a re-run.
        let in_sut_dialog = !response
            && head.lines().any(|l| {
                l.split_once(':').is_some_and(|(n, v)| {
                    SIP_TOKEN_HEADERS.contains(&lower(n.trim()).as_str())
                        && self.lookup(v.trim()).is_some()
                })
            });
        let mut out = vec![start.to_string()];
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                out.push(line.to_string());
                continue;
            };
            let n = lower(name.trim());
            if drop.contains(&n.as_str())
                || (in_sut_dialog && SIP_DIALOG_HEADERS.contains(&n.as_str()))
            {
                continue;
            }
            // The actor's own Contact carries this run's port: the harness writes its own.
            // A Contact the scenario wrote itself (no port of this run) stays.
            if (n == "contact" || n == "m") && is_run_contact(value) {
                continue;
            }
            for v in sip_tokens(value) {
                self.literals.insert(v);
            }
            out.push(line.to_string());
        }
        let mut msg = out.join("\n");
        msg.push('\n');
        if !body.is_empty() {
            // An empty line, the body, and the line break the harness drops (the one
            // before the closing quotes).
            msg.push('\n');
            msg.push_str(body);
            msg.push('\n');
        }
        let st = DraftStep::new("send", &r.actor).str("sip", self.send_text(&msg));
        self.push(st);
    }

    fn sip_expect(&mut self, r: &Record, gap: Duration) {
        let text = r.text();
        let Some((head, body)) = split_sip(&text) else {
            self.pending_comments.push(format!(
                "the SUT sent a SIP message the importer could not split; left out: {text:?}"
            ));
            return;
        };
        let mut lines = head.lines();
        let start = lines.next().unwrap_or("");
        let start_t = if start.starts_with("SIP/2.0") {
            // The reason phrase is for humans (RFC 3261 §21): the code decides.
            start
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            let mut w = start.split_whitespace();
            let method = w.next().unwrap_or("");
            let uri = w.next().unwrap_or("");
            if uri.contains("127.") {
                format!("{method} {{any}}")
            } else {
                format!("{method} {}", self.expect_value(uri, None))
            }
        };
        let mut out = vec![start_t];
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let n = lower(name.trim());
            // The SUT's Contact is where in-dialog requests go (RFC 3261 §12.1.1): its
            // address changes with every run, so it is captured for the actor's requests.
            if (n == "contact" || n == "m")
                && let (Some(a), Some(b)) = (value.find('<'), value.find('>'))
                && a < b
                && let Some(uri) = value.get(a + 1..b)
            {
                let v = self.expect_value(uri.trim(), Some("contact"));
                out.push(format!("{}: <{v}>", name.trim()));
                continue;
            }
            if SIP_EXPECT_SKIP.contains(&n.as_str())
                || (value.contains("127.0.0.1") && !SIP_TOKEN_HEADERS.contains(&n.as_str()))
            {
                continue;
            }
            let value = value.trim();
            let v = if SIP_TOKEN_HEADERS.contains(&n.as_str()) {
                self.expect_value(value, Some("call"))
            } else if n == "subscription-state" {
                // The expires countdown depends on timing.
                let mut parts: Vec<String> = Vec::new();
                for p in value.split(';') {
                    if lower(p.trim()).starts_with("expires=") {
                        parts.push("expires={any}".into());
                    } else {
                        parts.push(self.literal(p));
                    }
                }
                parts.join(";")
            } else {
                self.sip_params(value)
            };
            out.push(format!("{}: {v}", name.trim()));
        }
        let mut msg = out.join("\n");
        msg.push('\n');
        let body_t = body.trim_end_matches(['\r', '\n']);
        if !body_t.trim().is_empty() {
            msg.push('\n');
            if body_t.trim_start().starts_with('<') {
                let ctx = NsContext::new("");
                match crate::xmpp::codec::parse_element(body_t, &ctx) {
                    Ok(el) => {
                        let t = self.element(&el);
                        msg.push_str(&t.to_xml(&ctx));
                    }
                    Err(_) => msg.push_str(&self.literal(body_t.trim())),
                }
            } else {
                msg.push_str(&self.literal(body_t.trim()));
            }
            msg.push('\n');
        }
        let st = DraftStep::new("expect", &r.actor)
            .str("sip", msg)
            .str("timeout", timeout_for(gap));
        self.push(st);
    }

    /// A SIP header value: `tag` (and `branch`) parameters are the SUT's fresh tokens
    /// (RFC 3261 §19.3): captured or referenced; the rest literal.
    fn sip_params(&mut self, value: &str) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (k, p) in split_params(value).into_iter().enumerate() {
            if k > 0
                && let Some((pn, pv)) = p.split_once('=')
            {
                let pn_l = lower(pn.trim());
                if pn_l == "tag" || pn_l == "branch" {
                    let v = self.expect_value(pv.trim(), Some("tag"));
                    parts.push(format!("{}={v}", pn.trim()));
                    continue;
                }
            }
            parts.push(self.literal(&p));
        }
        parts.join(";")
    }

    // ---- failures -----------------------------------------------------------------------

    /// A report of a failed run: the draft ends with the expectation that did not hold, in
    /// place of the unit that came instead, so it fails the same way.
    fn failure(&mut self) {
        let Some(f) = &self.trace.failure else { return };
        if f.got_unit
            && let Some(pos) = self
                .steps
                .iter()
                .rposition(|s| s.action() == Some(("expect", f.stream.as_str())))
        {
            self.steps.truncate(pos);
        }
        let sip = self.is_sip_actor(&f.stream);
        // The report's template keeps its placeholders (`{any}`, `{id:x}`): only the SUT's
        // domain is written as `{sut}` again.
        let expected = match self.trace.sut_domains.first() {
            Some(d) => replace_bounded(&f.expected, d, "{sut}", true),
            None => f.expected.clone(),
        };
        let mut st =
            DraftStep::new("expect", &f.stream).str(if sip { "sip" } else { "xml" }, expected);
        st.comments.push(
            "the expectation that did not hold in the imported run (values as it saw them)".into(),
        );
        self.push(st);
    }
}

/// `step 6: text` (the harness's note for a step's `note`) → `text`.
fn step_note(detail: &str) -> Option<&str> {
    let rest = detail.strip_prefix("step ")?;
    let (n, text) = rest.split_once(": ")?;
    n.chars().all(|c| c.is_ascii_digit()).then_some(text)
}

/// `<auth …>`, `<success/>` … in the SASL namespace (RFC 6120 §6.4).
fn is_sasl(raw: &[u8], name: &str) -> bool {
    let t = String::from_utf8_lossy(raw);
    let t = t.trim_start();
    t.starts_with(&format!("<{name}")) && t.contains(ns::SASL)
}

/// RFC 4648 §4 base64, for comparing an `<auth>` text with an actor's domain.
fn is_starttls(raw: &[u8]) -> bool {
    let t = String::from_utf8_lossy(raw);
    let t = t.trim_start();
    (t.starts_with("<starttls") || t.contains(":starttls")) && t.contains(ns::TLS)
}

/// The qualified name and the text of a simple element written `<q …>text</q>`.
fn element_name_and_text(raw: &str) -> Option<(String, String)> {
    let t = raw.trim();
    let rest = t.strip_prefix('<')?;
    let end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
    let name = rest.get(..end)?.to_string();
    let open_end = t.find('>')?;
    let close = t.rfind("</")?;
    let text = t.get(open_end + 1..close)?.to_string();
    if text.contains('<') {
        return None;
    }
    Some((name, text))
}

/// Attribute values written in a unit (single or double quoted), for the literals set.
fn attr_values(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b.get(i) == Some(&b'=') && matches!(b.get(i + 1), Some(b'\'') | Some(b'"')) {
            let q = b.get(i + 1).copied().unwrap_or(b'\'');
            if let Some(len) = b.get(i + 2..).and_then(|r| r.iter().position(|c| *c == q)) {
                if let Some(v) = s.get(i + 2..i + 2 + len) {
                    out.push(v.to_string());
                }
                i += 2 + len;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Tokens of a SIP header value an actor wrote (its tags, Call-ID), for the literals set.
fn sip_tokens(value: &str) -> Vec<String> {
    let mut out = vec![value.trim().to_string()];
    for p in split_params(value).into_iter().skip(1) {
        if let Some((_, v)) = p.split_once('=') {
            out.push(v.trim().to_string());
        }
    }
    out
}

/// Split at `;` outside `<…>` and quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut angle, mut quote) = (false, false);
    for c in value.trim().chars() {
        match c {
            '"' => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ';' if !angle && !quote => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// A SIP message's head (lines joined by LF) and body.
fn split_sip(text: &str) -> Option<(String, &str)> {
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (text.get(..i)?, text.get(i + 4..)?),
        None => {
            let i = text.find("\n\n")?;
            (text.get(..i)?, text.get(i + 2..)?)
        }
    };
    let first = head.lines().next()?;
    let looks = first.starts_with("SIP/2.0 ") || first.trim_end().ends_with("SIP/2.0");
    looks.then(|| (head.replace("\r\n", "\n"), body))
}

/// A name usable as a capture: `[a-z][a-z0-9_]*`.
pub(crate) fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert(0, 'x');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("from='sut.test'", "from='{sut}'")]
    #[case("from='sip.sut.test'", "from='sip.sut.test'")]
    #[case("alice@sut.test/res", "alice@{sut}/res")]
    #[case("sut.testing", "sut.testing")]
    #[case("sut.test.", "{sut}.")]
    fn domains_replaced_only_where_they_stand_alone(#[case] hay: &str, #[case] want: &str) {
        assert_eq!(replace_bounded(hay, "sut.test", "{sut}", true), want);
    }

    #[test]
    fn durations_round_up_to_100ms() {
        assert_eq!(fmt_duration(Duration::from_millis(1001)), "1100ms");
        assert_eq!(fmt_duration(Duration::from_millis(2000)), "2s");
        assert_eq!(timeout_for(Duration::from_millis(250)), "1500ms");
    }

    #[test]
    fn sip_split_and_params() {
        let (head, body) =
            split_sip("SIP/2.0 200 OK\r\nTo: <sip:a@b>;tag=x\r\n\r\nhi").unwrap_or_default();
        assert_eq!(head, "SIP/2.0 200 OK\nTo: <sip:a@b>;tag=x");
        assert_eq!(body, "hi");
        assert_eq!(
            split_params("\"a;b\" <sip:x;lr>;tag=1"),
            vec!["\"a;b\" <sip:x;lr>", "tag=1"]
        );
        assert!(split_sip("not sip\r\n\r\n").is_none());
    }

    #[test]
    fn base64_as_rfc4648() {
        assert_eq!(base64_encode(b"remote.test"), "cmVtb3RlLnRlc3Q=");
        assert_eq!(base64_encode(b"sut.test"), "c3V0LnRlc3Q=");
    }

    #[test]
    fn step_notes_and_names() {
        assert_eq!(step_note("step 12: the SUT dials"), Some("the SUT dials"));
        assert_eq!(step_note("stepped: no"), None);
        assert_eq!(sanitize("remote.test"), "remote_test");
        assert_eq!(sanitize("9x"), "x9x");
        assert_eq!(
            element_name_and_text("<db:result from='a' to='b'>abc</db:result>"),
            Some(("db:result".into(), "abc".into()))
        );
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use crate::import::{ActorDecl, Trace};

    fn rec(dir: Dir, kind: Kind, stream: &str, raw: &[u8]) -> Record {
        Record {
            at: Duration::from_millis(1),
            actor: "rx".into(),
            stream: stream.into(),
            dir,
            kind,
            raw: raw.to_vec(),
            detail: String::new(),
        }
    }

    /// Whatever the records hold — units on streams never opened, truncated XML, bytes that
    /// are not UTF-8, SIP that is not SIP, TLS out of nowhere — the draft is built and
    /// written without a panic, and what could not be taken says so.
    #[test]
    fn garbage_records_make_a_draft_not_a_panic() {
        let garbage: Vec<Record> = vec![
            rec(Dir::FromSut, Kind::Element, "nowhere", b"<message"),
            rec(Dir::ToSut, Kind::Connected, "in", b""),
            rec(Dir::FromSut, Kind::Header, "in", b"<stream:stream"),
            rec(Dir::FromSut, Kind::Element, "in", b"<a x='{'>}</a>"),
            rec(Dir::ToSut, Kind::Element, "in", &[0xff, 0xfe, b'<']),
            rec(
                Dir::ToSut,
                Kind::Element,
                "in",
                b"<db:result>\xe2\x82</db:result>",
            ),
            rec(Dir::FromSut, Kind::Sip, "udp", b"SIP/2.0\r\n\r\n"),
            rec(Dir::ToSut, Kind::Sip, "udp", b"garbage"),
            rec(
                Dir::FromSut,
                Kind::Element,
                "in",
                b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            ),
            rec(Dir::ToSut, Kind::Tls, "in", b""),
            rec(Dir::FromSut, Kind::Undecodable, "in", b"\x00\x01"),
            rec(Dir::FromSut, Kind::Reset, "in", b""),
            rec(Dir::ToSut, Kind::Note, "", b""),
        ];
        let trace = Trace {
            source: "x".into(),
            sut_domains: vec!["sut.test".into()],
            actors: vec![ActorDecl {
                name: "rx".into(),
                spec: ActorSpec::Xmpp {
                    domain: "remote.test".into(),
                    secret: None,
                    cert: None,
                    partner: None,
                },
                comment: None,
                inferred: true,
            }],
            records: garbage,
            failure: Some(crate::import::FailureHint {
                stream: "in".into(),
                expected: "<x/>".into(),
                got_unit: true,
            }),
            ..Trace::default()
        };
        let d = draft(&trace);
        let text = crate::import::render(&d);
        assert!(
            text.contains("could not parse") || text.contains("not UTF-8"),
            "{text}"
        );
        // Literal braces the SUT sent are doubled, never placeholders.
        assert!(
            text.contains("<a xmlns='jabber:server' x='{{'>}}</a>"),
            "{text}"
        );
        assert!(!text.contains("harness: \n"), "{text}");
    }
}
