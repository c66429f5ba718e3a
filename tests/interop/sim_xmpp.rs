//! A small simulated remote XMPP server for the real-peer tests: it plays the far end of the
//! bundled proxy's federation in both directions, so a real SIP peer (SIPp) can exchange
//! stanzas with an XMPP user that exists only here.
//!
//! - **Receiving** (proxy → us): every stream the proxy opens to our listener is answered
//!   with dialback offered (XEP-0220 §2.1). A `<db:result>` is accepted as the
//!   authoritative server would (dialback itself is covered by the scenarios); a
//!   `<db:verify>` is answered `valid` only if it carries a key we issued on one of our
//!   own outgoing streams (XEP-0220 §2.3), so a broken verification fails the test.
//!   Every other top-level element is a stanza and is handed to the test.
//! - **Originating** (us → proxy): [`SimServer::open_to`] opens one stream to the proxy
//!   and authenticates it by dialback with a XEP-0185 key; stanzas are written on it with
//!   [`SimServer::send`].
//!
//! Everything read and written is kept as a transcript for failure messages.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use fedcheck::xmpp::codec::{Decoder, Event, StreamHeader};
use fedcheck::xmpp::dialback;
use fedcheck::xmpp::element::Element;
use fedcheck::xmpp::ns;

/// Upper bound for one expected event (a stanza, a dialback answer).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The XEP-0185 secret behind the keys this server issues.
const DIALBACK_SECRET: &str = "simulated remote server dialback secret";

/// What the connections share: the transcript and the keys issued on outgoing streams.
#[derive(Debug, Clone, Default)]
struct Shared {
    transcript: Arc<Mutex<Vec<String>>>,
    keys: Arc<Mutex<HashSet<String>>>,
}

impl Shared {
    fn note(&self, conn: &str, dir: &str, text: &str) {
        if let Ok(mut t) = self.transcript.lock() {
            t.push(format!("[{conn}] {dir} {text}"));
        }
    }

    fn issued(&self, key: &str) -> bool {
        self.keys.lock().is_ok_and(|k| k.contains(key))
    }
}

/// One TCP stream with its decoder; reads and writes go into the transcript.
struct Conn {
    sock: TcpStream,
    dec: Decoder,
    buf: Vec<u8>,
    label: String,
    shared: Shared,
}

impl Conn {
    fn new(sock: TcpStream, label: String, shared: Shared) -> Self {
        Self {
            sock,
            dec: Decoder::default(),
            buf: vec![0u8; 16384],
            label,
            shared,
        }
    }

    /// The next non-whitespace event (`None` = the peer closed the TCP connection);
    /// with a `limit`, waiting longer for data is an error.
    async fn next(&mut self, limit: Option<Duration>) -> Result<Option<Event>, String> {
        loop {
            match self.dec.next_event() {
                Ok(Some(Event::Whitespace(_))) => continue,
                Ok(Some(ev)) => {
                    let raw = String::from_utf8_lossy(self.dec.last_raw()).into_owned();
                    self.shared.note(&self.label, "<<", &raw);
                    return Ok(Some(ev));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("[{}] the proxy sent bad XML: {e}", self.label)),
            }
            let read = self.sock.read(&mut self.buf);
            let n = match limit {
                Some(l) => timeout(l, read)
                    .await
                    .map_err(|_| format!("[{}] nothing from the proxy within {l:?}", self.label))?,
                None => read.await,
            }
            .map_err(|e| format!("[{}] read: {e}", self.label))?;
            if n == 0 {
                self.shared.note(&self.label, "<<", "(TCP closed)");
                return Ok(None);
            }
            self.dec.feed(self.buf.get(..n).unwrap_or_default());
        }
    }

    async fn send(&mut self, text: &str) -> Result<(), String> {
        self.shared.note(&self.label, ">>", text);
        self.sock
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("[{}] write: {e}", self.label))
    }
}

/// The simulated server for one remote domain.
pub struct SimServer {
    domain: String,
    addr: SocketAddr,
    stanzas: mpsc::UnboundedReceiver<Element>,
    shared: Shared,
    /// Owns the per-connection tasks (a `JoinSet`): aborting it ends them all.
    accept: JoinHandle<()>,
    outbound: Option<Conn>,
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl SimServer {
    /// Listen on a free loopback port for streams to `domain`.
    pub async fn bind(domain: &str) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the simulated server: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Shared::default();
        let (tx, stanzas) = mpsc::unbounded_channel();
        let accept = tokio::spawn(accept_loop(listener, domain.to_owned(), shared.clone(), tx));
        Ok(Self {
            domain: domain.to_owned(),
            addr,
            stanzas,
            shared,
            accept,
            outbound: None,
        })
    }

    /// Where the proxy should route the simulated domain.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything read and written so far, one unit per line.
    pub fn transcript(&self) -> String {
        self.shared
            .transcript
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default()
    }

    /// The next stanza the proxy delivered, within [`STEP_TIMEOUT`].
    pub async fn next_stanza(&mut self) -> Result<Element, String> {
        match timeout(STEP_TIMEOUT, self.stanzas.recv()).await {
            Ok(Some(el)) => Ok(el),
            Ok(None) => Err("the simulated server stopped".into()),
            Err(_) => Err(format!("no stanza arrived within {STEP_TIMEOUT:?}")),
        }
    }

    /// Skip stanzas until one satisfies `want` (the proxy may interleave others, e.g.
    /// a presence probe); every skipped one is in the transcript.
    pub async fn expect(
        &mut self,
        what: &str,
        want: impl Fn(&Element) -> bool,
    ) -> Result<Element, String> {
        loop {
            let el = self
                .next_stanza()
                .await
                .map_err(|e| format!("waiting for {what}: {e}"))?;
            if want(&el) {
                return Ok(el);
            }
        }
    }

    /// Open our own stream to `to` at `proxy` and authenticate it by dialback
    /// (XEP-0220 §2.1): send a key, wait for `<db:result type='valid'>`. The proxy checks
    /// the key by sending `<db:verify>` to our listener, which [`accept_loop`] answers.
    pub async fn open_to(&mut self, proxy: SocketAddr, to: &str) -> Result<(), String> {
        let sock = timeout(STEP_TIMEOUT, TcpStream::connect(proxy))
            .await
            .map_err(|_| format!("connecting to the proxy at {proxy} timed out"))?
            .map_err(|e| format!("connecting to the proxy at {proxy}: {e}"))?;
        let mut conn = Conn::new(sock, "out".into(), self.shared.clone());
        let header = StreamHeader::s2s(Some(&self.domain), Some(to), None, Some("1.0"), true);
        conn.send(&header.to_xml(true)).await?;
        let mut stream_id = None;
        loop {
            let ev = conn
                .next(Some(STEP_TIMEOUT))
                .await?
                .ok_or("the proxy closed our outgoing stream during dialback")?;
            match ev {
                Event::Header(h) => {
                    let id = h.id.ok_or("the proxy's stream header has no id")?;
                    stream_id = Some(id);
                }
                Event::Element(el) if el.name == "features" => {
                    let id = stream_id.as_deref().ok_or("features before the header")?;
                    // XEP-0185 §3: the key binds both domains and the stream id.
                    let key = dialback::key(DIALBACK_SECRET, to, &self.domain, id);
                    if let Ok(mut k) = self.shared.keys.lock() {
                        k.insert(key.clone());
                    }
                    let req = format!(
                        "<db:result from='{}' to='{to}'>{key}</db:result>",
                        self.domain
                    );
                    conn.send(&req).await?;
                }
                Event::Element(el) if el.is(ns::DIALBACK, "result") => {
                    if el.attr("type") == Some("valid") {
                        break;
                    }
                    return Err(format!(
                        "the proxy refused our dialback key: type={:?}",
                        el.attr("type")
                    ));
                }
                Event::Element(el) => {
                    return Err(format!("unexpected <{}> during dialback", el.name));
                }
                Event::Close => return Err("the proxy closed our outgoing stream".into()),
                Event::Whitespace(_) => {}
            }
        }
        self.outbound = Some(conn);
        Ok(())
    }

    /// Write stanzas (XML in the `jabber:server` default namespace) on our stream.
    pub async fn send(&mut self, xml: &str) -> Result<(), String> {
        let conn = self
            .outbound
            .as_mut()
            .ok_or("no outgoing stream: call open_to first")?;
        conn.send(xml).await
    }
}

async fn accept_loop(
    listener: TcpListener,
    domain: String,
    shared: Shared,
    tx: mpsc::UnboundedSender<Element>,
) {
    let mut conns = JoinSet::new();
    let mut n = 0u32;
    while let Ok((sock, _)) = listener.accept().await {
        n += 1;
        let label = format!("in#{n}");
        let (domain, shared, tx) = (domain.clone(), shared.clone(), tx.clone());
        conns.spawn(async move {
            let mut conn = Conn::new(sock, label.clone(), shared.clone());
            if let Err(e) = serve(&mut conn, &domain, &tx).await {
                shared.note(&label, "!!", &e);
            }
        });
    }
}

/// Play the receiving (and authoritative) server on one stream the proxy opened.
async fn serve(
    conn: &mut Conn,
    domain: &str,
    tx: &mpsc::UnboundedSender<Element>,
) -> Result<(), String> {
    let mut opened = false;
    while let Some(ev) = conn.next(None).await? {
        match ev {
            Event::Header(h) => {
                let to = h.to.clone().unwrap_or_default();
                if !to.eq_ignore_ascii_case(domain) {
                    return Err(format!("the proxy opened a stream to {to:?}"));
                }
                let id = format!("sim-{}", conn.label);
                let mut out = StreamHeader::s2s(
                    Some(domain),
                    h.from.as_deref(),
                    Some(&id),
                    Some("1.0"),
                    true,
                )
                .to_xml(true);
                out.push_str(
                    "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/>\
                     </dialback></stream:features>",
                );
                conn.send(&out).await?;
                opened = true;
            }
            Event::Element(el) if !opened => {
                return Err(format!("<{}> before the stream header", el.name));
            }
            Event::Element(el) if el.is(ns::DIALBACK, "result") && el.attr("type").is_none() => {
                let ans = format!(
                    "<db:result from='{domain}' to='{}' type='valid'/>",
                    el.attr("from").unwrap_or_default()
                );
                conn.send(&ans).await?;
            }
            Event::Element(el) if el.is(ns::DIALBACK, "verify") && el.attr("type").is_none() => {
                // XEP-0220 §2.3.2: we are the authoritative server for our own keys.
                let verdict = if conn.shared.issued(el.text().trim()) {
                    "valid"
                } else {
                    "invalid"
                };
                let ans = format!(
                    "<db:verify from='{domain}' to='{}' id='{}' type='{verdict}'/>",
                    el.attr("from").unwrap_or_default(),
                    el.attr("id").unwrap_or_default()
                );
                conn.send(&ans).await?;
            }
            Event::Element(el) => {
                let _ = tx.send(el);
            }
            Event::Close => {
                conn.send("</stream:stream>").await?;
                return Ok(());
            }
            Event::Whitespace(_) => {}
        }
    }
    Ok(())
}
