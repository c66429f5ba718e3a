//! The tokio driver around [`GatewayCore`]: sockets, time and nothing else.
//!
//! One task owns the core and the UDP socket and loops over: a datagram, an event from
//! another task (a TCP message, the component link), the core's next timer, shutdown.
//! After each event it drains the core's outputs. Around it:
//! - the component task keeps one XEP-0114 link to the proxy, reconnecting with
//!   jittered exponential back-off (RFC 6120 §3.3 spirit; Kamailio's tight reconnect
//!   loop is the interop note's example of what not to do);
//! - one task per SIP TCP connection (accepted, or opened for a route) frames the
//!   stream with [`StreamDecoder`] and writes what the core sends to that peer.
//!
//! Channels toward the core task are unbounded for the component link (so it never
//! blocks while the core waits on it) and bounded for TCP readers (back-pressure);
//! channels out of the core task are bounded toward the link and unbounded toward TCP
//! writers, so no two tasks can wait on each other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::config::{GatewayConfig, SipRoutes, SipTarget, Transport};
use super::engine::{GatewayCore, Output};
use crate::sip::builder::OsRandom;
use crate::sip::{Item, Keepalive, Limits, Message, StreamDecoder};
use crate::xmpp::component::ComponentClient;
use crate::xmpp::element::Element;
use crate::xmpp::s2s::{Input, Output as XOutput};

/// Largest UDP datagram read.
const DATAGRAM: usize = 65_535;
/// Read buffer per stream.
const READ_BUF: usize = 16 * 1024;
/// Commands queued toward the component link.
const LINK_QUEUE: usize = 1024;
/// Messages queued from one TCP reader toward the core.
const TCP_EVENTS: usize = 256;
/// Stanzas taken in one go, so they leave in one write.
const BATCH: usize = 64;
/// Time allowed for the XEP-0114 handshake.
const ESTABLISH: Duration = Duration::from_secs(10);
/// TCP connect timeout for SIP routes and the proxy.
const CONNECT: Duration = Duration::from_secs(5);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid configuration: {0}")]
    Config(#[from] super::config::Rule),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

enum Event {
    Tcp {
        peer: SocketAddr,
        msg: Message,
    },
    TcpOpen {
        peer: SocketAddr,
        tx: mpsc::UnboundedSender<Vec<u8>>,
    },
    TcpGone {
        peer: SocketAddr,
        failed: bool,
    },
    Stanza(Element),
    LinkUp,
    LinkDown,
    Handed(u64),
    NotHanded(Element, u64),
}

enum LinkCmd {
    Send(Element, u64),
}

/// A gateway that is running; stop it with [`RunningGateway::shutdown`].
pub struct RunningGateway {
    pub sip_udp_addr: SocketAddr,
    pub sip_tcp_addr: SocketAddr,
    routes: SipRoutes,
    linked: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
}

impl RunningGateway {
    /// Add or replace a SIP next hop (`user@domain` or `domain`) at run time, as
    /// [`crate::proxy::RunningProxy::add_route`] does for XMPP.
    pub fn add_sip_route(&self, key: &str, target: SipTarget) {
        self.routes.insert(key, target);
    }

    /// True while the XEP-0114 link to the proxy is authenticated.
    pub fn is_linked(&self) -> bool {
        *self.linked.borrow()
    }

    /// Wait until the component link is up (the proxy accepted the handshake), at most
    /// `timeout`. Traffic sent earlier is not lost (it is held), but a harness that
    /// wants deterministic timing waits here first.
    pub async fn wait_linked(&self, timeout: Duration) -> bool {
        let mut rx = self.linked.clone();
        tokio::time::timeout(timeout, rx.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stop every task (the component stream is closed) and wait for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let wait = async { while self.done.recv().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            warn!("gateway tasks did not finish within 10 s of shutdown");
        }
    }
}

/// Bind the SIP listeners and spawn the gateway (no globals: many run side by side).
pub async fn start(cfg: GatewayConfig) -> Result<RunningGateway, GatewayError> {
    cfg.validate()?;
    let bind_err = |addr| move |source| GatewayError::Bind { addr, source };
    let udp = UdpSocket::bind(cfg.sip_listen_udp)
        .await
        .map_err(bind_err(cfg.sip_listen_udp))?;
    let tcp = TcpListener::bind(cfg.sip_listen_tcp)
        .await
        .map_err(bind_err(cfg.sip_listen_tcp))?;
    let sip_udp_addr = udp.local_addr().map_err(bind_err(cfg.sip_listen_udp))?;
    let sip_tcp_addr = tcp.local_addr().map_err(bind_err(cfg.sip_listen_tcp))?;
    let (stop, shutdown) = watch::channel(false);
    let (tracker, done) = mpsc::channel::<()>(1);
    let routes = SipRoutes::from_config(&cfg);
    let (link_state, linked) = watch::channel(false);
    let core = GatewayCore::with_routes(
        cfg.clone(),
        routes.clone(),
        sip_udp_addr,
        sip_tcp_addr,
        Box::new(OsRandom::default()),
    );
    let limits = core.sip_limits();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<Event>();
    let (tcp_tx, tcp_rx) = mpsc::channel::<Event>(TCP_EVENTS);
    let (link_tx, link_rx) = mpsc::channel::<LinkCmd>(LINK_QUEUE);
    info!(%sip_udp_addr, %sip_tcp_addr, domain = %cfg.component_domain, "gateway listening");
    tokio::spawn(component_task(
        cfg.clone(),
        ev_tx,
        link_state,
        link_rx,
        shutdown.clone(),
        tracker.clone(),
    ));
    tokio::spawn(accept_loop(
        tcp,
        limits,
        tcp_tx.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
    let main = Main {
        core,
        udp,
        conns: HashMap::new(),
        link_tx,
        tcp_tx,
        limits,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    };
    tokio::spawn(main.run(ev_rx, tcp_rx, shutdown, tracker));
    Ok(RunningGateway {
        sip_udp_addr,
        sip_tcp_addr,
        routes,
        linked,
        stop,
        done,
    })
}

/// Run until ctrl-c (for `fedcheck gateway --config F`).
pub async fn run(cfg: GatewayConfig) -> Result<(), GatewayError> {
    let g = start(cfg).await?;
    if let Err(e) = tokio::signal::ctrl_c().await {
        warn!(error = %e, "cannot wait for ctrl-c; shutting down");
    }
    g.shutdown().await;
    Ok(())
}

struct Main {
    core: GatewayCore,
    udp: UdpSocket,
    conns: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>,
    link_tx: mpsc::Sender<LinkCmd>,
    tcp_tx: mpsc::Sender<Event>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
    tracker: mpsc::Sender<()>,
}

impl Main {
    async fn run(
        mut self,
        mut ev_rx: mpsc::UnboundedReceiver<Event>,
        mut tcp_rx: mpsc::Receiver<Event>,
        mut stop: watch::Receiver<bool>,
        _t: mpsc::Sender<()>,
    ) {
        let mut buf = vec![0u8; DATAGRAM];
        loop {
            let deadline = self.core.poll_timeout();
            let sleep = tokio::time::sleep_until(
                deadline
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let data = buf.get(..n).unwrap_or_default();
                        self.core.handle_datagram(Instant::now(), from, data);
                    }
                    // ICMP port unreachable surfaces here on some systems; harmless.
                    Err(e) => debug!(error = %e, "UDP receive error"),
                },
                Some(ev) = ev_rx.recv() => self.on_event(ev),
                Some(ev) = tcp_rx.recv() => self.on_event(ev),
                _ = sleep, if deadline.is_some() => self.core.handle_timeout(Instant::now()),
                _ = stop.changed() => break,
            }
            self.drain().await;
        }
        debug!("gateway core task stopped");
    }

    fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Tcp { peer, msg } => self.core.handle_sip(
                now,
                SipTarget {
                    transport: Transport::Tcp,
                    addr: peer,
                },
                msg,
            ),
            Event::TcpOpen { peer, tx } => {
                self.conns.insert(peer, tx);
            }
            Event::TcpGone { peer, failed } => {
                if self.conns.get(&peer).is_some_and(|t| t.is_closed()) {
                    self.conns.remove(&peer);
                }
                // RFC 3261 §18.2.2: answers still owed on it go over a new connection.
                self.core.tcp_closed(now, peer);
                if failed {
                    self.core.sip_send_failed(
                        now,
                        SipTarget {
                            transport: Transport::Tcp,
                            addr: peer,
                        },
                    );
                }
            }
            Event::Stanza(el) => self.core.handle_stanza(now, el),
            Event::LinkUp => self.core.link_up(now),
            Event::LinkDown => self.core.link_down(now),
            Event::Handed(t) => self.core.stanza_handed(now, t),
            Event::NotHanded(el, t) => self.core.stanza_not_handed(now, el, t),
        }
    }

    async fn drain(&mut self) {
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Sip { to, bytes } => match to.transport {
                    Transport::Udp => {
                        if let Err(e) = self.udp.send_to(&bytes, to.addr).await {
                            info!(to = %to.addr, error = %e, "UDP send failed");
                            self.core.sip_send_failed(Instant::now(), to);
                        }
                    }
                    Transport::Tcp => self.send_tcp(to.addr, bytes),
                },
                Output::Stanza { stanza, token } => {
                    if let Err(mpsc::error::SendError(LinkCmd::Send(el, t))) =
                        self.link_tx.send(LinkCmd::Send(stanza, token)).await
                    {
                        self.core.stanza_not_handed(Instant::now(), el, t);
                    }
                }
            }
        }
    }

    /// On the connection with `addr`, opening one if there is none (RFC 3261 §18.1.1).
    fn send_tcp(&mut self, addr: SocketAddr, bytes: Vec<u8>) {
        let bytes = match self.conns.get(&addr) {
            Some(tx) => match tx.send(bytes) {
                Ok(()) => return,
                Err(mpsc::error::SendError(b)) => b,
            },
            None => bytes,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(bytes);
        self.conns.insert(addr, tx);
        tokio::spawn(conn_task(
            addr,
            None,
            self.limits,
            self.tcp_tx.clone(),
            rx,
            self.shutdown.clone(),
            self.tracker.clone(),
        ));
    }
}

async fn accept_loop(
    l: TcpListener,
    limits: Limits,
    ev: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
    t: mpsc::Sender<()>,
) {
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    let (tx, rx) = mpsc::unbounded_channel();
                    if ev.send(Event::TcpOpen { peer, tx }).await.is_err() {
                        return;
                    }
                    tokio::spawn(conn_task(peer, Some(sock), limits, ev.clone(), rx, stop.clone(), t.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "SIP TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// One SIP TCP connection: framing in, bytes out (RFC 3261 §18.3).
async fn conn_task(
    peer: SocketAddr,
    sock: Option<TcpStream>,
    limits: Limits,
    ev: mpsc::Sender<Event>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    mut stop: watch::Receiver<bool>,
    _t: mpsc::Sender<()>,
) {
    let mut sock = match sock {
        Some(s) => s,
        None => match tokio::time::timeout(CONNECT, TcpStream::connect(peer)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                s
            }
            Ok(Err(e)) => {
                info!(%peer, error = %e, "SIP TCP connect failed");
                rx.close();
                let _ = ev.send(Event::TcpGone { peer, failed: true }).await;
                return;
            }
            Err(_) => {
                info!(%peer, "SIP TCP connect timed out");
                rx.close();
                let _ = ev.send(Event::TcpGone { peer, failed: true }).await;
                return;
            }
        },
    };
    let mut dec = StreamDecoder::new(limits);
    let mut buf = vec![0u8; READ_BUF];
    let mut failed = false;
    'outer: loop {
        tokio::select! {
            r = sock.read(&mut buf) => {
                let n = match r {
                    Ok(0) => {
                        // The peer half-closed: a request it cut off may still be
                        // answered on our side of the connection (RFC 3261 §18.3).
                        if let Err(e) = dec.finish() {
                            answer_framing_error(&mut sock, peer, dec.unread(), &e, &limits).await;
                        }
                        break;
                    }
                    Err(_) => break,
                    Ok(n) => n,
                };
                dec.feed(buf.get(..n).unwrap_or_default());
                loop {
                    match dec.next() {
                        Ok(None) => break,
                        Ok(Some(Item::Message(msg))) => {
                            if ev.send(Event::Tcp { peer, msg }).await.is_err() {
                                break 'outer;
                            }
                        }
                        // RFC 5626 §3.5.1: answer a ping with a pong.
                        Ok(Some(Item::Keepalive(Keepalive::Ping))) => {
                            if sock.write_all(b"\r\n").await.is_err() {
                                break 'outer;
                            }
                        }
                        Ok(Some(Item::Keepalive(Keepalive::Pong))) => {}
                        Err(e) => {
                            // The stream is dead (tokio-util Decoder contract): answer the
                            // bad request if a response can be formed, then close.
                            info!(%peer, error = %e, "SIP TCP framing error; closing");
                            answer_framing_error(&mut sock, peer, dec.unread(), &e, &limits).await;
                            break 'outer;
                        }
                    }
                }
            }
            Some(bytes) = rx.recv() => {
                let mut w = bytes;
                while let Ok(more) = rx.try_recv() {
                    w.extend_from_slice(&more);
                }
                if let Err(e) = sock.write_all(&w).await {
                    info!(%peer, error = %e, "SIP TCP write failed");
                    failed = true;
                    break;
                }
            }
            _ = stop.changed() => break,
        }
    }
    rx.close();
    let _ = sock.shutdown().await;
    let _ = ev.send(Event::TcpGone { peer, failed }).await;
}

/// RFC 3261 §18.3, §21.4.1: the 400 (or 513) for the message a stream's framing error
/// names, written before the connection closes; built by the sans-IO
/// [`super::sip_input::answer_unparsable`] from the bytes the decoder hands back. The
/// answer is stateless (no transaction exists for a request that never parsed), so it
/// is written here rather than through the core.
async fn answer_framing_error(
    sock: &mut TcpStream,
    peer: SocketAddr,
    unread: &[u8],
    err: &crate::sip::ParseError,
    limits: &Limits,
) {
    let mut rng = OsRandom::default();
    match super::sip_input::answer_unparsable(unread, err, limits, &mut rng) {
        Some(resp) => {
            info!(%peer, error = %err, code = resp.status, "bad SIP on TCP answered");
            let _ = sock.write_all(&resp.to_bytes()).await;
        }
        None => info!(%peer, error = %err, "bad SIP on TCP dropped"),
    }
}

/// Back-off with jitter: a random delay in [d/2, d] (RFC 6120 §3.3 asks for randomness
/// so that many clients do not reconnect in lock-step).
fn jittered(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b)
    } else {
        u16::MAX
    };
    let half = d / 2;
    half + half.mul_f64(f64::from(r) / f64::from(u16::MAX))
}

async fn component_task(
    cfg: GatewayConfig,
    ev: mpsc::UnboundedSender<Event>,
    link_state: watch::Sender<bool>,
    mut cmds: mpsc::Receiver<LinkCmd>,
    mut stop: watch::Receiver<bool>,
    _t: mpsc::Sender<()>,
) {
    let min = cfg.timers.reconnect_min;
    let max = cfg.timers.reconnect_max;
    let mut backoff = min;
    loop {
        if *stop.borrow() {
            break;
        }
        let connect = tokio::time::timeout(CONNECT, TcpStream::connect(&cfg.proxy_component_addr));
        let ready = tokio::select! {
            r = connect => match r {
                Ok(Ok(sock)) => {
                    let _ = sock.set_nodelay(true);
                    link(&cfg, sock, &ev, &link_state, &mut cmds, &mut stop).await
                }
                Ok(Err(e)) => {
                    info!(addr = %cfg.proxy_component_addr, error = %e, "proxy component port unreachable");
                    false
                }
                Err(_) => {
                    info!(addr = %cfg.proxy_component_addr, "proxy connect timed out");
                    false
                }
            },
            _ = stop.changed() => break,
        };
        let _ = ev.send(Event::LinkDown);
        link_state.send_replace(false);
        if *stop.borrow() {
            break;
        }
        if ready {
            backoff = min;
        }
        let wait = tokio::time::sleep(jittered(backoff));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                Some(LinkCmd::Send(el, t)) = cmds.recv() => {
                    let _ = ev.send(Event::NotHanded(el, t));
                }
                _ = stop.changed() => return,
            }
        }
        backoff = backoff.saturating_mul(2).min(max);
    }
}

/// One component stream; returns whether it reached the ready state.
async fn link(
    cfg: &GatewayConfig,
    mut sock: TcpStream,
    ev: &mpsc::UnboundedSender<Event>,
    link_state: &watch::Sender<bool>,
    cmds: &mut mpsc::Receiver<LinkCmd>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut c = ComponentClient::new(
        Instant::now(),
        &cfg.component_domain,
        &cfg.component_secret,
        Default::default(),
        ESTABLISH,
    );
    let mut buf = vec![0u8; READ_BUF];
    let mut ready = false;
    let mut close = false;
    let mut batch: Vec<(Element, u64)> = Vec::new();
    loop {
        // Drain first: the stream header is waiting before any event.
        let mut w = Vec::new();
        while let Some(o) = c.poll_output() {
            match o {
                XOutput::Transmit(b) => w.extend_from_slice(&b),
                XOutput::Stanza(el) => {
                    let _ = ev.send(Event::Stanza(el));
                }
                XOutput::ComponentReady(domain) => {
                    info!(%domain, "component link ready");
                    ready = true;
                    let _ = ev.send(Event::LinkUp);
                    link_state.send_replace(true);
                }
                XOutput::Close(_) => close = true,
                _ => {}
            }
        }
        let wrote = w.is_empty() || sock.write_all(&w).await.is_ok();
        for (el, t) in batch.drain(..) {
            let _ = ev.send(if wrote {
                Event::Handed(t)
            } else {
                Event::NotHanded(el, t)
            });
        }
        if !wrote || close || c.is_closed() {
            let _ = sock.shutdown().await;
            return ready;
        }
        let deadline = c.poll_timeout();
        let sleep = tokio::time::sleep_until(
            deadline
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
        );
        let r = tokio::select! {
            r = sock.read(&mut buf) => match r {
                Ok(0) | Err(_) => c.handle_input(Instant::now(), Input::Eof),
                Ok(n) => c.handle_input(Instant::now(), Input::Data(buf.get(..n).unwrap_or_default())),
            },
            Some(LinkCmd::Send(el, t)) = cmds.recv(), if ready => {
                batch.push((el, t));
                while batch.len() < BATCH {
                    match cmds.try_recv() {
                        Ok(LinkCmd::Send(el, t)) => batch.push((el, t)),
                        Err(_) => break,
                    }
                }
                for (el, _) in &batch {
                    c.send_stanza(el.clone());
                }
                Ok(())
            }
            _ = sleep, if deadline.is_some() => c.handle_timeout(Instant::now()),
            _ = stop.changed() => {
                c.close();
                close = true;
                Ok(())
            }
        };
        if let Err(e) = &r {
            info!(error = %e, "component stream failed");
            close = true;
        }
    }
}
