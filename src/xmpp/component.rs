//! XEP-0114 Jabber Component Protocol, sans-IO, both ends:
//! - [`ComponentSession`]: the server side (our proxy accepting a gateway).
//! - [`ComponentClient`]: the component side (a gateway connecting to a server).
//!
//! ```text
//! C: <stream:stream xmlns='jabber:component:accept' to='gw.example'>
//! S: <stream:stream xmlns='jabber:component:accept' from='gw.example' id='ID'>
//! C: <handshake>hex(SHA-1(ID ‖ secret))</handshake>
//! S: <handshake/>                     (or <stream:error><not-authorized/>)
//! ```
//! Errors and outputs are those of [`crate::xmpp::s2s`].

use std::time::Instant;

use sha1::{Digest, Sha1};
use tracing::{debug, info, warn};

use super::codec::{CodecError, Decoder, Event, Limits, StreamHeader};
use super::conditions::{StreamCondition, StreamError};
use super::dialback::keys_equal;
use super::element::{Element, Node, NsContext};
use super::ns;
use super::s2s::{
    Error, HeaderOut, Input, Outbox, Output, PeerMisbehaved, STREAM_CLOSE, is_stanza_name,
    jid_domain,
};

/// XEP-0114 §3: `<handshake/>` content = lowercase hex SHA-1 of stream id ‖ secret.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Move an element (and its descendants) from one content namespace to another: a stanza
/// from a component stream (`jabber:component:accept`) routed onto an S2S stream
/// (`jabber:server`) keeps its meaning (XEP-0114 §3: the component's stanzas are in the
/// accept namespace only because of the stream's default namespace).
pub fn rebase_ns(mut el: Element, from: &str, to: &str) -> Element {
    fn walk(e: &mut Element, from: &str, to: &str) {
        if e.ns == from {
            e.ns = to.to_string();
        }
        for n in &mut e.children {
            if let Node::Element(c) = n {
                walk(c, from, to);
            }
        }
    }
    walk(&mut el, from, to);
    el
}

/// A configured component: its domain and shared secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentCredentials {
    pub domain: String,
    pub secret: String,
}

#[derive(Debug)]
enum ServerState {
    ExpectStreamHeader,
    ExpectHandshake { domain: String, secret: String },
    Authenticated { domain: String },
    Closed(Option<Error>),
}

fn accept_ctx() -> NsContext {
    NsContext::new(ns::COMPONENT_ACCEPT).with_prefix("stream", ns::STREAM)
}

/// The server side of one component connection.
#[derive(Debug)]
pub struct ComponentSession {
    components: Vec<ComponentCredentials>,
    stream_id: String,
    decoder: Decoder,
    state: ServerState,
    out: Outbox,
    ctx: NsContext,
    header_sent: bool,
    deadline: Option<Instant>,
}

impl ComponentSession {
    /// `establish`: the handshake must complete by `now + establish`.
    pub fn new(
        now: Instant,
        components: Vec<ComponentCredentials>,
        stream_id: String,
        limits: Limits,
        establish: std::time::Duration,
    ) -> Self {
        ComponentSession {
            components,
            stream_id,
            decoder: Decoder::new(limits),
            state: ServerState::ExpectStreamHeader,
            out: Outbox::default(),
            ctx: accept_ctx(),
            header_sent: false,
            deadline: Some(now + establish),
        }
    }

    /// The authenticated component domain.
    pub fn domain(&self) -> Option<&str> {
        match &self.state {
            ServerState::Authenticated { domain } => Some(domain),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, ServerState::Closed(_))
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            None
        } else {
            self.deadline
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.check_open()?;
        if self.deadline.is_some_and(|d| d <= now) {
            return Err(self.fail(PeerMisbehaved::Timeout));
        }
        Ok(())
    }

    /// Deliver a stanza (in `jabber:server` or the accept namespace) to the component.
    /// Returns it back when the component is not (or no longer) authenticated.
    pub fn send_stanza(&mut self, stanza: Element) -> Result<(), Element> {
        if !matches!(self.state, ServerState::Authenticated { .. }) {
            return Err(stanza);
        }
        let el = rebase_ns(stanza, ns::SERVER, ns::COMPONENT_ACCEPT);
        self.out.element(&el, &self.ctx);
        Ok(())
    }

    pub fn close(&mut self, error: Option<StreamError>) {
        if self.is_closed() {
            return;
        }
        if !self.header_sent {
            self.send_header(None);
        }
        if let Some(e) = &error {
            self.out.element(&e.to_element(), &self.ctx);
        }
        self.out.transmit(STREAM_CLOSE);
        self.out.push(Output::Close(error));
        self.state = ServerState::Closed(Some(Error::LocallyClosed));
    }

    pub fn handle_input(&mut self, _now: Instant, input: Input<'_>) -> Result<(), Error> {
        self.check_open()?;
        match input {
            Input::Data(d) => {
                self.decoder.feed(d);
                while !self.is_closed() {
                    match self.decoder.next_event() {
                        Ok(None) => break,
                        Ok(Some(ev)) => self.on_event(ev)?,
                        Err(e) => return Err(self.fail_codec(e)),
                    }
                }
                Ok(())
            }
            Input::Eof => {
                self.out.push(Output::Close(None));
                self.state = ServerState::Closed(None);
                Ok(())
            }
            Input::VerifyResult { .. } | Input::TlsEstablished { .. } | Input::TlsFailed => {
                Err(Error::Misuse)
            }
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        match &self.state {
            ServerState::Closed(Some(e)) => Err(e.clone()),
            ServerState::Closed(None) => Err(Error::ConnectionLost),
            _ => Ok(()),
        }
    }

    fn send_header(&mut self, from: Option<&str>) {
        self.header_sent = true;
        // XEP-0114 §3: no version; like Prosody we answer without one.
        let xml = HeaderOut {
            content_ns: ns::COMPONENT_ACCEPT,
            from,
            to: None,
            id: Some(&self.stream_id),
            version: None,
            lang: None,
            dialback: false,
        }
        .to_xml();
        self.out.transmit(&xml);
    }

    fn on_event(&mut self, ev: Event) -> Result<(), Error> {
        match ev {
            Event::Whitespace(_) => Ok(()),
            Event::Header(h) if matches!(self.state, ServerState::ExpectStreamHeader) => {
                self.on_header(&h)
            }
            Event::Header(_) => Err(self.fail(PeerMisbehaved::UnexpectedStreamEvent)),
            Event::Close => {
                self.out.transmit(STREAM_CLOSE);
                self.out.push(Output::Close(None));
                self.state = ServerState::Closed(None);
                Ok(())
            }
            Event::Element(el) => self.on_element(el),
        }
    }

    fn on_header(&mut self, h: &StreamHeader) -> Result<(), Error> {
        let found =
            h.to.as_deref()
                .and_then(|to| {
                    self.components
                        .iter()
                        .find(|c| c.domain.eq_ignore_ascii_case(to))
                })
                .cloned();
        self.send_header(
            found
                .as_ref()
                .map(|c| c.domain.as_str())
                .or(h.to.as_deref()),
        );
        let stream_ns = h
            .declarations
            .iter()
            .find(|(p, _)| *p == h.stream_prefix)
            .map(|(_, u)| u.as_str());
        if stream_ns.is_some_and(|u| u != ns::STREAM) {
            return Err(self.fail(PeerMisbehaved::WrongStreamNamespace));
        }
        if h.content_ns != ns::COMPONENT_ACCEPT {
            return Err(self.fail(PeerMisbehaved::WrongContentNamespace));
        }
        let Some(c) = found else {
            info!(to = ?h.to, "component stream for an unknown domain");
            return Err(self.fail(PeerMisbehaved::UnknownHost));
        };
        self.state = ServerState::ExpectHandshake {
            domain: c.domain,
            secret: c.secret,
        };
        Ok(())
    }

    fn on_element(&mut self, el: Element) -> Result<(), Error> {
        if el.is(ns::STREAM, "error") {
            let e = StreamError::from_element(&el)
                .unwrap_or(StreamError::new(StreamCondition::UndefinedCondition));
            info!(error = %e, "component sent a stream error");
            self.out.transmit(STREAM_CLOSE);
            self.out.push(Output::Close(None));
            let err = Error::PeerStreamError(e);
            self.state = ServerState::Closed(Some(err.clone()));
            return Err(err);
        }
        match std::mem::replace(&mut self.state, ServerState::Closed(None)) {
            ServerState::ExpectHandshake { domain, secret } => {
                if !el.is(ns::COMPONENT_ACCEPT, "handshake") {
                    // Stanzas before the handshake (XEP-0114 §3, RFC 6120 §4.9.3.12).
                    self.state = ServerState::ExpectHandshake { domain, secret };
                    return Err(self.fail(PeerMisbehaved::StanzaBeforeAuth));
                }
                let expected = handshake_digest(&self.stream_id, &secret);
                if !keys_equal(&expected, &el.text().to_ascii_lowercase()) {
                    warn!(%domain, "component handshake failed");
                    self.state = ServerState::ExpectHandshake { domain, secret };
                    return Err(self.fail(PeerMisbehaved::BadHandshake));
                }
                self.out.transmit("<handshake/>");
                self.deadline = None;
                self.out.push(Output::ComponentReady(domain.clone()));
                self.state = ServerState::Authenticated { domain };
                Ok(())
            }
            ServerState::Authenticated { domain } => {
                self.state = ServerState::Authenticated {
                    domain: domain.clone(),
                };
                if !(el.ns == ns::COMPONENT_ACCEPT && is_stanza_name(&el.name)) {
                    return Err(self.fail(PeerMisbehaved::UnsupportedElement));
                }
                // XEP-0114 §3 / RFC 6120 §8.1.2.1: a component speaks only for its domain.
                let from = el.attr("from").and_then(jid_domain);
                let to = el.attr("to").and_then(jid_domain);
                match (from, to) {
                    (Some(f), Some(_)) if f.eq_ignore_ascii_case(&domain) => {}
                    (Some(_), Some(_)) => return Err(self.fail(PeerMisbehaved::InvalidFrom)),
                    _ => return Err(self.fail(PeerMisbehaved::ImproperAddressing)),
                }
                self.out.push(Output::Stanza(rebase_ns(
                    el,
                    ns::COMPONENT_ACCEPT,
                    ns::SERVER,
                )));
                Ok(())
            }
            s => {
                self.state = s;
                Err(self.fail(PeerMisbehaved::UnsupportedElement))
            }
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
        info!(error = %se, "closing component stream with a stream error");
        if !self.header_sent {
            self.send_header(None);
        }
        self.out.element(&se.to_element(), &self.ctx);
        self.out.transmit(STREAM_CLOSE);
        self.out.push(Output::Close(Some(se)));
        self.state = ServerState::Closed(Some(err.clone()));
        err
    }
}

#[derive(Debug)]
enum ClientState {
    ExpectStreamHeader,
    ExpectHandshakeReply,
    Ready,
    Closed(Option<Error>),
}

/// The component side: connects to a server as `domain`.
#[derive(Debug)]
pub struct ComponentClient {
    domain: String,
    secret: String,
    decoder: Decoder,
    state: ClientState,
    out: Outbox,
    ctx: NsContext,
    queue: Vec<Element>,
    deadline: Option<Instant>,
}

impl ComponentClient {
    pub fn new(
        now: Instant,
        domain: &str,
        secret: &str,
        limits: Limits,
        establish: std::time::Duration,
    ) -> Self {
        let mut c = ComponentClient {
            domain: domain.to_string(),
            secret: secret.to_string(),
            decoder: Decoder::new(limits),
            state: ClientState::ExpectStreamHeader,
            out: Outbox::default(),
            ctx: accept_ctx(),
            queue: Vec::new(),
            deadline: Some(now + establish),
        };
        let xml = HeaderOut {
            content_ns: ns::COMPONENT_ACCEPT,
            from: None,
            to: Some(domain),
            id: None,
            version: None,
            lang: None,
            dialback: false,
        }
        .to_xml();
        c.out.transmit(&xml);
        c
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, ClientState::Ready)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, ClientState::Closed(_))
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            None
        } else {
            self.deadline
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.check_open()?;
        if self.deadline.is_some_and(|d| d <= now) {
            return Err(self.fail(PeerMisbehaved::Timeout));
        }
        Ok(())
    }

    /// Send a stanza (any content namespace; it is written in the accept namespace). Held
    /// until the handshake succeeded.
    pub fn send_stanza(&mut self, stanza: Element) {
        let el = rebase_ns(stanza, ns::SERVER, ns::COMPONENT_ACCEPT);
        match self.state {
            ClientState::Ready => self.out.element(&el, &self.ctx),
            ClientState::Closed(_) => debug!("component stream closed; stanza dropped"),
            _ => self.queue.push(el),
        }
    }

    pub fn close(&mut self) {
        if self.is_closed() {
            return;
        }
        self.out.transmit(STREAM_CLOSE);
        self.out.push(Output::Close(None));
        self.state = ClientState::Closed(Some(Error::LocallyClosed));
    }

    pub fn handle_input(&mut self, _now: Instant, input: Input<'_>) -> Result<(), Error> {
        self.check_open()?;
        match input {
            Input::Data(d) => {
                self.decoder.feed(d);
                while !self.is_closed() {
                    match self.decoder.next_event() {
                        Ok(None) => break,
                        Ok(Some(ev)) => self.on_event(ev)?,
                        Err(e) => return Err(self.fail_codec(e)),
                    }
                }
                Ok(())
            }
            Input::Eof => {
                self.out.push(Output::Close(None));
                self.state = ClientState::Closed(Some(Error::ConnectionLost));
                Ok(())
            }
            Input::VerifyResult { .. } | Input::TlsEstablished { .. } | Input::TlsFailed => {
                Err(Error::Misuse)
            }
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        match &self.state {
            ClientState::Closed(Some(e)) => Err(e.clone()),
            ClientState::Closed(None) => Err(Error::ConnectionLost),
            _ => Ok(()),
        }
    }

    fn on_event(&mut self, ev: Event) -> Result<(), Error> {
        match (&self.state, ev) {
            (_, Event::Whitespace(_)) => Ok(()),
            (ClientState::ExpectStreamHeader, Event::Header(h)) => {
                if h.content_ns != ns::COMPONENT_ACCEPT {
                    return Err(self.fail(PeerMisbehaved::WrongContentNamespace));
                }
                let Some(id) = h.id.filter(|i| !i.is_empty()) else {
                    return Err(self.fail(PeerMisbehaved::MissingStreamId));
                };
                let hs = Element::new(ns::COMPONENT_ACCEPT, "handshake")
                    .with_text(handshake_digest(&id, &self.secret));
                self.out.element(&hs, &self.ctx);
                self.state = ClientState::ExpectHandshakeReply;
                Ok(())
            }
            (_, Event::Close) => {
                self.out.transmit(STREAM_CLOSE);
                self.out.push(Output::Close(None));
                self.state = ClientState::Closed(None);
                Ok(())
            }
            (_, Event::Element(el)) if el.is(ns::STREAM, "error") => {
                let e = StreamError::from_element(&el)
                    .unwrap_or(StreamError::new(StreamCondition::UndefinedCondition));
                info!(domain = %self.domain, error = %e, "server sent a stream error");
                self.out.transmit(STREAM_CLOSE);
                self.out.push(Output::Close(None));
                let err = Error::PeerStreamError(e);
                self.state = ClientState::Closed(Some(err.clone()));
                Err(err)
            }
            (ClientState::ExpectHandshakeReply, Event::Element(el))
                if el.is(ns::COMPONENT_ACCEPT, "handshake") =>
            {
                self.state = ClientState::Ready;
                self.deadline = None;
                for s in std::mem::take(&mut self.queue) {
                    self.out.element(&s, &self.ctx);
                }
                self.out.push(Output::ComponentReady(self.domain.clone()));
                Ok(())
            }
            (ClientState::Ready, Event::Element(el)) if is_stanza_name(&el.name) => {
                self.out.push(Output::Stanza(rebase_ns(
                    el,
                    ns::COMPONENT_ACCEPT,
                    ns::SERVER,
                )));
                Ok(())
            }
            (ClientState::ExpectStreamHeader, _) => {
                Err(self.fail(PeerMisbehaved::UnexpectedStreamEvent))
            }
            (_, _) => Err(self.fail(PeerMisbehaved::UnsupportedElement)),
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
        self.out.element(&se.to_element(), &self.ctx);
        self.out.transmit(STREAM_CLOSE);
        self.out.push(Output::Close(Some(se)));
        self.state = ClientState::Closed(Some(err.clone()));
        err
    }
}
