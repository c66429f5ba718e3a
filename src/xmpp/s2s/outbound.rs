//! The initiating side of an S2S stream (XEP-0220 §2.1.1, §2.1.2), with STARTTLS as TLS
//! client (RFC 6120 §5.4) and SASL EXTERNAL as initiating entity (XEP-0178 §3).

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::features::{PeerFeatures, STARTTLS_XML, SaslCondition, external_auth_xml};
use super::{
    Error, HeaderOut, Input, LocalConfig, Negotiation, Outbox, Output, PartnerPolicy,
    PeerMisbehaved, STREAM_CLOSE, Timer, Verdict, VerifyRequest, db_verdict, is_stanza_name,
    parse_version, s2s_write_ctx,
};
use crate::tls::CertVerdict;
use crate::xmpp::codec::{CodecError, Decoder, Event, StreamHeader};
use crate::xmpp::conditions::{StanzaCondition, StanzaError, StreamCondition, StreamError, bounce};
use crate::xmpp::dialback;
use crate::xmpp::element::{Element, NsContext};
use crate::xmpp::ns;

/// ```text
///  ExpectStreamHeader ─1.0 header─▶ ExpectFeatures ─features─▶ Ready ─close/error/idle─▶ Closed
///     ▲    └──────legacy header (no version, STR-04)──────────────▲
///     │                      │ <starttls/>          │ <auth EXTERNAL>    ▲ <failure/>: dialback
///     │                      ▼                      ▼                    │ over TLS (D-17)
///     │               ExpectProceed        ExpectSaslOutcome ────────────┘
///     │                 │ <proceed/>                │ <success/>: new header
///     │                 ▼                           │
///     ├──TlsEstablished── TlsHandshake              │
///     └─────────────────────────────────────────────┘
/// ```
#[derive(Debug)]
enum State {
    ExpectStreamHeader,
    ExpectFeatures {
        stream_id: String,
    },
    /// `<starttls/>` sent (RFC 6120 §5.4.2).
    ExpectProceed {
        stream_id: String,
    },
    /// `<proceed/>` received; the driver runs the handshake.
    TlsHandshake,
    /// `<auth mechanism='EXTERNAL'>` sent (RFC 6120 §6.4.2).
    ExpectSaslOutcome {
        stream_id: String,
    },
    Ready {
        stream_id: String,
    },
    Closed(Option<Error>),
}

#[derive(Debug)]
enum PairState {
    /// Stanzas waiting for the stream to become ready before the `<db:result>` goes out.
    WaitingForStream,
    /// `<db:result>` sent, waiting for the verdict (XEP-0220 §2.1.1).
    Pending {
        deadline: Instant,
    },
    Authorized,
}

#[derive(Debug)]
struct Pair {
    from: String,
    state: PairState,
    queue: Vec<Element>,
}

#[derive(Debug)]
struct PendingVerify {
    req: VerifyRequest,
    /// `None` until sent (the stream was not ready yet).
    deadline: Option<Instant>,
}

/// One stream we opened to `remote` (`jabber:server`).
#[derive(Debug)]
pub struct OutboundSession {
    cfg: Arc<LocalConfig>,
    local: String,
    remote: String,
    decoder: Decoder,
    state: State,
    out: Outbox,
    ctx: NsContext,
    pairs: Vec<Pair>,
    verifies: Vec<PendingVerify>,
    establish_deadline: Option<Instant>,
    idle_deadline: Instant,
    /// The policy for `remote`, fixed at connect time.
    policy: PartnerPolicy,
    /// `Some` once TLS is up: the verdict on the receiving server's certificate.
    tls: Option<Option<CertVerdict>>,
    /// SASL EXTERNAL authenticated `local` on this connection.
    sasl_ok: bool,
    keepalive_send_at: Option<Instant>,
}

impl OutboundSession {
    /// Call once the TCP connection is up: queues our initial header (RFC 6120 §4.7, STR-01:
    /// to = the target domain, from = ours, version 1.0, xmlns:db, no id).
    pub fn new(now: Instant, cfg: Arc<LocalConfig>, local: &str, remote: &str) -> Self {
        let mut s = OutboundSession {
            decoder: Decoder::new(cfg.limits.codec),
            establish_deadline: Some(now + cfg.timeouts.establish),
            idle_deadline: now + cfg.timeouts.idle,
            policy: *cfg.policy(remote),
            cfg,
            local: local.to_string(),
            remote: remote.to_string(),
            state: State::ExpectStreamHeader,
            out: Outbox::default(),
            ctx: s2s_write_ctx(),
            pairs: Vec::new(),
            verifies: Vec::new(),
            tls: None,
            sasl_ok: false,
            keepalive_send_at: None,
        };
        s.send_header();
        s.out.take_wrote();
        s
    }

    /// Our header, the same for every (re)start (RFC 6120 §4.3.3: the initiator opens each
    /// new stream).
    fn send_header(&mut self) {
        self.out.header(&HeaderOut {
            content_ns: ns::SERVER,
            from: Some(&self.local),
            to: Some(&self.remote),
            id: None,
            version: Some("1.0"),
            lang: Some("en"),
            dialback: true,
        });
    }

    /// Is the connection under TLS?
    pub fn is_encrypted(&self) -> bool {
        self.tls.is_some()
    }

    /// Did SASL EXTERNAL authenticate us on this connection?
    pub fn sasl_authenticated(&self) -> bool {
        self.sasl_ok
    }

    /// Our domain, as named in our header.
    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn remote(&self) -> &str {
        &self.remote
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// The id of the peer's response header, once received.
    pub fn stream_id(&self) -> Option<&str> {
        match &self.state {
            State::ExpectFeatures { stream_id }
            | State::ExpectProceed { stream_id }
            | State::ExpectSaslOutcome { stream_id }
            | State::Ready { stream_id } => Some(stream_id),
            _ => None,
        }
    }

    /// Is `(from, remote)` authorized on this stream?
    pub fn is_authorized(&self, from: &str) -> bool {
        self.pairs
            .iter()
            .any(|p| p.from.eq_ignore_ascii_case(from) && matches!(p.state, PairState::Authorized))
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let pairs = self.pairs.iter().filter_map(|p| match p.state {
            PairState::Pending { deadline } => Some(deadline),
            _ => None,
        });
        let verifies = self.verifies.iter().filter_map(|v| v.deadline);
        let idle = self.is_idle().then_some(self.idle_deadline);
        pairs
            .chain(verifies)
            .chain(self.establish_deadline)
            .chain(idle)
            .chain(self.keepalive_send_at)
            .min()
    }

    /// Bookkeeping after every call: when to send the next whitespace keepalive (KA-01:
    /// only on an established stream, never during TLS or SASL negotiation).
    fn after(&mut self, now: Instant) {
        let wrote = self.out.take_wrote();
        let established = matches!(self.state, State::Ready { .. })
            && self
                .pairs
                .iter()
                .any(|p| matches!(p.state, PairState::Authorized));
        self.keepalive_send_at = match (established, self.cfg.timeouts.keepalive_send) {
            (true, Some(iv)) if wrote || self.keepalive_send_at.is_none() => Some(now + iv),
            (true, Some(_)) => self.keepalive_send_at,
            _ => None,
        };
    }

    /// Nothing in flight: the idle timer may close the stream.
    fn is_idle(&self) -> bool {
        self.verifies.is_empty() && self.pairs.iter().all(|p| p.queue.is_empty())
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.check_open()?;
        let r = self.on_timeout(now);
        self.after(now);
        r
    }

    fn on_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if self.keepalive_send_at.is_some_and(|d| d <= now) {
            debug!(remote = %self.remote, timer = ?Timer::KeepAliveSend, "whitespace keepalive");
            // RFC 6120 §4.6.1: one space between top-level elements.
            self.out.transmit(" ");
        }
        if self.establish_deadline.is_some_and(|d| d <= now) {
            debug!(remote = %self.remote, timer = ?Timer::Establish, "outbound stream not established in time");
            return Err(self.fail(PeerMisbehaved::Timeout));
        }
        if self.is_idle() && self.idle_deadline <= now {
            debug!(remote = %self.remote, timer = ?Timer::Idle, "closing idle outbound stream");
            self.close(None);
            return Ok(());
        }
        // XEP-0220 §2.1.1: a dialback answer that never comes counts as a dialback error.
        for i in 0..self.pairs.len() {
            if matches!(self.pairs[i].state, PairState::Pending { deadline } if deadline <= now) {
                info!(remote = %self.remote, from = %self.pairs[i].from, "no dialback answer in time");
                let queue = std::mem::take(&mut self.pairs[i].queue);
                self.pairs[i].state = PairState::WaitingForStream;
                self.bounce_all(queue, StanzaCondition::RemoteServerTimeout);
            }
        }
        self.pairs
            .retain(|p| !(matches!(p.state, PairState::WaitingForStream) && p.queue.is_empty()));
        let mut expired = Vec::new();
        self.verifies.retain(|v| {
            let due = v.deadline.is_some_and(|d| d <= now);
            if due {
                expired.push(v.req.clone());
            }
            !due
        });
        for req in expired {
            self.verify_result(req, Verdict::Error(StanzaCondition::RemoteServerTimeout));
        }
        Ok(())
    }

    /// Send a stanza from `from` (one of our domains) to the remote domain. Held until the
    /// pair is authorized; the first one triggers our `<db:result>` (XEP-0220 §2.1.1, DB-02,
    /// DB-03). Undeliverable stanzas come back as [`Output::Bounce`].
    pub fn send_stanza(&mut self, now: Instant, from: &str, stanza: Element) {
        self.queue_stanza(now, from, stanza);
        self.after(now);
    }

    fn queue_stanza(&mut self, now: Instant, from: &str, stanza: Element) {
        if self.is_closed() {
            self.bounce_all(vec![stanza], StanzaCondition::RemoteServerTimeout);
            return;
        }
        self.idle_deadline = now + self.cfg.timeouts.idle;
        let ready = matches!(self.state, State::Ready { .. });
        let i = match self
            .pairs
            .iter()
            .position(|p| p.from.eq_ignore_ascii_case(from))
        {
            Some(i) => i,
            None => {
                if self.pairs.len() >= self.cfg.limits.max_pairs {
                    self.bounce_all(vec![stanza], StanzaCondition::ResourceConstraint);
                    return;
                }
                self.pairs.push(Pair {
                    from: from.to_string(),
                    state: PairState::WaitingForStream,
                    queue: Vec::new(),
                });
                self.pairs.len() - 1
            }
        };
        match self.pairs[i].state {
            PairState::Authorized => {
                self.out.element(&stanza, &self.ctx);
                return;
            }
            _ if self.pairs[i].queue.len() >= self.cfg.limits.max_queued => {
                self.bounce_all(vec![stanza], StanzaCondition::ResourceConstraint);
                return;
            }
            _ => self.pairs[i].queue.push(stanza),
        }
        if ready && matches!(self.pairs[i].state, PairState::WaitingForStream) {
            self.start_pair(now, i);
            self.drop_refused();
        }
    }

    /// Ask the peer, as authoritative server for `req.originating`, about a key we received
    /// on an inbound stream (XEP-0220 §2.1.2). Allowed before our own pairs are authorized
    /// (piggybacking). The answer comes back as [`Output::VerifyResult`].
    pub fn request_verify(&mut self, now: Instant, req: VerifyRequest) {
        if self.is_closed() {
            self.verify_result(req, Verdict::Error(StanzaCondition::RemoteServerTimeout));
            return;
        }
        self.idle_deadline = now + self.cfg.timeouts.idle;
        let mut v = PendingVerify {
            req,
            deadline: None,
        };
        if matches!(self.state, State::Ready { .. }) {
            self.send_verify(now, &mut v);
        }
        self.verifies.push(v);
        self.after(now);
    }

    /// Close from our side: optional stream error, `</stream:stream>` (RFC 6120 §4.4); held
    /// stanzas bounce with `remote-server-timeout`.
    pub fn close(&mut self, error: Option<StreamError>) {
        if self.is_closed() {
            return;
        }
        if let Some(e) = &error {
            self.out.element(&e.to_element(), &self.ctx);
        }
        self.out.transmit(STREAM_CLOSE);
        self.teardown();
        self.out.push(Output::Close(error));
        self.state = State::Closed(Some(Error::LocallyClosed));
    }

    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), Error> {
        self.check_open()?;
        let r = self.on_input(now, input);
        self.after(now);
        r
    }

    fn on_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), Error> {
        match input {
            Input::Data(_) if matches!(self.state, State::TlsHandshake) => Err(Error::Misuse),
            Input::Data(data) => {
                self.idle_deadline = now + self.cfg.timeouts.idle;
                self.decoder.feed(data);
                while !matches!(self.state, State::Closed(_) | State::TlsHandshake) {
                    match self.decoder.next_event() {
                        Ok(None) => break,
                        Ok(Some(ev)) => self.on_event(now, ev)?,
                        Err(e) => return Err(self.fail_codec(e)),
                    }
                }
                Ok(())
            }
            Input::Eof => {
                // XEP-0220 §2.1.1: closed while waiting = dialback error (DB-04).
                info!(remote = %self.remote, "outbound connection closed by the peer");
                self.teardown();
                self.out.push(Output::Close(None));
                self.state = State::Closed(Some(Error::ConnectionLost));
                Ok(())
            }
            Input::VerifyResult { .. } => Err(Error::Misuse),
            Input::TlsEstablished { peer } => {
                if !matches!(self.state, State::TlsHandshake) {
                    return Err(Error::Misuse);
                }
                // RFC 6120 §13.7.2.1 (CERT-04): the reference identity is the domain we
                // dialled. A server it does not authenticate may still get dialback over
                // TLS (TLS-09: protected, and dialback checks the other way round); with
                // dialback ruled out by policy there is nothing left to trust: abort.
                let authenticated = peer.as_ref().is_some_and(|v| v.authenticates(&self.remote));
                if !authenticated && !self.policy.may_tls_dialback() {
                    info!(remote = %self.remote, problems = ?peer.as_ref().map(|v| v.problems.clone()), "receiving server not authenticated by its certificate");
                    let se = StreamError::with_text(
                        PeerMisbehaved::UnauthenticatedServer.condition(),
                        format!("certificate does not authenticate {}", self.remote),
                    );
                    // A new header first: the error belongs to the stream over TLS.
                    self.send_header();
                    let err = Error::PeerMisbehaved(PeerMisbehaved::UnauthenticatedServer);
                    return Err(self.fail_with(se, err));
                }
                match &peer {
                    Some(v) => info!(
                        remote = %self.remote,
                        authenticated = v.authenticates(&self.remote),
                        subject = ?v.subject,
                        problems = ?v.problems,
                        "TLS established"
                    ),
                    None => info!(remote = %self.remote, "TLS established; no server certificate"),
                }
                self.tls = Some(peer);
                // RFC 6120 §5.4.3.3: a new stream over TLS, everything before forgotten.
                self.send_header();
                self.state = State::ExpectStreamHeader;
                Ok(())
            }
            Input::TlsFailed => {
                if !matches!(self.state, State::TlsHandshake) {
                    return Err(Error::Misuse);
                }
                info!(remote = %self.remote, "TLS handshake failed");
                self.teardown();
                self.out.push(Output::Close(None));
                self.state = State::Closed(Some(Error::TlsFailed));
                Err(Error::TlsFailed)
            }
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        match &self.state {
            State::Closed(Some(e)) => Err(e.clone()),
            State::Closed(None) => Err(Error::ConnectionLost),
            _ => Ok(()),
        }
    }

    fn on_event(&mut self, now: Instant, ev: Event) -> Result<(), Error> {
        let state = std::mem::replace(&mut self.state, State::Closed(None));
        match (state, ev) {
            (s, Event::Whitespace(_)) => {
                self.state = s;
                Ok(())
            }
            (State::ExpectStreamHeader, Event::Header(h)) => self.on_header(now, &h),
            (
                s @ (State::ExpectFeatures { .. }
                | State::ExpectProceed { .. }
                | State::ExpectSaslOutcome { .. }
                | State::Ready { .. }),
                Event::Element(el),
            ) => {
                self.state = s;
                self.on_element(now, el)
            }
            (_, Event::Close) => {
                self.out.transmit(STREAM_CLOSE);
                self.teardown();
                self.out.push(Output::Close(None));
                self.state = State::Closed(None);
                Ok(())
            }
            (s, _) => {
                self.state = s;
                Err(self.fail(PeerMisbehaved::UnexpectedStreamEvent))
            }
        }
    }

    fn on_header(&mut self, now: Instant, h: &StreamHeader) -> Result<(), Error> {
        self.state = State::ExpectStreamHeader;
        let stream_ns = h
            .declarations
            .iter()
            .find(|(p, _)| *p == h.stream_prefix)
            .map(|(_, u)| u.as_str());
        if stream_ns.is_some_and(|u| u != ns::STREAM) {
            return Err(self.fail(PeerMisbehaved::WrongStreamNamespace));
        }
        if h.content_ns != ns::SERVER {
            return Err(self.fail(PeerMisbehaved::WrongContentNamespace));
        }
        if let Some(from) = h.from.as_deref()
            && !from.eq_ignore_ascii_case(&self.remote)
        {
            // RFC 6120 §4.7.1 interop note: be lenient, the key names the target anyway.
            debug!(remote = %self.remote, from, "response header from another domain");
        }
        // RFC 6120 §4.7.3: the receiving entity MUST send an id; dialback keys need it.
        let Some(id) = h.id.clone().filter(|i| !i.is_empty()) else {
            return Err(self.fail(PeerMisbehaved::MissingStreamId));
        };
        let v1 = h
            .version
            .as_deref()
            .and_then(parse_version)
            .is_some_and(|v| v >= (1, 0));
        if v1 {
            // RFC 6120 §4.3.2: features follow a 1.0 header.
            self.state = State::ExpectFeatures { stream_id: id };
        } else {
            // STR-04: a legacy peer sends no features; dialback can start now.
            self.state = State::Ready { stream_id: id };
            self.on_ready(now);
        }
        Ok(())
    }

    fn on_ready(&mut self, now: Instant) {
        self.establish_deadline = None;
        for i in 0..self.pairs.len() {
            if matches!(self.pairs[i].state, PairState::WaitingForStream)
                && !self.pairs[i].queue.is_empty()
            {
                self.start_pair(now, i);
            }
        }
        self.drop_refused();
        let mut verifies = std::mem::take(&mut self.verifies);
        for v in &mut verifies {
            if v.deadline.is_none() {
                self.send_verify(now, v);
            }
        }
        self.verifies = verifies;
    }

    /// The stream is ready and pair `i` has stanzas: SASL already authenticated our header's
    /// domain, or dialback if policy allows it here, or the stanzas bounce.
    fn start_pair(&mut self, now: Instant, i: usize) {
        if self.sasl_ok && self.pairs[i].from.eq_ignore_ascii_case(&self.local) {
            self.authorize(i);
        } else if self.policy.may_dialback(self.tls.is_some()) {
            self.request_pair(now, i);
        } else {
            info!(remote = %self.remote, from = %self.pairs[i].from, "no method allowed to authorize this domain pair");
            let queue = std::mem::take(&mut self.pairs[i].queue);
            self.bounce_all(queue, StanzaCondition::PolicyViolation);
        }
    }

    /// Forget pairs that hold nothing and wait for nothing.
    fn drop_refused(&mut self) {
        self.pairs
            .retain(|p| !(matches!(p.state, PairState::WaitingForStream) && p.queue.is_empty()));
    }

    /// The pair may send: flush what it holds, in order (DB-03).
    fn authorize(&mut self, i: usize) {
        let queue = std::mem::take(&mut self.pairs[i].queue);
        self.pairs[i].state = PairState::Authorized;
        let from = self.pairs[i].from.clone();
        for s in &queue {
            self.out.element(s, &self.ctx);
        }
        self.out.push(Output::PairAuthorized {
            from,
            to: self.remote.clone(),
        });
    }

    /// XEP-0220 §2.1.1 step 1 (DB-02): `<db:result from=ours to=theirs>key</db:result>`.
    fn request_pair(&mut self, now: Instant, i: usize) {
        let Some(id) = self.stream_id().map(str::to_string) else {
            return;
        };
        let from = self.pairs[i].from.clone();
        let key = dialback::key(&self.cfg.dialback_secret, &self.remote, &from, &id);
        let el = dialback::result_request(&from, &self.remote, &key);
        self.out.element(&el, &self.ctx);
        self.pairs[i].state = PairState::Pending {
            deadline: now + self.cfg.timeouts.dialback,
        };
    }

    fn send_verify(&mut self, now: Instant, v: &mut PendingVerify) {
        let el = dialback::verify_request(
            &v.req.receiving,
            &v.req.originating,
            &v.req.stream_id,
            &v.req.key,
        );
        self.out.element(&el, &self.ctx);
        v.deadline = Some(now + self.cfg.timeouts.dialback);
    }

    fn on_element(&mut self, now: Instant, el: Element) -> Result<(), Error> {
        match (el.ns.as_str(), el.name.as_str()) {
            (ns::STREAM, "features") if matches!(self.state, State::ExpectFeatures { .. }) => {
                self.on_features(now, &el)
            }
            (ns::TLS, "proceed") if matches!(self.state, State::ExpectProceed { .. }) => {
                self.on_proceed()
            }
            (ns::TLS, "failure") if matches!(self.state, State::ExpectProceed { .. }) => {
                // RFC 6120 §5.4.2.2: the peer closes after <failure/>; so do we (TLS-02).
                info!(remote = %self.remote, "peer refused STARTTLS");
                self.close(None);
                let err = Error::PeerIncompatible("STARTTLS refused");
                self.state = State::Closed(Some(err.clone()));
                Err(err)
            }
            (ns::SASL, "success") if matches!(self.state, State::ExpectSaslOutcome { .. }) => {
                // RFC 6120 §6.4.6: restart right after <success/> (STR-05).
                info!(remote = %self.remote, local = %self.local, "SASL EXTERNAL succeeded");
                self.decoder.restart();
                self.sasl_ok = true;
                self.send_header();
                self.state = State::ExpectStreamHeader;
                Ok(())
            }
            (ns::SASL, "failure") if matches!(self.state, State::ExpectSaslOutcome { .. }) => {
                self.on_sasl_failure(now, &el)
            }
            (ns::SASL, "challenge") if matches!(self.state, State::ExpectSaslOutcome { .. }) => {
                // EXTERNAL with an initial response needs no challenge; give up on it
                // (RFC 6120 §6.4.4) and let <failure><aborted/> come back.
                self.out
                    .transmit("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
                Ok(())
            }
            (ns::DIALBACK, "result") => {
                self.on_result_answer(&el);
                Ok(())
            }
            (ns::DIALBACK, "verify") => {
                self.on_verify_answer(&el);
                Ok(())
            }
            (ns::STREAM, "error") => {
                let e = StreamError::from_element(&el)
                    .unwrap_or(StreamError::new(StreamCondition::UndefinedCondition));
                info!(remote = %self.remote, error = %e, "peer sent a stream error");
                self.out.transmit(STREAM_CLOSE);
                self.teardown();
                self.out.push(Output::Close(None));
                let err = Error::PeerStreamError(e);
                self.state = State::Closed(Some(err.clone()));
                Err(err)
            }
            // RFC 6120 §4.5: a stream carries stanzas one way only; the receiving server
            // was never authenticated on this stream, so its stanzas are refused with
            // <not-authorized/> (§4.9.3.12: "MUST NOT process the offending data"), ADDRS-04.
            (_, n) if is_stanza_name(n) => {
                warn!(remote = %self.remote, "peer sent a stanza on our outbound stream");
                Err(self.fail(PeerMisbehaved::StanzaOnOutbound))
            }
            _ => {
                warn!(remote = %self.remote, ns = %el.ns, name = %el.name, "unsupported element on outbound stream");
                Err(self.fail(PeerMisbehaved::UnsupportedElement))
            }
        }
    }

    /// Choose the next step from the peer's features and our policy for it (MS-09).
    fn on_features(&mut self, now: Instant, el: &Element) -> Result<(), Error> {
        let f = PeerFeatures::parse(el);
        let State::ExpectFeatures { stream_id } =
            std::mem::replace(&mut self.state, State::Closed(None))
        else {
            return Ok(());
        };
        let p = self.policy;
        if self.tls.is_none() {
            // RFC 7590 §3.1 (TLS-08) says try STARTTLS even when not advertised; D-09
            // limits that to partners whose policy requires TLS (a NotSupported partner
            // must not see it, an Optional one falls back to plain dialback).
            let try_tls = match f.starttls {
                Some(_) => p.may_tls(),
                None => p.tls == Negotiation::Required,
            };
            if try_tls {
                self.out.transmit(STARTTLS_XML);
                self.state = State::ExpectProceed { stream_id };
                return Ok(());
            }
            if f.starttls == Some(true) {
                // RFC 6120 §5.3.1: a peer that insists on TLS cannot be served here.
                info!(remote = %self.remote, "peer requires STARTTLS, which policy does not allow");
                self.state = State::ExpectFeatures { stream_id };
                self.close(None);
                self.state = State::Closed(Some(Error::PeerIncompatible("STARTTLS required")));
                return Err(Error::PeerIncompatible("STARTTLS required"));
            }
            if !p.may_tcp_dialback() {
                self.state = State::ExpectFeatures { stream_id };
                info!(remote = %self.remote, "peer offers no TLS and policy forbids plain dialback");
                return Err(self.fail(PeerMisbehaved::NoAcceptableAuth));
            }
        } else if !self.sasl_ok {
            // SASL-10 (RFC 6120 §6.3.4, XEP-0178 §3): EXTERNAL first when offered and we
            // have a certificate; the authzid is our domain (interop notes: Prosody, D-06).
            if f.offers_external() && self.cfg.tls.client_cert && p.may_sasl() {
                let auth = external_auth_xml(Some(&self.local));
                self.out.transmit(&auth);
                self.state = State::ExpectSaslOutcome { stream_id };
                return Ok(());
            }
            if !p.may_tls_dialback() {
                self.state = State::ExpectFeatures { stream_id };
                info!(remote = %self.remote, external = f.offers_external(), "no SASL EXTERNAL possible and policy forbids dialback");
                return Err(self.fail(PeerMisbehaved::NoAcceptableAuth));
            }
        }
        if !self.sasl_ok && !f.dialback {
            // Kamailio sends empty features yet does dialback (interop notes): try anyway.
            debug!(remote = %self.remote, "no dialback feature advertised; trying dialback anyway");
        }
        self.state = State::Ready { stream_id };
        self.on_ready(now);
        Ok(())
    }

    /// RFC 6120 §5.4.2.3: TLS starts right after `<proceed/>`. Bytes already buffered
    /// after it were never protected: the STARTTLS injection attack (STYLE §2).
    fn on_proceed(&mut self) -> Result<(), Error> {
        if self.decoder.buffered() > 0 {
            warn!(remote = %self.remote, bytes = self.decoder.buffered(), "plaintext after <proceed/>");
            return Err(self.fail(PeerMisbehaved::DataBeforeTls));
        }
        self.decoder.restart();
        self.state = State::TlsHandshake;
        self.out.push(Output::UpgradeTls);
        Ok(())
    }

    /// D-17: SASL EXTERNAL failed (a certificate without our domain, say): go on with
    /// dialback over TLS where policy allows it, else give up.
    fn on_sasl_failure(&mut self, now: Instant, el: &Element) -> Result<(), Error> {
        let cond = SaslCondition::from_failure(el);
        let State::ExpectSaslOutcome { stream_id } =
            std::mem::replace(&mut self.state, State::Closed(None))
        else {
            return Ok(());
        };
        if self.policy.may_tls_dialback() {
            info!(remote = %self.remote, condition = ?cond, "SASL EXTERNAL failed; dialback over TLS");
            self.state = State::Ready { stream_id };
            self.on_ready(now);
            return Ok(());
        }
        info!(remote = %self.remote, condition = ?cond, "SASL EXTERNAL failed and policy forbids dialback");
        self.state = State::Ready { stream_id };
        self.close(None);
        let err = Error::PeerIncompatible("SASL EXTERNAL failed");
        self.state = State::Closed(Some(err.clone()));
        Err(err)
    }

    /// XEP-0220 §2.1.1 step 4: accept only an answer to a request sent on this stream
    /// (DB-05, §3.1 "unsolicited dialback").
    fn on_result_answer(&mut self, el: &Element) {
        let Some(verdict) = db_verdict(el) else {
            debug!(remote = %self.remote, "ignoring a db:result request on our outbound stream");
            return;
        };
        let from_ok = el
            .attr("from")
            .is_some_and(|f| f.eq_ignore_ascii_case(&self.remote));
        let to = el.attr("to").unwrap_or("");
        let Some(i) = self.pairs.iter().position(|p| {
            from_ok
                && p.from.eq_ignore_ascii_case(to)
                && matches!(p.state, PairState::Pending { .. })
        }) else {
            warn!(remote = %self.remote, to, "ignoring an unsolicited db:result answer");
            return;
        };
        match verdict {
            Verdict::Valid => {
                info!(remote = %self.remote, from = %self.pairs[i].from, "dialback: pair authorized");
                // DB-03: flush in order.
                self.authorize(i);
            }
            Verdict::Invalid => {
                let queue = std::mem::take(&mut self.pairs[i].queue);
                warn!(remote = %self.remote, from = %self.pairs[i].from, "dialback: our key was declared invalid");
                self.pairs.remove(i);
                // XEP-0220 §2.1.1 (DB-04): internal-server-error.
                self.bounce_all(queue, StanzaCondition::InternalServerError);
            }
            Verdict::Error(c) => {
                let queue = std::mem::take(&mut self.pairs[i].queue);
                info!(remote = %self.remote, from = %self.pairs[i].from, condition = %c, "dialback error");
                self.pairs.remove(i);
                // XEP-0220 §2.5 (DB-04): remote-server-timeout.
                self.bounce_all(queue, StanzaCondition::RemoteServerTimeout);
            }
        }
    }

    /// XEP-0220 §2.1.2: the answer must match from, to and id of a request we sent on this
    /// stream (DB-11).
    fn on_verify_answer(&mut self, el: &Element) {
        let Some(verdict) = db_verdict(el) else {
            debug!(remote = %self.remote, "ignoring a db:verify request on our outbound stream");
            return;
        };
        let (from, to, id) = (
            el.attr("from").unwrap_or(""),
            el.attr("to").unwrap_or(""),
            el.attr("id").unwrap_or(""),
        );
        let Some(i) = self.verifies.iter().position(|v| {
            v.deadline.is_some()
                && v.req.originating.eq_ignore_ascii_case(from)
                && v.req.receiving.eq_ignore_ascii_case(to)
                && v.req.stream_id == id
        }) else {
            warn!(remote = %self.remote, from, to, id, "ignoring an unsolicited db:verify answer");
            return;
        };
        let v = self.verifies.remove(i);
        // XEP-0220 §2.5: "If an error is encountered in Step 3 … the Receiving Server MUST
        // send a <remote-server-not-found/> dialback error".
        let verdict = match verdict {
            Verdict::Error(_) => Verdict::Error(StanzaCondition::RemoteServerNotFound),
            v => v,
        };
        self.verify_result(v.req, verdict);
    }

    fn verify_result(&mut self, req: VerifyRequest, result: Verdict) {
        self.out.push(Output::VerifyResult {
            originating: req.originating,
            receiving: req.receiving,
            stream_id: req.stream_id,
            result,
        });
    }

    fn bounce_all(&mut self, stanzas: Vec<Element>, c: StanzaCondition) {
        let err = StanzaError::new(c);
        for s in stanzas {
            if let Some(b) = bounce(&s, &err) {
                self.out.push(Output::Bounce(b));
            }
        }
    }

    /// The stream is going away: everything held bounces, pending verifications fail
    /// (XEP-0220 §2.1.1, §2.1.2 notes on closed connections).
    fn teardown(&mut self) {
        for p in std::mem::take(&mut self.pairs) {
            self.bounce_all(p.queue, StanzaCondition::RemoteServerTimeout);
        }
        for v in std::mem::take(&mut self.verifies) {
            self.verify_result(v.req, Verdict::Error(StanzaCondition::RemoteServerTimeout));
        }
    }

    fn fail_codec(&mut self, e: CodecError) -> Error {
        let err = Error::Codec(e.clone());
        self.fail_with(StreamError::with_text(e.condition(), e.to_string()), err)
    }

    fn fail(&mut self, why: PeerMisbehaved) -> Error {
        self.fail_with(
            StreamError::new(why.condition()),
            Error::PeerMisbehaved(why),
        )
    }

    fn fail_with(&mut self, se: StreamError, err: Error) -> Error {
        info!(remote = %self.remote, error = %se, "closing outbound stream with a stream error");
        self.out.element(&se.to_element(), &self.ctx);
        self.out.transmit(STREAM_CLOSE);
        self.teardown();
        self.out.push(Output::Close(Some(se)));
        self.state = State::Closed(Some(err.clone()));
        err
    }
}
