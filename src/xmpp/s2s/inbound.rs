//! The receiving side of an S2S stream: receiving server and authoritative server
//! (XEP-0220 §2.2.1, §2.2.2), STARTTLS as TLS server (RFC 6120 §5.4) and SASL EXTERNAL as
//! receiving entity (RFC 6120 §6.4, XEP-0178 §3).

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::features::{
    Offer, PROCEED_XML, SASL_SUCCESS_XML, SaslCondition, TLS_FAILURE_XML, base64_decode,
    sasl_failure_xml,
};
use super::{
    Error, HeaderOut, Input, LocalConfig, Outbox, Output, PartnerPolicy, PeerMisbehaved,
    STREAM_CLOSE, Timer, Verdict, VerifyRequest, db_answer, is_stanza_name, jid_domain,
    parse_version, restart_id, s2s_write_ctx,
};
use crate::tls::CertVerdict;
use crate::xmpp::codec::{CodecError, Decoder, Event, StreamHeader};
use crate::xmpp::conditions::{StanzaCondition, StreamError};
use crate::xmpp::dialback;
use crate::xmpp::element::{Element, NsContext};
use crate::xmpp::ns;

/// ```text
///  ExpectStreamHeader ──header ok──▶ ExpectElements ──</stream>, error, timeout──▶ Closed
///     ▲   │ bad header: our header + stream error      │ <starttls/> → <proceed/>   ▲
///     │   └────────────────────────────────────────────┼────────────────────────────┤
///     │ TlsEstablished (new id)          TlsHandshake ◀┘ ── TlsFailed, EOF ──────────┘
///     ├───────────────────────────────────┘
///     └── <auth/> → <success/> (new id) ── from ExpectElements
/// ```
/// Dialback state lives beside the state: per domain pair, pending or verified. TLS and
/// SASL results live beside it too; a restart keeps them, TLS throws away the rest
/// (RFC 6120 §5.4.3.3).
#[derive(Debug)]
enum State {
    ExpectStreamHeader,
    ExpectElements,
    /// `<proceed/>` sent; the driver runs the handshake (RFC 6120 §5.4.3).
    TlsHandshake,
    /// Final. `Some` when the session failed; every later call returns it again.
    Closed(Option<Error>),
}

/// RFC 6120 §6.4.5: allow "at least 2 and no more than 5" retries; 3 attempts in all.
const MAX_AUTH_ATTEMPTS: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
enum PairState {
    /// Waiting for the authoritative server's verdict (XEP-0220 §2.2.1 step 2–3).
    Verifying {
        deadline: Instant,
    },
    Verified,
}

#[derive(Debug)]
struct Pair {
    originating: String,
    receiving: String,
    state: PairState,
}

/// One stream a peer opened to us (`jabber:server`).
#[derive(Debug)]
pub struct InboundSession {
    cfg: Arc<LocalConfig>,
    /// The id of the first stream on this connection; later ids derive from it.
    base_id: String,
    stream_id: String,
    /// Stream restarts so far (after TLS, after SASL).
    restarts: u32,
    decoder: Decoder,
    state: State,
    out: Outbox,
    ctx: NsContext,
    pairs: Vec<Pair>,
    header_sent: bool,
    /// Cleared once the stream did something useful (a verified pair or an answered verify).
    establish_deadline: Option<Instant>,
    idle_deadline: Instant,
    /// The peer's domain as its current header names it (`from`), lowercased.
    partner: Option<String>,
    /// Our domain as the current header names it (`to`), or our primary one.
    local: String,
    /// The current header asked for version 1.0 (features were sent).
    v1: bool,
    /// `Some` once TLS is up: the verdict on the peer's certificate (`None` inside: the peer
    /// presented none).
    tls: Option<Option<CertVerdict>>,
    /// The domain SASL EXTERNAL authenticated on this connection.
    sasl_authenticated: Option<String>,
    /// EXTERNAL was offered in the current features.
    external_offered: bool,
    auth_failures: u8,
    keepalive_send_at: Option<Instant>,
    keepalive_expect_at: Option<Instant>,
}

impl InboundSession {
    /// `stream_id` must be fresh and unpredictable (RFC 6120 §4.7.3, DB-16): dialback keys
    /// are bound to it. The driver draws it from a CSPRNG; tests pass fixed ids.
    pub fn new(now: Instant, cfg: Arc<LocalConfig>, stream_id: String) -> Self {
        let decoder = Decoder::new(cfg.limits.codec);
        InboundSession {
            establish_deadline: Some(now + cfg.timeouts.establish),
            idle_deadline: now + cfg.timeouts.idle,
            local: cfg.primary().to_string(),
            cfg,
            base_id: stream_id.clone(),
            stream_id,
            restarts: 0,
            decoder,
            state: State::ExpectStreamHeader,
            out: Outbox::default(),
            ctx: s2s_write_ctx(),
            pairs: Vec::new(),
            header_sent: false,
            partner: None,
            v1: false,
            tls: None,
            sasl_authenticated: None,
            external_offered: false,
            auth_failures: 0,
            keepalive_send_at: None,
            keepalive_expect_at: None,
        }
    }

    /// The id of the current stream (it changes at each restart, STR-05).
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// Is the connection under TLS?
    pub fn is_encrypted(&self) -> bool {
        self.tls.is_some()
    }

    /// The domain SASL EXTERNAL authenticated, if any.
    pub fn sasl_authenticated(&self) -> Option<&str> {
        self.sasl_authenticated.as_deref()
    }

    /// The peer's domain as its current stream header names it.
    pub fn partner(&self) -> Option<&str> {
        self.partner.as_deref()
    }

    /// The policy for the current partner (the default one until it names itself).
    fn policy(&self) -> PartnerPolicy {
        match &self.partner {
            Some(p) => *self.cfg.policy(p),
            None => self.cfg.policies.default,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Domain pairs verified on this stream, as (originating, receiving).
    pub fn verified_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .filter(|p| p.state == PairState::Verified)
            .map(|p| (p.originating.as_str(), p.receiving.as_str()))
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
            PairState::Verifying { deadline } => Some(deadline),
            PairState::Verified => None,
        });
        pairs
            .chain(self.establish_deadline)
            .chain(Some(self.idle_deadline))
            .chain(self.keepalive_send_at)
            .chain(self.keepalive_expect_at)
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.check_open()?;
        let r = self.on_timeout(now);
        self.after(now);
        r
    }

    fn on_timeout(&mut self, now: Instant) -> Result<(), Error> {
        let due = |d: Option<Instant>| d.is_some_and(|d| d <= now);
        for timer in [
            Timer::Establish,
            Timer::Idle,
            Timer::KeepAliveExpect,
            Timer::KeepAliveSend,
        ] {
            match timer {
                Timer::Establish | Timer::Idle => {
                    let d = match timer {
                        Timer::Establish => self.establish_deadline,
                        _ => Some(self.idle_deadline),
                    };
                    if due(d) {
                        debug!(?timer, stream_id = %self.stream_id, "inbound stream timed out");
                        return Err(self.fail(PeerMisbehaved::Timeout));
                    }
                }
                Timer::KeepAliveExpect if due(self.keepalive_expect_at) => {
                    info!(stream_id = %self.stream_id, partner = ?self.partner, "no keepalive from an EnableKeepAlive partner");
                    return Err(self.fail(PeerMisbehaved::KeepAliveMissing));
                }
                Timer::KeepAliveSend if due(self.keepalive_send_at) => {
                    // RFC 6120 §4.6.1: one space between top-level elements.
                    self.out.transmit(" ");
                }
                _ => {}
            }
        }
        // XEP-0220 §2.5: the authoritative server did not answer in time.
        let mut expired = Vec::new();
        self.pairs.retain(|p| match p.state {
            PairState::Verifying { deadline } if deadline <= now => {
                expired.push((p.originating.clone(), p.receiving.clone()));
                false
            }
            _ => true,
        });
        for (o, r) in expired {
            let e = db_answer(
                "result",
                &r,
                &o,
                None,
                Verdict::Error(StanzaCondition::RemoteServerTimeout),
            );
            self.out.element(&e, &self.ctx);
        }
        Ok(())
    }

    /// Close the stream from our side (shutdown): optional stream error, then
    /// `</stream:stream>` (RFC 6120 §4.4).
    pub fn close(&mut self, error: Option<StreamError>) {
        if self.is_closed() {
            return;
        }
        if !self.header_sent {
            self.send_header(None, None);
        }
        if let Some(e) = &error {
            self.out.element(&e.to_element(), &self.ctx);
        }
        self.out.transmit(STREAM_CLOSE);
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
                while matches!(
                    self.state,
                    State::ExpectStreamHeader | State::ExpectElements
                ) {
                    match self.decoder.next_event() {
                        Ok(None) => break,
                        Ok(Some(ev)) => self.on_event(now, ev)?,
                        Err(e) => return Err(self.fail_codec(e)),
                    }
                }
                // MS-10: any traffic from an EnableKeepAlive partner counts as a keepalive.
                self.keepalive_expect_at = self
                    .policy()
                    .keepalive
                    .then(|| now + self.cfg.timeouts.keepalive_expect);
                Ok(())
            }
            Input::Eof => {
                debug!(stream_id = %self.stream_id, "peer closed the connection");
                self.out.push(Output::Close(None));
                self.state = State::Closed(None);
                Ok(())
            }
            Input::VerifyResult {
                originating,
                receiving,
                result,
            } => {
                self.on_verify_result(&originating, &receiving, result);
                Ok(())
            }
            Input::TlsEstablished { peer } => {
                if !matches!(self.state, State::TlsHandshake) {
                    return Err(Error::Misuse);
                }
                self.on_tls_established(peer);
                Ok(())
            }
            Input::TlsFailed => {
                if !matches!(self.state, State::TlsHandshake) {
                    return Err(Error::Misuse);
                }
                // RFC 6120 §5.4.3.2 (TLS-03): close TCP, no </stream:stream>.
                info!(stream_id = %self.stream_id, "TLS handshake failed");
                self.out.push(Output::Close(None));
                self.state = State::Closed(Some(Error::TlsFailed));
                Err(Error::TlsFailed)
            }
        }
    }

    /// Bookkeeping after every call: the keepalive we would send next.
    fn after(&mut self, now: Instant) {
        let wrote = self.out.take_wrote();
        let established =
            matches!(self.state, State::ExpectElements) && self.verified_pairs().next().is_some();
        self.keepalive_send_at = match (established, self.cfg.timeouts.keepalive_send) {
            (true, Some(iv)) if wrote || self.keepalive_send_at.is_none() => Some(now + iv),
            (true, Some(_)) => self.keepalive_send_at,
            _ => None,
        };
        if self.is_closed() {
            self.keepalive_expect_at = None;
        }
    }

    /// RFC 6120 §5.4.3.3: TLS is up. Forget what the stream taught us before (TLS-05) and
    /// expect a new header, to be answered with a new id (STR-05).
    fn on_tls_established(&mut self, peer: Option<CertVerdict>) {
        match &peer {
            Some(v) => info!(
                stream_id = %self.stream_id,
                subject = ?v.subject,
                trusted = v.trusted,
                problems = ?v.problems,
                "TLS established; peer certificate checked"
            ),
            None => info!(stream_id = %self.stream_id, "TLS established; no peer certificate"),
        }
        self.tls = Some(peer);
        self.pairs.clear();
        self.partner = None;
        self.restart();
    }

    /// A new stream on the same connection: new id, new header from both sides.
    fn restart(&mut self) {
        self.restarts += 1;
        self.stream_id = restart_id(&self.cfg.dialback_secret, &self.base_id, self.restarts);
        self.header_sent = false;
        self.external_offered = false;
        self.state = State::ExpectStreamHeader;
    }

    fn check_open(&self) -> Result<(), Error> {
        match &self.state {
            State::Closed(Some(e)) => Err(e.clone()),
            State::Closed(None) => Err(Error::ConnectionLost),
            _ => Ok(()),
        }
    }

    fn on_event(&mut self, now: Instant, ev: Event) -> Result<(), Error> {
        match (&self.state, ev) {
            (State::ExpectStreamHeader, Event::Header(h)) => self.on_header(now, &h),
            (State::ExpectStreamHeader, Event::Whitespace(_)) => Ok(()),
            (State::ExpectStreamHeader, _) => Err(self.fail(PeerMisbehaved::UnexpectedStreamEvent)),
            (_, Event::Whitespace(_)) => Ok(()),
            (_, Event::Header(_)) => {
                // A second header without a restart (no TLS/SASL here) is not well-formed XML
                // inside the stream root.
                Err(self.fail(PeerMisbehaved::UnexpectedStreamEvent))
            }
            (_, Event::Close) => {
                // RFC 6120 §4.4: answer the close with our own, then the TCP close (STR-07).
                self.out.transmit(STREAM_CLOSE);
                self.out.push(Output::Close(None));
                self.state = State::Closed(None);
                Ok(())
            }
            (_, Event::Element(el)) => self.on_element(now, el),
        }
    }

    fn on_header(&mut self, now: Instant, h: &StreamHeader) -> Result<(), Error> {
        // RFC 6120 §4.7.5: version is the lower of what was offered and 1.0, compared
        // numerically; no version (RFC 3920-era, STR-04) means 0.9: no version, no features.
        let version = match h.version.as_deref() {
            None => None,
            Some(v) => match parse_version(v) {
                Some(off) if off >= (1, 0) => Some("1.0"),
                Some(_) => None,
                None => {
                    self.send_header(Some(h), None);
                    return Err(self.fail(PeerMisbehaved::MalformedVersion));
                }
            },
        };
        self.send_header(Some(h), version);
        // RFC 6120 §4.8.1: the stream element must be in the streams namespace.
        let stream_ns = h
            .declarations
            .iter()
            .find(|(p, _)| *p == h.stream_prefix)
            .map(|(_, u)| u.as_str());
        if stream_ns.is_some_and(|u| u != ns::STREAM) {
            return Err(self.fail(PeerMisbehaved::WrongStreamNamespace));
        }
        // RFC 6120 §4.8.2 / §4.9.3.10: an S2S stream's content namespace is jabber:server.
        if h.content_ns != ns::SERVER {
            return Err(self.fail(PeerMisbehaved::WrongContentNamespace));
        }
        // RFC 6120 §4.9.1.3 / §4.9.3.6 (STR-09): a `to` we do not serve.
        if let Some(to) = h.to.as_deref()
            && !self.cfg.serves(to)
        {
            info!(to, stream_id = %self.stream_id, "stream header for a domain not served here");
            return Err(self.fail(PeerMisbehaved::UnknownHost));
        }
        let partner = h
            .from
            .as_deref()
            .and_then(jid_domain)
            .map(str::to_ascii_lowercase);
        if let Some(p) = &partner
            && partner != self.partner
        {
            self.out.push(Output::Partner(p.clone()));
        }
        self.partner = partner;
        self.local =
            h.to.as_deref()
                .filter(|t| self.cfg.serves(t))
                .unwrap_or(self.cfg.primary())
                .to_ascii_lowercase();
        self.v1 = version.is_some();
        let policy = self.policy();
        if policy.keepalive {
            self.keepalive_expect_at = Some(now + self.cfg.timeouts.keepalive_expect);
        }
        if self.v1 {
            // RFC 6120 §4.3.2 (STR-03): features follow a 1.0 header.
            let offer = self.offer(&policy)?;
            self.external_offered = offer.external;
            self.out.transmit(&offer.to_xml());
        }
        self.state = State::ExpectElements;
        Ok(())
    }

    /// The features for this stream, from the partner's policy and what TLS and SASL did
    /// already. `Err` when nothing usable remains (SASL-09: say so, do not time out).
    fn offer(&mut self, p: &PartnerPolicy) -> Result<Offer, Error> {
        if self.sasl_authenticated.is_some() {
            // RFC 6120 §6.4.6 (SASL-07): no mechanisms after success; typically empty.
            return Ok(Offer::default());
        }
        let offer = match &self.tls {
            None => {
                // TLS-01: advertise STARTTLS when policy and a certificate allow it; mark it
                // <required/> when nothing else could authenticate the peer, and then
                // advertise nothing else (RFC 6120 §5.3.1). XEP-0220 §2.4.2 (DB-01):
                // dialback with errors, only where plain-TCP dialback is acceptable.
                let tls = p.may_tls() && self.cfg.tls.server;
                Offer {
                    starttls: tls.then_some(!p.may_tcp_dialback()),
                    external: false,
                    dialback: p.may_tcp_dialback(),
                }
            }
            Some(cert) => {
                // SASL-02 (RFC 6120 §6.3.4, XEP-0178 §3): EXTERNAL only for a certificate
                // that is trusted and names the stream's `from`; with no `from`, the
                // authzid will name the domain and is checked then.
                let cert_ok = cert.as_ref().is_some_and(|v| match &self.partner {
                    Some(d) => v.authenticates(d),
                    None => v.trusted,
                });
                Offer {
                    starttls: None,
                    external: p.may_sasl() && cert_ok,
                    dialback: p.may_tls_dialback(),
                }
            }
        };
        if offer.starttls.is_none() && !offer.external && !offer.dialback {
            info!(
                stream_id = %self.stream_id,
                partner = ?self.partner,
                encrypted = self.tls.is_some(),
                problems = ?self.tls.as_ref().map(|c| c.as_ref().map(|v| v.problems.clone())),
                "no authentication method acceptable for this partner"
            );
            return Err(self.fail(PeerMisbehaved::NoAcceptableAuth));
        }
        Ok(offer)
    }

    /// Our response header (RFC 6120 §4.7, STR-02): from = the served domain they named (or
    /// our primary one), to = their `from`, our fresh id, xml:lang, xmlns:db.
    fn send_header(&mut self, h: Option<&StreamHeader>, version: Option<&str>) {
        if self.header_sent {
            return;
        }
        self.header_sent = true;
        let named = h
            .and_then(|h| h.to.as_deref())
            .filter(|to| self.cfg.serves(to));
        let from = named.unwrap_or(self.cfg.primary());
        self.out.header(&HeaderOut {
            content_ns: ns::SERVER,
            from: Some(from),
            to: h.and_then(|h| h.from.as_deref()),
            id: Some(&self.stream_id),
            version,
            lang: Some("en"),
            dialback: true,
        });
    }

    fn on_element(&mut self, now: Instant, el: Element) -> Result<(), Error> {
        match (el.ns.as_str(), el.name.as_str()) {
            (ns::DIALBACK, "result") => self.on_db_result(now, &el),
            (ns::DIALBACK, "verify") => self.on_db_verify(&el),
            (ns::TLS, "starttls") => self.on_starttls(),
            (ns::SASL, "auth") => self.on_auth(&el),
            // RFC 6120 §6.4.4: an abort is answered with <aborted/>.
            (ns::SASL, "abort") => self.sasl_fail(SaslCondition::Aborted),
            // We never send a challenge for EXTERNAL, so a response answers nothing.
            (ns::SASL, "response") => self.sasl_fail(SaslCondition::MalformedRequest),
            (ns::SERVER, n) if is_stanza_name(n) => self.on_stanza(el),
            (ns::STREAM, "error") => {
                let e = StreamError::from_element(&el).unwrap_or(StreamError::new(
                    crate::xmpp::conditions::StreamCondition::UndefinedCondition,
                ));
                info!(stream_id = %self.stream_id, error = %e, "peer sent a stream error");
                // RFC 6120 §4.9.1.1: the stream is over; never answer an error with one.
                self.out.transmit(STREAM_CLOSE);
                self.out.push(Output::Close(None));
                let err = Error::PeerStreamError(e);
                self.state = State::Closed(Some(err.clone()));
                Err(err)
            }
            // Interop: some initiators (Kamailio's xmpp module) send an empty
            // <stream:features/> of their own; it carries nothing for us.
            (ns::STREAM, "features") => {
                debug!(stream_id = %self.stream_id, "ignoring stream features sent by the initiator");
                Ok(())
            }
            // A stanza in another content namespace (jabber:client on S2S).
            (_, n) if is_stanza_name(n) => Err(self.fail(PeerMisbehaved::WrongContentNamespace)),
            _ => {
                warn!(stream_id = %self.stream_id, ns = %el.ns, name = %el.name, "unsupported top-level element");
                Err(self.fail(PeerMisbehaved::UnsupportedElement))
            }
        }
    }

    /// RFC 6120 §5.4.2: `<proceed/>` when we offered STARTTLS, else `<failure/>` and close
    /// (TLS-02).
    fn on_starttls(&mut self) -> Result<(), Error> {
        let offered = self.v1
            && self.tls.is_none()
            && self.sasl_authenticated.is_none()
            && self.policy().may_tls()
            && self.cfg.tls.server;
        if !offered {
            info!(stream_id = %self.stream_id, "STARTTLS requested but not offered: <failure/>");
            self.out.transmit(TLS_FAILURE_XML);
            self.out.transmit(STREAM_CLOSE);
            self.out.push(Output::Close(None));
            let err = Error::PeerIncompatible("STARTTLS not offered");
            self.state = State::Closed(Some(err.clone()));
            return Err(err);
        }
        // RFC 6120 §5.4.3.3: the initiator waits for <proceed/> before its ClientHello, so
        // anything already buffered is plaintext that must not pass as protected.
        if self.decoder.buffered() > 0 {
            warn!(stream_id = %self.stream_id, bytes = self.decoder.buffered(), "data after <starttls/> before the handshake");
            return Err(self.fail(PeerMisbehaved::DataBeforeTls));
        }
        self.out.transmit(PROCEED_XML);
        self.decoder.restart();
        self.state = State::TlsHandshake;
        self.out.push(Output::UpgradeTls);
        Ok(())
    }

    /// RFC 6120 §6.4 and XEP-0178 §3: SASL EXTERNAL as receiving server.
    fn on_auth(&mut self, el: &Element) -> Result<(), Error> {
        if self.sasl_authenticated.is_some() {
            return Err(self.fail(PeerMisbehaved::OutOfSequence));
        }
        // SASL-05 (RFC 6120 §6.4.5): EXTERNAL needs the TLS layer.
        let Some(cert) = self.tls.clone() else {
            return self.sasl_fail(SaslCondition::EncryptionRequired);
        };
        let mech = el.attr("mechanism").unwrap_or("");
        if !mech.eq_ignore_ascii_case("EXTERNAL") || !self.external_offered {
            return self.sasl_fail(SaslCondition::InvalidMechanism);
        }
        // RFC 6120 §6.4.2: "=" is an empty initial response; no whitespace allowed. An
        // absent response is treated as empty (lenient; XEP-0178 §3 example).
        let data = el.text();
        let authzid = match data.as_str() {
            "" | "=" => None,
            d => match base64_decode(d).and_then(|b| String::from_utf8(b).ok()) {
                Some(a) => Some(a),
                None => return self.sasl_fail(SaslCondition::IncorrectEncoding),
            },
        };
        // D-06, SASL-03/04 (RFC 6120 §6.3.8, XEP-0178 §3): the authzid may be absent or the
        // stream's `from`; anything else is an identity the peer may not act as.
        let reference = match (authzid, &self.partner) {
            (Some(a), Some(p)) if !a.eq_ignore_ascii_case(p) => {
                info!(stream_id = %self.stream_id, authzid = %a, from = %p, "authzid differs from the stream's from");
                return self.sasl_fail(SaslCondition::InvalidAuthzid);
            }
            (Some(a), _) => a.to_ascii_lowercase(),
            (None, Some(p)) => p.clone(),
            (None, None) => return self.sasl_fail(SaslCondition::NotAuthorized),
        };
        // RFC 6120 §6.3.8: an S2S authzid is a domainpart.
        if jid_domain(&reference) != Some(reference.as_str()) || reference.contains('@') {
            return self.sasl_fail(SaslCondition::InvalidAuthzid);
        }
        let policy = *self.cfg.policy(&reference);
        if !policy.may_sasl() {
            return self.sasl_fail(SaslCondition::InvalidMechanism);
        }
        // RFC 6120 §13.7.2 / RFC 6125: the certificate must authenticate that domain.
        if !cert.as_ref().is_some_and(|v| v.authenticates(&reference)) {
            info!(stream_id = %self.stream_id, domain = %reference, "certificate does not authenticate the domain");
            return self.sasl_fail(SaslCondition::NotAuthorized);
        }
        info!(stream_id = %self.stream_id, domain = %reference, "SASL EXTERNAL succeeded");
        // RFC 6120 §6.4.6: <success/>, then both sides restart the stream.
        self.out.transmit(SASL_SUCCESS_XML);
        self.decoder.restart();
        self.establish_deadline = None;
        self.sasl_authenticated = Some(reference.clone());
        let local = self.local.clone();
        self.pairs
            .retain(|p| !(p.originating == reference && p.receiving == local));
        self.pairs.push(Pair {
            originating: reference.clone(),
            receiving: local.clone(),
            state: PairState::Verified,
        });
        self.out.push(Output::PairVerified {
            originating: reference,
            receiving: local,
        });
        self.restart();
        Ok(())
    }

    /// `<failure/>` with `c`; past [`MAX_AUTH_ATTEMPTS`] the stream ends with
    /// `policy-violation` (RFC 6120 §6.4.5, SASL-06).
    fn sasl_fail(&mut self, c: SaslCondition) -> Result<(), Error> {
        info!(stream_id = %self.stream_id, condition = %c, "SASL failure");
        self.out.transmit(&sasl_failure_xml(c));
        self.auth_failures = self.auth_failures.saturating_add(1);
        if self.auth_failures >= MAX_AUTH_ATTEMPTS {
            return Err(self.fail(PeerMisbehaved::TooManyAuthFailures));
        }
        Ok(())
    }

    /// XEP-0220 §2.2.1, step 1 received.
    fn on_db_result(&mut self, now: Instant, el: &Element) -> Result<(), Error> {
        // XEP-0220 §2.2: without XEP-0288 a `type` never arrives on an inbound stream; such a
        // "result" is unsolicited (§3.1) and ignored.
        if el.attr("type").is_some() {
            warn!(stream_id = %self.stream_id, "ignoring a db:result answer on an inbound stream");
            return Ok(());
        }
        let (Some(o), Some(r)) = (
            el.attr("from").and_then(jid_domain),
            el.attr("to").and_then(jid_domain),
        ) else {
            return Err(self.fail(PeerMisbehaved::DialbackAddressing));
        };
        let (o, r) = (o.to_ascii_lowercase(), r.to_ascii_lowercase());
        // DB-14 (XEP-0220 §2.5), MS-08: dialback where the partner's policy does not allow
        // it (TLS required but not done, SASL required, dialback off) gets a
        // <policy-violation/> dialback error, not silence; the stream stays open.
        if !self.cfg.policy(&o).may_dialback(self.tls.is_some()) {
            info!(stream_id = %self.stream_id, originating = %o, encrypted = self.tls.is_some(), "dialback refused by policy");
            let e = db_answer(
                "result",
                &r,
                &o,
                None,
                Verdict::Error(StanzaCondition::PolicyViolation),
            );
            self.out.element(&e, &self.ctx);
            return Ok(());
        }
        // XEP-0220 §2.2.1 / §2.5 (DB-09): not our domain → dialback error, stream stays open.
        if !self.cfg.serves(&r) {
            info!(stream_id = %self.stream_id, originating = %o, receiving = %r, "db:result for a domain not served");
            let e = db_answer(
                "result",
                &r,
                &o,
                None,
                Verdict::Error(StanzaCondition::ItemNotFound),
            );
            self.out.element(&e, &self.ctx);
            return Ok(());
        }
        if let Some(p) = self
            .pairs
            .iter()
            .find(|p| p.originating == o && p.receiving == r)
        {
            if p.state == PairState::Verified {
                // Already proven on this stream: confirm again rather than re-verify.
                let e = db_answer("result", &r, &o, None, Verdict::Valid);
                self.out.element(&e, &self.ctx);
            } else {
                debug!(stream_id = %self.stream_id, originating = %o, "duplicate db:result while verifying");
            }
            return Ok(());
        }
        if self.pairs.len() >= self.cfg.limits.max_pairs {
            let e = db_answer(
                "result",
                &r,
                &o,
                None,
                Verdict::Error(StanzaCondition::ResourceConstraint),
            );
            self.out.element(&e, &self.ctx);
            return Ok(());
        }
        self.pairs.push(Pair {
            originating: o.clone(),
            receiving: r.clone(),
            state: PairState::Verifying {
                deadline: now + self.cfg.timeouts.dialback,
            },
        });
        // Step 2 is the driver's: it talks to the authoritative server of `o` (DB-06).
        self.out.push(Output::VerifyRequest(VerifyRequest {
            originating: o,
            receiving: r,
            stream_id: self.stream_id.clone(),
            key: el.text().trim().to_string(),
        }));
        Ok(())
    }

    /// XEP-0220 §2.2.1, step 4: report the authoritative server's verdict.
    fn on_verify_result(&mut self, originating: &str, receiving: &str, result: Verdict) {
        let Some(i) = self.pairs.iter().position(|p| {
            p.originating.eq_ignore_ascii_case(originating)
                && p.receiving.eq_ignore_ascii_case(receiving)
                && matches!(p.state, PairState::Verifying { .. })
        }) else {
            // XEP-0220 §2.1.2: "the verification result SHOULD be dropped silently".
            debug!(stream_id = %self.stream_id, originating, receiving, "verify result for no pending pair");
            return;
        };
        let (o, r) = (
            self.pairs[i].originating.clone(),
            self.pairs[i].receiving.clone(),
        );
        match result {
            Verdict::Valid => {
                self.pairs[i].state = PairState::Verified;
                self.establish_deadline = None;
                self.out.element(
                    &db_answer("result", &r, &o, None, Verdict::Valid),
                    &self.ctx,
                );
                self.out.push(Output::PairVerified {
                    originating: o,
                    receiving: r,
                });
            }
            Verdict::Invalid => {
                self.pairs.remove(i);
                warn!(stream_id = %self.stream_id, originating = %o, receiving = %r, "dialback key invalid: spoofing attempt?");
                if self.verified_pairs().next().is_some() {
                    // XEP-0220 §2.1.2 last paragraph, §2.5: with other pairs on the stream a
                    // <forbidden/> dialback error keeps them, and still refuses this one.
                    let e = db_answer(
                        "result",
                        &r,
                        &o,
                        None,
                        Verdict::Error(StanzaCondition::Forbidden),
                    );
                    self.out.element(&e, &self.ctx);
                } else {
                    // XEP-0220 §2.2.1: send type='invalid', then "MUST close the XML stream".
                    // That is the RFC 6120 §4.4 close: the invalid result already states the
                    // reason, and no stream error condition describes a bad key better.
                    self.out.element(
                        &db_answer("result", &r, &o, None, Verdict::Invalid),
                        &self.ctx,
                    );
                    self.out.transmit(STREAM_CLOSE);
                    self.out.push(Output::Close(None));
                    self.state = State::Closed(None);
                }
            }
            Verdict::Error(c) => {
                self.pairs.remove(i);
                self.out.element(
                    &db_answer("result", &r, &o, None, Verdict::Error(c)),
                    &self.ctx,
                );
            }
        }
    }

    /// XEP-0220 §2.2.2: we are the authoritative server for the `to` domain.
    fn on_db_verify(&mut self, el: &Element) -> Result<(), Error> {
        if el.attr("type").is_some() {
            // DB-11: a verify *answer* on a stream where we sent no request.
            warn!(stream_id = %self.stream_id, "ignoring an unsolicited db:verify answer on an inbound stream");
            return Ok(());
        }
        let (Some(r), Some(o), Some(id)) = (
            el.attr("from").and_then(jid_domain),
            el.attr("to").and_then(jid_domain),
            el.attr("id"),
        ) else {
            return Err(self.fail(PeerMisbehaved::DialbackAddressing));
        };
        let verdict = if !self.cfg.serves(o) {
            Verdict::Error(StanzaCondition::ItemNotFound)
        } else {
            // XEP-0185 §2: recompute from (receiving, originating, stream id) and the secret.
            let expected = dialback::key(&self.cfg.dialback_secret, r, o, id);
            if dialback::keys_equal(&expected, &el.text()) {
                Verdict::Valid
            } else {
                Verdict::Invalid
            }
        };
        debug!(stream_id = %self.stream_id, receiving = r, originating = o, ?verdict, "answered db:verify");
        let answer = db_answer("verify", o, r, Some(id), verdict);
        self.out.element(&answer, &self.ctx);
        self.establish_deadline = None;
        Ok(())
    }

    /// RFC 6120 §8.1.1.2, §8.1.2.2, §4.3.5 and XEP-0220 §2.2.1: the addressing gate.
    fn on_stanza(&mut self, el: Element) -> Result<(), Error> {
        if self.verified_pairs().next().is_none() {
            // STR-06: not-authorized, without processing the stanza.
            return Err(self.fail(PeerMisbehaved::StanzaBeforeAuth));
        }
        let (Some(to), Some(from)) = (
            el.attr("to").and_then(jid_domain),
            el.attr("from").and_then(jid_domain),
        ) else {
            return Err(self.fail(PeerMisbehaved::ImproperAddressing));
        };
        if !self
            .verified_pairs()
            .any(|(o, _)| o.eq_ignore_ascii_case(from))
        {
            return Err(self.fail(PeerMisbehaved::InvalidFrom));
        }
        let pair_ok = self
            .verified_pairs()
            .any(|(o, r)| o.eq_ignore_ascii_case(from) && r.eq_ignore_ascii_case(to));
        if !self.cfg.serves(to) || !pair_ok {
            return Err(self.fail(PeerMisbehaved::UnknownTo));
        }
        self.out.push(Output::Stanza(el));
        Ok(())
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

    /// RFC 6120 §4.9.1.1–4.9.1.2 (STR-08): header first if not sent yet, then the error,
    /// then `</stream:stream>`; the session is dead from here on.
    fn fail_with(&mut self, se: StreamError, err: Error) -> Error {
        info!(stream_id = %self.stream_id, error = %se, "closing inbound stream with a stream error");
        if !self.header_sent {
            self.send_header(None, None);
        }
        self.out.element(&se.to_element(), &self.ctx);
        self.out.transmit(STREAM_CLOSE);
        self.out.push(Output::Close(Some(se)));
        self.state = State::Closed(Some(err.clone()));
        err
    }
}
