//! The runner's SIP steps (docs/scenarios.md "SIP actors"): `send` and `expect` with
//! `sip` on a SIP actor. A child of `run`, so it shares the runner's transcript, variables
//! and failure reporting; the sockets and transactions are src/harness/sip_actor.rs's.
//!
//! Sending completes what a SIP stack must add and the step leaves out (RFC 3261 §8.1.1:
//! Via with a fresh branch, From with a tag, To, Call-ID, CSeq, Max-Forwards, Contact,
//! Content-Length; §8.2.6: a response copies Via, From, To, Call-ID and CSeq from its
//! request and tags the To). The runner remembers, per Call-ID, the actor's tag, the
//! peer's address and tag, and the actor's CSeq, so a request written with the Call-ID
//! of an earlier exchange goes out inside that dialog (RFC 3261 §12.2.1.1).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::super::load::{ActorKind, NOTHING, Step};
use super::super::sip_actor::{
    self, Command, Dest, Emit, Endpoint, Incoming, ReturnPath, SipEvent, SipTransport,
};
use super::super::sip_match;
use super::super::transcript::{Dir, Unit};
use super::{NetEvent, Runner, StepEnd, StepResult, fmt_dur};
use crate::sip::builder::{default_reason, new_tag};
use crate::sip::message::names_equal;
use crate::sip::transaction::ServerKey;
use crate::sip::{
    Local, Message, Method, NameAddr, OsRandom, Request, RequestBuilder, Response, ResponseBuilder,
    Timers, Uri,
};

/// What the runner knows of one dialog (by Call-ID) of one actor.
#[derive(Debug, Clone)]
struct DialogMemo {
    /// The actor's tag (From of its requests, To of its responses).
    local_tag: String,
    /// The peer's From/To value with its tag, once known.
    remote: Option<String>,
    /// The actor's last CSeq number in this dialog (RFC 3261 §12.2.1.1).
    local_cseq: u32,
}

/// A message waiting in an actor's inbox.
#[derive(Debug, Clone)]
struct SipReceived {
    at: Duration,
    path: ReturnPath,
    item: Incoming,
    raw: Vec<u8>,
}

#[derive(Debug, Default)]
struct ActorState {
    endpoint: usize,
    inbox: VecDeque<SipReceived>,
    /// The actor's CSeq counter for requests outside a known dialog.
    cseq: u32,
    /// Requests consumed by steps, latest last, with their return path.
    received: Vec<(Request, ReturnPath)>,
    dialogs: HashMap<String, DialogMemo>,
}

/// The runner's SIP side.
pub(super) struct SipState {
    endpoints: Vec<Endpoint>,
    actors: HashMap<String, ActorState>,
    /// Branch (lower-cased) of each request an actor sent → the actor, to route responses.
    branches: HashMap<String, String>,
    rng: OsRandom,
}

impl SipState {
    pub(super) fn start(
        sockets: sip_actor::SipSockets,
        tx: &mpsc::UnboundedSender<NetEvent>,
        start: std::time::Instant,
    ) -> SipState {
        let tx = tx.clone();
        let emit: Emit = std::sync::Arc::new(move |e| tx.send(NetEvent::Sip(e)).is_ok());
        let endpoints = if sockets.is_empty() {
            Vec::new()
        } else {
            sip_actor::start(sockets, emit, start, Timers::default())
        };
        let mut actors = HashMap::new();
        for (i, ep) in endpoints.iter().enumerate() {
            for (name, _) in &ep.actors {
                actors.insert(
                    name.clone(),
                    ActorState {
                        endpoint: i,
                        ..ActorState::default()
                    },
                );
            }
        }
        SipState {
            endpoints,
            actors,
            branches: HashMap::new(),
            rng: OsRandom::default(),
        }
    }

    /// The actor a message received on endpoint `ep` is for: a request by its
    /// Request-URI user, a response by the branch of the request it answers; otherwise the
    /// endpoint's first actor.
    fn route(&self, ep: usize, item: &Incoming) -> Option<String> {
        let endpoint = self.endpoints.get(ep)?;
        let by = match item {
            Incoming::Message(Message::Request(r)) => endpoint
                .actors
                .iter()
                .find(|(_, u)| u.is_some() && u.as_deref() == r.uri.user())
                .map(|(n, _)| n.clone()),
            Incoming::Message(Message::Response(r)) => r
                .headers
                .top_via()
                .ok()
                .and_then(|v| v.branch())
                .and_then(|b| self.branches.get(&b.to_ascii_lowercase()).cloned()),
            Incoming::Undecodable { .. } => None,
        };
        by.or_else(|| endpoint.actors.first().map(|(n, _)| n.clone()))
    }

    fn stream_name(&self, actor: &str) -> &'static str {
        match self
            .actors
            .get(actor)
            .and_then(|a| self.endpoints.get(a.endpoint))
            .map(|e| e.transport)
        {
            Some(SipTransport::Tcp) => "tcp",
            _ => "udp",
        }
    }
}

impl Runner<'_> {
    pub(super) fn sip_absorb(&mut self, ev: SipEvent) {
        match ev {
            SipEvent::Received {
                endpoint,
                at,
                path,
                item,
                raw,
            } => {
                let Some(actor) = self.sip.route(endpoint, &item) else {
                    return;
                };
                if let Some(st) = self.sip.actors.get_mut(&actor) {
                    st.inbox.push_back(SipReceived {
                        at,
                        path,
                        item,
                        raw,
                    });
                }
            }
            SipEvent::Retransmission {
                endpoint,
                at,
                from_sut,
                message,
                raw,
            } => {
                let item = Incoming::Message(message);
                let Some(actor) = self.sip.route(endpoint, &item) else {
                    return;
                };
                let Incoming::Message(message) = item else {
                    return;
                };
                let stream = self.sip.stream_name(&actor);
                let dir = if from_sut { Dir::FromSut } else { Dir::ToSut };
                self.transcript.push(
                    at,
                    &actor,
                    stream,
                    dir,
                    Unit::Sip {
                        message,
                        retransmission: true,
                    },
                    raw,
                );
            }
        }
    }

    pub(super) async fn sip_release(&mut self) {
        for ep in self.sip.endpoints.drain(..) {
            ep.stop().await;
        }
    }

    /// SIP messages that arrived but no step consumed, at the end of the transcript.
    pub(super) fn sip_drain_leftovers(&mut self) {
        let mut names: Vec<String> = self.sip.actors.keys().cloned().collect();
        names.sort();
        let mut first = true;
        for name in names {
            let stream = self.sip.stream_name(&name);
            let units: Vec<SipReceived> = self
                .sip
                .actors
                .get_mut(&name)
                .map(|a| a.inbox.drain(..).collect())
                .unwrap_or_default();
            for r in units {
                if first {
                    self.note("SIP messages received but not consumed by any step:");
                    first = false;
                }
                let unit = received_unit(&r);
                self.transcript
                    .push(r.at, &name, stream, Dir::FromSut, unit, r.raw);
            }
        }
    }

    /// The next message the SUT sent to `actor`, logged; `None` at the deadline.
    async fn sip_next(
        &mut self,
        actor: &str,
        deadline: tokio::time::Instant,
    ) -> Option<SipReceived> {
        loop {
            let st = self.sip.actors.get_mut(actor)?;
            if let Some(r) = st.inbox.pop_front() {
                if let Incoming::Message(m) = &r.item {
                    learn_dialog(st, m);
                    if let Message::Request(req) = m {
                        st.received.push((req.clone(), r.path));
                    }
                }
                let stream = self.sip.stream_name(actor);
                self.transcript.push(
                    r.at,
                    actor,
                    stream,
                    Dir::FromSut,
                    received_unit(&r),
                    r.raw.clone(),
                );
                return Some(r);
            }
            if !self.pump(deadline).await {
                return None;
            }
        }
    }

    pub(super) async fn sip_expect(
        &mut self,
        step: &Step,
        actor: &str,
        text: &str,
        or: &[String],
        timeout: Duration,
        answer: Option<u16>,
    ) -> StepResult {
        let tpl = sip_match::prepare(text, &|n| self.lookup(n))
            .map_err(|e| Self::broken(step, format!("sip template: {e}")))?;
        let mut alts = Vec::new();
        let mut nothing_ok = false;
        for a in or {
            if a.trim() == NOTHING {
                nothing_ok = true;
            } else {
                alts.push(
                    sip_match::prepare(a, &|n| self.lookup(n))
                        .map_err(|e| Self::broken(step, format!("sip template: {e}")))?,
                );
            }
        }
        let mut shown = sip_match::substitute_payload(text, &|n| self.lookup(n))
            .unwrap_or_else(|_| text.to_string())
            .trim()
            .to_string();
        for a in or {
            shown.push_str("\n  or ");
            shown.push_str(a.trim());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let Some(r) = self.sip_next(actor, deadline).await else {
            if nothing_ok {
                return Ok(());
            }
            return Err(self.failure(
                step,
                actor,
                shown,
                format!("nothing after {}", fmt_dur(timeout)),
            ));
        };
        let m = match r.item {
            Incoming::Message(m) => m,
            Incoming::Undecodable { reason } => {
                let text = String::from_utf8_lossy(&r.raw[..r.raw.len().min(200)]).into_owned();
                return Err(self.failure(
                    step,
                    actor,
                    shown,
                    format!("undecodable SIP ({reason}): {text:?}"),
                ));
            }
        };
        let auto = |m: &Message| match (answer, m) {
            (Some(status), Message::Request(_)) => Some(Response::new(status, "")),
            _ => None,
        };
        match sip_match::match_message(&tpl, &m) {
            Ok(caps) => {
                self.record_captures(caps);
                match auto(&m) {
                    Some(r) => self.sip_send_response(step, actor, r).await,
                    None => Ok(()),
                }
            }
            Err(mm) => {
                if alts.iter().any(|a| sip_match::match_message(a, &m).is_ok()) {
                    return match auto(&m) {
                        Some(r) => self.sip_send_response(step, actor, r).await,
                        None => Ok(()),
                    };
                }
                Err(self.failure(
                    step,
                    actor,
                    shown,
                    format!("{}\n  mismatch: {mm}", sip_match::render(&m)),
                ))
            }
        }
    }

    /// `expect_none` on a SIP actor: nothing but retransmissions arrives during `window`.
    pub(super) async fn sip_expect_none(
        &mut self,
        step: &Step,
        actor: &str,
        window: Duration,
    ) -> StepResult {
        let deadline = tokio::time::Instant::now() + window;
        match self.sip_next(actor, deadline).await {
            None => Ok(()),
            Some(r) => {
                let got = match &r.item {
                    Incoming::Message(m) => sip_match::render(m),
                    Incoming::Undecodable { reason } => format!("undecodable SIP ({reason})"),
                };
                Err(self.failure(
                    step,
                    actor,
                    format!("no SIP message for {}", fmt_dur(window)),
                    got,
                ))
            }
        }
    }

    pub(super) async fn sip_send(
        &mut self,
        step: &Step,
        actor: &str,
        text: &str,
        raw: bool,
    ) -> StepResult {
        let text = sip_match::substitute_payload(text, &|n| self.lookup(n))
            .map_err(|e| Self::broken(step, format!("sip: {e}")))?;
        if raw {
            return self.sip_send_raw(step, actor, text.into_bytes()).await;
        }
        let msg = sip_match::payload_message(&text)
            .map_err(|e| Self::broken(step, format!("sip: not a SIP message: {e}")))?;
        match msg {
            Message::Request(r) => self.sip_send_request(step, actor, r).await,
            Message::Response(r) => self.sip_send_response(step, actor, r).await,
        }
    }

    /// The actor's identity and transport as a SIP stack needs them (RFC 3261 §8.1.1).
    fn sip_local(&self, step: &Step, actor: &str) -> Result<(Local, usize), StepEnd> {
        let Some(ActorKind::Sip(def)) = self.scenario.actor(actor).map(|a| &a.kind) else {
            return Err(Self::broken(step, format!("`{actor}` is not a SIP actor")));
        };
        let ep = self
            .sip
            .actors
            .get(actor)
            .map(|a| a.endpoint)
            .ok_or_else(|| Self::broken(step, format!("SIP actor `{actor}` has no socket")))?;
        let endpoint = self
            .sip
            .endpoints
            .get(ep)
            .ok_or_else(|| Self::broken(step, "the SIP endpoints were released"))?;
        let uri = Uri::parse(&def.uri)
            .ok_or_else(|| Self::broken(step, format!("bad actor URI {:?}", def.uri)))?;
        let user = def.user.clone().unwrap_or_default();
        let transport_param = match endpoint.transport {
            SipTransport::Tcp => ";transport=tcp",
            SipTransport::Udp => "",
        };
        let contact = Uri::parse(&format!("sip:{user}@{}{transport_param}", endpoint.local));
        Ok((
            Local {
                aor: NameAddr::new(uri),
                transport: endpoint.transport.token().to_string(),
                sent_by: endpoint.local.to_string(),
                contact,
            },
            ep,
        ))
    }

    /// Where the actor's requests go: the SUT's listener for the actor's transport.
    fn sip_dest(
        &self,
        step: &Step,
        ep: usize,
    ) -> Result<(Dest, std::net::SocketAddr, SipTransport), StepEnd> {
        let Some(endpoint) = self.sip.endpoints.get(ep) else {
            return Err(Self::broken(step, "the SIP endpoints were released"));
        };
        let transport = endpoint.transport;
        let Some(addr) = self.sut.sip.addr(transport) else {
            return Err(Self::broken(
                step,
                format!("the target has no SIP {transport} listener"),
            ));
        };
        let dest = match transport {
            SipTransport::Udp => Dest::Udp(addr),
            SipTransport::Tcp => Dest::TcpConnect(addr),
        };
        Ok((dest, addr, transport))
    }

    /// `raw = true`: the bytes as written, recorded as such (a deliberately broken message
    /// must show in the snapshot exactly as it went out).
    async fn sip_send_raw(&mut self, step: &Step, actor: &str, bytes: Vec<u8>) -> StepResult {
        let ep = self
            .sip
            .actors
            .get(actor)
            .map(|a| a.endpoint)
            .ok_or_else(|| Self::broken(step, format!("SIP actor `{actor}` has no socket")))?;
        let (dest, addr, transport) = self.sip_dest(step, ep)?;
        // Responses to a raw request that has a branch still find the actor.
        if let Ok(crate::sip::Item::Message(m)) =
            crate::sip::parse_datagram(&bytes, &crate::sip::Limits::default())
            && let Some(b) = m.headers().top_via().ok().and_then(|v| v.branch())
        {
            self.sip
                .branches
                .insert(b.to_ascii_lowercase(), actor.to_string());
        }
        let Some(commands) = self.sip.endpoints.get(ep).map(|e| e.commands.clone()) else {
            return Err(Self::broken(step, "the SIP endpoints were released"));
        };
        let at = self.now();
        self.transcript.push(
            at,
            actor,
            self.sip.stream_name(actor),
            Dir::ToSut,
            Unit::Undecodable {
                bytes: bytes.clone(),
                reason: "sent as written (raw = true)".into(),
            },
            bytes.clone(),
        );
        let (done, wait) = oneshot::channel();
        let _ = commands.send(Command::Raw { bytes, dest, done });
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failure(
                step,
                actor,
                format!("send the bytes to {addr} over {transport}"),
                e,
            )),
            Err(_) => Err(Self::broken(step, "the SIP endpoint stopped")),
        }
    }

    async fn sip_send_request(&mut self, step: &Step, actor: &str, mut r: Request) -> StepResult {
        let (local, ep) = self.sip_local(step, actor)?;
        let Some(st) = self.sip.actors.get_mut(actor) else {
            return Err(Self::broken(step, format!("unknown SIP actor `{actor}`")));
        };
        // Inside a known dialog: the actor's tag, the peer's address, the next CSeq.
        let call_id = r.headers.call_id().ok().map(str::to_string);
        if let Some(memo) = call_id.as_ref().and_then(|c| st.dialogs.get_mut(c)) {
            if !r.headers.contains("From") {
                let from = local.aor.clone().with_tag(&memo.local_tag);
                r.headers.push("From", from.to_string());
            }
            if !r.headers.contains("To")
                && let Some(remote) = &memo.remote
            {
                r.headers.push("To", remote.clone());
            }
            if !r.headers.contains("CSeq") {
                memo.local_cseq += 1;
                r.headers
                    .push("CSeq", format!("{} {}", memo.local_cseq, r.method));
            }
        }
        let had_cseq = r.headers.contains("CSeq");
        let next = st.cseq + 1;
        let built = RequestBuilder::from_request(r)
            .cseq(next)
            .build(&local, &mut self.sip.rng);
        if !had_cseq {
            st.cseq = next;
        }
        if let (Ok(cid), Ok(from)) = (built.headers.call_id(), built.headers.from())
            && let Some(tag) = from.tag()
        {
            let seq = built.headers.cseq().map(|c| c.seq).unwrap_or(0);
            let memo = st.dialogs.entry(cid.to_string()).or_insert(DialogMemo {
                local_tag: tag,
                remote: None,
                local_cseq: seq,
            });
            memo.local_cseq = memo.local_cseq.max(seq);
        }
        if let Some(b) = built.headers.top_via().ok().and_then(|v| v.branch()) {
            self.sip
                .branches
                .insert(b.to_ascii_lowercase(), actor.to_string());
        }
        let (dest, addr, transport) = self.sip_dest(step, ep)?;
        let Some(commands) = self.sip.endpoints.get(ep).map(|e| e.commands.clone()) else {
            return Err(Self::broken(step, "the SIP endpoints were released"));
        };
        let raw = built.to_bytes();
        let at = self.now();
        self.transcript.push(
            at,
            actor,
            self.sip.stream_name(actor),
            Dir::ToSut,
            Unit::Sip {
                message: Message::Request(built.clone()),
                retransmission: false,
            },
            raw,
        );
        let (done, wait) = oneshot::channel();
        let _ = commands.send(Command::Request {
            request: built,
            dest,
            done,
        });
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failure(
                step,
                actor,
                format!("send the request to {addr} over {transport}"),
                e,
            )),
            Err(_) => Err(Self::broken(step, "the SIP endpoint stopped")),
        }
    }

    async fn sip_send_response(&mut self, step: &Step, actor: &str, given: Response) -> StepResult {
        let (local, ep) = self.sip_local(step, actor)?;
        let Some(st) = self.sip.actors.get_mut(actor) else {
            return Err(Self::broken(step, format!("unknown SIP actor `{actor}`")));
        };
        // The request answered: the latest consumed one, or the latest with the Call-ID
        // (and CSeq) the step writes.
        let cid = given.headers.call_id().ok();
        let cseq = given.headers.cseq().ok();
        let Some((req, path)) = st
            .received
            .iter()
            .rev()
            .find(|(r, _)| {
                cid.is_none_or(|c| r.headers.call_id().ok() == Some(c))
                    && cseq
                        .as_ref()
                        .is_none_or(|c| r.headers.cseq().ok().as_ref() == Some(c))
            })
            .cloned()
        else {
            return Err(Self::broken(
                step,
                format!(
                    "a response needs a request `{actor}` received in an earlier `expect` step{}",
                    if cid.is_some() {
                        " with that Call-ID and CSeq"
                    } else {
                        ""
                    }
                ),
            ));
        };
        let req_cid = req.headers.call_id().unwrap_or_default().to_string();
        let rng = &mut self.sip.rng;
        let memo = st.dialogs.entry(req_cid).or_insert_with(|| DialogMemo {
            local_tag: new_tag(rng),
            remote: req.headers.get("From").map(str::to_string),
            local_cseq: 0,
        });
        let reason = if given.reason.trim().is_empty() {
            default_reason(given.status).to_string()
        } else {
            given.reason.clone()
        };
        let mut built = ResponseBuilder::new(&req, given.status)
            .reason(reason)
            .to_tag(memo.local_tag.clone())
            .build(rng);
        // What the step writes replaces what was copied (it may be wrong on purpose).
        let mut written: Vec<&str> = Vec::new();
        for h in &given.headers {
            if !written.iter().any(|w| names_equal(w, &h.name)) {
                written.push(&h.name);
            }
        }
        for name in &written {
            built.headers.remove(name);
        }
        built.headers.remove("Content-Length");
        for h in &given.headers {
            if !names_equal(&h.name, "Content-Length") {
                built.headers.push(h.name.clone(), h.value.clone());
            }
        }
        // RFC 3261 §12.1.1, RFC 6665 §4.2.1.1: a 2xx that creates a dialog has a Contact.
        if (200..300).contains(&given.status)
            && matches!(req.method, Method::Subscribe | Method::Invite)
            && !built.headers.contains("Contact")
            && let Some(c) = &local.contact
        {
            built
                .headers
                .push("Contact", NameAddr::new(c.clone()).to_string());
        }
        built.body = given.body.clone();
        built
            .headers
            .push("Content-Length", built.body.len().to_string());
        let key = ServerKey::from_request(&req).ok();
        let Some(endpoint) = self.sip.endpoints.get(ep) else {
            return Err(Self::broken(step, "the SIP endpoints were released"));
        };
        let commands = endpoint.commands.clone();
        let raw = built.to_bytes();
        let at = self.now();
        self.transcript.push(
            at,
            actor,
            self.sip.stream_name(actor),
            Dir::ToSut,
            Unit::Sip {
                message: Message::Response(built.clone()),
                retransmission: false,
            },
            raw,
        );
        let (done, wait) = oneshot::channel();
        let _ = commands.send(Command::Response {
            response: built,
            key,
            path,
            done,
        });
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failure(step, actor, "send the response", e)),
            Err(_) => Err(Self::broken(step, "the SIP endpoint stopped")),
        }
    }
}

/// Remember what a received message says about its dialog: the peer's tagged address
/// (From of its request, To of a response to ours).
fn learn_dialog(st: &mut ActorState, m: &Message) {
    let h = m.headers();
    let Ok(cid) = h.call_id() else { return };
    let remote = match m {
        Message::Request(_) => h.from().ok(),
        Message::Response(_) => h.to().ok(),
    };
    let Some(remote) = remote.filter(|r| r.tag().is_some()) else {
        return;
    };
    let value = match m {
        Message::Request(_) => h.get("From"),
        Message::Response(_) => h.get("To"),
    };
    if let Some(memo) = st.dialogs.get_mut(cid)
        && memo.remote.as_ref().is_none_or(|r| {
            NameAddr::parse("remote", r)
                .ok()
                .and_then(|n| n.tag())
                .is_none()
        })
    {
        memo.remote = value.map(str::to_string).or(Some(remote.to_string()));
    }
}

fn received_unit(r: &SipReceived) -> Unit {
    match &r.item {
        Incoming::Message(m) => Unit::Sip {
            message: m.clone(),
            retransmission: false,
        },
        Incoming::Undecodable { reason } => Unit::Undecodable {
            bytes: r.raw.clone(),
            reason: reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    //! Loopback: the runner's SIP actor against an in-test echo UA standing in for the SUT.
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream, UdpSocket};

    use super::super::super::catalogue::Catalogue;
    use super::super::super::load::load_str;
    use super::super::super::normalise::{NormaliseContext, normalise};
    use super::super::super::sip_actor::SipSut;
    use super::super::super::transcript::{Transcript, Unit};
    use super::super::super::verdict::Verdict;
    use super::super::{ActorListeners, RunResult, Runner, SutEndpoints};
    use crate::sip::{
        Item, Limits, Local, Message, Method, NameAddr, RequestBuilder, ResponseBuilder,
        SeededRandom, StreamDecoder, Uri, parse_datagram,
    };

    const SCENARIO: &str = r#"title = "SIP loopback"
covers = ["IM-01"]

[sip.alice]
uri = "sip:alice@sip.remote.test"
transport = "TRANSPORT"

[[step]]
send = "alice"
sip = '''
MESSAGE sip:echo@sut.test SIP/2.0
Content-Type: text/plain

hello
'''

[[step]]
expect = "alice"
sip = '''
SIP/2.0 200
CSeq: 1 MESSAGE
From: {alice}
To: <sip:echo@sut.test>;tag={id:echotag}
'''

[[step]]
expect = "alice"
sip = '''
MESSAGE {alice}
From: <sip:echo@sut.test>;tag={any}
To: <sip:alice@sip.remote.test>;tag={absent}
Call-ID: {id:cid}
Max-Forwards: 70

echo: hello
'''

[[step]]
send = "alice"
sip = "SIP/2.0 200"

[[step]]
expect = "alice"
timeout = "400ms"
sip = "SIP/2.0 200"
or = ["{nothing}"]
"#;

    /// The echo UA's answer to a request, and the MESSAGE it sends back.
    fn echo(req: &crate::sip::Request, transport: &str, local: SocketAddr) -> (Vec<u8>, Vec<u8>) {
        let mut rng = SeededRandom(7);
        let ok = ResponseBuilder::new(req, 200).build(&mut rng);
        let me = Local {
            aor: NameAddr::new(req.uri.clone()),
            transport: transport.to_string(),
            sent_by: local.to_string(),
            contact: None,
        };
        let from = req.headers.from().map(|f| f.uri).unwrap_or(req.uri.clone());
        let mut back = RequestBuilder::new(Method::Message, from)
            .body(
                "text/plain",
                format!("echo: {}", String::from_utf8_lossy(&req.body).trim()),
            )
            .build(&me, &mut rng);
        back.uri = Uri::parse("sip:alice@sip.remote.test").unwrap_or(back.uri);
        (ok.to_bytes(), back.to_bytes())
    }

    async fn run(
        transport: &str,
        sut: SipSut,
        scenario: &super::super::super::load::Scenario,
        listeners: ActorListeners,
    ) -> RunResult {
        let cat = Catalogue::builtin().expect("catalogue");
        let endpoints = SutEndpoints {
            domain: "sut.test".into(),
            s2s: SocketAddr::from(([127, 0, 0, 1], 9)),
            component: None,
            sip: sut,
            gw_domain: None,
        };
        let _ = transport;
        Runner::new(scenario, &cat, endpoints, listeners, None)
            .run()
            .await
    }

    fn sip_units(t: &Transcript) -> (usize, usize) {
        let mut fresh = 0;
        let mut again = 0;
        for e in &t.entries {
            if let Unit::Sip { retransmission, .. } = e.unit {
                if retransmission {
                    again += 1;
                } else {
                    fresh += 1;
                }
            }
        }
        (fresh, again)
    }

    #[tokio::test]
    async fn udp_exchange_with_retransmission() {
        let text = SCENARIO.replace("TRANSPORT", "udp");
        let scenario = load_str(
            &text,
            Path::new("loopback.toml"),
            &Catalogue::builtin().expect("catalogue"),
        )
        .expect("scenario loads");
        let listeners = ActorListeners::bind(&scenario, &BTreeMap::new())
            .await
            .expect("bind");
        let route = listeners
            .sip_routes()
            .get("sip.remote.test")
            .map(|r| r.addr)
            .expect("route");
        let ua = UdpSocket::bind("127.0.0.1:0").await.expect("ua socket");
        let ua_addr = ua.local_addr().expect("ua addr");
        let ua_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            let mut oks_for_echo = 0usize;
            let mut back_bytes = Vec::new();
            while oks_for_echo < 2 {
                let Ok((n, from)) = ua.recv_from(&mut buf).await else {
                    break;
                };
                match parse_datagram(&buf[..n], &Limits::default()) {
                    Ok(Item::Message(Message::Request(req))) => {
                        let (ok, back) = echo(&req, "UDP", ua_addr);
                        let _ = ua.send_to(&ok, from).await;
                        let _ = ua.send_to(&back, route).await;
                        back_bytes = back;
                    }
                    Ok(Item::Message(Message::Response(r))) if r.status == 200 => {
                        oks_for_echo += 1;
                        // A late retransmission of the echo: the actor's transaction must
                        // answer it with the same 200 again (RFC 3261 §17.2.2).
                        if oks_for_echo == 1 {
                            let _ = ua.send_to(&back_bytes, route).await;
                        }
                    }
                    _ => {}
                }
            }
            oks_for_echo
        });
        let sut = SipSut {
            udp: Some(ua_addr),
            tcp: None,
        };
        let result = run("udp", sut, &scenario, listeners).await;
        assert_eq!(
            result.verdict,
            Verdict::Pass,
            "{:?} {:?}",
            result.failure,
            result.reason
        );
        let oks = tokio::time::timeout(std::time::Duration::from_secs(2), ua_task)
            .await
            .expect("echo UA ends")
            .expect("echo UA task");
        assert_eq!(oks, 2, "the 200 is resent for the retransmitted MESSAGE");
        let (fresh, again) = sip_units(&result.transcript);
        assert_eq!(
            (fresh, again),
            (4, 1),
            "one retransmission, recorded as such"
        );
        let text = normalise(
            &result.transcript,
            &NormaliseContext {
                sut_domains: vec!["sut.test".into()],
                gw_domains: Vec::new(),
            },
        );
        assert!(
            text.contains("alice/udp → MESSAGE sip:echo@{sut} SIP/2.0"),
            "{text}"
        );
        assert!(
            text.contains("alice/udp ← MESSAGE sip:alice@sip.remote.test SIP/2.0"),
            "{text}"
        );
        assert!(text.contains("CSeq: 1 MESSAGE"), "{text}");
        assert!(text.contains("| echo: hello"), "{text}");
        assert_eq!(text.matches("← MESSAGE").count(), 1, "{text}");
    }

    #[tokio::test]
    async fn tcp_exchange_both_directions() {
        // The default answer stands in for the explicit 200 step.
        let text = SCENARIO
            .replace("TRANSPORT", "tcp")
            .replace("transport = \"tcp\"", "transport = \"tcp\"\nanswer = 200")
            .replace("[[step]]\nsend = \"alice\"\nsip = \"SIP/2.0 200\"\n", "");
        assert!(
            text.contains("answer = 200") && !text.contains("send = \"alice\"\nsip = \"SIP/2.0")
        );
        let scenario = load_str(
            &text,
            Path::new("loopback.toml"),
            &Catalogue::builtin().expect("catalogue"),
        )
        .expect("scenario loads");
        let listeners = ActorListeners::bind(&scenario, &BTreeMap::new())
            .await
            .expect("bind");
        let route = listeners
            .sip_routes()
            .get("sip.remote.test")
            .map(|r| r.addr)
            .expect("route");
        let ua = TcpListener::bind("127.0.0.1:0").await.expect("ua listener");
        let ua_addr = ua.local_addr().expect("ua addr");
        let ua_task = tokio::spawn(async move {
            let Ok((mut inbound, _)) = ua.accept().await else {
                return 0;
            };
            let mut dec = StreamDecoder::new(Limits::default());
            let mut buf = vec![0u8; 16384];
            // The request arrives on the actor's connection; the echo goes over a new
            // connection to the actor's listener, where its 200 must come back.
            let req = loop {
                let Ok(n) = inbound.read(&mut buf).await else {
                    return 0;
                };
                if n == 0 {
                    return 0;
                }
                dec.feed(&buf[..n]);
                if let Ok(Some(Item::Message(Message::Request(r)))) = dec.next() {
                    break r;
                }
            };
            let (ok, back) = echo(&req, "TCP", ua_addr);
            let _ = inbound.write_all(&ok).await;
            let Ok(mut out) = TcpStream::connect(route).await else {
                return 0;
            };
            let _ = out.write_all(&back).await;
            let mut dec = StreamDecoder::new(Limits::default());
            loop {
                let Ok(n) = out.read(&mut buf).await else {
                    return 0;
                };
                if n == 0 {
                    return 0;
                }
                dec.feed(&buf[..n]);
                if let Ok(Some(Item::Message(Message::Response(r)))) = dec.next() {
                    return r.status;
                }
            }
        });
        let sut = SipSut {
            udp: None,
            tcp: Some(ua_addr),
        };
        let result = run("tcp", sut, &scenario, listeners).await;
        assert_eq!(
            result.verdict,
            Verdict::Pass,
            "{:?} {:?}",
            result.failure,
            result.reason
        );
        let status = tokio::time::timeout(std::time::Duration::from_secs(2), ua_task)
            .await
            .expect("echo UA ends")
            .expect("echo UA task");
        assert_eq!(status, 200);
        let text = normalise(
            &result.transcript,
            &NormaliseContext {
                sut_domains: vec!["sut.test".into()],
                gw_domains: Vec::new(),
            },
        );
        assert!(
            text.contains("alice/tcp → MESSAGE sip:echo@{sut} SIP/2.0"),
            "{text}"
        );
        assert!(
            text.contains("Via: SIP/2.0/TCP 127.0.0.1:[port];branch=[branch1]"),
            "{text}"
        );
        assert!(
            text.contains("Contact: <sip:alice@127.0.0.1:[port];transport=tcp>")
                || !text.contains("Contact"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_mismatch_fails_the_step_and_names_the_header() {
        let text = SCENARIO
            .replace("TRANSPORT", "udp")
            .replace("CSeq: 1 MESSAGE", "CSeq: 2 MESSAGE");
        let scenario = load_str(
            &text,
            Path::new("loopback.toml"),
            &Catalogue::builtin().expect("catalogue"),
        )
        .expect("scenario loads");
        let listeners = ActorListeners::bind(&scenario, &BTreeMap::new())
            .await
            .expect("bind");
        let ua = UdpSocket::bind("127.0.0.1:0").await.expect("ua socket");
        let ua_addr = ua.local_addr().expect("ua addr");
        let ua_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            if let Ok((n, from)) = ua.recv_from(&mut buf).await
                && let Ok(Item::Message(Message::Request(req))) =
                    parse_datagram(&buf[..n], &Limits::default())
            {
                let (ok, _) = echo(&req, "UDP", ua_addr);
                let _ = ua.send_to(&ok, from).await;
            }
        });
        let result = run(
            "udp",
            SipSut {
                udp: Some(ua_addr),
                tcp: None,
            },
            &scenario,
            listeners,
        )
        .await;
        ua_task.abort();
        assert_eq!(result.verdict, Verdict::Fail);
        let f = result.failure.expect("a failure");
        assert_eq!(f.step, 2);
        assert!(f.got.contains("header CSeq"), "{}", f.got);
    }

    #[tokio::test]
    async fn raw_bytes_go_out_as_written_and_silence_holds() {
        let text = r#"title = "raw"
covers = ["IM-01"]

[sip.alice]
uri = "sip:alice@sip.remote.test"

[[step]]
send = "alice"
raw = true
sip = "MESSAGE {alice} SIP/2.0\nContent-Length: 99\n\nshort"

[[step]]
expect_none = "alice"
window = "200ms"
"#;
        let scenario = load_str(
            text,
            Path::new("raw.toml"),
            &Catalogue::builtin().expect("catalogue"),
        )
        .expect("scenario loads");
        let listeners = ActorListeners::bind(&scenario, &BTreeMap::new())
            .await
            .expect("bind");
        let ua = UdpSocket::bind("127.0.0.1:0").await.expect("ua socket");
        let ua_addr = ua.local_addr().expect("ua addr");
        let ua_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            match ua.recv_from(&mut buf).await {
                Ok((n, _)) => buf[..n].to_vec(),
                Err(_) => Vec::new(),
            }
        });
        let result = run(
            "udp",
            SipSut {
                udp: Some(ua_addr),
                tcp: None,
            },
            &scenario,
            listeners,
        )
        .await;
        assert_eq!(
            result.verdict,
            Verdict::Pass,
            "{:?} {:?}",
            result.failure,
            result.reason
        );
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), ua_task)
            .await
            .expect("UA ends")
            .expect("UA task");
        assert_eq!(
            got,
            b"MESSAGE sip:alice@sip.remote.test SIP/2.0\nContent-Length: 99\n\nshort".to_vec()
        );
        let text = normalise(&result.transcript, &NormaliseContext::default());
        assert!(
            text.contains(
                "(undecodable \"MESSAGE sip:alice@sip.remote.test SIP/2.0\\nContent-Length: 99"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_actor_retransmits_its_request_until_answered() {
        let text = r#"title = "timer E"
covers = ["IM-01"]

[sip.alice]
uri = "sip:alice@sip.remote.test"

[[step]]
send = "alice"
sip = "OPTIONS sip:echo@sut.test SIP/2.0"

[[step]]
expect = "alice"
timeout = "3s"
sip = "SIP/2.0 200\nCSeq: 1 OPTIONS"
"#;
        let scenario = load_str(
            text,
            Path::new("e.toml"),
            &Catalogue::builtin().expect("catalogue"),
        )
        .expect("scenario loads");
        let listeners = ActorListeners::bind(&scenario, &BTreeMap::new())
            .await
            .expect("bind");
        let ua = UdpSocket::bind("127.0.0.1:0").await.expect("ua socket");
        let ua_addr = ua.local_addr().expect("ua addr");
        // The UA drops the first copy (a lost datagram) and answers the retransmission,
        // twice: the second 200 is a retransmission the actor absorbs (RFC 3261 §17.1.2.2).
        let ua_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            let mut copies = 0;
            while copies < 2 {
                let Ok((n, from)) = ua.recv_from(&mut buf).await else {
                    break;
                };
                if let Ok(Item::Message(Message::Request(req))) =
                    parse_datagram(&buf[..n], &Limits::default())
                {
                    copies += 1;
                    if copies == 2 {
                        let ok = ResponseBuilder::new(&req, 200)
                            .build(&mut SeededRandom(1))
                            .to_bytes();
                        let _ = ua.send_to(&ok, from).await;
                        let _ = ua.send_to(&ok, from).await;
                    }
                }
            }
            copies
        });
        let result = run(
            "udp",
            SipSut {
                udp: Some(ua_addr),
                tcp: None,
            },
            &scenario,
            listeners,
        )
        .await;
        assert_eq!(
            result.verdict,
            Verdict::Pass,
            "{:?} {:?}",
            result.failure,
            result.reason
        );
        let copies = tokio::time::timeout(std::time::Duration::from_secs(2), ua_task)
            .await
            .expect("UA ends")
            .expect("UA task");
        assert_eq!(copies, 2);
        let own: Vec<bool> = result
            .transcript
            .entries
            .iter()
            .filter_map(|e| match &e.unit {
                Unit::Sip { retransmission, .. }
                    if e.dir == super::super::super::transcript::Dir::ToSut =>
                {
                    Some(*retransmission)
                }
                _ => None,
            })
            .collect();
        assert_eq!(own, vec![false, true], "the request, then its Timer E copy");
    }
}
