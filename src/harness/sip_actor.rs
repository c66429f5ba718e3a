//! Simulated SIP user agents: their declaration, their sockets, and the transport and
//! transaction layer that runs under each (docs/scenarios.md "SIP actors").
//!
//! Each SIP domain the scenario declares gets one endpoint: a UDP socket or a TCP
//! listener on loopback, bound before the SUT starts so its next hop can point at it. A
//! driver task per endpoint owns the socket and the sans-IO transactions of
//! [`crate::sip::transaction`]: over UDP it retransmits the harness's requests (Timer E),
//! absorbs the SUT's retransmitted requests (answering them with the last response, RFC
//! 3261 §17.2.2) and its retransmitted responses (§17.1.2.2), and reports each absorbed
//! copy as a retransmission, never as a new message. Over TCP it accepts the SUT's
//! connections, opens one to the SUT for the harness's requests, and frames with
//! [`StreamDecoder`] (RFC 3261 §18.3). What a step sends and what it expects is the
//! runner's business (src/harness/sip_steps.rs); the driver only moves messages.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use super::load::{ActorKind, Scenario};
use crate::sip::transaction::{ClientKey, ServerKey};
use crate::sip::{
    ClientInput, ClientOutput, ClientTransaction, Item, Limits, Message, Reliability, Request,
    Response, ServerInput, ServerOutput, ServerTransaction, StreamDecoder, Timers, Via,
    parse_datagram,
};

/// A `[sip.NAME]` actor as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipActor {
    /// Its address of record as written, e.g. `sip:alice@sip.example`.
    pub uri: String,
    /// The user part of the URI (still percent-encoded).
    pub user: Option<String>,
    /// The URI's host, lower-cased: the actors of one domain share an endpoint.
    pub domain: String,
    pub transport: SipTransport,
    pub profile: SipProfile,
    /// Default final status for requests that `expect` steps match, unless the actor's
    /// next SIP step answers explicitly.
    pub answer: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SipTransport {
    Udp,
    Tcp,
}

impl SipTransport {
    /// The Via transport token (RFC 3261 §20.42).
    pub fn token(self) -> &'static str {
        match self {
            SipTransport::Udp => "UDP",
            SipTransport::Tcp => "TCP",
        }
    }
}

impl fmt::Display for SipTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// The SIP dialect an actor speaks. Only page-mode IM as RFC 7572 maps it (MESSAGE, RFC
/// 3428) for now; the MS chat-session dialect (INVITE + MESSAGE in a session, D-05) will
/// be a second variant that changes how the runner completes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipProfile {
    Rfc7572,
}

/// Where the SUT receives SIP (its gateway's listeners).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SipSut {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
}

impl SipSut {
    pub fn addr(&self, t: SipTransport) -> Option<SocketAddr> {
        match t {
            SipTransport::Udp => self.udp,
            SipTransport::Tcp => self.tcp,
        }
    }
}

/// Where the SUT must send SIP for one domain: its next hop for that domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipRoute {
    pub addr: SocketAddr,
    pub transport: SipTransport,
}

enum BoundSocket {
    Udp(UdpSocket),
    Tcp(TcpListener),
}

struct BoundEndpoint {
    domain: String,
    transport: SipTransport,
    local: SocketAddr,
    socket: BoundSocket,
    /// (actor name, URI user) of the actors reached here, in file order.
    actors: Vec<(String, Option<String>)>,
}

/// The SIP actors' sockets, bound before the SUT starts.
#[derive(Default)]
pub struct SipSockets {
    endpoints: Vec<BoundEndpoint>,
}

impl SipSockets {
    /// One socket per SIP domain: at `fixed[domain]` if given (a remote SUT configured to
    /// send there), else on an ephemeral loopback port.
    pub async fn bind(
        scenario: &Scenario,
        fixed: &BTreeMap<String, SocketAddr>,
    ) -> std::io::Result<SipSockets> {
        let mut endpoints: Vec<BoundEndpoint> = Vec::new();
        for a in &scenario.actors {
            let ActorKind::Sip(s) = &a.kind else { continue };
            if let Some(ep) = endpoints.iter_mut().find(|e| e.domain == s.domain) {
                ep.actors.push((a.name.clone(), s.user.clone()));
                continue;
            }
            let addr = fixed
                .get(&s.domain)
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
            let (socket, local) = match s.transport {
                SipTransport::Udp => {
                    let u = UdpSocket::bind(addr).await?;
                    let l = u.local_addr()?;
                    (BoundSocket::Udp(u), l)
                }
                SipTransport::Tcp => {
                    let t = TcpListener::bind(addr).await?;
                    let l = t.local_addr()?;
                    (BoundSocket::Tcp(t), l)
                }
            };
            endpoints.push(BoundEndpoint {
                domain: s.domain.clone(),
                transport: s.transport,
                local,
                socket,
                actors: vec![(a.name.clone(), s.user.clone())],
            });
        }
        Ok(SipSockets { endpoints })
    }

    /// domain → where the SUT reaches the actors of that domain.
    pub fn routes(&self) -> BTreeMap<String, SipRoute> {
        self.endpoints
            .iter()
            .map(|e| {
                (
                    e.domain.clone(),
                    SipRoute {
                        addr: e.local,
                        transport: e.transport,
                    },
                )
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// A TCP connection of an endpoint.
pub type ConnId = u64;

/// Where a received message came from, i.e. where its response goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnPath {
    /// RFC 3261 §18.2.2 / RFC 3581 §4: the address computed from the top Via and the
    /// datagram's source.
    Udp(SocketAddr),
    /// The connection it arrived on (§18.2.2: "the response MUST be sent using the existing
    /// connection").
    Tcp(ConnId),
}

/// What the driver got from the network.
#[derive(Debug, Clone)]
pub enum Incoming {
    Message(Message),
    Undecodable { reason: String },
}

/// Reported by a driver to the runner.
#[derive(Debug, Clone)]
pub enum SipEvent {
    /// A new message (or bytes that do not parse) from the SUT.
    Received {
        endpoint: usize,
        at: Duration,
        path: ReturnPath,
        item: Incoming,
        raw: Vec<u8>,
    },
    /// A copy the transaction layer absorbed: from the SUT (`from_sut`) or a Timer E
    /// retransmission of the harness's own request.
    Retransmission {
        endpoint: usize,
        at: Duration,
        from_sut: bool,
        message: Message,
        raw: Vec<u8>,
    },
}

/// How a driver reports events; false once the runner is gone.
pub type Emit = Arc<dyn Fn(SipEvent) -> bool + Send + Sync>;

/// Where a request the harness sends goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Udp(SocketAddr),
    /// Over the endpoint's connection to this address, opened on first use.
    TcpConnect(SocketAddr),
}

/// Asks a driver to send.
#[derive(Debug)]
pub enum Command {
    Request {
        request: Request,
        dest: Dest,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Bytes as a step wrote them (`raw = true`): no transaction, no retransmission.
    Raw {
        bytes: Vec<u8>,
        dest: Dest,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// A response to a received request; `key` is the request's server transaction, when it
    /// has one.
    Response {
        response: Response,
        key: Option<ServerKey>,
        path: ReturnPath,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// A running endpoint, as the runner holds it.
pub struct Endpoint {
    pub domain: String,
    pub transport: SipTransport,
    pub local: SocketAddr,
    pub actors: Vec<(String, Option<String>)>,
    pub commands: mpsc::UnboundedSender<Command>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Endpoint {
    /// Stop the driver and wait until its socket is closed, so a following scenario can
    /// bind the same fixed address at once.
    pub async fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Start one driver per bound socket. `start` is the scenario clock.
pub fn start(sockets: SipSockets, emit: Emit, start: Instant, timers: Timers) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for (index, ep) in sockets.endpoints.into_iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            index,
            emit: emit.clone(),
            start,
            timers,
            clients: HashMap::new(),
            servers: HashMap::new(),
            conns: HashMap::new(),
            outbound: HashMap::new(),
            next_conn: 0,
            readers: Readers(Vec::new()),
        };
        let task = match ep.socket {
            BoundSocket::Udp(u) => tokio::spawn(driver.run_udp(u, rx)),
            BoundSocket::Tcp(l) => tokio::spawn(driver.run_tcp(l, rx)),
        };
        out.push(Endpoint {
            domain: ep.domain,
            transport: ep.transport,
            local: ep.local,
            actors: ep.actors,
            commands: tx,
            task: Some(task),
        });
    }
    out
}

/// The largest datagram read (RFC 3261 §18.1.1 keeps UDP messages well below this).
const MAX_DATAGRAM: usize = 65_535;

/// Where the response to a request received over UDP goes (RFC 3261 §18.2.2, RFC 3581
/// §4): the source address when the Via asks for `rport`, else the source IP (which
/// `received` would name) with the Via's sent-by port, 5060 by default (§18.1.1).
pub fn udp_response_destination(via: Option<&Via>, source: SocketAddr) -> SocketAddr {
    match via {
        Some(v) if v.rport().is_some() => source,
        Some(v) => SocketAddr::new(source.ip(), v.port.unwrap_or(5060)),
        None => source,
    }
}

/// Reader tasks of TCP connections, aborted with the driver.
struct Readers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for r in &self.0 {
            r.abort();
        }
    }
}

struct Driver {
    index: usize,
    emit: Emit,
    start: Instant,
    timers: Timers,
    /// UDP client transactions of the harness's requests, with their destination.
    clients: HashMap<ClientKey, (ClientTransaction, SocketAddr, Message)>,
    /// UDP server transactions of the SUT's requests, with the response destination.
    servers: HashMap<ServerKey, (ServerTransaction, SocketAddr)>,
    conns: HashMap<ConnId, OwnedWriteHalf>,
    /// SUT address → the connection the harness opened to it.
    outbound: HashMap<SocketAddr, ConnId>,
    next_conn: ConnId,
    readers: Readers,
}

impl Driver {
    fn at(&self) -> Duration {
        self.start.elapsed()
    }

    fn next_timer(&self) -> Option<Instant> {
        let c = self
            .clients
            .values()
            .filter_map(|(t, _, _)| t.poll_timeout());
        let s = self.servers.values().filter_map(|(t, _)| t.poll_timeout());
        c.chain(s).min()
    }

    async fn run_udp(mut self, socket: UdpSocket, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let next = self.next_timer();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let data = buf.get(..n).unwrap_or_default().to_vec();
                        self.udp_datagram(&socket, data, from).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "SIP UDP receive error"),
                },
                cmd = rx.recv() => match cmd {
                    Some(c) => self.udp_command(&socket, c).await,
                    None => return,
                },
                () = sleep => self.udp_timers(&socket).await,
            }
        }
    }

    async fn udp_datagram(&mut self, socket: &UdpSocket, data: Vec<u8>, from: SocketAddr) {
        let now = Instant::now();
        let at = self.at();
        let item = match parse_datagram(&data, &Limits::default()) {
            Ok(Item::Message(m)) => m,
            // RFC 5626 §3.5.1 keep-alives carry nothing for a scenario.
            Ok(Item::Keepalive(_)) => return,
            Err(e) => {
                (self.emit)(SipEvent::Received {
                    endpoint: self.index,
                    at,
                    path: ReturnPath::Udp(from),
                    item: Incoming::Undecodable {
                        reason: e.to_string(),
                    },
                    raw: data,
                });
                return;
            }
        };
        match &item {
            Message::Request(req) => {
                let dest = udp_response_destination(req.headers.top_via().ok().as_ref(), from);
                if let Ok(key) = ServerKey::from_request(req) {
                    if let Some((t, d)) = self.servers.get_mut(&key) {
                        // §17.2.2: a retransmission; the transaction resends the last
                        // response, if any.
                        let d = *d;
                        let _ = t.handle_input(now, ServerInput::Request(req.clone()));
                        let outs: Vec<ServerOutput> =
                            std::iter::from_fn(|| t.poll_output()).collect();
                        for o in outs {
                            if let ServerOutput::Transmit(b) = o {
                                let _ = socket.send_to(&b, d).await;
                            }
                        }
                        (self.emit)(SipEvent::Retransmission {
                            endpoint: self.index,
                            at,
                            from_sut: true,
                            message: item.clone(),
                            raw: data,
                        });
                        return;
                    }
                    if let Ok(t) = ServerTransaction::new(req, Reliability::Unreliable, self.timers)
                    {
                        self.servers.insert(key, (t, dest));
                    }
                }
                (self.emit)(SipEvent::Received {
                    endpoint: self.index,
                    at,
                    path: ReturnPath::Udp(dest),
                    item: Incoming::Message(item.clone()),
                    raw: data,
                });
            }
            Message::Response(resp) => {
                let mut fresh = true;
                if let Ok(key) = ClientKey::from_response(resp)
                    && let Some((t, _, _)) = self.clients.get_mut(&key)
                {
                    let _ = t.handle_input(now, ClientInput::Response(resp.clone()));
                    let outs: Vec<ClientOutput> = std::iter::from_fn(|| t.poll_output()).collect();
                    // §17.1.2.2: in Completed, a retransmitted final response is absorbed.
                    fresh = outs.iter().any(|o| matches!(o, ClientOutput::Response(_)));
                    if outs.iter().any(|o| matches!(o, ClientOutput::Terminated)) {
                        self.clients.remove(&key);
                    }
                }
                let ev = if fresh {
                    SipEvent::Received {
                        endpoint: self.index,
                        at,
                        path: ReturnPath::Udp(from),
                        item: Incoming::Message(item.clone()),
                        raw: data,
                    }
                } else {
                    SipEvent::Retransmission {
                        endpoint: self.index,
                        at,
                        from_sut: true,
                        message: item.clone(),
                        raw: data,
                    }
                };
                (self.emit)(ev);
            }
        }
    }

    async fn udp_command(&mut self, socket: &UdpSocket, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Raw { bytes, dest, done } => {
                let r = match dest {
                    Dest::Udp(to) => socket
                        .send_to(&bytes, to)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Dest::TcpConnect(_) => Err("a UDP endpoint cannot open TCP connections".into()),
                };
                let _ = done.send(r);
            }
            Command::Request {
                request,
                dest,
                done,
            } => {
                let Dest::Udp(to) = dest else {
                    let _ = done.send(Err("a UDP endpoint cannot open TCP connections".into()));
                    return;
                };
                let bytes = request.to_bytes();
                let r = socket
                    .send_to(&bytes, to)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                // A request the transaction layer cannot own (no branch, on purpose) is
                // sent once.
                if r.is_ok()
                    && let Ok(mut t) =
                        ClientTransaction::new(now, &request, Reliability::Unreliable, self.timers)
                {
                    // The first Transmit is what was just sent.
                    while let Some(o) = t.poll_output() {
                        if !matches!(o, ClientOutput::Transmit(_)) {
                            break;
                        }
                    }
                    let key = t.key().clone();
                    self.clients.insert(key, (t, to, Message::Request(request)));
                }
                let _ = done.send(r);
            }
            Command::Response {
                response,
                key,
                path,
                done,
            } => {
                let ReturnPath::Udp(to) = path else {
                    let _ = done.send(Err("the request came over TCP".into()));
                    return;
                };
                let bytes = response.to_bytes();
                if let Some(k) = key
                    && let Some((t, d)) = self.servers.get_mut(&k)
                    && t.handle_input(now, ServerInput::Respond(response.clone()))
                        .is_ok()
                {
                    let d = *d;
                    let outs: Vec<ServerOutput> = std::iter::from_fn(|| t.poll_output()).collect();
                    let mut r = Ok(());
                    for o in outs {
                        if let ServerOutput::Transmit(b) = o {
                            r = socket
                                .send_to(&b, d)
                                .await
                                .map(|_| ())
                                .map_err(|e| e.to_string());
                        }
                    }
                    let _ = done.send(r);
                    return;
                }
                let r = socket
                    .send_to(&bytes, to)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                let _ = done.send(r);
            }
        }
    }

    async fn udp_timers(&mut self, socket: &UdpSocket) {
        let now = Instant::now();
        let at = self.at();
        let mut resend: Vec<(Vec<u8>, SocketAddr, Message)> = Vec::new();
        let mut done: Vec<ClientKey> = Vec::new();
        for (k, (t, to, m)) in self.clients.iter_mut() {
            t.handle_timeout(now);
            while let Some(o) = t.poll_output() {
                match o {
                    ClientOutput::Transmit(b) => resend.push((b, *to, m.clone())),
                    ClientOutput::Timeout => {
                        tracing::debug!(request = %super::sip_match::describe(m), "no final response before Timer F (RFC 3261 §17.1.2.2)");
                    }
                    ClientOutput::Terminated => done.push(k.clone()),
                    ClientOutput::Response(_) | ClientOutput::TransportError => {}
                }
            }
        }
        for k in done {
            self.clients.remove(&k);
        }
        let mut ended: Vec<ServerKey> = Vec::new();
        for (k, (t, _)) in self.servers.iter_mut() {
            t.handle_timeout(now);
            while let Some(o) = t.poll_output() {
                if matches!(o, ServerOutput::Terminated) {
                    ended.push(k.clone());
                }
            }
        }
        for k in ended {
            self.servers.remove(&k);
        }
        for (b, to, m) in resend {
            let _ = socket.send_to(&b, to).await;
            (self.emit)(SipEvent::Retransmission {
                endpoint: self.index,
                at,
                from_sut: false,
                message: m,
                raw: b,
            });
        }
    }

    async fn run_tcp(mut self, listener: TcpListener, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => { self.attach(s); }
                    Err(e) => tracing::debug!(error = %e, "SIP TCP accept error"),
                },
                cmd = rx.recv() => match cmd {
                    Some(c) => self.tcp_command(c).await,
                    None => return,
                },
            }
        }
    }

    /// Register a connection: its write half stays here, a reader task frames what
    /// arrives (RFC 3261 §18.3) and reports it with the connection as return path.
    fn attach(&mut self, s: TcpStream) -> ConnId {
        let _ = s.set_nodelay(true);
        let id = self.next_conn;
        self.next_conn += 1;
        let (mut read, write) = s.into_split();
        self.conns.insert(id, write);
        let emit = self.emit.clone();
        let start = self.start;
        let index = self.index;
        self.readers.0.push(tokio::spawn(async move {
            let mut dec = StreamDecoder::new(Limits::default());
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match read.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        if let Err(e) = dec.finish() {
                            emit(SipEvent::Received {
                                endpoint: index,
                                at: start.elapsed(),
                                path: ReturnPath::Tcp(id),
                                item: Incoming::Undecodable {
                                    reason: format!("at end of stream: {e}"),
                                },
                                raw: Vec::new(),
                            });
                        }
                        return;
                    }
                    Ok(n) => n,
                };
                dec.feed(buf.get(..n).unwrap_or_default());
                loop {
                    match dec.next() {
                        Ok(Some(Item::Message(m))) => {
                            let raw = m.to_bytes();
                            if !emit(SipEvent::Received {
                                endpoint: index,
                                at: start.elapsed(),
                                path: ReturnPath::Tcp(id),
                                item: Incoming::Message(m),
                                raw,
                            }) {
                                return;
                            }
                        }
                        Ok(Some(Item::Keepalive(_))) => {}
                        Ok(None) => break,
                        Err(e) => {
                            // The stream is unusable after a framing error (RFC 3261 §18.3).
                            emit(SipEvent::Received {
                                endpoint: index,
                                at: start.elapsed(),
                                path: ReturnPath::Tcp(id),
                                item: Incoming::Undecodable {
                                    reason: e.to_string(),
                                },
                                raw: buf.get(..n).unwrap_or_default().to_vec(),
                            });
                            return;
                        }
                    }
                }
            }
        }));
        id
    }

    /// The connection to the SUT at `dest`, opened on first use.
    async fn outbound_conn(&mut self, dest: Dest) -> Result<ConnId, String> {
        let Dest::TcpConnect(to) = dest else {
            return Err("a TCP endpoint cannot send datagrams".into());
        };
        // A connection whose reader ended (the SUT closed it, e.g. after answering a
        // framing error with 400, RFC 3261 §18.3) is not reused: bytes written to it
        // would be lost. Readers are pushed in connection-id order.
        if let Some(&id) = self.outbound.get(&to) {
            let open = usize::try_from(id)
                .ok()
                .and_then(|i| self.readers.0.get(i))
                .is_some_and(|r| !r.is_finished());
            if open && self.conns.contains_key(&id) {
                return Ok(id);
            }
            self.conns.remove(&id);
        }
        let s = TcpStream::connect(to)
            .await
            .map_err(|e| format!("TCP connect to {to}: {e}"))?;
        let id = self.attach(s);
        self.outbound.insert(to, id);
        Ok(id)
    }

    async fn tcp_command(&mut self, cmd: Command) {
        match cmd {
            Command::Request {
                request,
                dest,
                done,
            } => {
                let r = match self.outbound_conn(dest).await {
                    Ok(id) => self.write(id, &request.to_bytes()).await,
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
            Command::Raw { bytes, dest, done } => {
                let r = match self.outbound_conn(dest).await {
                    Ok(id) => self.write(id, &bytes).await,
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
            Command::Response {
                response,
                path,
                done,
                ..
            } => {
                let ReturnPath::Tcp(id) = path else {
                    let _ = done.send(Err("the request came over UDP".into()));
                    return;
                };
                let r = self.write(id, &response.to_bytes()).await;
                let _ = done.send(r);
            }
        }
    }

    async fn write(&mut self, id: ConnId, bytes: &[u8]) -> Result<(), String> {
        let Some(w) = self.conns.get_mut(&id) else {
            return Err("the connection is gone".into());
        };
        match w.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.conns.remove(&id);
                Err(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[tokio::test]
    async fn one_socket_per_sip_domain() {
        let text = "title = \"t\"\ncovers = [\"IM-01\"]\n\n[sip.alice]\nuri = \"sip:alice@a.test\"\n\n[sip.bob]\nuri = \"sip:bob@A.test\"\n\n[sip.carol]\nuri = \"sip:carol@c.test\"\ntransport = \"tcp\"\n\n[[step]]\nexpect_none = \"alice\"\n";
        let cat = crate::harness::catalogue::Catalogue::builtin().expect("catalogue");
        let scenario = crate::harness::load::load_str(text, std::path::Path::new("t.toml"), &cat)
            .expect("loads");
        let sockets = SipSockets::bind(&scenario, &BTreeMap::new())
            .await
            .expect("bind");
        let routes = sockets.routes();
        let domains: Vec<&str> = routes.keys().map(String::as_str).collect();
        assert_eq!(domains, vec!["a.test", "c.test"]);
        assert_eq!(
            routes.get("c.test").map(|r| r.transport),
            Some(SipTransport::Tcp)
        );
        let a = sockets.endpoints.first().expect("a.test endpoint");
        let names: Vec<&str> = a.actors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["alice", "bob"]);
        assert!(
            routes
                .values()
                .all(|r| r.addr.ip().is_loopback() && r.addr.port() != 0)
        );
    }

    /// After the SUT closes the actor's connection (RFC 3261 §18.3: it must, after a
    /// framing error), the next send opens a new connection instead of writing into the
    /// dead one, where the bytes would be lost.
    #[tokio::test]
    async fn a_connection_the_sut_closed_is_replaced() {
        use tokio::io::AsyncReadExt;
        let text = "title = \"t\"\ncovers = [\"IM-01\"]\n\n[sip.alice]\nuri = \"sip:alice@a.test\"\ntransport = \"tcp\"\n\n[[step]]\nexpect_none = \"alice\"\n";
        let cat = crate::harness::catalogue::Catalogue::builtin().expect("catalogue");
        let scenario = crate::harness::load::load_str(text, std::path::Path::new("t.toml"), &cat)
            .expect("loads");
        let sockets = SipSockets::bind(&scenario, &BTreeMap::new())
            .await
            .expect("bind");
        let emit: Emit = Arc::new(|_| true);
        let eps = start(sockets, emit, Instant::now(), Timers::default());
        let ep = eps.first().expect("one endpoint");
        let sut = TcpListener::bind("127.0.0.1:0").await.expect("sut");
        let dest = Dest::TcpConnect(sut.local_addr().expect("addr"));
        let send = |bytes: &'static [u8]| {
            let (done, wait) = oneshot::channel();
            let _ = ep.commands.send(Command::Raw {
                bytes: bytes.to_vec(),
                dest,
                done,
            });
            wait
        };
        let first = send(b"one");
        let (mut c1, _) = sut.accept().await.expect("first connection");
        assert_eq!(first.await.expect("answered"), Ok(()));
        let mut buf = [0u8; 16];
        let n = c1.read(&mut buf).await.expect("read");
        assert_eq!(buf.get(..n), Some(&b"one"[..]));
        drop(c1);
        // Let the actor's reader see the close.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let second = send(b"two");
        let (mut c2, _) = tokio::time::timeout(std::time::Duration::from_secs(2), sut.accept())
            .await
            .expect("a new connection")
            .expect("accept");
        assert_eq!(second.await.expect("answered"), Ok(()));
        let n = c2.read(&mut buf).await.expect("read");
        assert_eq!(buf.get(..n), Some(&b"two"[..]));
    }

    #[rstest]
    #[case("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKx;rport", "127.0.0.1:4000")]
    #[case("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKx", "127.0.0.1:5070")]
    #[case("SIP/2.0/UDP gw.test;branch=z9hG4bKx", "127.0.0.1:5060")]
    fn response_goes_where_via_says(#[case] via: &str, #[case] want: &str) {
        let v = Via::parse(via).expect("via");
        let src: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        assert_eq!(udp_response_destination(Some(&v), src).to_string(), want);
    }
}
