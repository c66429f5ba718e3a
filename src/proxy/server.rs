//! The tokio driver: listeners, one task per stream, and the router between them.
//!
//! Every stream task owns its socket and its sans-IO session, and loops over four event
//! sources: socket readable, a command channel (stanzas and verify requests from other
//! tasks), the session's next timer, and shutdown. After each event it drains the session:
//! all `Transmit`s are gathered into one buffer and written with one call, the rest goes to
//! the router. Tasks never share a session, so a bad peer costs only its own stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::config::ProxyConfig;
use crate::tls::{PeerRole, TlsConfigError, TlsSessionInfo, TlsSettings};
use crate::xmpp::codec::Limits;
use crate::xmpp::component::{ComponentCredentials, ComponentSession};
use crate::xmpp::conditions::{StanzaCondition, StanzaError, StreamCondition, StreamError, bounce};
use crate::xmpp::element::Element;
use crate::xmpp::ns;
use crate::xmpp::s2s::{
    Error as S2sError, InboundSession, Input, LocalConfig, OutboundSession, Output, SessionLimits,
    Timeouts, TlsAbility, Verdict, VerifyRequest, jid_domain,
};

/// Commands queued per outbound stream.
const OUTBOUND_QUEUE: usize = 1024;
/// Commands queued per inbound / component stream.
const STREAM_QUEUE: usize = 256;
/// Read buffer per stream task.
const READ_BUF: usize = 16 * 1024;
/// How long a closing stream waits for the peer's own close (RFC 6120 §4.4).
const LINGER: Duration = Duration::from_secs(1);
/// Commands taken from a channel in one go, so their output leaves in one write.
const BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid configuration: {0}")]
    Config(#[from] super::config::Rule),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsConfigError),
}

type OutKey = (String, Option<String>);

/// Outbound channels by remote domain (lowercase), then by [`OutKey`]'s local part. Looked
/// up by `&str` for every stanza routed out, so no key is built per stanza (DESIGN §6);
/// a remote has one entry unless its policy needs a stream per local domain.
type OutMap = HashMap<String, Vec<(Option<String>, mpsc::Sender<Box<OutCmd>>)>>;

/// `s` in ASCII lowercase, copied only when it has capitals (domains are compared
/// case-insensitively, RFC 7622 §3.2; nearly all arrive lowercase already).
fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

// Channel messages travel boxed: a bounded tokio channel allocates a block of 32 slots
// when it is created, so every stream would otherwise hold 32 whole commands even when
// idle (DESIGN §6); a box keeps a slot at one pointer.

enum OutCmd {
    Stanza {
        from_domain: String,
        el: Element,
    },
    Verify {
        req: VerifyRequest,
        reply: mpsc::Sender<Box<InCmd>>,
    },
}

enum InCmd {
    VerifyResult {
        originating: String,
        receiving: String,
        result: Verdict,
    },
}

enum CompCmd {
    Stanza(Element),
}

/// State shared by all tasks of one proxy instance (no globals: many run side by side).
struct Shared {
    cfg: ProxyConfig,
    local: Arc<LocalConfig>,
    components: Vec<ComponentCredentials>,
    routes: RwLock<HashMap<String, String>>,
    /// Outbound streams by (remote, local). `local` is `None` for the usual stream that
    /// multiplexes all our domains by dialback (XEP-0220 §2.6.1), `Some` for a partner whose
    /// policy rules dialback out: SASL authenticates only the stream's `from` (RFC 6120
    /// §6.3.8), so each of our domains needs its own stream to such a partner.
    outbound: Mutex<OutMap>,
    linked: Mutex<HashMap<String, mpsc::Sender<CompCmd>>>,
    /// Each task holds a clone; shutdown waits for all to drop. `None` once shutting down.
    tracker: Mutex<Option<mpsc::Sender<()>>>,
    shutdown: watch::Receiver<bool>,
    /// Our certificate, key and trust anchors (`[tls]`); `None`: we cannot offer STARTTLS.
    tls: Option<TlsSettings>,
    /// For outbound STARTTLS without a certificate of our own (dialback over TLS).
    client_no_cert: Arc<rustls::ClientConfig>,
    /// Inbound streams per partner domain (MS-10 PartnerConnectionLimit).
    partner_streams: Mutex<HashMap<String, usize>>,
    /// Inbound S2S connections open now (MS-10 ConnectionLimit).
    inbound_streams: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A proxy that is running; drop it only through [`RunningProxy::shutdown`].
pub struct RunningProxy {
    pub s2s_addr: SocketAddr,
    pub component_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
}

impl RunningProxy {
    /// Add or replace a static route at run time (harness actors listen on ephemeral ports).
    pub fn add_route(&self, domain: &str, addr: SocketAddr) {
        let mut r = self
            .shared
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner());
        r.insert(domain.to_ascii_lowercase(), addr.to_string());
    }

    /// Stop accepting, close every stream (`system-shutdown`), and wait for all tasks.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        lock(&self.shared.tracker).take();
        let wait = async { while self.done.recv().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            warn!("proxy tasks did not finish within 10 s of shutdown");
        }
    }
}

/// Bind the listeners and spawn the proxy.
pub async fn start(cfg: ProxyConfig) -> Result<RunningProxy, ProxyError> {
    cfg.validate()?;
    let s2s = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ProxyError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let comp = match cfg.component_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })?,
        ),
        None => None,
    };
    let s2s_addr = s2s.local_addr().map_err(|source| ProxyError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let component_addr = comp.as_ref().and_then(|l| l.local_addr().ok());
    let (stop, shutdown) = watch::channel(false);
    let (tracker, done) = mpsc::channel::<()>(1);
    let components: Vec<ComponentCredentials> = cfg
        .components
        .iter()
        .map(|c| ComponentCredentials {
            domain: c.domain.to_ascii_lowercase(),
            secret: c.secret.clone(),
        })
        .collect();
    let tls = match cfg.load_tls()? {
        Some(m) => Some(TlsSettings::new(&m)?),
        None => None,
    };
    let client_no_cert = crate::tls::config::client_config(None)?;
    let mut domains: Vec<String> = cfg.domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    domains.extend(components.iter().map(|c| c.domain.clone()));
    let local = Arc::new(LocalConfig {
        domains,
        dialback_secret: cfg.dialback_secret.clone(),
        timeouts: Timeouts {
            establish: cfg.timeouts.establish,
            dialback: cfg.timeouts.dialback,
            idle: cfg.timeouts.idle,
            keepalive_send: cfg.timeouts.keepalive_send,
            keepalive_expect: cfg.timeouts.keepalive_expect,
        },
        limits: SessionLimits {
            codec: Limits {
                max_stanza_bytes: cfg.limits.max_stanza_bytes,
                max_depth: cfg.limits.max_depth,
            },
            max_pairs: cfg.limits.max_pairs_per_stream,
            max_queued: cfg.limits.max_queued_stanzas,
        },
        policies: cfg.policies(),
        tls: TlsAbility {
            server: tls.is_some(),
            client_cert: tls.is_some(),
        },
    });
    let routes = cfg
        .routes
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let shared = Arc::new(Shared {
        cfg,
        local,
        components,
        routes: RwLock::new(routes),
        outbound: Mutex::new(HashMap::new()),
        linked: Mutex::new(HashMap::new()),
        tracker: Mutex::new(Some(tracker.clone())),
        shutdown,
        tls,
        client_no_cert,
        partner_streams: Mutex::new(HashMap::new()),
        inbound_streams: AtomicUsize::new(0),
    });
    info!(%s2s_addr, ?component_addr, domains = ?shared.cfg.domains, "proxy listening");
    tokio::spawn(accept_loop(shared.clone(), s2s, Kind::S2s, tracker.clone()));
    if let Some(l) = comp {
        tokio::spawn(accept_loop(
            shared.clone(),
            l,
            Kind::Component,
            tracker.clone(),
        ));
    }
    drop(tracker);
    Ok(RunningProxy {
        s2s_addr,
        component_addr,
        shared,
        stop,
        done,
    })
}

/// Run until ctrl-c (for `fedcheck proxy --config F`).
pub async fn run(cfg: ProxyConfig) -> Result<(), ProxyError> {
    let p = start(cfg).await?;
    if let Err(e) = tokio::signal::ctrl_c().await {
        warn!(error = %e, "cannot wait for ctrl-c; shutting down");
    }
    p.shutdown().await;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    S2s,
    Component,
}

async fn accept_loop(shared: Arc<Shared>, l: TcpListener, kind: Kind, t: mpsc::Sender<()>) {
    let mut stop = shared.shutdown.clone();
    let mut ids = IdPool::new();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    let Some(id) = ids.fresh_id() else {
                        warn!(%peer, "no randomness for a stream id; dropping connection");
                        continue;
                    };
                    let (sh, t) = (shared.clone(), t.clone());
                    match kind {
                        Kind::S2s => {
                            // MS-10 ConnectionLimit: refuse at once, before any XML.
                            let open = shared.inbound_streams.fetch_add(1, Ordering::SeqCst);
                            if open >= shared.cfg.limits.max_inbound_streams {
                                shared.inbound_streams.fetch_sub(1, Ordering::SeqCst);
                                warn!(%peer, open, "inbound connection limit reached; closing");
                                drop(sock);
                                continue;
                            }
                            tokio::spawn(inbound_task(sh, sock, peer, id, t))
                        }
                        Kind::Component => tokio::spawn(component_task(sh, sock, peer, id, t)),
                    };
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// Stream ids, RFC 6120 §4.7.3 (DB-16): 128 random bits each, hex. The bytes come from
/// the OS 16 ids at a time, one `getrandom` per 16 accepted streams instead of one each
/// (DESIGN §6); every id still gets OS randomness no other id used.
struct IdPool {
    bytes: [u8; 16 * ID_BATCH],
    used: usize,
}

const ID_BATCH: usize = 16;

impl IdPool {
    fn new() -> Self {
        IdPool {
            bytes: [0; 16 * ID_BATCH],
            used: 16 * ID_BATCH,
        }
    }

    fn fresh_id(&mut self) -> Option<String> {
        if self.used + 16 > self.bytes.len() {
            getrandom::fill(&mut self.bytes).ok()?;
            self.used = 0;
        }
        let b = self.bytes.get_mut(self.used..self.used + 16)?;
        self.used += 16;
        let id = hex::encode(&*b);
        // Nothing of a handed-out id stays behind in the pool.
        b.fill(0);
        Some(id)
    }
}

/// One timer entry per stream, moved only when the session's next deadline moves
/// (DESIGN §6: no timers beyond one wheel entry per stream).
struct StreamTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    at: Option<Instant>,
}

impl StreamTimer {
    fn new() -> Self {
        StreamTimer {
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            at: None,
        }
    }

    fn arm(&mut self, t: Option<Instant>) {
        if t != self.at {
            self.at = t;
            if let Some(t) = t {
                self.sleep.as_mut().reset(tokio::time::Instant::from_std(t));
            }
        }
    }

    fn fired(&mut self) {
        self.at = None;
    }
}

thread_local! {
    /// One read buffer per runtime thread, zeroed once: an idle plain stream task holds no
    /// read buffer, and a readable event does not clear 16 KiB again (DESIGN §6).
    static READ_SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; READ_BUF].into_boxed_slice());
}

/// Read what is there into the thread's [`READ_SCRATCH`] and feed it to a session.
fn read_now(
    sock: &TcpStream,
    feed: &mut dyn FnMut(Input<'_>) -> Result<(), S2sError>,
) -> Result<(), S2sError> {
    READ_SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => read_into(sock, &mut buf, feed),
        // Only if a session fed from here read again on the same thread (none does).
        Err(_) => read_into(sock, &mut vec![0u8; READ_BUF], feed),
    })
}

fn read_into(
    sock: &TcpStream,
    buf: &mut [u8],
    feed: &mut dyn FnMut(Input<'_>) -> Result<(), S2sError>,
) -> Result<(), S2sError> {
    match sock.try_read(buf) {
        Ok(0) => feed(Input::Eof),
        Ok(n) => feed(Input::Data(buf.get(..n).unwrap_or(&[]))),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(_) => feed(Input::Eof),
    }
}

/// A stream's connection: plain TCP, then possibly TLS on the same socket (STARTTLS).
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    /// The socket went into a handshake that failed.
    Gone,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
            Conn::Gone => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// What woke a stream task's read side.
enum ReadEv {
    /// This many bytes from a plain socket, in the runtime thread's [`READ_SCRATCH`].
    Scratch(usize),
    /// Bytes read into a buffer of their own (only if the scratch was busy; never seen).
    Owned(Vec<u8>),
    /// Decrypted bytes in the task's TLS buffer.
    Data(usize),
    Eof,
}

/// Read a plain socket into the thread's [`READ_SCRATCH`], borrowed only for this poll.
/// `poll_read` (unlike `readable()` + `try_read`) lets tokio take a short read as proof
/// the socket is drained, so a read event costs one `recv` instead of a second one that
/// only returns `EAGAIN` (DESIGN §6: fewer syscalls per stanza).
fn poll_plain(s: &mut TcpStream, cx: &mut Context<'_>) -> Poll<ReadEv> {
    let done = |r: std::io::Result<()>, n: usize| match r {
        Ok(()) if n > 0 => None,
        _ => Some(ReadEv::Eof),
    };
    READ_SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let mut rb = ReadBuf::new(&mut buf);
            let r = std::task::ready!(Pin::new(&mut *s).poll_read(cx, &mut rb));
            let n = rb.filled().len();
            Poll::Ready(done(r, n).unwrap_or(ReadEv::Scratch(n)))
        }
        Err(_) => {
            let mut own = vec![0u8; READ_BUF];
            let mut rb = ReadBuf::new(&mut own);
            let r = std::task::ready!(Pin::new(&mut *s).poll_read(cx, &mut rb));
            let n = rb.filled().len();
            own.truncate(n);
            Poll::Ready(done(r, n).unwrap_or(ReadEv::Owned(own)))
        }
    })
}

/// Wait until the connection has something (cancel-safe: a pending `poll_read` and a TLS
/// `read()` lose nothing when dropped).
async fn wait_read(conn: &mut Conn, tls_buf: &mut Vec<u8>) -> ReadEv {
    match conn {
        Conn::Plain(s) => std::future::poll_fn(|cx| poll_plain(s, cx)).await,
        Conn::Tls(t) => {
            if tls_buf.len() < READ_BUF {
                tls_buf.resize(READ_BUF, 0);
            }
            match t.read(tls_buf).await {
                Ok(0) => ReadEv::Eof,
                Ok(n) => ReadEv::Data(n),
                Err(e) => {
                    debug!(error = %e, "TLS read failed");
                    ReadEv::Eof
                }
            }
        }
        Conn::Gone => std::future::pending().await,
    }
}

/// Feed what [`wait_read`] found into a session. Called right after `wait_read` returned,
/// in the same poll of the same task, so the thread's scratch still holds those bytes: no
/// other task has run on this thread in between.
fn feed_read(
    ev: ReadEv,
    tls_buf: &[u8],
    feed: &mut dyn FnMut(Input<'_>) -> Result<(), S2sError>,
) -> Result<(), S2sError> {
    match ev {
        ReadEv::Scratch(n) => READ_SCRATCH.with(|cell| match cell.try_borrow() {
            Ok(buf) => feed(Input::Data(buf.get(..n).unwrap_or(&[]))),
            // Only if a session fed from here read again on the same thread (none does).
            Err(_) => feed(Input::Eof),
        }),
        ReadEv::Owned(b) => feed(Input::Data(&b)),
        ReadEv::Data(n) => feed(Input::Data(tls_buf.get(..n).unwrap_or(&[]))),
        ReadEv::Eof => feed(Input::Eof),
    }
}

/// Why a STARTTLS handshake failed (logged; it costs only its own stream).
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("handshake failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("no TLS certificate configured")]
    NoCertificate,
    #[error("the connection is not plain TCP")]
    NotPlain,
    #[error("{0:?} is not a name TLS can use")]
    BadName(String),
}

impl Shared {
    /// RFC 6120 §5.4.3: we are the TLS server of an inbound stream. Returns the verdict on
    /// the client's certificate (role: initiating server, so clientAuth is needed).
    async fn accept_tls(
        &self,
        conn: &mut Conn,
    ) -> Result<(TlsSessionInfo, Option<crate::tls::CertVerdict>), HandshakeError> {
        let settings = self.tls.as_ref().ok_or(HandshakeError::NoCertificate)?;
        let Conn::Plain(tcp) = std::mem::replace(conn, Conn::Gone) else {
            return Err(HandshakeError::NotPlain);
        };
        let limit = self.cfg.timeouts.tls_handshake;
        let tls = tokio::time::timeout(limit, settings.acceptor().accept(tcp))
            .await
            .map_err(|_| HandshakeError::Timeout(limit))??;
        let info = TlsSessionInfo::from_server(tls.get_ref().1);
        let verdict = settings.verify(
            Some(&info.peer_chain),
            SystemTime::now(),
            PeerRole::Initiating,
        );
        *conn = Conn::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)));
        Ok((info, verdict))
    }

    /// We are the TLS client of an outbound stream to `remote` (SNI sent; CERT-07 says it
    /// is optional, harmless to send). The verdict is on the server's certificate.
    async fn connect_tls(
        &self,
        conn: &mut Conn,
        remote: &str,
    ) -> Result<(TlsSessionInfo, Option<crate::tls::CertVerdict>), HandshakeError> {
        let name = rustls_pki_types::ServerName::try_from(remote.to_string())
            .map_err(|_| HandshakeError::BadName(remote.to_string()))?;
        let connector = match &self.tls {
            Some(t) => t.connector(),
            None => tokio_rustls::TlsConnector::from(self.client_no_cert.clone()),
        };
        let Conn::Plain(tcp) = std::mem::replace(conn, Conn::Gone) else {
            return Err(HandshakeError::NotPlain);
        };
        let limit = self.cfg.timeouts.tls_handshake;
        let tls = tokio::time::timeout(limit, connector.connect(name, tcp))
            .await
            .map_err(|_| HandshakeError::Timeout(limit))??;
        let info = TlsSessionInfo::from_client(tls.get_ref().1);
        let verdict = match &self.tls {
            Some(t) => t.verify(
                Some(&info.peer_chain),
                SystemTime::now(),
                PeerRole::Receiving,
            ),
            None if info.peer_chain.is_empty() => None,
            None => Some(crate::tls::verify_peer(
                &info.peer_chain,
                &[],
                SystemTime::now(),
                PeerRole::Receiving,
            )),
        };
        *conn = Conn::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)));
        Ok((info, verdict))
    }
}

/// What a drained session asks of its task.
#[derive(Default)]
struct Drained {
    wbuf: Vec<u8>,
    close: bool,
    /// Write `wbuf`, then run the TLS handshake (Output::UpgradeTls).
    upgrade: bool,
}

impl Drained {
    /// Gather a `Transmit`: the first is taken as it is, later ones are appended, so a
    /// single write costs no copy.
    fn add(&mut self, b: Vec<u8>) {
        if self.wbuf.is_empty() {
            self.wbuf = b;
        } else {
            self.wbuf.extend_from_slice(&b);
        }
    }
}

async fn flush(conn: &mut Conn, d: &mut Drained) -> bool {
    if d.wbuf.is_empty() {
        return true;
    }
    let ok = conn.write_all(&d.wbuf).await.is_ok() && conn.flush().await.is_ok();
    // Released, not cleared: the task waits for its next event with `d` alive, and an
    // idle stream should hold no write buffer (DESIGN §6).
    d.wbuf = Vec::new();
    ok
}

async fn flush_plain(sock: &mut TcpStream, d: &mut Drained) -> bool {
    if d.wbuf.is_empty() {
        return true;
    }
    let ok = sock.write_all(&d.wbuf).await.is_ok();
    d.wbuf = Vec::new();
    ok
}

/// RFC 6120 §4.4: after our `</stream:stream>`, wait (briefly) for the peer's close
/// instead of resetting the connection, so it can read our last words (a stream error)
/// even while it is still sending.
async fn linger(mut conn: Conn) {
    if matches!(conn, Conn::Gone) {
        return;
    }
    let _ = tokio::time::timeout(LINGER, conn.shutdown()).await;
    // On the heap, and only now: an array here would sit in every stream task's future
    // for the stream's whole life (DESIGN §6).
    let mut scratch = vec![0u8; 4096];
    let mut budget: usize = 1 << 20;
    let drain = async {
        while let Ok(n) = conn.read(&mut scratch).await {
            if n == 0 || n > budget {
                break;
            }
            budget -= n;
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Counts one inbound stream per partner domain it named, and lets go on drop.
struct PartnerSlot {
    shared: Arc<Shared>,
    partner: Option<String>,
}

impl PartnerSlot {
    /// Move this stream to `partner`; `false` when that partner is over its limit.
    fn claim(&mut self, partner: &str) -> bool {
        if self.partner.as_deref() == Some(partner) {
            return true;
        }
        self.release();
        let mut map = lock(&self.shared.partner_streams);
        let n = map.entry(partner.to_string()).or_insert(0);
        if *n >= self.shared.cfg.limits.max_streams_per_partner {
            return false;
        }
        *n += 1;
        self.partner = Some(partner.to_string());
        true
    }

    fn release(&mut self) {
        if let Some(p) = self.partner.take() {
            let mut map = lock(&self.shared.partner_streams);
            if let Some(n) = map.get_mut(&p) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&p);
                }
            }
        }
    }
}

impl Drop for PartnerSlot {
    fn drop(&mut self) {
        self.release();
        self.shared.inbound_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------- inbound S2S

async fn inbound_task(
    shared: Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
    id: String,
    _t: mpsc::Sender<()>,
) {
    let mut conn = Conn::Plain(sock);
    let mut tls_buf = Vec::new();
    let mut slot = PartnerSlot {
        shared: shared.clone(),
        partner: None,
    };
    let mut s = InboundSession::new(Instant::now(), shared.local.clone(), id);
    let (tx, mut rx) = mpsc::channel::<Box<InCmd>>(STREAM_QUEUE);
    let mut stop = shared.shutdown.clone();
    let mut timer = StreamTimer::new();
    debug!(%peer, stream_id = s.stream_id(), "inbound stream");
    loop {
        let mut d = Drained::default();
        while let Some(o) = s.poll_output() {
            match o {
                Output::Transmit(b) => d.add(b),
                Output::VerifyRequest(req) => shared.request_verify(req, tx.clone()),
                Output::Stanza(el) => shared.route(el),
                Output::PairVerified {
                    originating,
                    receiving,
                } => {
                    info!(%peer, %originating, %receiving, encrypted = s.is_encrypted(), sasl = s.sasl_authenticated().is_some(), "inbound pair verified");
                }
                Output::Partner(p) if !slot.claim(&p) => {
                    warn!(%peer, partner = %p, "too many streams from this partner");
                    s.close(Some(StreamError::with_text(
                        StreamCondition::PolicyViolation,
                        "too many streams from this domain",
                    )));
                }
                Output::UpgradeTls => {
                    d.upgrade = true;
                    break;
                }
                Output::Close(_) => d.close = true,
                _ => {}
            }
        }
        if !flush(&mut conn, &mut d).await || d.close {
            break;
        }
        if d.upgrade {
            let r = match shared.accept_tls(&mut conn).await {
                Ok((info, verdict)) => {
                    info!(%peer, version = ?info.version, alpn = ?info.alpn, sni = ?info.sni,
                        client_cert = verdict.is_some(), "inbound TLS established");
                    s.handle_input(Instant::now(), Input::TlsEstablished { peer: verdict })
                }
                Err(e) => {
                    // TLS-03: the stream ends here, without XML; others are unaffected.
                    info!(%peer, error = %e, "inbound TLS handshake failed");
                    s.handle_input(Instant::now(), Input::TlsFailed)
                }
            };
            if let Err(e) = r {
                debug!(%peer, error = %e, "after TLS");
            }
            continue;
        }
        timer.arm(s.poll_timeout());
        let r = tokio::select! {
            ev = wait_read(&mut conn, &mut tls_buf) => {
                feed_read(ev, &tls_buf, &mut |i| s.handle_input(Instant::now(), i))
            }
            Some(cmd) = rx.recv() => {
                let InCmd::VerifyResult { originating, receiving, result } = *cmd;
                s.handle_input(Instant::now(), Input::VerifyResult { originating, receiving, result })
            }
            _ = &mut timer.sleep, if timer.at.is_some() => {
                timer.fired();
                s.handle_timeout(Instant::now())
            }
            _ = stop.changed() => {
                s.close(Some(StreamError::new(StreamCondition::SystemShutdown)));
                Ok(())
            }
        };
        if let Err(e) = &r {
            info!(%peer, error = %e, "inbound stream failed");
        }
    }
    debug!(%peer, "inbound stream closed");
    drop(slot);
    linger(conn).await;
}

// ---------------------------------------------------------------- outbound S2S

async fn outbound_task(
    shared: Arc<Shared>,
    key: OutKey,
    addr: String,
    me: mpsc::Sender<Box<OutCmd>>,
    mut rx: mpsc::Receiver<Box<OutCmd>>,
    _t: mpsc::Sender<()>,
) {
    let remote = key.0.clone();
    let connect = tokio::time::timeout(
        shared.cfg.timeouts.connect,
        TcpStream::connect(addr.as_str()),
    )
    .await;
    let sock = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            info!(%remote, %addr, error = %e, "cannot connect");
            return shared
                .outbound_gone(&key, &me, rx, StanzaCondition::RemoteServerTimeout)
                .await;
        }
        Err(_) => {
            info!(%remote, %addr, "connect timed out");
            return shared
                .outbound_gone(&key, &me, rx, StanzaCondition::RemoteServerTimeout)
                .await;
        }
    };
    let _ = sock.set_nodelay(true);
    let mut conn = Conn::Plain(sock);
    let mut tls_buf = Vec::new();
    let local = key
        .1
        .clone()
        .unwrap_or_else(|| shared.local.primary().to_string());
    let mut s = OutboundSession::new(Instant::now(), shared.local.clone(), &local, &remote);
    let mut replies: HashMap<(String, String, String), mpsc::Sender<Box<InCmd>>> = HashMap::new();
    let mut stop = shared.shutdown.clone();
    let mut timer = StreamTimer::new();
    debug!(%remote, %addr, "outbound stream");
    loop {
        let mut d = Drained::default();
        while let Some(o) = s.poll_output() {
            match o {
                Output::Transmit(b) => d.add(b),
                Output::VerifyResult {
                    originating,
                    receiving,
                    stream_id,
                    result,
                } => {
                    if let Some(tx) =
                        replies.remove(&(originating.clone(), receiving.clone(), stream_id))
                    {
                        let _ = tx.try_send(Box::new(InCmd::VerifyResult {
                            originating,
                            receiving,
                            result,
                        }));
                    }
                }
                Output::Bounce(el) => shared.route(el),
                Output::PairAuthorized { from, to } => {
                    info!(%from, %to, encrypted = s.is_encrypted(), sasl = s.sasl_authenticated(), "outbound pair authorized")
                }
                Output::UpgradeTls => {
                    d.upgrade = true;
                    break;
                }
                Output::Close(_) => d.close = true,
                _ => {}
            }
        }
        if !flush(&mut conn, &mut d).await || d.close {
            break;
        }
        if d.upgrade {
            let r = match shared.connect_tls(&mut conn, &remote).await {
                Ok((info, verdict)) => {
                    info!(%remote, version = ?info.version, alpn = ?info.alpn,
                        authenticated = verdict.as_ref().is_some_and(|v| v.authenticates(&remote)),
                        "outbound TLS established");
                    s.handle_input(Instant::now(), Input::TlsEstablished { peer: verdict })
                }
                Err(e) => {
                    info!(%remote, error = %e, "outbound TLS handshake failed");
                    s.handle_input(Instant::now(), Input::TlsFailed)
                }
            };
            if let Err(e) = r {
                debug!(%remote, error = %e, "after TLS");
            }
            continue;
        }
        timer.arm(s.poll_timeout());
        let r = tokio::select! {
            ev = wait_read(&mut conn, &mut tls_buf) => {
                feed_read(ev, &tls_buf, &mut |i| s.handle_input(Instant::now(), i))
            }
            Some(cmd) = rx.recv() => {
                let now = Instant::now();
                let mut next = Some(cmd);
                let mut taken = 0;
                while let Some(cmd) = next.take() {
                    match *cmd {
                        OutCmd::Stanza { from_domain, el } => s.send_stanza(now, &from_domain, el),
                        OutCmd::Verify { req, reply } => {
                            let key = (req.originating.clone(), req.receiving.clone(), req.stream_id.clone());
                            replies.insert(key, reply);
                            s.request_verify(now, req);
                        }
                    }
                    taken += 1;
                    if taken < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                Ok(())
            }
            _ = &mut timer.sleep, if timer.at.is_some() => {
                timer.fired();
                s.handle_timeout(Instant::now())
            }
            _ = stop.changed() => {
                s.close(Some(StreamError::new(StreamCondition::SystemShutdown)));
                Ok(())
            }
        };
        if let Err(e) = r {
            info!(%remote, error = %e, "outbound stream failed");
        }
    }
    debug!(%remote, "outbound stream closed");
    shared
        .outbound_gone(&key, &me, rx, StanzaCondition::RemoteServerTimeout)
        .await;
    linger(conn).await;
}

// ---------------------------------------------------------------- components

async fn component_task(
    shared: Arc<Shared>,
    mut sock: TcpStream,
    peer: SocketAddr,
    id: String,
    _t: mpsc::Sender<()>,
) {
    let mut s = ComponentSession::new(
        Instant::now(),
        shared.components.clone(),
        id,
        shared.local.limits.codec,
        shared.cfg.timeouts.establish,
    );
    let (tx, mut rx) = mpsc::channel::<CompCmd>(STREAM_QUEUE);
    let mut stop = shared.shutdown.clone();
    let mut timer = StreamTimer::new();
    let mut bound: Option<String> = None;
    loop {
        timer.arm(s.poll_timeout());
        let r = tokio::select! {
            r = sock.readable() => match r {
                Ok(()) => read_now(&sock, &mut |i| s.handle_input(Instant::now(), i)),
                Err(_) => s.handle_input(Instant::now(), Input::Eof),
            },
            Some(CompCmd::Stanza(el)) = rx.recv() => {
                if let Err(el) = s.send_stanza(el) {
                    shared.bounce_back(&el, StanzaCondition::ServiceUnavailable);
                }
                Ok(())
            }
            _ = &mut timer.sleep, if timer.at.is_some() => {
                timer.fired();
                s.handle_timeout(Instant::now())
            }
            _ = stop.changed() => {
                s.close(Some(StreamError::new(StreamCondition::SystemShutdown)));
                Ok(())
            }
        };
        if let Err(e) = &r {
            info!(%peer, error = %e, "component stream failed");
        }
        let mut d = Drained::default();
        while let Some(o) = s.poll_output() {
            match o {
                Output::Transmit(b) => d.add(b),
                Output::ComponentReady(domain) => {
                    let mut linked = lock(&shared.linked);
                    if linked.get(&domain).is_some_and(|t| !t.is_closed()) {
                        drop(linked);
                        // XEP-0114 / RFC 6120 §4.9.3.3: one link per component domain.
                        warn!(%peer, %domain, "second connection for a linked component");
                        s.close(Some(StreamError::new(StreamCondition::Conflict)));
                    } else {
                        info!(%peer, %domain, "component linked");
                        linked.insert(domain.clone(), tx.clone());
                        bound = Some(domain);
                    }
                }
                Output::Stanza(el) => shared.route(el),
                Output::Close(_) => d.close = true,
                _ => {}
            }
        }
        if !flush_plain(&mut sock, &mut d).await || d.close {
            break;
        }
    }
    if let Some(domain) = bound {
        let mut linked = lock(&shared.linked);
        if linked.get(&domain).is_some_and(|t| t.same_channel(&tx)) {
            linked.remove(&domain);
        }
    }
    rx.close();
    while let Some(CompCmd::Stanza(el)) = rx.recv().await {
        shared.bounce_back(&el, StanzaCondition::ServiceUnavailable);
    }
    linger(Conn::Plain(sock)).await;
}

// ---------------------------------------------------------------- router

/// Where [`Shared::route`] sends a stanza.
enum Dest {
    /// A linked component (`None`: not linked now).
    Component(Option<mpsc::Sender<CompCmd>>),
    /// The proxy's own domain ([`Shared::local_service`]).
    Own,
    /// Back to its sender with this error.
    Bounce(StanzaCondition),
    Remote {
        from_domain: String,
        tx: mpsc::Sender<Box<OutCmd>>,
    },
}

impl Shared {
    fn is_component(&self, d: &str) -> bool {
        self.components.iter().any(|c| c.domain == d)
    }

    fn is_own(&self, d: &str) -> bool {
        self.cfg.domains.iter().any(|x| x.eq_ignore_ascii_case(d))
    }

    /// Deliver a stanza (in `jabber:server`) whose addresses were checked by its session.
    /// The destination is decided while the addresses are borrowed from the stanza, so
    /// routing copies neither the stanza nor its domains (DESIGN §6).
    fn route(self: &Arc<Self>, el: Element) {
        let dest = match el.attr("to").and_then(jid_domain).map(lowercase) {
            None => {
                debug!("dropping a stanza without a usable 'to'");
                return;
            }
            Some(to) if self.is_component(&to) => {
                Dest::Component(lock(&self.linked).get(to.as_ref()).cloned())
            }
            Some(to) if self.is_own(&to) => Dest::Own,
            Some(to) => match self.remote_channel(&to, &el) {
                Some(d) => d,
                None => return,
            },
        };
        match dest {
            Dest::Component(tx) => {
                let res = match tx {
                    Some(tx) => {
                        tx.try_send(CompCmd::Stanza(el))
                            .map_err(|e| match e.into_inner() {
                                CompCmd::Stanza(el) => el,
                            })
                    }
                    None => Err(el),
                };
                if let Err(el) = res {
                    self.bounce_back(&el, StanzaCondition::ServiceUnavailable);
                }
            }
            Dest::Own => self.local_service(el),
            Dest::Bounce(c) => self.bounce_back(&el, c),
            Dest::Remote { from_domain, tx } => {
                if let Err(e) = tx.try_send(Box::new(OutCmd::Stanza { from_domain, el })) {
                    let full = matches!(e, mpsc::error::TrySendError::Full(_));
                    if let OutCmd::Stanza { el, .. } = *e.into_inner() {
                        let c = if full {
                            StanzaCondition::ResourceConstraint
                        } else {
                            StanzaCondition::RemoteServerTimeout
                        };
                        self.bounce_back(&el, c);
                    }
                }
            }
        }
    }

    /// RFC 6120 §8.3.1: answer with an error, never an error with an error (ERR-10).
    fn bounce_back(self: &Arc<Self>, el: &Element, c: StanzaCondition) {
        if let Some(b) = bounce(el, &StanzaError::new(c)) {
            self.route(b);
        }
    }

    /// The proxy's own domain has no users: XEP-0199 ping and XEP-0030 disco#info on the
    /// domain itself, `service-unavailable` for everything else (RFC 6120 §8.3.3.19,
    /// RFC 6121 §8.5.1).
    fn local_service(self: &Arc<Self>, el: Element) {
        let to = el.attr("to").unwrap_or("");
        let to_domain = !to.bytes().any(|b| b == b'@' || b == b'/');
        let ty = el.attr("type").unwrap_or("");
        if el.name == "iq" {
            if ty == "result" || ty == "error" {
                debug!(id = ?el.attr("id"), "dropping an iq response to the proxy");
                return;
            }
            if ty == "get" && to_domain {
                if el.child(ns::PING, "ping").is_some() {
                    return self.route(into_iq_result(el));
                }
                if el.child(ns::DISCO_INFO, "query").is_some() {
                    let q = Element::new(ns::DISCO_INFO, "query")
                        .with_child(
                            Element::new(ns::DISCO_INFO, "identity")
                                .with_attr("category", "server")
                                .with_attr("type", "im")
                                .with_attr("name", "fedcheck proxy"),
                        )
                        .with_child(
                            Element::new(ns::DISCO_INFO, "feature")
                                .with_attr("var", ns::DISCO_INFO),
                        )
                        .with_child(
                            Element::new(ns::DISCO_INFO, "feature").with_attr("var", ns::PING),
                        );
                    return self.route(iq_result(&el, Some(q)));
                }
            }
        }
        self.bounce_back(&el, StanzaCondition::ServiceUnavailable);
    }

    /// Where a stanza for the remote domain `remote` goes; `None`: it is dropped (logged).
    fn remote_channel(self: &Arc<Self>, remote: &str, el: &Element) -> Option<Dest> {
        let Some(from_domain) = el
            .attr("from")
            .and_then(jid_domain)
            .map(str::to_ascii_lowercase)
        else {
            debug!("dropping an outgoing stanza without a usable 'from'");
            return None;
        };
        if !self.local.serves(&from_domain) {
            // Never relay for a third domain (RFC 6120 §10.4 security warning).
            warn!(%from_domain, %remote, "refusing to relay a stanza not from a served domain");
            return None;
        }
        Some(match self.outbound_for(remote, &from_domain) {
            // ERR-11 / RFC 6120 §10.4.3: no route is "not found".
            None => Dest::Bounce(StanzaCondition::RemoteServerNotFound),
            Some(tx) => Dest::Remote { from_domain, tx },
        })
    }

    /// XEP-0220 §2.1.2 step 2 over our outbound stream to the originating domain (created
    /// if needed; it need not be authenticated to carry `<db:verify/>`).
    fn request_verify(self: &Arc<Self>, req: VerifyRequest, reply: mpsc::Sender<Box<InCmd>>) {
        let fail = |req: VerifyRequest, reply: &mpsc::Sender<Box<InCmd>>| {
            let _ = reply.try_send(Box::new(InCmd::VerifyResult {
                originating: req.originating,
                receiving: req.receiving,
                result: Verdict::Error(StanzaCondition::RemoteServerNotFound),
            }));
        };
        match self.outbound_for(&req.originating, &req.receiving) {
            None => {
                info!(originating = %req.originating, "no route to the authoritative server");
                fail(req, &reply);
            }
            Some(tx) => {
                if let Err(e) = tx.try_send(Box::new(OutCmd::Verify { req, reply }))
                    && let OutCmd::Verify { req, reply } = *e.into_inner()
                {
                    fail(req, &reply);
                }
            }
        }
    }

    /// The command channel of the outbound stream to `remote` for stanzas from `local`,
    /// opening it on demand. `None` when there is no route (or we are shutting down).
    fn outbound_for(
        self: &Arc<Self>,
        remote: &str,
        local: &str,
    ) -> Option<mpsc::Sender<Box<OutCmd>>> {
        let remote = lowercase(remote);
        let p = self.local.policy(&remote);
        let per_domain = !(p.may_tls_dialback() || p.may_tcp_dialback());
        let local = per_domain.then(|| lowercase(local));
        let mut map = lock(&self.outbound);
        let open = map
            .get(remote.as_ref())
            .and_then(|v| v.iter().find(|(l, _)| l.as_deref() == local.as_deref()))
            .map(|(_, t)| t)
            .filter(|t| !t.is_closed());
        if let Some(tx) = open {
            return Some(tx.clone());
        }
        let addr = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(remote.as_ref())
            .cloned()?;
        let t = lock(&self.tracker).clone()?;
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let key: OutKey = (remote.into_owned(), local.map(std::borrow::Cow::into_owned));
        let entry = map.entry(key.0.clone()).or_default();
        match entry.iter_mut().find(|(l, _)| *l == key.1) {
            Some(e) => e.1 = tx.clone(),
            None => entry.push((key.1.clone(), tx.clone())),
        }
        tokio::spawn(outbound_task(self.clone(), key, addr, tx.clone(), rx, t));
        Some(tx)
    }

    /// An outbound task ends: unregister it, then fail whatever was still queued for it.
    async fn outbound_gone(
        self: &Arc<Self>,
        key: &OutKey,
        me: &mpsc::Sender<Box<OutCmd>>,
        mut rx: mpsc::Receiver<Box<OutCmd>>,
        c: StanzaCondition,
    ) {
        {
            let mut map = lock(&self.outbound);
            if let Some(v) = map.get_mut(&key.0) {
                v.retain(|(l, t)| !(*l == key.1 && t.same_channel(me)));
                if v.is_empty() {
                    map.remove(&key.0);
                }
            }
        }
        rx.close();
        while let Some(cmd) = rx.recv().await {
            match *cmd {
                OutCmd::Stanza { el, .. } => self.bounce_back(&el, c),
                OutCmd::Verify { req, reply } => {
                    let _ = reply.try_send(Box::new(InCmd::VerifyResult {
                        originating: req.originating,
                        receiving: req.receiving,
                        result: Verdict::Error(StanzaCondition::RemoteServerNotFound),
                    }));
                }
            }
        }
    }
}

/// `<iq type='result'>` for a request (RFC 6120 §8.2.3).
fn iq_result(req: &Element, payload: Option<Element>) -> Element {
    let mut e = Element::new(req.ns.clone(), "iq").with_attr("type", "result");
    if let Some(to) = req.attr("to") {
        e.set_attr("from", to);
    }
    if let Some(from) = req.attr("from") {
        e.set_attr("to", from);
    }
    if let Some(id) = req.attr("id") {
        e.set_attr("id", id);
    }
    if let Some(p) = payload {
        e = e.with_child(p);
    }
    e
}

/// [`iq_result`] without a payload, made from the request itself: its strings are reused
/// rather than copied, since a ping answer is the proxy's most frequent stanza (DESIGN §6).
fn into_iq_result(mut req: Element) -> Element {
    let mut attrs = std::mem::take(&mut req.attrs);
    let mut take = |name: &str| {
        attrs
            .iter()
            .position(|a| a.ns.is_empty() && a.name == name)
            .map(|i| attrs.remove(i))
    };
    let (ty, to, from, id) = (take("type"), take("to"), take("from"), take("id"));
    attrs.clear();
    let mut ty = ty.unwrap_or_else(|| crate::xmpp::element::Attr {
        ns: String::new(),
        name: "type".into(),
        value: String::new(),
    });
    ty.value.clear();
    ty.value.push_str("result");
    attrs.push(ty);
    let rename = |mut a: crate::xmpp::element::Attr, name: &str| {
        a.name.clear();
        a.name.push_str(name);
        a
    };
    match (to, from) {
        (Some(mut to), Some(mut from)) => {
            std::mem::swap(&mut to.value, &mut from.value);
            attrs.push(from);
            attrs.push(to);
        }
        (Some(to), None) => attrs.push(rename(to, "from")),
        (None, Some(from)) => attrs.push(rename(from, "to")),
        (None, None) => {}
    }
    attrs.extend(id);
    req.attrs = attrs;
    req.name.clear();
    req.name.push_str("iq");
    req.prefix = None;
    req.children.clear();
    req
}

#[cfg(test)]
mod unit {
    use super::*;

    /// Ids stay 128-bit hex and distinct across pool refills.
    #[test]
    fn pooled_ids_are_distinct_hex() {
        let mut pool = IdPool::new();
        let ids: Vec<String> = (0..3 * ID_BATCH + 1)
            .map(|_| pool.fresh_id().expect("OS randomness"))
            .collect();
        assert!(
            ids.iter()
                .all(|i| i.len() == 32 && i.bytes().all(|b| b.is_ascii_hexdigit()))
        );
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
    use crate::xmpp::codec::parse_element;
    use crate::xmpp::element::NsContext;
    use rstest::rstest;

    /// The in-place answer is the same element [`iq_result`] builds.
    #[rstest]
    #[case("<iq type='get' id='b1' from='r0.test' to='p.test'><ping xmlns='urn:xmpp:ping'/></iq>")]
    #[case(
        "<iq to='p.test' type='get' xml:lang='en' x='1' from='a@r0.test/r'><ping xmlns='urn:xmpp:ping'/></iq>"
    )]
    #[case("<iq type='get' to='p.test'><ping xmlns='urn:xmpp:ping'/></iq>")]
    #[case("<iq from='r0.test' id='z'>text<ping xmlns='urn:xmpp:ping'/></iq>")]
    #[case("<s:iq xmlns:s='jabber:server' id='q' type='get'/>")]
    fn ping_answer_in_place(#[case] xml: &str) {
        let req = parse_element(xml, &NsContext::new(ns::SERVER)).expect("well-formed");
        assert_eq!(into_iq_result(req.clone()), iq_result(&req, None));
    }
}
