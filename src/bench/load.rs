//! The in-process load generator: it plays `N` remote XMPP servers against the proxy
//! process. Each remote domain has two TCP streams:
//!
//! - **originating** (we connect to the proxy): header, features, `<db:result>` with our
//!   XEP-0185 key, the proxy's `type='valid'` verdict (XEP-0220 §2.1.1); later pings
//!   (XEP-0199) from the remote domain to the proxy's domain;
//! - **authoritative** (the proxy connects to our listener, which every route points to):
//!   we answer the proxy's `<db:verify>` for our own key (XEP-0220 §2.1.2), accept the
//!   proxy's own `<db:result>` for its key (we know its secret, so we check the key locally
//!   instead of verifying back), and collect the ping answers it sends over this stream.
//!
//! The generator's CPU is not measured: it may be simple rather than cheap. Every wait has
//! a timeout; nothing sleeps a fixed time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};

use crate::xmpp::codec::{Decoder, Event, StreamHeader};
use crate::xmpp::dialback;
use crate::xmpp::element::Element;
use crate::xmpp::ns;

/// Wait for one protocol step of one stream.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Pings one stream keeps in flight (each waits for an answer credit).
pub const WINDOW: usize = 8;
/// Largest read from the proxy in one go.
const READ_CHUNK: usize = 16 * 1024;

/// What the load generator must know about the proxy and the remote domains it plays.
pub struct Plan {
    pub proxy_domain: String,
    pub proxy_secret: String,
    pub remote_secret: String,
    pub remotes: Vec<String>,
}

/// Phases the orchestrator moves all originating streams through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    SetUp,
    /// Each stream sends one ping: the proxy authorizes its own outbound pair first.
    WarmUp,
    /// Each stream sends its share of the measured pings.
    Load,
    Done,
}

/// State shared by the generator's tasks.
pub struct Gen {
    plan: Plan,
    index: HashMap<String, usize>,
    /// Answer credits per remote: a ping takes one, its answer gives it back.
    credits: Vec<Semaphore>,
    answers: AtomicUsize,
    answered: Notify,
    /// The first failure any task saw (the orchestrator reports it on a timeout).
    failure: std::sync::Mutex<Option<String>>,
    phase: watch::Sender<Phase>,
    /// Pings per stream in the load phase.
    shares: Vec<usize>,
    /// Makes the stream ids we issue unique.
    next_id: AtomicUsize,
}

impl Gen {
    pub fn new(plan: Plan, stanzas: usize) -> Arc<Self> {
        let n = plan.remotes.len().max(1);
        let index = plan
            .remotes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), i))
            .collect();
        let credits = plan
            .remotes
            .iter()
            .map(|_| Semaphore::new(WINDOW))
            .collect();
        let shares = (0..plan.remotes.len())
            .map(|i| stanzas / n + usize::from(i < stanzas % n))
            .collect();
        Arc::new(Gen {
            index,
            credits,
            answers: AtomicUsize::new(0),
            answered: Notify::new(),
            failure: std::sync::Mutex::new(None),
            phase: watch::channel(Phase::SetUp).0,
            shares,
            next_id: AtomicUsize::new(0),
            plan,
        })
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.send_replace(p);
    }

    pub fn answers(&self) -> usize {
        self.answers.load(Ordering::Acquire)
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        drop(f);
        self.answered.notify_waiters();
    }

    /// Wait until `want` answers have arrived in total, a task failed, or `timeout`.
    /// Returns the answers seen.
    pub async fn wait_answers(&self, want: usize, timeout: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.answered.notified();
                if self.answers() >= want || self.failure().is_some() {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.answers()
    }
}

/// Accept the proxy's outbound streams until the task is aborted.
pub async fn serve_authoritative(g: Arc<Gen>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                let g2 = g.clone();
                tokio::spawn(async move {
                    if let Err(e) = authoritative_stream(&g2, sock).await {
                        g2.fail(format!("authoritative stream: {e}"));
                    }
                });
            }
            Err(e) => {
                g.fail(format!("accept: {e}"));
                return;
            }
        }
    }
}

fn header(from: &str, to: &str, id: Option<&str>) -> String {
    StreamHeader::s2s(Some(from), Some(to), id, Some("1.0"), true).to_xml(true)
}

/// Read the next event, with a timeout (`Ok(None)` = the peer closed the connection).
async fn next_event(
    sock: &mut TcpStream,
    dec: &mut Decoder,
    buf: &mut [u8],
) -> Result<Option<Event>, String> {
    loop {
        match dec.next_event() {
            Ok(Some(Event::Whitespace(_))) => continue,
            Ok(Some(ev)) => return Ok(Some(ev)),
            Ok(None) => {}
            Err(e) => return Err(format!("the proxy sent bad XML: {e}")),
        }
        let n = match tokio::time::timeout(STEP_TIMEOUT, sock.read(buf)).await {
            Err(_) => return Err("no answer from the proxy within the step timeout".into()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return Ok(None);
        }
        dec.feed(buf.get(..n).unwrap_or(&[]));
    }
}

async fn send(sock: &mut TcpStream, s: &str) -> Result<(), String> {
    match tokio::time::timeout(STEP_TIMEOUT, sock.write_all(s.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err("write timed out".into()),
    }
}

fn describe(el: &Element) -> String {
    format!(
        "unexpected <{} xmlns='{}' type='{}'>",
        el.name,
        el.ns,
        el.attr("type").unwrap_or("")
    )
}

/// One stream the proxy opened to "us" (the remote domain's authoritative server).
async fn authoritative_stream(g: &Gen, mut sock: TcpStream) -> Result<(), String> {
    let mut dec = Decoder::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut me: Option<(usize, String)> = None;
    let id = format!("bench{}", g.next_id.fetch_add(1, Ordering::Relaxed));
    let proxy = g.plan.proxy_domain.as_str();
    loop {
        let ev = match me {
            // Answers may take long in the load phase: no step timeout once set up.
            Some(_) => next_event_untimed(&mut sock, &mut dec, &mut buf).await?,
            None => next_event(&mut sock, &mut dec, &mut buf).await?,
        };
        let Some(ev) = ev else { return Ok(()) };
        match ev {
            Event::Header(h) => {
                let to = h.to.unwrap_or_default().to_ascii_lowercase();
                let Some(&i) = g.index.get(&to) else {
                    return Err(format!(
                        "the proxy opened a stream to unknown domain {to:?}"
                    ));
                };
                let mut out = header(&to, proxy, Some(&id));
                out.push_str(
                    "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/>\
                     </dialback></stream:features>",
                );
                send(&mut sock, &out).await?;
                me = Some((i, to));
            }
            Event::Element(el) => {
                let Some((i, remote)) = me.as_ref() else {
                    return Err("an element before the stream header".into());
                };
                let from = el.attr("from").unwrap_or("");
                let to = el.attr("to").unwrap_or("");
                match (el.ns.as_str(), el.name.as_str(), el.attr("type")) {
                    // XEP-0220 §2.1.2 step 3: is the key the one we generated for that
                    // stream id?
                    (ns::DIALBACK, "verify", None) => {
                        let sid = el.attr("id").unwrap_or("");
                        let ok = dialback::keys_equal(
                            &el.text(),
                            &dialback::key(&g.plan.remote_secret, from, to, sid),
                        );
                        let ty = if ok { "valid" } else { "invalid" };
                        let ans =
                            format!("<db:verify from='{to}' to='{from}' id='{sid}' type='{ty}'/>");
                        send(&mut sock, &ans).await?;
                        if !ok {
                            return Err(format!("the proxy asked to verify a wrong key for {to}"));
                        }
                    }
                    // XEP-0220 §2.1.1 step 3: the proxy's own key for this stream.
                    (ns::DIALBACK, "result", None) => {
                        let ok = to.eq_ignore_ascii_case(remote)
                            && dialback::keys_equal(
                                &el.text(),
                                &dialback::key(&g.plan.proxy_secret, remote, from, &id),
                            );
                        let ty = if ok { "valid" } else { "invalid" };
                        let ans = format!("<db:result from='{remote}' to='{from}' type='{ty}'/>");
                        send(&mut sock, &ans).await?;
                        if !ok {
                            return Err(format!("the proxy's dialback key for {remote} is wrong"));
                        }
                    }
                    ("jabber:server", "iq", Some("result")) => {
                        if let Some(c) = g.credits.get(*i) {
                            c.add_permits(1);
                        }
                        g.answers.fetch_add(1, Ordering::AcqRel);
                        g.answered.notify_waiters();
                    }
                    _ => return Err(describe(&el)),
                }
            }
            Event::Close => return Ok(()),
            Event::Whitespace(_) => {}
        }
    }
}

async fn next_event_untimed(
    sock: &mut TcpStream,
    dec: &mut Decoder,
    buf: &mut [u8],
) -> Result<Option<Event>, String> {
    loop {
        match dec.next_event() {
            Ok(Some(Event::Whitespace(_))) => continue,
            Ok(Some(ev)) => return Ok(Some(ev)),
            Ok(None) => {}
            Err(e) => return Err(format!("the proxy sent bad XML: {e}")),
        }
        let n = sock.read(buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        dec.feed(buf.get(..n).unwrap_or(&[]));
    }
}

/// Set up the originating stream of remote `i` (connect, header, features, dialback),
/// report it through the returned value, then hand the stream to [`drive_pings`].
pub async fn originate(g: &Gen, i: usize, proxy: SocketAddr) -> Result<TcpStream, String> {
    let remote = g
        .plan
        .remotes
        .get(i)
        .ok_or_else(|| format!("no remote #{i}"))?;
    let proxy_domain = g.plan.proxy_domain.as_str();
    let mut sock = match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(proxy)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect to the proxy: {e}")),
        Err(_) => return Err("connect to the proxy timed out".into()),
    };
    let _ = sock.set_nodelay(true);
    send(&mut sock, &header(remote, proxy_domain, None)).await?;
    let mut dec = Decoder::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut sid: Option<String> = None;
    loop {
        let Some(ev) = next_event(&mut sock, &mut dec, &mut buf).await? else {
            return Err(format!(
                "{remote}: the proxy closed the stream during set-up"
            ));
        };
        match ev {
            Event::Header(h) => {
                sid = h.id;
                if sid.is_none() {
                    return Err(format!("{remote}: the proxy's header has no id"));
                }
            }
            Event::Element(el) if el.is(ns::STREAM, "features") => {
                let id = sid.as_deref().unwrap_or("");
                let key = dialback::key(&g.plan.remote_secret, proxy_domain, remote, id);
                let req =
                    format!("<db:result from='{remote}' to='{proxy_domain}'>{key}</db:result>");
                send(&mut sock, &req).await?;
            }
            Event::Element(el) if el.is(ns::DIALBACK, "result") => {
                return match el.attr("type") {
                    Some("valid") => Ok(sock),
                    t => Err(format!("{remote}: dialback verdict {t:?}")),
                };
            }
            Event::Element(el) => return Err(format!("{remote}: {}", describe(&el))),
            Event::Close => return Err(format!("{remote}: the proxy closed the stream")),
            Event::Whitespace(_) => {}
        }
    }
}

/// After set-up: one ping in the warm-up phase, the stream's share in the load phase,
/// then hold the (idle) stream open until [`Phase::Done`].
pub async fn drive_pings(g: Arc<Gen>, i: usize, mut sock: TcpStream) {
    let Some(remote) = g.plan.remotes.get(i).cloned() else {
        return;
    };
    let Some(credits) = g.credits.get(i) else {
        return;
    };
    let mut rx = g.phase.subscribe();
    let mut seq = 0usize;
    for (phase, count) in [
        (Phase::WarmUp, 1),
        (Phase::Load, g.shares.get(i).copied().unwrap_or(0)),
    ] {
        if rx.wait_for(|p| *p >= phase).await.is_err() {
            return;
        }
        for _ in 0..count {
            // Bounded by the orchestrator: it stops waiting (and aborts us) on its timeout.
            match credits.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => return,
            }
            let ping = format!(
                "<iq type='get' id='b{seq}' from='{remote}' to='{}'>\
                 <ping xmlns='urn:xmpp:ping'/></iq>",
                g.plan.proxy_domain
            );
            seq += 1;
            if let Err(e) = send(&mut sock, &ping).await {
                g.fail(format!("{remote}: {e}"));
                return;
            }
        }
    }
    let _ = rx.wait_for(|p| *p >= Phase::Done).await;
}
