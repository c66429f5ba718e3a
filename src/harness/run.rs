//! The scenario runner: plays the scenario's actors against a SUT over real sockets.
//!
//! All socket readers feed one channel; the executor is a single sequential loop over the
//! steps, so the transcript is in step order and deterministic for a deterministic SUT:
//! a received unit is logged when a step consumes it, not when it happened to arrive.
//! Every wait is bounded by the step's timeout; nothing sleeps for a fixed time except an
//! `expect_none` window, which is the point of that step.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::{mpsc, oneshot};

use super::catalogue::{Catalogue, Level};
use super::load::{Action, ActorKind, Authzid, ExpectItem, NOTHING, PortKind, Scenario, Step};
use super::sip_actor::{SipEvent, SipRoute, SipSockets, SipSut};
use super::template::{self, Template};
use super::tls_io::{self, RunPki};
use super::transcript::{Dir, Transcript, Unit};
use super::verdict::{Failure, Verdict};
use crate::xmpp::codec::{Decoder, Event, Limits, StreamHeader};
use crate::xmpp::dialback;
use crate::xmpp::element::{Element, NsContext};
use crate::xmpp::ns;

/// What the runner needs to know about a system under test: where to reach it.
#[derive(Debug, Clone)]
pub struct SutEndpoints {
    /// The SUT's XMPP domain (`{sut}` in scenarios).
    pub domain: String,
    /// Its S2S listener (`jabber:server`).
    pub s2s: SocketAddr,
    /// Its XEP-0114 component listener, if it has one.
    pub component: Option<SocketAddr>,
    /// Its SIP listeners (the gateway's), for SIP actors.
    pub sip: SipSut,
    /// The gateway's domain (`{gw}` in scenarios): SIP users are `sip:user@D` and appear in
    /// XMPP as `user@D` (RFC 7247 §6). `None` for a SUT without a SIP side.
    pub gw_domain: Option<String>,
}

/// Errors that make a run `error` rather than `fail`: the scenario or the harness is broken.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("step {step} (line {line}): {message}")]
    Scenario {
        step: usize,
        line: usize,
        message: String,
    },
    #[error("harness I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// How a step ended when it did not simply hold.
enum StepEnd {
    Failed(Failure),
    Broken(RunError),
    /// A `branch` with `end` matched: the scenario ends here with this verdict.
    Ended(Verdict, String),
}

type StepResult = Result<(), StepEnd>;

/// One unit received from the SUT, waiting in a stream's inbox.
#[derive(Debug, Clone)]
struct Received {
    at: Duration,
    unit: Unit,
    raw: Vec<u8>,
}

enum NetEvent {
    Unit {
        stream: String,
        rec: Received,
    },
    Accepted {
        actor: String,
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
    },
    /// From a SIP actor's endpoint (src/harness/sip_steps.rs).
    Sip(SipEvent),
}

/// Who opened a stream's TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Harness,
    Sut,
}

struct StreamState {
    actor: String,
    origin: Origin,
    port: PortKind,
    writer: Option<Writer>,
    inbox: VecDeque<Received>,
    /// Parses what the harness sends so the transcript shows structure; `None` once the
    /// harness has sent bytes that are not XML (hostile steps), after which sends are raw.
    sent_decoder: Option<Decoder>,
    header_sent: bool,
    /// The last stream header the SUT sent on this stream.
    sut_header: Option<StreamHeader>,
    /// The stream id the harness sent in its own response header (when it is the receiver).
    own_id: Option<String>,
    eof: bool,
    reader: tokio::task::JoinHandle<()>,
    /// Asks a plain-TCP reader to stop and hand its half back (for a TLS upgrade).
    stop: Option<oneshot::Sender<HandBack<OwnedReadHalf>>>,
    tls: bool,
    /// Set before the harness sends `<success/>` as SASL receiver: the reader restarts its
    /// decoder for the header that follows (RFC 6120 §6.4.6).
    restart: Arc<AtomicBool>,
    /// The last TLS handshake on this stream, as the harness saw it.
    tls_summary: Option<tls_io::TlsSummary>,
    /// The SUT's outbound stream was already authorized by dialback (the harness answered
    /// its `<db:result/>` valid), e.g. by a `dialback` helper that served the SUT's own
    /// request on its verification stream; a later `accept_dialback` has nothing to do.
    dialback_accepted: bool,
    /// On a stream the SUT opened: the key of the `<db:result/>` it sent there, as the
    /// harness received it playing the receiving server (`{S.key}`).
    sut_key: Option<String>,
}

/// Where a stopped reader hands back its half and the bytes it had not decoded yet.
type HandBack<R> = oneshot::Sender<(R, Vec<u8>)>;

/// The sending half of a stream, plain or TLS.
enum Writer {
    Tcp(OwnedWriteHalf),
    Tls(Box<tokio::io::WriteHalf<tokio_rustls::TlsStream<TcpStream>>>),
}

impl Writer {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Tcp(w) => w.write_all(b).await,
            Writer::Tls(w) => {
                w.write_all(b).await?;
                w.flush().await
            }
        }
    }
    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Writer::Tcp(w) => w.shutdown().await,
            // Sends close_notify, then FIN (RFC 6120 §4.4).
            Writer::Tls(w) => w.shutdown().await,
        }
    }
}

fn new_decoder() -> Decoder {
    Decoder::new(Limits {
        max_stanza_bytes: 16 * 1024 * 1024,
        max_depth: 256,
    })
}

/// Read a stream, decode it into units and send them to the runner. A plain-TCP reader
/// can be asked (`stop`) to hand its half back with any bytes not yet decoded.
async fn read_loop<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut read: R,
    tx: mpsc::UnboundedSender<NetEvent>,
    start: Instant,
    name: String,
    mut stop: Option<oneshot::Receiver<HandBack<R>>>,
    restart: Arc<AtomicBool>,
) {
    let send = |unit: Unit, raw: Vec<u8>| {
        let _ = tx.send(NetEvent::Unit {
            stream: name.clone(),
            rec: Received {
                at: start.elapsed(),
                unit,
                raw,
            },
        });
    };
    let mut dec = Some(new_decoder());
    let mut pending: Vec<u8> = Vec::new();
    let mut parked = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let r = match stop.as_mut() {
            Some(s) => tokio::select! {
                biased;
                back = s => {
                    if let Ok(back) = back {
                        let _ = back.send((read, std::mem::take(&mut pending)));
                    }
                    return;
                }
                r = read.read(&mut buf) => r,
            },
            None => read.read(&mut buf).await,
        };
        let n = match r {
            Ok(0) => return send(Unit::Eof, Vec::new()),
            Ok(n) => n,
            Err(_) => return send(Unit::Reset, Vec::new()),
        };
        let chunk = &buf[..n];
        if restart.swap(false, Ordering::SeqCst) && !parked {
            match dec.as_mut() {
                Some(d) => d.restart(),
                None => dec = Some(new_decoder()),
            }
        }
        let Some(d) = dec.as_mut() else {
            send(
                Unit::Undecodable {
                    bytes: chunk.to_vec(),
                    reason: "after an earlier decoding error".into(),
                },
                chunk.to_vec(),
            );
            continue;
        };
        d.feed(chunk);
        loop {
            match d.next_event() {
                Ok(Some(ev)) => {
                    let raw = d.last_raw().to_vec();
                    let proceed = matches!(&ev, Event::Element(e) if e.is(ns::TLS, "proceed") || e.is(ns::TLS, "starttls"));
                    // RFC 6120 §6.4.6: after <success/> a new stream header follows.
                    let restart = matches!(&ev, Event::Element(e) if e.is(ns::SASL, "success"));
                    send(event_unit(ev), raw);
                    if restart {
                        d.restart();
                    }
                    if proceed {
                        // Everything after <proceed/> (or the peer's <starttls/>) belongs to
                        // TLS: stop decoding XML and keep the bytes for whoever takes over.
                        let rest = d.buffered();
                        if rest > 0 {
                            let all = chunk.to_vec();
                            pending.extend_from_slice(&all[all.len().saturating_sub(rest)..]);
                        }
                        dec = None;
                        parked = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    send(
                        Unit::Undecodable {
                            bytes: chunk.to_vec(),
                            reason: e.to_string(),
                        },
                        chunk.to_vec(),
                    );
                    dec = None;
                    break;
                }
            }
        }
        if parked {
            // Wait for the upgrade (or the end of the run) instead of reading TLS records as XML.
            if let Some(s) = stop.take()
                && let Ok(back) = s.await
            {
                let _ = back.send((read, pending));
            }
            return;
        }
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Everything a finished run produced.
pub struct RunResult {
    pub verdict: Verdict,
    pub failure: Option<Failure>,
    pub reason: Option<String>,
    pub transcript: Transcript,
}

/// Listeners bound before the SUT starts, so its static routes can point at them.
pub struct ActorListeners {
    listeners: BTreeMap<String, TcpListener>,
    /// The SIP actors' sockets, one per SIP domain.
    sip: SipSockets,
}

impl ActorListeners {
    /// Bind one listener per XMPP actor: at `fixed[domain]` if given (a third-party SUT
    /// configured to dial it there), else on an ephemeral loopback port; the SIP actors'
    /// sockets likewise from the same map.
    pub async fn bind(
        scenario: &Scenario,
        fixed: &BTreeMap<String, SocketAddr>,
    ) -> Result<Self, RunError> {
        Self::bind_all(scenario, fixed, fixed).await
    }

    /// As [`ActorListeners::bind`], with the SIP actors' fixed addresses (a target's
    /// `[sip.routes]`) apart from the XMPP ones.
    pub async fn bind_all(
        scenario: &Scenario,
        fixed: &BTreeMap<String, SocketAddr>,
        sip_fixed: &BTreeMap<String, SocketAddr>,
    ) -> Result<Self, RunError> {
        let mut listeners = BTreeMap::new();
        for a in &scenario.actors {
            if let ActorKind::Xmpp { domain, .. } = &a.kind {
                let addr = fixed
                    .get(domain)
                    .copied()
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
                listeners.insert(a.name.clone(), TcpListener::bind(addr).await?);
            }
        }
        let sip = SipSockets::bind(scenario, sip_fixed).await?;
        Ok(ActorListeners { listeners, sip })
    }

    /// SIP domain → where the SUT's next hop for it must point.
    pub fn sip_routes(&self) -> BTreeMap<String, SipRoute> {
        self.sip.routes()
    }

    /// domain → listening address, for the SUT's routes.
    pub fn routes(&self, scenario: &Scenario) -> Result<BTreeMap<String, SocketAddr>, RunError> {
        let mut routes = BTreeMap::new();
        for a in &scenario.actors {
            if let (ActorKind::Xmpp { domain, .. }, Some(l)) =
                (&a.kind, self.listeners.get(&a.name))
            {
                routes.insert(domain.clone(), l.local_addr()?);
            }
        }
        Ok(routes)
    }
}

const STREAM_OPEN_ATTRS: &str = "xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'";

/// The namespace context templates are written in for a stream of this kind.
fn template_ctx(port: PortKind) -> NsContext {
    let default = match port {
        PortKind::S2s => ns::SERVER,
        PortKind::Component => ns::COMPONENT_ACCEPT,
    };
    NsContext::new(default)
        .with_prefix("stream", ns::STREAM)
        .with_prefix("db", ns::DIALBACK)
}

pub struct Runner<'a> {
    scenario: &'a Scenario,
    catalogue: &'a Catalogue,
    sut: SutEndpoints,
    start: Instant,
    transcript: Transcript,
    tx: mpsc::UnboundedSender<NetEvent>,
    rx: mpsc::UnboundedReceiver<NetEvent>,
    streams: HashMap<String, StreamState>,
    /// Connections the SUT opened to an actor that no step has claimed yet.
    pending_accepts: HashMap<String, VecDeque<(TcpStream, SocketAddr, SocketAddr)>>,
    captures: HashMap<String, String>,
    /// The run's certificates, when the scenario negotiates TLS.
    pki: Option<Arc<RunPki>>,
    /// Every value captured and every stream id the SUT sent so far, with where it was
    /// seen: what `{new:NAME}` must differ from.
    seen: HashMap<String, String>,
    accept_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// SIP actors: endpoints, inboxes, dialog memory.
    sip: sip_steps::SipState,
}

#[path = "sip_steps.rs"]
mod sip_steps;

impl Drop for Runner<'_> {
    fn drop(&mut self) {
        for t in &self.accept_tasks {
            t.abort();
        }
    }
}

impl<'a> Runner<'a> {
    pub fn new(
        scenario: &'a Scenario,
        catalogue: &'a Catalogue,
        sut: SutEndpoints,
        listeners: ActorListeners,
        pki: Option<Arc<RunPki>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let sip = sip_steps::SipState::start(listeners.sip, &tx, start);
        let mut accept_tasks = Vec::new();
        for (actor, listener) in listeners.listeners {
            let tx = tx.clone();
            accept_tasks.push(tokio::spawn(async move {
                while let Ok((stream, peer)) = listener.accept().await {
                    let local = stream.local_addr().unwrap_or(peer);
                    if tx
                        .send(NetEvent::Accepted {
                            actor: actor.clone(),
                            stream,
                            peer,
                            local,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            }));
        }
        Runner {
            scenario,
            catalogue,
            sut,
            start,
            transcript: Transcript::default(),
            tx,
            rx,
            streams: HashMap::new(),
            pending_accepts: HashMap::new(),
            captures: HashMap::new(),
            pki,
            seen: HashMap::new(),
            accept_tasks,
            sip,
        }
    }

    /// Execute every step; stop at the first that does not hold.
    pub async fn run(mut self) -> RunResult {
        let steps = self.scenario.steps.clone();
        let mut result = RunResult {
            verdict: Verdict::Pass,
            failure: None,
            reason: None,
            transcript: Transcript::default(),
        };
        for step in &steps {
            if let Some(note) = &step.note {
                self.note(&format!("step {}: {note}", step.index + 1));
            }
            match self.step(step).await {
                Ok(()) => {}
                Err(StepEnd::Failed(f)) => {
                    result.verdict = if f.level == Level::Must {
                        Verdict::Fail
                    } else {
                        Verdict::Warn
                    };
                    result.failure = Some(f);
                    break;
                }
                Err(StepEnd::Broken(e)) => {
                    result.verdict = Verdict::Error;
                    result.reason = Some(e.to_string());
                    break;
                }
                Err(StepEnd::Ended(verdict, why)) => {
                    self.note(&format!("step {}: {why}", step.index + 1));
                    if verdict != Verdict::Pass {
                        result.reason = Some(why);
                    }
                    result.verdict = verdict;
                    break;
                }
            }
        }
        self.drain_leftovers();
        self.release().await;
        result.transcript = std::mem::take(&mut self.transcript);
        result
    }

    /// Close every socket and listener before returning, so a following scenario can bind
    /// the same fixed addresses (a remote target's routes) at once.
    async fn release(&mut self) {
        for t in self.accept_tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        for (_, mut st) in self.streams.drain() {
            st.writer = None;
            st.reader.abort();
            let reader = std::mem::replace(&mut st.reader, tokio::spawn(async {}));
            let _ = reader.await;
        }
        self.pending_accepts.clear();
        self.sip_release().await;
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn note(&mut self, text: &str) {
        // Notes are free text: write the SUT's domain as `{sut}` (and the gateway's as
        // `{gw}`), as the normaliser does for addresses, so a transcript reads the same
        // against every target.
        let text = self.mask_domains(text);
        let text = text.as_str();
        let at = self.now();
        self.transcript.push(
            at,
            "harness",
            "",
            Dir::ToSut,
            Unit::Note(text.to_string()),
            Vec::new(),
        );
    }

    /// Units that arrived but no step consumed: listed at the end of the transcript so
    /// nothing the SUT sent is silently dropped from the record.
    fn drain_leftovers(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.absorb(ev);
        }
        self.sip_drain_leftovers();
        let mut names: Vec<String> = self.streams.keys().cloned().collect();
        names.sort();
        let mut first = true;
        for name in names {
            let Some(st) = self.streams.get_mut(&name) else {
                continue;
            };
            let actor = st.actor.clone();
            let units: Vec<Received> = st.inbox.drain(..).collect();
            for r in units {
                // Keepalives and the transport closing are timing, not content: whether they
                // arrived before the run ended must not change the snapshot.
                if matches!(r.unit, Unit::Whitespace(_) | Unit::Eof | Unit::Reset) {
                    continue;
                }
                if first {
                    self.note("received but not consumed by any step:");
                    first = false;
                }
                self.transcript
                    .push(r.at, &actor, &name, Dir::FromSut, r.unit, r.raw);
            }
        }
    }

    fn absorb(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Unit { stream, rec } => {
                if let Some(st) = self.streams.get_mut(&stream) {
                    st.inbox.push_back(rec);
                }
            }
            NetEvent::Accepted {
                actor,
                stream,
                peer,
                local,
            } => {
                self.pending_accepts
                    .entry(actor)
                    .or_default()
                    .push_back((stream, peer, local));
            }
            NetEvent::Sip(ev) => self.sip_absorb(ev),
        }
    }

    /// Wait for the next network event until `deadline`; false on timeout.
    async fn pump(&mut self, deadline: tokio::time::Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(ev)) => {
                self.absorb(ev);
                true
            }
            Ok(None) | Err(_) => false,
        }
    }

    fn broken(step: &Step, message: impl Into<String>) -> StepEnd {
        StepEnd::Broken(RunError::Scenario {
            step: step.index + 1,
            line: step.line,
            message: message.into(),
        })
    }

    fn failure(
        &self,
        step: &Step,
        stream: &str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> StepEnd {
        let covers = if step.covers.is_empty() {
            self.scenario.covers.clone()
        } else {
            step.covers.clone()
        };
        let level = covers
            .iter()
            .filter_map(|id| self.catalogue.get(id))
            .map(|r| r.level)
            .max()
            .unwrap_or(Level::Must);
        StepEnd::Failed(Failure {
            step: step.index + 1,
            line: step.line,
            covers,
            level,
            stream: stream.to_string(),
            expected: expected.into(),
            got: got.into(),
        })
    }

    // ---- variables -------------------------------------------------------------------

    /// The gateway's domain as `{gw}`, then the SUT's as `{sut}`, in free text.
    fn mask_domains(&self, text: &str) -> String {
        let text = match &self.sut.gw_domain {
            Some(gw) => mask_domain(text, gw, "{gw}"),
            None => text.to_string(),
        };
        mask_domain(&text, &self.sut.domain, "{sut}")
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if name == "sut" {
            return Some(self.sut.domain.clone());
        }
        if let Some((stream, field)) = name.split_once('.') {
            let st = self.streams.get(stream)?;
            return match field {
                // The id of the stream as its receiving side assigned it: the SUT's for a
                // stream the harness opened, the harness's own for one the SUT opened.
                "id" => match st.origin {
                    Origin::Harness => st.sut_header.as_ref()?.id.clone(),
                    Origin::Sut => st.own_id.clone(),
                },
                // XEP-0114 §3: the component handshake is hex(SHA-1(stream id + secret)).
                "handshake" => {
                    let id = st.sut_header.as_ref()?.id.clone()?;
                    let (_, secret) = self.actor_identity(&st.actor)?;
                    Some(crate::xmpp::component::handshake_digest(&id, &secret))
                }
                "key" if st.origin == Origin::Harness => {
                    let id = st.sut_header.as_ref()?.id.clone()?;
                    let (domain, secret) = self.actor_identity(&st.actor)?;
                    Some(dialback::key(&secret, &self.sut.domain, &domain, &id))
                }
                // The SUT's own key (XEP-0220 §2.1.1), e.g. to replay it at its
                // authoritative role with changes (DB-10).
                "key" => st.sut_key.clone(),
                _ => None,
            };
        }
        if let Some(v) = self.captures.get(name) {
            return Some(v.clone());
        }
        let actor = self
            .scenario
            .actors
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.variable().to_string());
        // `{gw}`: the gateway's domain, unless an actor of the scenario is named `gw`
        // (component scenarios predate the built-in).
        match actor {
            None if name == "gw" => self.sut.gw_domain.clone(),
            other => other,
        }
    }

    fn actor_identity(&self, actor: &str) -> Option<(String, String)> {
        self.scenario
            .actors
            .iter()
            .find(|a| a.name == actor)
            .and_then(|a| match &a.kind {
                ActorKind::Xmpp { domain, secret } | ActorKind::Component { domain, secret } => {
                    Some((domain.clone(), secret.clone()))
                }
                ActorKind::Sip(_) => None,
            })
    }

    fn substitute(&self, step: &Step, text: &str) -> Result<String, StepEnd> {
        template::substitute(text, &|name| self.lookup(name))
            .map_err(|e| Self::broken(step, e.to_string()))
    }

    // ---- stream plumbing -------------------------------------------------------------

    fn attach(
        &mut self,
        name: &str,
        actor: &str,
        port: PortKind,
        origin: Origin,
        stream: TcpStream,
    ) {
        let (read, write) = stream.into_split();
        let (stop_tx, stop_rx) = oneshot::channel();
        let restart = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_loop(
            read,
            self.tx.clone(),
            self.start,
            name.to_string(),
            Some(stop_rx),
            restart.clone(),
        ));
        let st = StreamState {
            actor: actor.to_string(),
            origin,
            port,
            writer: Some(Writer::Tcp(write)),
            inbox: VecDeque::new(),
            sent_decoder: Some(new_decoder()),
            header_sent: false,
            sut_header: None,
            own_id: None,
            eof: false,
            reader,
            stop: Some(stop_tx),
            tls: false,
            restart,
            tls_summary: None,
            dialback_accepted: false,
            sut_key: None,
        };
        self.streams.insert(name.to_string(), st);
    }

    /// Take the plain TCP connection of stream `name` back from its reader, for a TLS
    /// upgrade. Bytes the reader had already received after the last unit come back too:
    /// after `<proceed/>` there must be none (the STARTTLS injection, RFC 6120 §5.4.3.3).
    async fn take_tcp(&mut self, step: &Step, name: &str) -> Result<(TcpStream, Vec<u8>), StepEnd> {
        let Some(st) = self.streams.get_mut(name) else {
            return Err(Self::broken(step, format!("stream `{name}` is not open")));
        };
        let (Some(stop), Some(Writer::Tcp(_))) = (st.stop.take(), st.writer.as_ref()) else {
            return Err(Self::broken(
                step,
                format!("stream `{name}` is already TLS or closed"),
            ));
        };
        let (back_tx, back_rx) = oneshot::channel();
        if stop.send(back_tx).is_err() {
            return Err(self.failure(
                step,
                name,
                "an open connection to upgrade",
                "the connection was closed",
            ));
        }
        let Ok((read, leftover)) = back_rx.await else {
            return Err(self.failure(
                step,
                name,
                "an open connection to upgrade",
                "the connection was closed",
            ));
        };
        let Some(Writer::Tcp(write)) = st.writer.take() else {
            return Err(Self::broken(step, "stream writer vanished"));
        };
        match read.reunite(write) {
            Ok(tcp) => Ok((tcp, leftover)),
            Err(_) => Err(Self::broken(step, "could not reunite the TCP halves")),
        }
    }

    /// Continue stream `name` over TLS: new reader and writer, a fresh XML stream expected
    /// from both sides (RFC 6120 §5.4.3.3: the stream restarts after the handshake).
    fn attach_tls(&mut self, name: &str, tls: tokio_rustls::TlsStream<TcpStream>) {
        let (read, write) = tokio::io::split(tls);
        let restart = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_loop(
            read,
            self.tx.clone(),
            self.start,
            name.to_string(),
            None,
            restart.clone(),
        ));
        if let Some(st) = self.streams.get_mut(name) {
            st.reader.abort();
            st.reader = reader;
            st.writer = Some(Writer::Tls(Box::new(write)));
            st.sent_decoder = Some(new_decoder());
            st.header_sent = false;
            st.sut_header = None;
            st.own_id = None;
            st.tls = true;
            st.restart = restart;
        }
    }

    async fn connect(
        &mut self,
        step: &Step,
        name: &str,
        actor: &str,
        port: PortKind,
    ) -> StepResult {
        let addr = match port {
            PortKind::S2s => self.sut.s2s,
            PortKind::Component => match self.sut.component {
                Some(a) => a,
                None => return Err(Self::broken(step, "the target has no component port")),
            },
        };
        let deadline = tokio::time::Instant::now() + self.scenario.timeout;
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(self.failure(
                    step,
                    name,
                    format!("TCP connect to {addr}"),
                    e.to_string(),
                ));
            }
            Err(_) => {
                return Err(self.failure(
                    step,
                    name,
                    format!("TCP connect to {addr}"),
                    "timed out",
                ));
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().map_err(|e| StepEnd::Broken(e.into()))?;
        let at = self.now();
        self.transcript.push(
            at,
            actor,
            name,
            Dir::ToSut,
            Unit::Connected { local, peer: addr },
            Vec::new(),
        );
        self.attach(name, actor, port, Origin::Harness, stream);
        Ok(())
    }

    /// Wait for the SUT to connect to `actor`'s listener and register it as `name`.
    async fn accept(
        &mut self,
        step: &Step,
        name: &str,
        actor: &str,
        timeout: Duration,
    ) -> StepResult {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((stream, peer, local)) = self
                .pending_accepts
                .get_mut(actor)
                .and_then(|q| q.pop_front())
            {
                let _ = stream.set_nodelay(true);
                let at = self.now();
                self.transcript.push(
                    at,
                    actor,
                    name,
                    Dir::FromSut,
                    Unit::Connected { local, peer },
                    Vec::new(),
                );
                self.attach(name, actor, PortKind::S2s, Origin::Sut, stream);
                return Ok(());
            }
            if !self.pump(deadline).await {
                return Err(self.failure(
                    step,
                    name,
                    format!("the SUT opens a connection to {actor}"),
                    format!("no connection after {}", fmt_dur(timeout)),
                ));
            }
        }
    }

    async fn send_text(&mut self, step: &Step, name: &str, text: &str) -> StepResult {
        let at = self.now();
        let Some(st) = self.streams.get_mut(name) else {
            return Err(Self::broken(step, format!("stream `{name}` is not open")));
        };
        let actor = st.actor.clone();
        let Some(w) = st.writer.as_mut() else {
            return Err(Self::broken(
                step,
                format!("stream `{name}` was closed by an earlier step"),
            ));
        };
        if let Err(e) = w.write_all(text.as_bytes()).await {
            // The SUT may legitimately have closed the connection already; record it.
            self.transcript.push(
                at,
                &actor,
                name,
                Dir::ToSut,
                Unit::Undecodable {
                    bytes: text.as_bytes().to_vec(),
                    reason: format!("not sent: {e}"),
                },
                text.as_bytes().to_vec(),
            );
            return Ok(());
        }
        let mut units = Vec::new();
        match st.sent_decoder.as_mut() {
            Some(d) => {
                d.feed(text.as_bytes());
                loop {
                    match d.next_event() {
                        Ok(Some(ev)) => {
                            if let Event::Header(h) = &ev {
                                st.header_sent = true;
                                if st.origin == Origin::Sut {
                                    st.own_id = h.id.clone();
                                }
                            }
                            units.push((event_unit(ev), d.last_raw().to_vec()));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            units.push((
                                Unit::Undecodable {
                                    bytes: text.as_bytes().to_vec(),
                                    reason: e.to_string(),
                                },
                                text.as_bytes().to_vec(),
                            ));
                            st.sent_decoder = None;
                            break;
                        }
                    }
                }
            }
            None => units.push((
                Unit::Undecodable {
                    bytes: text.as_bytes().to_vec(),
                    reason: "sent after non-XML bytes".into(),
                },
                text.as_bytes().to_vec(),
            )),
        }
        for (unit, raw) in units {
            self.transcript
                .push(at, &actor, name, Dir::ToSut, unit, raw);
        }
        Ok(())
    }

    /// Take the next non-whitespace unit of stream `name`, waiting until `deadline`.
    /// Whitespace keepalives are logged and skipped.
    async fn next_unit(&mut self, name: &str, deadline: tokio::time::Instant) -> Option<Received> {
        loop {
            let st = self.streams.get_mut(name)?;
            if let Some(r) = st.inbox.pop_front() {
                let actor = st.actor.clone();
                if let Unit::Header(h) = &r.unit {
                    st.sut_header = Some(h.clone());
                }
                if matches!(r.unit, Unit::Eof | Unit::Reset) {
                    st.eof = true;
                }
                if let Unit::Header(StreamHeader { id: Some(id), .. }) = &r.unit {
                    let seq = self.transcript.entries.len();
                    self.seen
                        .entry(id.clone())
                        .or_insert_with(|| header_seen(name, seq));
                }
                self.transcript.push(
                    r.at,
                    &actor,
                    name,
                    Dir::FromSut,
                    r.unit.clone(),
                    r.raw.clone(),
                );
                if matches!(r.unit, Unit::Whitespace(_)) {
                    continue;
                }
                return Some(r);
            }
            if st.eof {
                return None;
            }
            if !self.pump(deadline).await {
                return None;
            }
        }
    }

    /// Log and drop whitespace keepalives at the front of a stream's inbox, without waiting.
    fn skip_queued_whitespace(&mut self, name: &str) {
        let Some(st) = self.streams.get_mut(name) else {
            return;
        };
        let actor = st.actor.clone();
        while st
            .inbox
            .front()
            .is_some_and(|r| matches!(r.unit, Unit::Whitespace(_)))
        {
            if let Some(r) = st.inbox.pop_front() {
                self.transcript
                    .push(r.at, &actor, name, Dir::FromSut, r.unit, r.raw);
            }
        }
    }

    fn record_captures(&mut self, caps: Vec<(String, String)>) {
        for (k, v) in caps {
            self.seen
                .entry(v.clone())
                .or_insert_with(|| format!("capture `{k}`"));
            self.captures.insert(k, v);
        }
    }

    /// Substitute variables and parse a template in the stream's namespace context; literal
    /// braces and values containing braces survive (unlike substitute-then-parse).
    fn prepare_tpl(&self, step: &Step, name: &str, text: &str) -> Result<Template, StepEnd> {
        let port = self
            .streams
            .get(name)
            .map(|s| s.port)
            .unwrap_or(PortKind::S2s);
        template::prepare_template(text, &|n| self.lookup(n), &template_ctx(port))
            .map_err(|e| Self::broken(step, e.to_string()))
    }

    async fn expect(
        &mut self,
        step: &Step,
        name: &str,
        text: &str,
        or: &[String],
        timeout: Duration,
        exact: bool,
    ) -> StepResult {
        let tpl = self.prepare_tpl(step, name, text)?;
        let mut alts = Vec::new();
        let mut nothing_ok = false;
        for a in or {
            if a.trim() == NOTHING {
                nothing_ok = true;
            } else {
                alts.push(self.prepare_tpl(step, name, a)?);
            }
        }
        // For the report: the templates with the variables known so far filled in.
        let mut shown =
            template::substitute(text, &|n| self.lookup(n)).unwrap_or_else(|_| text.to_string());
        for a in or {
            shown.push_str("\n  or ");
            shown.push_str(a.trim());
        }
        let text = shown.trim();
        let deadline = tokio::time::Instant::now() + timeout;
        let Some(r) = self.next_unit(name, deadline).await else {
            if nothing_ok {
                return Ok(());
            }
            let got = if self.streams.get(name).is_some_and(|s| s.eof) {
                "the connection was already closed".to_string()
            } else {
                format!("nothing after {}", fmt_dur(timeout))
            };
            return Err(self.failure(step, name, text, got));
        };
        let Some(ev) = unit_event(&r.unit) else {
            // The SUT closing the connection is also "nothing more" for `{nothing}`.
            if nothing_ok && matches!(r.unit, Unit::Eof | Unit::Reset) {
                return Ok(());
            }
            return Err(self.failure(step, name, text, describe_unit(&r.unit)));
        };
        match template::match_unit(&tpl, &ev, exact) {
            Ok(caps) => {
                self.check_fresh(step, name, text, &caps, &ev)?;
                self.record_captures(caps);
                Ok(())
            }
            Err(m) => {
                if alts
                    .iter()
                    .any(|a| template::match_unit(a, &ev, exact).is_ok())
                {
                    return Ok(());
                }
                Err(self.failure(
                    step,
                    name,
                    text,
                    format!("{}\n  mismatch: {m}", template::describe_event(&ev)),
                ))
            }
        }
    }

    /// `{new:NAME}` captures must hold a value never seen before in the scenario.
    fn check_fresh(
        &self,
        step: &Step,
        name: &str,
        text: &str,
        caps: &[(String, String)],
        ev: &Event,
    ) -> StepResult {
        for fresh in template::fresh_names(text) {
            if let Some((_, v)) = caps.iter().find(|(k, _)| *k == fresh) {
                let this = header_seen(name, self.transcript.entries.len().saturating_sub(1));
                if let Some(prev) = self.seen.get(v).filter(|p| **p != this) {
                    return Err(self.failure(
                        step,
                        name,
                        format!("{text}\n  with a {{new:{fresh}}} value never seen before (RFC 6120 §4.7.3)"),
                        format!("{}\n  the value {v:?} was already seen as {prev}", template::describe_event(ev)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `expect` with branches: the first unit on the step's stream or on a branch's stream
    /// decides. On the step's stream it must match the template, an `or` alternative or a
    /// branch of that stream; on a branch's stream one of that stream's branches. A matched
    /// branch with `end` ends the scenario (docs/scenarios.md "Branches").
    #[allow(clippy::too_many_arguments)]
    async fn expect_branches(
        &mut self,
        step: &Step,
        name: &str,
        text: &str,
        or: &[String],
        branches: &[super::load::Branch],
        timeout: Duration,
        exact: bool,
    ) -> StepResult {
        let mut shown =
            template::substitute(text, &|n| self.lookup(n)).unwrap_or_else(|_| text.to_string());
        for a in or {
            shown.push_str("\n  or ");
            shown.push_str(a.trim());
        }
        for b in branches {
            let t = template::substitute(&b.template, &|n| self.lookup(n))
                .unwrap_or_else(|_| b.template.clone());
            shown.push_str(&format!("\n  or on {}: {}", b.stream, t.trim()));
        }
        let shown = shown.trim().to_string();
        let mut streams: Vec<&str> = vec![name];
        for b in branches {
            if !streams.contains(&b.stream.as_str()) {
                streams.push(&b.stream);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ready = streams.iter().copied().find(|s| {
                self.streams.get(*s).is_some_and(|st| {
                    st.inbox
                        .iter()
                        .any(|r| !matches!(r.unit, Unit::Whitespace(_)))
                })
            });
            if let Some(s) = ready {
                let now = tokio::time::Instant::now();
                let Some(r) = self.next_unit(s, now).await else {
                    continue;
                };
                // A branch's stream closing decides nothing: the step's own stream may
                // still bring what it waits for.
                if s != name && matches!(r.unit, Unit::Eof | Unit::Reset) {
                    continue;
                }
                return self.decide_branch(step, name, s, &r, text, or, branches, exact, &shown);
            }
            let all_closed = streams
                .iter()
                .all(|s| self.streams.get(*s).is_none_or(|st| st.eof));
            if all_closed || !self.pump(deadline).await {
                if or.iter().any(|a| a.trim() == NOTHING) {
                    return Ok(());
                }
                return Err(self.failure(
                    step,
                    name,
                    shown,
                    format!(
                        "nothing on {} after {}",
                        streams.join(" or "),
                        fmt_dur(timeout)
                    ),
                ));
            }
        }
    }

    /// Match the unit that arrived first on stream `on` against what the step allows there.
    #[allow(clippy::too_many_arguments)]
    fn decide_branch(
        &mut self,
        step: &Step,
        name: &str,
        on: &str,
        r: &Received,
        text: &str,
        or: &[String],
        branches: &[super::load::Branch],
        exact: bool,
        shown: &str,
    ) -> StepResult {
        let Some(ev) = unit_event(&r.unit) else {
            if on == name
                && matches!(r.unit, Unit::Eof | Unit::Reset)
                && or.iter().any(|a| a.trim() == NOTHING)
            {
                return Ok(());
            }
            return Err(self.failure(step, on, shown, describe_unit(&r.unit)));
        };
        let mut mismatch = None;
        if on == name {
            let tpl = self.prepare_tpl(step, name, text)?;
            match template::match_unit(&tpl, &ev, exact) {
                Ok(caps) => {
                    self.check_fresh(step, name, text, &caps, &ev)?;
                    self.record_captures(caps);
                    return Ok(());
                }
                Err(m) => mismatch = Some(m),
            }
            for a in or.iter().filter(|a| a.trim() != NOTHING) {
                let t = self.prepare_tpl(step, name, a)?;
                if template::match_unit(&t, &ev, exact).is_ok() {
                    return Ok(());
                }
            }
        }
        for b in branches.iter().filter(|b| b.stream == on) {
            let t = self.prepare_tpl(step, on, &b.template)?;
            if template::match_unit(&t, &ev, exact).is_err() {
                continue;
            }
            let why = match &b.note {
                Some(n) => format!("the branch on {on} matched: {n}"),
                None => format!("the branch on {on} matched"),
            };
            return match b.end {
                super::load::BranchEnd::Continue => {
                    self.note(&format!("step {}: {why}", step.index + 1));
                    Ok(())
                }
                super::load::BranchEnd::Pass => Err(StepEnd::Ended(
                    Verdict::Pass,
                    format!(
                        "{why}; the scenario ends here (the remaining steps are the other branch)"
                    ),
                )),
                super::load::BranchEnd::Inconclusive => {
                    Err(StepEnd::Ended(Verdict::Inconclusive, why))
                }
            };
        }
        let got = match mismatch {
            Some(m) => format!("{}\n  mismatch: {m}", template::describe_event(&ev)),
            None => template::describe_event(&ev),
        };
        Err(self.failure(step, on, shown, got))
    }

    async fn expect_no_connection(
        &mut self,
        step: &Step,
        actor: &str,
        window: Duration,
    ) -> StepResult {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            if let Some((_, peer, _)) = self.pending_accepts.get(actor).and_then(|q| q.front()) {
                let peer = *peer;
                return Err(self.failure(
                    step,
                    actor,
                    format!(
                        "no connection from the SUT to {actor} for {}",
                        fmt_dur(window)
                    ),
                    format!("the SUT connected from {peer}"),
                ));
            }
            if !self.pump(deadline).await {
                return Ok(());
            }
        }
    }

    async fn expect_eof(&mut self, step: &Step, name: &str, timeout: Duration) -> StepResult {
        let deadline = tokio::time::Instant::now() + timeout;
        match self.next_unit(name, deadline).await {
            Some(Received {
                unit: Unit::Eof | Unit::Reset,
                ..
            }) => Ok(()),
            Some(r) => Err(self.failure(
                step,
                name,
                "the SUT closes the connection",
                describe_unit(&r.unit),
            )),
            None if self.streams.get(name).is_some_and(|s| s.eof) => Ok(()),
            None => Err(self.failure(
                step,
                name,
                "the SUT closes the connection",
                format!("still open after {}", fmt_dur(timeout)),
            )),
        }
    }

    async fn expect_none(&mut self, step: &Step, name: &str, window: Duration) -> StepResult {
        let deadline = tokio::time::Instant::now() + window;
        match self.next_unit(name, deadline).await {
            None => Ok(()),
            Some(r) => Err(self.failure(
                step,
                name,
                format!("nothing for {}", fmt_dur(window)),
                describe_unit(&r.unit),
            )),
        }
    }

    async fn expect_all(
        &mut self,
        step: &Step,
        items: &[ExpectItem],
        timeout: Duration,
    ) -> StepResult {
        // Per stream: the next k units must match that stream's k items in some order.
        let mut by_stream: BTreeMap<String, Vec<(usize, Option<Template>, String)>> =
            BTreeMap::new();
        for (i, it) in items.iter().enumerate() {
            let (tpl, text) = match &it.template {
                Some(t) => (Some(self.prepare_tpl(step, &it.stream, t)?), t.clone()),
                None => (None, "EOF".to_string()),
            };
            by_stream
                .entry(it.stream.clone())
                .or_default()
                .push((i, tpl, text));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for (name, wanted) in by_stream {
            let mut got = Vec::new();
            while got.len() < wanted.len() {
                match self.next_unit(&name, deadline).await {
                    Some(r) => got.push(r),
                    None => {
                        let missing: Vec<String> =
                            wanted.iter().map(|w| w.2.trim().to_string()).collect();
                        return Err(self.failure(
                            step,
                            &name,
                            missing.join("\n"),
                            format!(
                                "only {} of {} units after {}",
                                got.len(),
                                wanted.len(),
                                fmt_dur(timeout)
                            ),
                        ));
                    }
                }
            }
            // Small sets: find an assignment greedily with backtracking.
            let mut used = vec![false; got.len()];
            let mut caps = Vec::new();
            if !assign(&wanted, 0, &got, &mut used, &mut caps) {
                let expected: Vec<String> = wanted.iter().map(|w| w.2.trim().to_string()).collect();
                let received: Vec<String> = got.iter().map(|r| describe_unit(&r.unit)).collect();
                return Err(self.failure(step, &name, expected.join("\n"), received.join("\n")));
            }
            self.record_captures(caps);
        }
        Ok(())
    }

    async fn close(&mut self, step: &Step, name: &str, reset: bool) -> StepResult {
        let at = self.now();
        let Some(st) = self.streams.get_mut(name) else {
            return Err(Self::broken(step, format!("stream `{name}` is not open")));
        };
        let actor = st.actor.clone();
        if reset && st.tls {
            return Err(Self::broken(
                step,
                "reset is only supported on plain TCP streams",
            ));
        }
        if let Some(mut w) = st.writer.take() {
            if reset {
                // SO_LINGER 0 turns the close into an RST.
                if let Writer::Tcp(t) = &w {
                    let _ = t.as_ref().set_zero_linger();
                }
                drop(w);
                st.reader.abort();
                st.eof = true;
            } else {
                let _ = w.shutdown().await;
            }
        }
        let unit = if reset { Unit::Reset } else { Unit::Eof };
        self.transcript
            .push(at, &actor, name, Dir::ToSut, unit, Vec::new());
        Ok(())
    }

    // ---- helpers: dialback -----------------------------------------------------------

    fn stream_header(from: &str, to: &str, id: Option<&str>) -> String {
        let id = id.map(|i| format!(" id='{i}'")).unwrap_or_default();
        format!(
            "<?xml version='1.0'?><stream:stream {STREAM_OPEN_ATTRS} from='{from}' to='{to}'{id} version='1.0'>"
        )
    }

    /// Expect the SUT's stream header on `name` and, if it announced version 1.0, its features.
    async fn expect_header_and_features(
        &mut self,
        step: &Step,
        name: &str,
        deadline: tokio::time::Instant,
    ) -> StepResult {
        let r = self.next_unit(name, deadline).await;
        let version = match r.as_ref().map(|r| &r.unit) {
            Some(Unit::Header(h)) => h.version.clone(),
            Some(u) => {
                return Err(self.failure(step, name, "the SUT's stream header", describe_unit(u)));
            }
            None => return Err(self.failure(step, name, "the SUT's stream header", "nothing")),
        };
        if version.is_some() {
            match self.next_unit(name, deadline).await.map(|r| r.unit) {
                Some(Unit::Element(e)) if e.is(ns::STREAM, "features") => {}
                Some(u) => {
                    return Err(self.failure(step, name, "<stream:features>", describe_unit(&u)));
                }
                None => return Err(self.failure(step, name, "<stream:features>", "nothing")),
            }
        }
        Ok(())
    }

    /// Serve one incoming connection as the authoritative/receiving server far enough to
    /// answer `db:verify` on it: respond to its header with ours and dialback features.
    async fn answer_incoming_header(
        &mut self,
        step: &Step,
        name: &str,
        actor_domain: &str,
        deadline: tokio::time::Instant,
    ) -> StepResult {
        let r = self.next_unit(name, deadline).await;
        let from = match r.as_ref().map(|r| &r.unit) {
            Some(Unit::Header(h)) => h.from.clone().unwrap_or_else(|| self.sut.domain.clone()),
            Some(u) => {
                return Err(self.failure(step, name, "the SUT's stream header", describe_unit(u)));
            }
            None => return Err(self.failure(step, name, "the SUT's stream header", "nothing")),
        };
        let id = random_id();
        if let Some(st) = self.streams.get_mut(name) {
            st.own_id = Some(id.clone());
        }
        let header = Self::stream_header(actor_domain, &from, Some(&id));
        self.send_text(step, name, &header).await?;
        // Offer STARTTLS too when the actor can do TLS and the stream is still plain, so a
        // SUT whose policy requires TLS can go on (RFC 6120 §5.3.1).
        let features = if self.can_offer_tls(name) {
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"
        } else {
            "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"
        };
        self.send_text(step, name, features).await
    }

    fn can_offer_tls(&self, name: &str) -> bool {
        let Some(st) = self.streams.get(name) else {
            return false;
        };
        !st.tls
            && self
                .pki
                .as_ref()
                .is_some_and(|p| p.actors.get(&st.actor).is_some_and(|l| l.is_some()))
    }

    /// Is the next unit of `name` the SUT's `<starttls/>`?
    fn front_is_starttls(&self, name: &str) -> bool {
        self.streams
            .get(name)
            .and_then(|s| s.inbox.front())
            .is_some_and(|r| matches!(&r.unit, Unit::Element(e) if e.is(ns::TLS, "starttls")))
    }

    /// The SUT asked for TLS on a stream the helper serves: secure it and answer the
    /// restarted stream's header (RFC 6120 §5.4.3.3).
    async fn serve_starttls(
        &mut self,
        step: &Step,
        name: &str,
        actor_domain: &str,
        deadline: tokio::time::Instant,
    ) -> StepResult {
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.accept_starttls(step, name, timeout).await?;
        self.answer_incoming_header(step, name, actor_domain, deadline)
            .await
    }

    /// Answer a `db:verify` request as the authoritative server for `actor`.
    async fn answer_verify(&mut self, step: &Step, name: &str, req: &Element) -> StepResult {
        let (Some(from), Some(to), Some(id)) = (req.attr("from"), req.attr("to"), req.attr("id"))
        else {
            return Err(self.failure(
                step,
                name,
                "<db:verify from to id>key</db:verify> (XEP-0220 §2.1.2)",
                req.to_xml(&template_ctx(PortKind::S2s)),
            ));
        };
        let actor = self
            .streams
            .get(name)
            .map(|s| s.actor.clone())
            .unwrap_or_default();
        let Some((domain, secret)) = self.actor_identity(&actor) else {
            return Err(Self::broken(step, format!("unknown actor `{actor}`")));
        };
        let valid = to == domain
            && dialback::keys_equal(&req.text(), &dialback::key(&secret, from, to, id));
        let answer = format!(
            "<db:verify from='{to}' to='{from}' id='{id}' type='{}'/>",
            if valid { "valid" } else { "invalid" }
        );
        self.send_text(step, name, &answer).await
    }

    async fn dialback(
        &mut self,
        step: &Step,
        name: &str,
        actor: &str,
        from: Option<&str>,
        to: Option<&str>,
        verify_stream: &str,
    ) -> StepResult {
        let timeout = self.scenario.timeout;
        let deadline = tokio::time::Instant::now() + timeout * 2;
        let Some((domain, secret)) = self.actor_identity(actor) else {
            return Err(Self::broken(step, format!("unknown actor `{actor}`")));
        };
        let from = match from {
            Some(f) => self.substitute(step, f)?,
            None => domain.clone(),
        };
        let to = match to {
            Some(t) => self.substitute(step, t)?,
            None => self.sut.domain.clone(),
        };
        self.note(&format!(
            "dialback on {name}: {from} → {to} (XEP-0220 §2.1)"
        ));
        if !self.streams.contains_key(name) {
            self.connect(step, name, actor, PortKind::S2s).await?;
        }
        let header_sent = self.streams.get(name).is_some_and(|s| s.header_sent);
        if !header_sent {
            let h = Self::stream_header(&domain, &to, None);
            self.send_text(step, name, &h).await?;
        }
        if self
            .streams
            .get(name)
            .is_some_and(|s| s.sut_header.is_none())
        {
            self.expect_header_and_features(step, name, deadline)
                .await?;
        }
        let Some(sid) = self
            .streams
            .get(name)
            .and_then(|s| s.sut_header.as_ref())
            .and_then(|h| h.id.clone())
        else {
            return Err(self.failure(
                step,
                name,
                "a stream id in the SUT's header (RFC 6120 §4.7.3)",
                "none",
            ));
        };
        let key = dialback::key(&secret, &to, &from, &sid);
        self.send_text(
            step,
            name,
            &format!("<db:result from='{from}' to='{to}'>{key}</db:result>"),
        )
        .await?;
        // Serve the SUT's verification (new connection or piggybacked) until the result comes.
        loop {
            // A result on our stream?
            self.skip_queued_whitespace(name);
            if self.streams.get(name).is_some_and(|s| !s.inbox.is_empty()) {
                let r = self.next_unit(name, deadline).await;
                match r.map(|r| r.unit) {
                    Some(Unit::Element(e))
                        if e.is(ns::DIALBACK, "result")
                            && e.attr("type") == Some("valid")
                            && e.attr("from") == Some(to.as_str())
                            && e.attr("to") == Some(from.as_str()) =>
                    {
                        return Ok(());
                    }
                    Some(Unit::Element(e))
                        if e.is(ns::DIALBACK, "verify") && e.attr("type").is_none() =>
                    {
                        self.answer_verify(step, name, &e).await?;
                        continue;
                    }
                    Some(u) => {
                        return Err(self.failure(
                            step,
                            name,
                            format!("<db:result from='{to}' to='{from}' type='valid'/>"),
                            describe_unit(&u),
                        ));
                    }
                    None => {
                        return Err(self.failure(
                            step,
                            name,
                            format!("<db:result from='{to}' to='{from}' type='valid'/>"),
                            "the connection was closed",
                        ));
                    }
                }
            }
            // A new connection from the SUT to this actor: its verification stream.
            if self
                .pending_accepts
                .get(actor)
                .is_some_and(|q| !q.is_empty())
                && !self.streams.contains_key(verify_stream)
            {
                self.accept(step, verify_stream, actor, timeout).await?;
                self.answer_incoming_header(step, verify_stream, &domain, deadline)
                    .await?;
                continue;
            }
            // A db:verify at the front of any other stream of this actor.
            let mut others: Vec<String> = self
                .streams
                .iter()
                .filter(|(n, s)| n.as_str() != name && s.actor == actor)
                .map(|(n, _)| n.clone())
                .collect();
            others.sort();
            for o in &others {
                self.skip_queued_whitespace(o);
            }
            if let Some(tls) = others.iter().find(|o| self.front_is_starttls(o)).cloned() {
                self.serve_starttls(step, &tls, &domain, deadline).await?;
                continue;
            }
            // Some receiving servers (Prosody) first authenticate the stream they opened to
            // us with their own <db:result/>, and send <db:verify/> only once that is valid:
            // play the receiving server for it (XEP-0220 §2.2) and go on waiting.
            let own_request = others.iter().find(|o| {
                self.streams.get(*o).is_some_and(|st| st.origin == Origin::Sut)
                    && self.streams.get(*o).and_then(|st| st.inbox.front()).is_some_and(|r| {
                        matches!(&r.unit, Unit::Element(e) if e.is(ns::DIALBACK, "result") && e.attr("type").is_none())
                    })
            });
            if let Some(o) = own_request.cloned() {
                let v = format!("{o}_verify");
                self.accept_dialback(step, &o, actor, timeout, &v).await?;
                continue;
            }
            let other = others.into_iter().find(|o| {
                self.streams
                    .get(o)
                    .and_then(|s| s.inbox.front())
                    .is_some_and(
                        |r| matches!(&r.unit, Unit::Element(e) if e.is(ns::DIALBACK, "verify")),
                    )
            });
            if let Some(other) = other {
                if let Some(r) = self.next_unit(&other, deadline).await
                    && let Unit::Element(e) = &r.unit
                {
                    self.answer_verify(step, &other, e).await?;
                }
                continue;
            }
            if !self.pump(deadline).await {
                return Err(self.failure(
                    step,
                    name,
                    format!("<db:result from='{to}' to='{from}' type='valid'/>"),
                    format!("nothing after {}", fmt_dur(timeout * 2)),
                ));
            }
        }
    }

    /// `accept_dialback` with `if_requested`: on a stream the SUT opened to verify a key, a
    /// receiving server may send `<db:verify/>` at once or first authenticate that stream with
    /// its own `<db:result/>` and hold the verification until it is valid (Prosody); XEP-0220
    /// §2.1.2 allows both. Play the receiving server only in the second case and leave any
    /// other unit (or none within `timeout`) to the following steps.
    async fn accept_dialback_if_requested(
        &mut self,
        step: &Step,
        name: &str,
        actor: &str,
        timeout: Duration,
        verify_stream: &str,
    ) -> StepResult {
        let ready = self
            .streams
            .get(name)
            .is_some_and(|s| s.own_id.is_some() && !s.dialback_accepted);
        if !ready {
            // Not yet answered (or already authorized): the plain helper knows what to do.
            return self
                .accept_dialback(step, name, actor, timeout, verify_stream)
                .await;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.skip_queued_whitespace(name);
            let front = self
                .streams
                .get(name)
                .and_then(|s| s.inbox.front())
                .map(|r| {
                    matches!(&r.unit, Unit::Element(e)
                    if e.is(ns::DIALBACK, "result") && e.attr("type").is_none())
                });
            match front {
                Some(true) => {
                    return self
                        .accept_dialback(step, name, actor, timeout, verify_stream)
                        .await;
                }
                Some(false) => break,
                None => {
                    if !self.pump(deadline).await {
                        break;
                    }
                }
            }
        }
        self.note(&format!(
            "the SUT did not authenticate {name} first: nothing to accept"
        ));
        Ok(())
    }

    async fn accept_dialback(
        &mut self,
        step: &Step,
        name: &str,
        actor: &str,
        timeout: Duration,
        verify_stream: &str,
    ) -> StepResult {
        let deadline = tokio::time::Instant::now() + timeout * 2;
        let Some((domain, _)) = self.actor_identity(actor) else {
            return Err(Self::broken(step, format!("unknown actor `{actor}`")));
        };
        self.note(&format!(
            "accept dialback on {name}: the SUT → {domain} (XEP-0220 §2.2)"
        ));
        if self.streams.get(name).is_some_and(|s| s.dialback_accepted) {
            // XEP-0220 §2.3: one `valid` authorizes the pair for the stream's lifetime; a
            // receiving server that verifies over its own outbound stream (Prosody) had it
            // answered during the earlier `dialback` step.
            self.note(&format!(
                "{name} is already authorized: the SUT's db:result was answered valid earlier"
            ));
            return Ok(());
        }
        if !self.streams.contains_key(name) {
            self.accept(step, name, actor, timeout).await?;
        }
        if self.streams.get(name).is_some_and(|s| s.own_id.is_none()) {
            self.answer_incoming_header(step, name, &domain, deadline)
                .await?;
        }
        // The SUT's db:result (answering any piggybacked db:verify on the way, and securing
        // the stream first if the SUT asks for TLS).
        let (originating, key) = loop {
            if self.front_is_starttls(name) {
                self.serve_starttls(step, name, &domain, deadline).await?;
                continue;
            }
            match self.next_unit(name, deadline).await.map(|r| r.unit) {
                Some(Unit::Element(e))
                    if e.is(ns::DIALBACK, "result") && e.attr("type").is_none() =>
                {
                    match (e.attr("from"), e.attr("to")) {
                        (Some(f), Some(t)) if t == domain => {
                            break (f.to_string(), e.text().trim().to_string());
                        }
                        _ => {
                            return Err(self.failure(
                                step,
                                name,
                                format!("<db:result from='{{sut}}' to='{domain}'>key</db:result> (XEP-0220 §2.1.1)"),
                                e.to_xml(&template_ctx(PortKind::S2s)),
                            ));
                        }
                    }
                }
                Some(Unit::Element(e))
                    if e.is(ns::DIALBACK, "verify") && e.attr("type").is_none() =>
                {
                    self.answer_verify(step, name, &e).await?;
                }
                Some(u) => {
                    return Err(self.failure(
                        step,
                        name,
                        "<db:result from to>key</db:result>",
                        describe_unit(&u),
                    ));
                }
                None => {
                    return Err(self.failure(
                        step,
                        name,
                        "<db:result from to>key</db:result>",
                        "nothing",
                    ));
                }
            }
        };
        if let Some(s) = self.streams.get_mut(name) {
            s.sut_key = Some(key.clone());
        }
        let Some(own_id) = self.streams.get(name).and_then(|s| s.own_id.clone()) else {
            return Err(Self::broken(
                step,
                "no stream id was sent on the accepted stream",
            ));
        };
        // Verify against the SUT's authoritative role over a new stream (XEP-0220 §2.1.2).
        self.connect(step, verify_stream, actor, PortKind::S2s)
            .await?;
        let h = Self::stream_header(&domain, &originating, None);
        self.send_text(step, verify_stream, &h).await?;
        self.expect_header_and_features(step, verify_stream, deadline)
            .await?;
        self.send_text(
            step,
            verify_stream,
            &format!(
                "<db:verify from='{domain}' to='{originating}' id='{own_id}'>{key}</db:verify>"
            ),
        )
        .await?;
        let valid = match self
            .next_unit(verify_stream, deadline)
            .await
            .map(|r| r.unit)
        {
            Some(Unit::Element(e)) if e.is(ns::DIALBACK, "verify") => {
                e.attr("type") == Some("valid") && e.attr("id") == Some(own_id.as_str())
            }
            Some(u) => {
                return Err(self.failure(
                    step,
                    verify_stream,
                    format!(
                        "<db:verify from='{originating}' to='{domain}' id='{own_id}' type='valid'/>"
                    ),
                    describe_unit(&u),
                ));
            }
            None => {
                return Err(self.failure(
                    step,
                    verify_stream,
                    "<db:verify type='valid'/>",
                    "nothing",
                ));
            }
        };
        let answer = if valid { "valid" } else { "invalid" };
        self.send_text(
            step,
            name,
            &format!("<db:result from='{domain}' to='{originating}' type='{answer}'/>"),
        )
        .await?;
        if valid {
            if let Some(s) = self.streams.get_mut(name) {
                s.dialback_accepted = true;
            }
            Ok(())
        } else {
            Err(self.failure(
                step,
                verify_stream,
                format!(
                    "<db:verify from='{originating}' to='{domain}' id='{own_id}' type='valid'/>"
                ),
                "the SUT's authoritative role did not confirm its own key",
            ))
        }
    }

    // ---- helpers: TLS and SASL ------------------------------------------------------

    fn pki(&self, step: &Step) -> Result<Arc<RunPki>, StepEnd> {
        self.pki
            .clone()
            .ok_or_else(|| Self::broken(step, "this run has no test PKI (the target gave none)"))
    }

    /// Expect one element in `ns` named `name` on stream `name_s`; anything else fails.
    async fn expect_named(
        &mut self,
        step: &Step,
        stream: &str,
        ns_: &str,
        local: &str,
        timeout: Duration,
    ) -> Result<Element, StepEnd> {
        let deadline = tokio::time::Instant::now() + timeout;
        let want = format!("<{local} xmlns='{ns_}'/>");
        match self.next_unit(stream, deadline).await.map(|r| r.unit) {
            Some(Unit::Element(e)) if e.is(ns_, local) => Ok(e),
            Some(u) => Err(self.failure(step, stream, want, describe_unit(&u))),
            None => Err(self.failure(
                step,
                stream,
                want,
                format!("nothing after {}", fmt_dur(timeout)),
            )),
        }
    }

    fn record_tls(&mut self, name: &str, dir: Dir, s: &tls_io::TlsSummary) {
        let at = self.now();
        let actor = self
            .streams
            .get(name)
            .map(|st| st.actor.clone())
            .unwrap_or_default();
        let peer = self.mask_domains(&tls_io::describe_verdict(&s.verdict));
        let unit = Unit::Tls {
            version: s.version.clone(),
            alpn: s.alpn.clone(),
            peer,
        };
        self.transcript
            .push(at, &actor, name, dir, unit, Vec::new());
    }

    /// Bytes the SUT sent after `<proceed/>` (or its `<starttls/>`) in plaintext: RFC 6120
    /// §5.4.3.3 — the STARTTLS command-injection flaw if anyone acted on them.
    fn check_leftover(&mut self, step: &Step, name: &str, leftover: Vec<u8>) -> StepResult {
        if leftover.is_empty() {
            return Ok(());
        }
        let at = self.now();
        let actor = self
            .streams
            .get(name)
            .map(|st| st.actor.clone())
            .unwrap_or_default();
        let reason = "plaintext after the STARTTLS exchange".to_string();
        self.transcript.push(
            at,
            &actor,
            name,
            Dir::FromSut,
            Unit::Undecodable {
                bytes: leftover.clone(),
                reason: reason.clone(),
            },
            leftover,
        );
        Err(self.failure(
            step,
            name,
            "nothing before the TLS handshake (RFC 6120 §5.4.3.3)",
            reason,
        ))
    }

    async fn starttls(&mut self, step: &Step, name: &str, timeout: Duration) -> StepResult {
        let pki = self.pki(step)?;
        self.send_text(
            step,
            name,
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        )
        .await?;
        self.expect_named(step, name, ns::TLS, "proceed", timeout)
            .await?;
        let (tcp, leftover) = self.take_tcp(step, name).await?;
        self.check_leftover(step, name, leftover)?;
        let actor = self
            .streams
            .get(name)
            .map(|st| st.actor.clone())
            .unwrap_or_default();
        let leaf = pki.actors.get(&actor).cloned().flatten();
        let r = tls_io::connect(tcp, &self.sut.domain, leaf.as_ref(), &pki.ca, timeout).await;
        self.finish_tls(step, name, Dir::ToSut, r)
    }

    async fn accept_starttls(&mut self, step: &Step, name: &str, timeout: Duration) -> StepResult {
        let pki = self.pki(step)?;
        self.expect_named(step, name, ns::TLS, "starttls", timeout)
            .await?;
        // The reader parked after <starttls/>: send <proceed/> and take the socket over.
        self.send_text(
            step,
            name,
            "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        )
        .await?;
        let (tcp, leftover) = self.take_tcp(step, name).await?;
        self.check_leftover(step, name, leftover)?;
        let actor = self
            .streams
            .get(name)
            .map(|st| st.actor.clone())
            .unwrap_or_default();
        let Some(leaf) = pki.actors.get(&actor).cloned().flatten() else {
            return Err(Self::broken(
                step,
                format!("actor `{actor}` has no certificate to accept TLS with (cert = \"none\")"),
            ));
        };
        let r = tls_io::accept(tcp, &leaf, &pki.ca, timeout).await;
        self.finish_tls(step, name, Dir::FromSut, r)
    }

    /// Record a handshake's outcome and continue the stream over TLS, or fail the step.
    fn finish_tls(
        &mut self,
        step: &Step,
        name: &str,
        dir: Dir,
        r: Result<(tokio_rustls::TlsStream<TcpStream>, tls_io::TlsSummary), tls_io::TlsIoError>,
    ) -> StepResult {
        match r {
            Ok((tls, summary)) => {
                self.record_tls(name, dir, &summary);
                self.attach_tls(name, tls);
                if let Some(st) = self.streams.get_mut(name) {
                    st.tls_summary = Some(summary);
                }
                Ok(())
            }
            Err(e) => {
                if let Some(st) = self.streams.get_mut(name) {
                    st.eof = true;
                }
                Err(self.failure(
                    step,
                    name,
                    "a TLS handshake with the SUT (RFC 6120 §5.4.3.3)",
                    e.to_string(),
                ))
            }
        }
    }

    async fn sasl_external(
        &mut self,
        step: &Step,
        name: &str,
        authzid: &Authzid,
        timeout: Duration,
    ) -> StepResult {
        let actor = self
            .streams
            .get(name)
            .map(|st| st.actor.clone())
            .unwrap_or_default();
        let Some((domain, _)) = self.actor_identity(&actor) else {
            return Err(Self::broken(step, format!("unknown actor `{actor}`")));
        };
        let data = match authzid {
            Authzid::Domain => base64(domain.as_bytes()),
            Authzid::Equals => "=".to_string(),
            Authzid::Empty => String::new(),
            Authzid::Raw(r) => r.clone(),
        };
        let auth = if data.is_empty() {
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'/>".to_string()
        } else {
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{data}</auth>"
            )
        };
        self.send_text(step, name, &auth).await?;
        self.expect_named(step, name, ns::SASL, "success", timeout)
            .await?;
        // RFC 6120 §6.4.6: the initiator restarts the stream on the same connection; the
        // reader restarted its decoder at <success/>.
        if let Some(st) = self.streams.get_mut(name) {
            st.sent_decoder = Some(new_decoder());
            st.header_sent = false;
            st.sut_header = None;
        }
        Ok(())
    }

    /// The receiving side of SASL EXTERNAL (RFC 6120 §6, XEP-0178 §3) on a stream the SUT
    /// opened and secured with TLS: answer its new header, offer EXTERNAL (and dialback),
    /// expect `<auth mechanism='EXTERNAL'>`, and grant it only if the certificate the SUT
    /// presented authenticates the domain it claims.
    async fn accept_sasl(&mut self, step: &Step, name: &str, timeout: Duration) -> StepResult {
        let deadline = tokio::time::Instant::now() + timeout;
        let actor = self
            .streams
            .get(name)
            .map(|st| st.actor.clone())
            .unwrap_or_default();
        let Some((domain, _)) = self.actor_identity(&actor) else {
            return Err(Self::broken(step, format!("unknown actor `{actor}`")));
        };
        let claimed = match self.next_unit(name, deadline).await.map(|r| r.unit) {
            Some(Unit::Header(h)) => h.from.clone().unwrap_or_default(),
            Some(u) => {
                return Err(self.failure(
                    step,
                    name,
                    "the SUT's stream header after TLS",
                    describe_unit(&u),
                ));
            }
            None => {
                return Err(self.failure(
                    step,
                    name,
                    "the SUT's stream header after TLS",
                    "nothing",
                ));
            }
        };
        let id = random_id();
        if let Some(st) = self.streams.get_mut(name) {
            st.own_id = Some(id.clone());
        }
        self.send_text(
            step,
            name,
            &Self::stream_header(&domain, &claimed, Some(&id)),
        )
        .await?;
        self.send_text(
            step,
            name,
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>\
             <dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>",
        )
        .await?;
        let auth = match self.next_unit(name, deadline).await.map(|r| r.unit) {
            Some(Unit::Element(e))
                if e.is(ns::SASL, "auth") && e.attr("mechanism") == Some("EXTERNAL") =>
            {
                e
            }
            Some(u) => {
                return Err(self.failure(
                    step,
                    name,
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>",
                    describe_unit(&u),
                ));
            }
            None => return Err(self.failure(step, name, "<auth mechanism='EXTERNAL'>", "nothing")),
        };
        // RFC 6120 §6.3.8 and XEP-0178 §3 (D-06): an empty response, `=`, or the claimed domain.
        let text = auth.text();
        let authzid_ok =
            matches!(text.trim(), "" | "=") || text.trim() == base64(claimed.as_bytes());
        let cert_ok = self
            .streams
            .get(name)
            .and_then(|st| st.tls_summary.as_ref())
            .is_some_and(|t| t.verdict.authenticates(&claimed));
        if !(authzid_ok && cert_ok) {
            let cond = if authzid_ok {
                "not-authorized"
            } else {
                "invalid-authzid"
            };
            self.send_text(
                step,
                name,
                &format!("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{cond}/></failure>"),
            )
            .await?;
            return Err(self.failure(
                step,
                name,
                format!("SASL EXTERNAL for {claimed} with a certificate that authenticates it (XEP-0178 §3)"),
                if authzid_ok { "the SUT's certificate does not authenticate the domain it claims".to_string() } else { format!("authzid {text:?}") },
            ));
        }
        if let Some(st) = self.streams.get(name) {
            st.restart.store(true, Ordering::SeqCst);
        }
        self.send_text(
            step,
            name,
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        )
        .await?;
        // The SUT now restarts the stream: the next unit is its new header (RFC 6120 §6.4.6).
        if let Some(st) = self.streams.get_mut(name) {
            st.sent_decoder = Some(new_decoder());
            st.header_sent = false;
            st.sut_header = None;
        }
        Ok(())
    }

    async fn step(&mut self, step: &Step) -> StepResult {
        match &step.action {
            Action::Connect {
                stream,
                actor,
                port,
            } => {
                if self.streams.contains_key(stream) {
                    return Err(Self::broken(
                        step,
                        format!("stream `{stream}` is already open"),
                    ));
                }
                self.connect(step, stream, actor, *port).await
            }
            Action::Accept {
                stream,
                actor,
                timeout,
            } => self.accept(step, stream, actor, *timeout).await,
            Action::Send { stream, text } => {
                let text = self.substitute(step, text)?;
                self.send_text(step, stream, &text).await
            }
            Action::Expect {
                stream,
                template,
                or,
                branches,
                timeout,
                exact,
            } if branches.is_empty() => {
                self.expect(step, stream, template, or, *timeout, *exact)
                    .await
            }
            Action::Expect {
                stream,
                template,
                or,
                branches,
                timeout,
                exact,
            } => {
                self.expect_branches(step, stream, template, or, branches, *timeout, *exact)
                    .await
            }
            Action::StartTls { stream, timeout } => self.starttls(step, stream, *timeout).await,
            Action::AcceptStartTls { stream, timeout } => {
                self.accept_starttls(step, stream, *timeout).await
            }
            Action::AcceptSasl { stream, timeout } => {
                self.accept_sasl(step, stream, *timeout).await
            }
            Action::SaslExternal {
                stream,
                authzid,
                timeout,
            } => self.sasl_external(step, stream, authzid, *timeout).await,
            Action::ExpectNoConnection { actor, window } => {
                self.expect_no_connection(step, actor, *window).await
            }
            Action::ExpectEof { stream, timeout } => self.expect_eof(step, stream, *timeout).await,
            Action::ExpectNone { stream, window } => self.expect_none(step, stream, *window).await,
            Action::ExpectAll { items, timeout } => self.expect_all(step, items, *timeout).await,
            Action::Close { stream } => self.close(step, stream, false).await,
            Action::Reset { stream } => self.close(step, stream, true).await,
            Action::Dialback {
                stream,
                actor,
                from,
                to,
                verify_stream,
            } => {
                self.dialback(
                    step,
                    stream,
                    actor,
                    from.as_deref(),
                    to.as_deref(),
                    verify_stream,
                )
                .await
            }
            Action::AcceptDialback {
                stream,
                actor,
                timeout,
                verify_stream,
                if_requested,
            } => {
                if *if_requested {
                    self.accept_dialback_if_requested(step, stream, actor, *timeout, verify_stream)
                        .await
                } else {
                    self.accept_dialback(step, stream, actor, *timeout, verify_stream)
                        .await
                }
            }
            Action::SipSend { actor, text, raw } => self.sip_send(step, actor, text, *raw).await,
            Action::SipExpectNone { actor, window } => {
                self.sip_expect_none(step, actor, *window).await
            }
            Action::SipExpect {
                actor,
                template,
                or,
                timeout,
                answer,
            } => {
                self.sip_expect(step, actor, template, or, *timeout, *answer)
                    .await
            }
        }
    }
}

fn assign(
    wanted: &[(usize, Option<Template>, String)],
    i: usize,
    got: &[Received],
    used: &mut [bool],
    caps: &mut Vec<(String, String)>,
) -> bool {
    let Some((_, tpl, _)) = wanted.get(i) else {
        return true;
    };
    for (j, r) in got.iter().enumerate() {
        if used[j] {
            continue;
        }
        let ok = match (tpl, &r.unit) {
            (None, Unit::Eof | Unit::Reset) => Some(Vec::new()),
            (Some(t), u) => unit_event(u).and_then(|ev| template::match_unit(t, &ev, false).ok()),
            _ => None,
        };
        if let Some(c) = ok {
            used[j] = true;
            let n = caps.len();
            caps.extend(c);
            if assign(wanted, i + 1, got, used, caps) {
                return true;
            }
            caps.truncate(n);
            used[j] = false;
        }
    }
    false
}

/// Replace whole-domain occurrences of `domain` in `text` with `label` (`{sut}`, `{gw}`),
/// not inside a longer name such as `gw.sut.test`.
fn mask_domain(text: &str, domain: &str, label: &str) -> String {
    if domain.is_empty() {
        return text.to_string();
    }
    let part_of_name = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(domain) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + domain.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(part_of_name) || after.is_some_and(|c| part_of_name(c) && c != '.') {
            out.push_str(domain);
        } else {
            out.push_str(label);
        }
        rest = &rest[i + domain.len()..];
    }
    out.push_str(rest);
    out
}

/// How a stream id the SUT sent is described in a freshness failure.
fn header_seen(stream: &str, seq: usize) -> String {
    format!("the stream id of `{stream}` (transcript entry {seq})")
}

fn event_unit(ev: Event) -> Unit {
    match ev {
        Event::Header(h) => Unit::Header(h),
        Event::Element(e) => Unit::Element(e),
        Event::Close => Unit::StreamClose,
        Event::Whitespace(n) => Unit::Whitespace(n),
    }
}

fn unit_event(u: &Unit) -> Option<Event> {
    match u {
        Unit::Header(h) => Some(Event::Header(h.clone())),
        Unit::Element(e) => Some(Event::Element(e.clone())),
        Unit::StreamClose => Some(Event::Close),
        _ => None,
    }
}

/// One line describing what arrived, for failure reports.
pub fn describe_unit(u: &Unit) -> String {
    match u {
        Unit::Eof => "the SUT closed the connection (EOF)".into(),
        Unit::Reset => "the connection was reset".into(),
        Unit::Undecodable { bytes, reason } => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            format!("undecodable bytes ({reason}): {text:?}")
        }
        Unit::Whitespace(n) => format!("whitespace ×{n}"),
        Unit::Note(n) => format!("# {n}"),
        Unit::Connected { peer, .. } => format!("a connection to {peer}"),
        other => match unit_event(other) {
            Some(ev) => template::describe_event(&ev),
            None => format!("{other:?}"),
        },
    }
}

pub fn fmt_dur(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// RFC 4648 base64 (the SASL initial response, RFC 6120 §6.4.2).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [
            c[0],
            c.get(1).copied().unwrap_or(0),
            c.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(T[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// 128 random bits, hex: stream ids the harness sends as a receiving server.
fn random_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // An id only has to be unique within the scenario for the harness's own streams.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::mask_domain;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn masks_only_whole_domains() {
        assert_eq!(
            mask_domain("rx → sut.test (x)", "sut.test", "{sut}"),
            "rx → {sut} (x)"
        );
        assert_eq!(
            mask_domain("gw.sut.test and sut.test.", "sut.test", "{sut}"),
            "gw.sut.test and {sut}."
        );
        assert_eq!(
            mask_domain("romeo@sut.test/r", "sut.test", "{sut}"),
            "romeo@{sut}/r"
        );
        assert_eq!(mask_domain("sut.tester", "sut.test", "{sut}"), "sut.tester");
        assert_eq!(
            mask_domain("remote.test → sip.sut.test", "sip.sut.test", "{gw}"),
            "remote.test → {gw}"
        );
    }
}
