//! [`GatewayCore`]: the gateway's whole protocol logic as one sans-IO state machine.
//!
//! Events go in with the current time — an XMPP stanza from the component link, a SIP
//! datagram or stream message with its source, the link going up or down, a stanza
//! handed (or not) to the link, a timer — and [`Output`]s come out: stanzas for the
//! component link, SIP bytes for an address. Nothing here touches a socket or a clock
//! (STYLE.md §1); the tokio driver (`super::driver`, behind [`super::start`]) is a thin loop around it.
//!
//! ```text
//!  SIP side                          GatewayCore                        XMPP side
//!  MESSAGE ──► server txn ─► translate::message ─► <message id=branch> ──► link
//!      200 ◄── after the stanza was handed and message_error_window passed
//!  4xx/6xx ◄── <message type=error> with the same id (RFC 7247 §7.1, ERR-01)
//!  MESSAGE ◄── client txn ◄─ translate::message ◄── <message>
//!    final ──► ≥300 / Timer F ─► <message type=error>, swapped, id mirrored (ERR-05, ERR-09)
//!  SUBSCRIBE ─► SipToXmpp machine (per SIP user, XMPP contact) ─► subscribe/probe …
//!  NOTIFY    ◄─ ditto ◄── subscribed / unsubscribed / presence (only for `to`, ARCH-07)
//!  SUBSCRIBE ◄─ XmppToSip machine (per SIP user, XMPP watcher) ◄── subscribe / unsubscribe
//!  NOTIFY    ─► ditto ─► subscribed, presence, unsubscribed
//! ```
//!
//! Choices the RFCs leave open, made here and documented once:
//! - `sips:` Request-URI or To (RFC 7247 §8, ARCH-04): **416 Unsupported URI Scheme** —
//!   the scheme cannot be honoured across XMPP, nothing is sent to XMPP.
//! - `Max-Forwards: 0` on a request to translate (RFC 7247 §8, ARCH-05): **483**.
//! - A MESSAGE or SUBSCRIBE from outside `sip_domain` (ARCH-06): **403**; to a SIP user
//!   of our own domain (nothing to translate): **404**.
//! - XMPP link down: translated MESSAGEs are held (bounded by `limits.max_queued`) for
//!   `link_down_hold`, then answered **480 Temporarily Unavailable** with `Retry-After`;
//!   480 rather than 503 because only the XMPP destinations are unreachable, and a 503
//!   would make SIP peers fail the whole gateway over (RFC 3261 §21.5.4, and RFC 7247
//!   §7.1 note 5 warns against it). Other stanzas wait in the same queue; a stanza once
//!   queued is delivered when the link is back, never dropped; when the queue is full
//!   new ones are refused (480 for a MESSAGE, a logged drop for presence).
//! - Input that does not parse ([`super::sip_input`]): if a request can be salvaged from
//!   the head (bad or missing Content-Length, a truncated head, bad or oversized header
//!   lines, a garbled request line) it is answered 400 (513 when too large) statelessly
//!   (RFC 3261 §18.3, §21.4.1, §21.5.7); otherwise a logged drop. On TCP the framing is
//!   lost with it: the driver writes that answer from the bytes the stream decoder hands
//!   back, then closes the connection.
//! - Unknown methods: 501; known methods the gateway does not serve: 405 with `Allow`
//!   (RFC 3261 §8.2.1, §21.5.2). INVITE is answered 405 statelessly (pager mode only).
//! - Responses go back where the request came from: the UDP source address (what
//!   RFC 3581 `rport` asks for, and what works behind NAT) or the same TCP connection
//!   (RFC 3261 §18.2.2).
//! - An XMPP error that arrives after `message_error_window` finds the MESSAGE already
//!   answered 200 and is logged and dropped (RFC 6120 §8.3.1: never answered). ERR-11's
//!   408 for an unreachable domain therefore needs a window longer than the proxy's
//!   connect timeout; XMPP has no delivery acknowledgement to wait for instead.
//! - An XMPP probe (RFC 6121 §4.3.2, PRB-05) is answered from the presence the SIP user
//!   last notified in that watcher's own subscription, and only to a watcher whose
//!   subscription is active; anyone else gets `unsubscribed`. No SIP poll (RFC 8048
//!   §7.1, PRB-01) is sent.
//! - Each XMPP watcher has its own SIP subscription (RFC 8048 §5.2.1), so the SIP user
//!   decides on every request (RFC 6121 §3.1.3, PSUB-13) and the SIP notifier fans
//!   presence out to the watchers (PNOT-10); a PIDF tuple is one XMPP resource (RFC
//!   8048 §6.3), each open tuple announced, each one that closes or leaves withdrawn.
//! - Pager mode throughout (RFC 7572): S→X messages carry no `type`, so the RFC 6121
//!   §5.1 chat-session habits (IM-14) are not imitated.
//! - Requests the gateway sends start with Max-Forwards 70: XMPP carries no hop count,
//!   so a SIP→XMPP→SIP reflection loop across two gateways is not stopped here.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use tracing::{debug, info, warn};

use super::config::{GatewayConfig, SipRoutes, SipTarget, Transport};
use crate::sip::builder::{
    Local, RandomSource, RequestBuilder, ResponseBuilder, new_call_id, new_tag,
};
use crate::sip::dialog::{Dialog, DialogId};
use crate::sip::headers::{NameAddr, SubState as SipSubState, SubscriptionState};
use crate::sip::transaction::{
    ClientInput, ClientKey, ClientOutput, ClientTransaction, Reliability, ServerInput, ServerKey,
    ServerOutput, ServerTransaction, Timers,
};
use crate::sip::{Item, Limits, Message, Method, ParseError, Request, Response, Uri};
use crate::sip::{parse_datagram, validate_request, validate_response};
use crate::translate::address::{JidParts, Scheme, jid_to_sip, sip_to_jid};
use crate::translate::error::{XmppErrorContext, sip_to_xmpp_error, xmpp_to_sip_with};
use crate::translate::message::{
    PAGER_MODE_LIMIT, SipMessage, XmppMessage, header_uri, sip_to_xmpp_message, xmpp_to_sip_message,
};
use crate::translate::presence::{PIDF_CONTENT_TYPE, Pidf, PresenceKind, XmppPresence};
use crate::translate::subscription::{
    SipToXmpp, SubState, SubscriptionConfig, SxAction, SxInput, TerminationReason, XmppToSip,
    XsAction, XsInput,
};
use crate::xmpp::conditions::{StanzaCondition, StanzaError, bounce};
use crate::xmpp::element::{Element, Node};
use crate::xmpp::ns;

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Hand this stanza (in `jabber:server`) to the component link, then report back
    /// with [`GatewayCore::stanza_handed`] or [`GatewayCore::stanza_not_handed`].
    Stanza { stanza: Element, token: u64 },
    /// Send these bytes: a UDP datagram to `to.addr`, or on the TCP connection with
    /// `to.addr` (opening one if there is none).
    Sip { to: SipTarget, bytes: Vec<u8> },
}

/// Methods the gateway serves (RFC 3261 §20.5 `Allow`).
const ALLOW: &str = "MESSAGE, SUBSCRIBE, NOTIFY, OPTIONS";
/// Seconds a SIP sender should wait after a 480 for a down XMPP link (RFC 3261 §20.33).
const RETRY_AFTER_LINK_DOWN: u32 = 10;
/// RFC 3856 §6.4: the presence package's default subscription duration.
const PRESENCE_DEFAULT_EXPIRES: u32 = 3600;

/// (SIP user, XMPP user), both bare JIDs in the component domain / foreign domain.
type PairKey = (JidParts, JidParts);

#[derive(Debug, Clone, PartialEq, Eq)]
enum PairRef {
    /// The gateway subscribes on an XMPP watcher's behalf (RFC 8048 §5.2).
    Xs(PairKey),
    /// A SIP user subscribes to an XMPP contact (RFC 8048 §5.3).
    Sx(PairKey),
}

/// What a timer-heap entry wakes up (quinn-style: one heap, lazy invalidation — an
/// entry whose owner moved its deadline or went away is skipped when popped).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Due {
    Server(ServerKey),
    Client(ClientKey),
    Xs(PairKey),
    Sx(PairKey),
    Im(String),
    Queue,
}

struct ServerEntry {
    txn: ServerTransaction,
    peer: SipTarget,
    request: Request,
}

enum Purpose {
    /// X→S MESSAGE: the original stanza, for the error reply (ERR-05, ERR-09).
    Message { original: Element },
    /// A SUBSCRIBE for an X→S pair; the request builds the dialog from its 2xx.
    XsSubscribe { key: PairKey, request: Request },
    /// A NOTIFY for an S→X pair.
    Notify { key: PairKey },
}

struct ClientEntry {
    txn: ClientTransaction,
    dest: SipTarget,
    /// Taken at the first final outcome.
    purpose: Option<Purpose>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImState {
    /// Given to the driver (or queued) and not yet confirmed.
    Unsent,
    /// Handed to the link; 200 at `respond_at` unless an XMPP error comes first.
    Handed { respond_at: Instant },
}

/// An S→X MESSAGE whose SIP final response is still due.
struct PendingIm {
    server: ServerKey,
    /// The stanza's `from` and `to`, to check the error reply's addresses.
    from: JidParts,
    to: JidParts,
    state: ImState,
}

struct Queued {
    stanza: Element,
    token: u64,
    /// For a held MESSAGE: when to give up and answer 480.
    deadline: Option<Instant>,
}

struct XsEntry {
    machine: XmppToSip,
    dialog: Option<Dialog>,
    /// The out-of-dialog SUBSCRIBE still waiting for the response or NOTIFY that
    /// creates the dialog (RFC 6665 §4.1.2.4).
    initial: Option<Request>,
    dest: SipTarget,
}

struct SxEntry {
    machine: SipToXmpp,
    dialog: Option<Dialog>,
    /// Where the subscriber's SUBSCRIBE came from (TCP connections are reused).
    peer: SipTarget,
}

/// The gateway's protocol state. See the module documentation.
pub struct GatewayCore {
    cfg: GatewayConfig,
    routes: SipRoutes,
    domain: String,
    sip_domain: String,
    local_udp: SocketAddr,
    local_tcp: SocketAddr,
    timers: Timers,
    sub_cfg: SubscriptionConfig,
    limits: Limits,
    rng: Box<dyn RandomSource + Send>,
    link_up: bool,
    next_token: u64,
    next_id: u64,
    out: VecDeque<Output>,
    servers: HashMap<ServerKey, ServerEntry>,
    clients: HashMap<ClientKey, ClientEntry>,
    pending_im: HashMap<String, PendingIm>,
    token_im: HashMap<u64, String>,
    queue: VecDeque<Queued>,
    xs: HashMap<PairKey, XsEntry>,
    sx: HashMap<PairKey, SxEntry>,
    dialogs: HashMap<DialogId, PairRef>,
    pending_calls: HashMap<String, PairKey>,
    /// Dialogs of X→S subscriptions that ended (`unsubscribe`, PSUB-08) and the time
    /// until which a late NOTIFY in them is still answered 200 rather than 481: the
    /// notifier's final `terminated` NOTIFY may follow the 200 to `Expires: 0`
    /// (RFC 6665 §4.1.2.3, §4.2.2).
    closing: HashMap<DialogId, Instant>,
    /// Deadlines: (when, sequence) → `due_refs`; `due_last` avoids pushing the same
    /// deadline twice for one owner.
    wheel: BinaryHeap<Reverse<(Instant, u64)>>,
    due_refs: HashMap<u64, Due>,
    due_last: HashMap<Due, Instant>,
    next_seq: u64,
    /// (SIP user, XMPP watcher) pairs and the watcher's resources seen available, to
    /// spot the start of a presence session (PSUB-05).
    online: HashMap<PairKey, HashSet<Option<String>>>,
}

fn concrete(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

fn reliability(t: Transport) -> Reliability {
    match t {
        Transport::Udp => Reliability::Unreliable,
        Transport::Tcp => Reliability::Reliable,
    }
}

fn is_sips(uri: &str) -> bool {
    uri.split_once(':')
        .is_some_and(|(s, _)| s.trim().eq_ignore_ascii_case("sips"))
}

/// The translate machines' Subscription-State, as a header value (RFC 6665 §8.2.3).
fn subscription_state_header(state: &SubState, expires: Option<u32>) -> String {
    let mut s = match state {
        SubState::Pending => SubscriptionState::new(SipSubState::Pending),
        SubState::Active => SubscriptionState::new(SipSubState::Active),
        SubState::Terminated(r) => {
            let mut s = SubscriptionState::new(SipSubState::Terminated);
            s.reason = r.as_ref().map(|r| r.as_str().to_owned());
            s
        }
    };
    if !matches!(state, SubState::Terminated(_)) {
        s.expires = expires;
    }
    s.to_string()
}

/// A received Subscription-State in the machines' terms; an extension state counts as
/// pending (neutral, RFC 8048 §5.2.1).
fn machine_state(s: &SubscriptionState) -> SubState {
    match &s.state {
        SipSubState::Active => SubState::Active,
        SipSubState::Pending | SipSubState::Other(_) => SubState::Pending,
        SipSubState::Terminated => {
            SubState::Terminated(s.reason.as_deref().map(TerminationReason::from_name))
        }
    }
}

impl GatewayCore {
    /// `local_udp` / `local_tcp` are the bound listener addresses (they go into Via
    /// and Contact of the gateway's requests).
    pub fn new(
        cfg: GatewayConfig,
        local_udp: SocketAddr,
        local_tcp: SocketAddr,
        rng: Box<dyn RandomSource + Send>,
    ) -> Self {
        let routes = SipRoutes::from_config(&cfg);
        Self::with_routes(cfg, routes, local_udp, local_tcp, rng)
    }

    /// [`Self::new`] with a route table shared with the caller (see [`SipRoutes`]).
    pub fn with_routes(
        cfg: GatewayConfig,
        routes: SipRoutes,
        local_udp: SocketAddr,
        local_tcp: SocketAddr,
        rng: Box<dyn RandomSource + Send>,
    ) -> Self {
        let limits = Limits {
            max_message_bytes: cfg.limits.max_sip_message_bytes,
            ..Limits::default()
        };
        GatewayCore {
            domain: cfg.component_domain.to_ascii_lowercase(),
            sip_domain: cfg.sip_domain(),
            local_udp: concrete(local_udp),
            local_tcp: concrete(local_tcp),
            timers: cfg.timers.sip(),
            sub_cfg: cfg.subscriptions.machine(),
            limits,
            cfg,
            routes,
            rng,
            link_up: false,
            next_token: 0,
            next_id: 0,
            out: VecDeque::new(),
            servers: HashMap::new(),
            clients: HashMap::new(),
            pending_im: HashMap::new(),
            token_im: HashMap::new(),
            queue: VecDeque::new(),
            xs: HashMap::new(),
            sx: HashMap::new(),
            dialogs: HashMap::new(),
            pending_calls: HashMap::new(),
            closing: HashMap::new(),
            wheel: BinaryHeap::new(),
            due_refs: HashMap::new(),
            due_last: HashMap::new(),
            next_seq: 0,
            online: HashMap::new(),
        }
    }

    /// The SIP framing limits the driver should use for TCP streams.
    pub fn sip_limits(&self) -> Limits {
        self.limits
    }

    /// Next thing to do; drain after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // May be early (a stale entry): the wake-up then finds nothing due.
        self.wheel.peek().map(|Reverse((at, _))| *at)
    }

    fn schedule(&mut self, at: Option<Instant>, due: Due) {
        let Some(at) = at else { return };
        if self.due_last.get(&due) == Some(&at) {
            return;
        }
        self.next_seq += 1;
        self.wheel.push(Reverse((at, self.next_seq)));
        self.due_refs.insert(self.next_seq, due.clone());
        self.due_last.insert(due, at);
    }

    /// Number of presence subscriptions held (both directions), for tests and metrics.
    pub fn subscription_count(&self) -> usize {
        self.xs.len() + self.sx.len()
    }

    // -----------------------------------------------------------------------------
    // The component link
    // -----------------------------------------------------------------------------

    /// The component link is authenticated: queued stanzas go out, in order.
    pub fn link_up(&mut self, _now: Instant) {
        self.link_up = true;
        for q in std::mem::take(&mut self.queue) {
            self.out.push_back(Output::Stanza {
                stanza: q.stanza,
                token: q.token,
            });
        }
    }

    /// The component link is gone: stanzas are queued until [`Self::link_up`].
    pub fn link_down(&mut self, _now: Instant) {
        if self.link_up {
            info!("XMPP component link down; queueing");
        }
        self.link_up = false;
    }

    /// The driver wrote the stanza of `token` to the component link.
    pub fn stanza_handed(&mut self, now: Instant, token: u64) {
        let Some(id) = self.token_im.remove(&token) else {
            return;
        };
        let window = self.cfg.timers.message_error_window;
        let Some(p) = self.pending_im.get_mut(&id) else {
            return;
        };
        let respond_at = now + window;
        p.state = ImState::Handed { respond_at };
        if window.is_zero() {
            self.finish_im(now, &id, 200, None);
        } else {
            self.schedule(Some(respond_at), Due::Im(id));
        }
    }

    /// The driver could not hand the stanza over (the link dropped meanwhile): it is
    /// queued again, so nothing accepted is lost, and the link counts as down.
    pub fn stanza_not_handed(&mut self, now: Instant, stanza: Element, token: u64) {
        self.link_down(now);
        let deadline = self
            .token_im
            .contains_key(&token)
            .then(|| now + self.cfg.timers.link_down_hold);
        // Tokens grow with emission order: re-queue in that order, so a stanza bounced
        // by the link does not overtake one queued after it (RFC 6120 §10.1, IM-15).
        let at = self
            .queue
            .iter()
            .position(|q| q.token > token)
            .unwrap_or(self.queue.len());
        self.queue.insert(
            at,
            Queued {
                stanza,
                token,
                deadline,
            },
        );
        self.schedule(deadline, Due::Queue);
    }

    /// Emit (or queue) a stanza; `im` ties it to a pending MESSAGE. `Err` when the link
    /// is down and the queue is full.
    fn emit_stanza(&mut self, now: Instant, stanza: Element, im: Option<&str>) -> Result<(), ()> {
        let token = self.next_token;
        self.next_token += 1;
        if self.link_up {
            self.out.push_back(Output::Stanza { stanza, token });
        } else {
            if self.queue.len() >= self.cfg.limits.max_queued {
                warn!(
                    limit = self.cfg.limits.max_queued,
                    "XMPP link down and queue full; stanza refused"
                );
                return Err(());
            }
            let deadline = im.map(|_| now + self.cfg.timers.link_down_hold);
            self.queue.push_back(Queued {
                stanza,
                token,
                deadline,
            });
            self.schedule(deadline, Due::Queue);
        }
        if let Some(id) = im {
            self.token_im.insert(token, id.to_owned());
        }
        Ok(())
    }

    fn emit(&mut self, now: Instant, stanza: Element) {
        if self.emit_stanza(now, stanza, None).is_err() {
            debug!("presence stanza dropped: queue full");
        }
    }

    // -----------------------------------------------------------------------------
    // Addresses
    // -----------------------------------------------------------------------------

    fn is_local(&self, j: &JidParts) -> bool {
        j.domain == self.domain || j.domain == self.sip_domain
    }

    /// SIP URI → JID; the SIP domain becomes the component domain (RFC 7247 §6).
    fn jid_of(&self, uri: &str) -> Option<JidParts> {
        let mut j = sip_to_jid(uri).ok()?;
        if j.domain == self.sip_domain {
            j.domain = self.domain.clone();
        }
        Some(j)
    }

    fn to_sip_domain(&self, j: &JidParts) -> JidParts {
        let mut j = j.clone();
        if j.domain == self.domain {
            j.domain = self.sip_domain.clone();
        }
        j
    }

    /// JID → `sip:` URI; the component domain becomes the SIP domain.
    fn sip_uri_of(&self, j: &JidParts) -> Option<String> {
        jid_to_sip(&self.to_sip_domain(j), Scheme::Sip).ok()
    }

    /// The static next hop for a SIP user (a JID of ours).
    fn route_for_user(&self, j: &JidParts) -> Option<SipTarget> {
        let uri = Uri::parse(&self.sip_uri_of(&j.bare())?)?;
        self.routes.lookup(uri.user(), &self.sip_domain)
    }

    /// Where a URI (a Contact, a remote target) leads: an IP literal with a port goes
    /// straight there; anything else through the route table. No DNS, by design.
    fn resolve(&self, uri: &Uri) -> Option<SipTarget> {
        let host = uri.host()?;
        let transport = uri
            .param("transport")
            .and_then(Transport::from_name)
            .unwrap_or(Transport::Udp);
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        match ip {
            Some(ip) => Some(SipTarget {
                transport,
                addr: SocketAddr::new(ip, uri.port().unwrap_or(5060)),
            }),
            None => self.routes.lookup(uri.user(), host),
        }
    }

    fn local(&self, aor: NameAddr, transport: Transport) -> Local {
        let addr = match transport {
            Transport::Udp => self.local_udp,
            Transport::Tcp => self.local_tcp,
        };
        Local {
            aor,
            transport: transport.via_token().to_owned(),
            sent_by: addr.to_string(),
            contact: Uri::parse(&format!("sip:gw@{addr};transport={}", transport.param())),
        }
    }

    fn contact_header(&self, transport: Transport) -> String {
        let addr = match transport {
            Transport::Udp => self.local_udp,
            Transport::Tcp => self.local_tcp,
        };
        format!("<sip:gw@{addr};transport={}>", transport.param())
    }

    // -----------------------------------------------------------------------------
    // SIP input
    // -----------------------------------------------------------------------------

    /// A UDP datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let peer = SipTarget {
            transport: Transport::Udp,
            addr: from,
        };
        match parse_datagram(data, &self.limits) {
            Ok(Item::Message(m)) => self.handle_sip(now, peer, m),
            Ok(Item::Keepalive(_)) => {}
            Err(e) => self.bad_datagram(peer, data, &e),
        }
    }

    /// RFC 3261 §18.3: a request whose framing is wrong gets 400 (513 when too large)
    /// when a response can be formed from what is left of its head; anything else is
    /// dropped with a log line ([`super::sip_input`]). No state changes either way, so
    /// transactions in flight and the datagrams that follow are unaffected.
    fn bad_datagram(&mut self, peer: SipTarget, data: &[u8], err: &ParseError) {
        match super::sip_input::answer_unparsable(data, err, &self.limits, &mut *self.rng) {
            Some(resp) => {
                info!(peer = %peer.addr, error = %err, code = resp.status, "bad SIP datagram answered");
                self.out.push_back(Output::Sip {
                    to: peer,
                    bytes: resp.to_bytes(),
                });
            }
            None => info!(peer = %peer.addr, error = %err, "bad SIP datagram dropped"),
        }
    }

    /// A parsed SIP message from `from` (UDP, or one message off a TCP stream).
    pub fn handle_sip(&mut self, now: Instant, from: SipTarget, msg: Message) {
        match msg {
            Message::Request(r) => self.handle_request(now, from, r),
            Message::Response(r) => self.handle_response(now, r),
        }
    }

    /// The TCP connection with `peer` is closed (by either side). RFC 3261 §18.2.2: a
    /// response goes over the connection its request came on "if that connection is
    /// still open"; if not, the server "SHOULD open a connection to the IP address in
    /// the received parameter ... using the port in the sent-by value, or the default
    /// port for that transport". So server transactions whose request came over it are
    /// re-pointed at the request's source IP (what `received` records) and its top
    /// Via's sent-by port (5060 by default, §18.1.1): their final responses still
    /// arrive (SIPIN-05) — e.g. a MESSAGE waiting out its error window when the client's
    /// connection was closed after a framing error on it.
    pub fn tcp_closed(&mut self, _now: Instant, peer: SocketAddr) {
        for e in self.servers.values_mut() {
            if e.peer.transport == Transport::Tcp && e.peer.addr == peer {
                let port = e
                    .request
                    .headers
                    .top_via()
                    .ok()
                    .and_then(|v| v.port)
                    .unwrap_or(5060);
                e.peer.addr = SocketAddr::new(peer.ip(), port);
            }
        }
    }

    /// Sending to `to` failed (connect refused, connection reset): client transactions
    /// toward it end with a transport error (RFC 3261 §17.1.4 → 503 to the TU).
    pub fn sip_send_failed(&mut self, now: Instant, to: SipTarget) {
        let keys: Vec<ClientKey> = self
            .clients
            .iter()
            .filter(|(_, e)| e.dest == to)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(e) = self.clients.get_mut(&k) {
                let _ = e.txn.handle_input(now, ClientInput::TransportError);
            }
            self.drain_client(now, &k);
        }
    }

    fn stateless(
        &mut self,
        peer: SipTarget,
        req: &Request,
        code: u16,
        reason: Option<String>,
        headers: &[(&str, String)],
    ) {
        let mut b = ResponseBuilder::new(req, code);
        if let Some(r) = reason {
            b = b.reason(r);
        }
        for (n, v) in headers {
            b = b.header(*n, v.clone());
        }
        let resp = b.build(&mut *self.rng);
        self.out.push_back(Output::Sip {
            to: peer,
            bytes: resp.to_bytes(),
        });
    }

    fn handle_request(&mut self, now: Instant, peer: SipTarget, req: Request) {
        if req.method == Method::Ack {
            // Only stateless INVITE rejections could be ACKed; nothing to do.
            return;
        }
        if let Err(e) = validate_request(&req) {
            let (code, _) = e.response_status();
            if req.headers.top_via().is_ok() {
                self.stateless(peer, &req, code, Some(format!("{e}")), &[]);
            } else {
                info!(peer = %peer.addr, error = %e, "request without a usable Via dropped");
            }
            return;
        }
        if req.method == Method::Invite {
            // Pager mode only (RFC 7572); session-mode IM is out of scope (D-05).
            self.stateless(peer, &req, 405, None, &[("Allow", ALLOW.into())]);
            return;
        }
        let key = match ServerKey::from_request(&req) {
            Ok(k) => k,
            Err(e) => {
                self.stateless(peer, &req, 400, Some(e.to_string()), &[]);
                return;
            }
        };
        if let Some(entry) = self.servers.get_mut(&key) {
            let _ = entry.txn.handle_input(now, ServerInput::Request(req));
            self.drain_server(&key);
            return;
        }
        let txn = match ServerTransaction::new(&req, reliability(peer.transport), self.timers) {
            Ok(t) => t,
            Err(e) => {
                self.stateless(peer, &req, 400, Some(e.to_string()), &[]);
                return;
            }
        };
        self.servers.insert(
            key.clone(),
            ServerEntry {
                txn,
                peer,
                request: req.clone(),
            },
        );
        match &req.method {
            Method::Message | Method::Subscribe => {
                // ARCH-05 (RFC 7247 §8): B2BUA loop protection; nothing reaches XMPP.
                if matches!(req.headers.max_forwards(), Ok(Some(0))) {
                    self.respond(now, &key, 483, &[], None);
                    return;
                }
                // ARCH-04 (RFC 7247 §8): sips: is never translated to XMPP.
                let to_sips = req
                    .headers
                    .get("To")
                    .is_some_and(|t| is_sips(header_uri(t)));
                if is_sips(req.uri.as_str()) || to_sips {
                    self.respond(now, &key, 416, &[], None);
                    return;
                }
                if req.method == Method::Message {
                    self.on_sip_message(now, &key, &req);
                } else {
                    self.on_sip_subscribe(now, &key, peer, &req);
                }
            }
            Method::Notify => self.on_sip_notify(now, &key, &req),
            Method::Options => {
                let h = [
                    ("Allow", ALLOW.to_owned()),
                    ("Accept", format!("text/plain, {PIDF_CONTENT_TYPE}")),
                ];
                self.respond(now, &key, 200, &h, None);
            }
            Method::Other(_) => self.respond(now, &key, 501, &[], None),
            _ => self.respond(now, &key, 405, &[("Allow", ALLOW.into())], None),
        }
    }

    fn handle_response(&mut self, now: Instant, resp: Response) {
        if let Err(e) = validate_response(&resp) {
            info!(error = %e, "malformed SIP response dropped");
            return;
        }
        let Ok(key) = ClientKey::from_response(&resp) else {
            return;
        };
        let Some(entry) = self.clients.get_mut(&key) else {
            debug!(status = resp.status, "stray SIP response dropped");
            return;
        };
        let _ = entry.txn.handle_input(now, ClientInput::Response(resp));
        self.drain_client(now, &key);
    }

    /// Answer a server transaction. `to_tag` is the dialog's local tag for a
    /// dialog-creating 2xx.
    fn respond(
        &mut self,
        now: Instant,
        key: &ServerKey,
        code: u16,
        headers: &[(&str, String)],
        to_tag: Option<&str>,
    ) {
        let Some(entry) = self.servers.get_mut(key) else {
            debug!(code, "response for a finished server transaction dropped");
            return;
        };
        let mut b = ResponseBuilder::new(&entry.request, code);
        if let Some(t) = to_tag {
            b = b.to_tag(t);
        }
        for (n, v) in headers {
            b = b.header(*n, v.clone());
        }
        let resp = b.build(&mut *self.rng);
        if let Err(e) = entry.txn.handle_input(now, ServerInput::Respond(resp)) {
            debug!(error = %e, "server transaction refused the response");
        }
        self.drain_server(key);
    }

    fn drain_server(&mut self, key: &ServerKey) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        let peer = entry.peer;
        let mut done = false;
        while let Some(o) = entry.txn.poll_output() {
            match o {
                ServerOutput::Transmit(bytes) => {
                    self.out.push_back(Output::Sip { to: peer, bytes })
                }
                ServerOutput::TransportError | ServerOutput::Terminated => done = true,
            }
        }
        if done {
            self.servers.remove(key);
        } else {
            let at = self.servers.get(key).and_then(|e| e.txn.poll_timeout());
            self.schedule(at, Due::Server(key.clone()));
        }
    }

    fn start_client(&mut self, now: Instant, req: Request, dest: SipTarget, purpose: Purpose) {
        match ClientTransaction::new(now, &req, reliability(dest.transport), self.timers) {
            Ok(txn) => {
                let key = txn.key().clone();
                self.clients.insert(
                    key.clone(),
                    ClientEntry {
                        txn,
                        dest,
                        purpose: Some(purpose),
                    },
                );
                self.drain_client(now, &key);
            }
            Err(e) => warn!(error = %e, "cannot start a SIP client transaction"),
        }
    }

    fn drain_client(&mut self, now: Instant, key: &ClientKey) {
        let mut finals: Vec<(Purpose, u16, Option<Response>)> = Vec::new();
        let mut done = false;
        {
            let Some(entry) = self.clients.get_mut(key) else {
                return;
            };
            while let Some(o) = entry.txn.poll_output() {
                match o {
                    ClientOutput::Transmit(bytes) => self.out.push_back(Output::Sip {
                        to: entry.dest,
                        bytes,
                    }),
                    ClientOutput::Response(r) if r.is_provisional() => {}
                    ClientOutput::Response(r) => {
                        if let Some(p) = entry.purpose.take() {
                            finals.push((p, r.status, Some(r)));
                        }
                    }
                    // RFC 3261 §17.1.2.2: Timer F is a 408 to the TU; §17.1.4: a
                    // transport error is a 503.
                    ClientOutput::Timeout => {
                        if let Some(p) = entry.purpose.take() {
                            finals.push((p, 408, None));
                        }
                    }
                    ClientOutput::TransportError => {
                        if let Some(p) = entry.purpose.take() {
                            finals.push((p, 503, None));
                        }
                    }
                    ClientOutput::Terminated => done = true,
                }
            }
        }
        if done {
            self.clients.remove(key);
        } else {
            let at = self.clients.get(key).and_then(|e| e.txn.poll_timeout());
            self.schedule(at, Due::Client(key.clone()));
        }
        for (p, code, resp) in finals {
            self.on_client_final(now, p, code, resp.as_ref());
        }
    }

    fn on_client_final(&mut self, now: Instant, p: Purpose, code: u16, resp: Option<&Response>) {
        match p {
            Purpose::Message { original } => self.on_message_final(now, &original, code, resp),
            Purpose::XsSubscribe { key, request } => {
                self.on_xs_subscribe_final(now, key, &request, code, resp)
            }
            Purpose::Notify { key } => {
                if code >= 300 {
                    // RFC 6665 §4.1.3: a failed NOTIFY (481 in particular) ends the
                    // subscription on the notifier's side too.
                    info!(code, "NOTIFY refused; SIP subscription dropped");
                    if let Some(e) = self.sx.get_mut(&key)
                        && let Some(d) = e.dialog.take()
                    {
                        self.dialogs.remove(&d.id);
                    }
                }
            }
        }
    }

    // -----------------------------------------------------------------------------
    // IM, S→X (RFC 7572 §5)
    // -----------------------------------------------------------------------------

    fn on_sip_message(&mut self, now: Instant, key: &ServerKey, req: &Request) {
        let h = &req.headers;
        let ct = h.get("Content-Type").map(str::to_owned);
        if ct.is_none() && !req.body.is_empty() {
            // RFC 3261 §7.4.1: a non-empty body MUST have a Content-Type.
            self.respond(now, key, 400, &[], None);
            return;
        }
        let Ok(body) = String::from_utf8(req.body.clone()) else {
            // RFC 7572 §8: UTF-8 only.
            self.respond(now, key, 415, &[], None);
            return;
        };
        let sip = SipMessage {
            request_uri: req.uri.as_str().to_owned(),
            from: h.get("From").unwrap_or_default().to_owned(),
            to: h.get("To").unwrap_or_default().to_owned(),
            call_id: h.get("Call-ID").unwrap_or_default().to_owned(),
            content_type: ct.unwrap_or_else(|| "text/plain".into()),
            content_language: h.get("Content-Language").map(str::to_owned),
            subject: h.subject().map(str::to_owned),
            body,
        };
        let mut x = match sip_to_xmpp_message(&sip) {
            Ok(x) => x,
            Err(e) => {
                let code = e.sip_status();
                info!(error = %e, code, "SIP MESSAGE not translated");
                self.respond(now, key, code, &[], None);
                return;
            }
        };
        // ARCH-06 (RFC 8048 §8.1): only our own SIP users are translated.
        if x.from.domain != self.sip_domain {
            self.respond(now, key, 403, &[], None);
            return;
        }
        if self.is_local(&x.to) {
            self.respond(now, key, 404, &[], None);
            return;
        }
        x.from.domain = self.domain.clone();
        // RFC 7572 §5 Table 2: the transaction identifier becomes the stanza id.
        let id = self.im_id(req);
        x.id = Some(id.clone());
        let stanza = x.to_element(ns::SERVER);
        self.pending_im.insert(
            id.clone(),
            PendingIm {
                server: key.clone(),
                from: x.from.clone(),
                to: x.to.clone(),
                state: ImState::Unsent,
            },
        );
        if self.emit_stanza(now, stanza, Some(&id)).is_err() {
            self.finish_im(now, &id, 480, None);
        }
    }

    /// The stanza id of a translated MESSAGE: its branch (the transaction id), made
    /// unique among pending ones.
    fn im_id(&mut self, req: &Request) -> String {
        let base = req
            .headers
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .unwrap_or_default();
        if !self.pending_im.contains_key(&base) {
            return base;
        }
        self.next_id += 1;
        format!("{base}-{}", self.next_id)
    }

    fn finish_im(&mut self, now: Instant, id: &str, code: u16, reason: Option<String>) {
        self.finish_im_with(now, id, code, reason, Vec::new());
    }

    /// [`Self::finish_im`] with headers the code needs (a 3xx's Contact).
    fn finish_im_with(
        &mut self,
        now: Instant,
        id: &str,
        code: u16,
        reason: Option<String>,
        mut h: Vec<(&str, String)>,
    ) {
        let Some(p) = self.pending_im.remove(id) else {
            return;
        };
        self.token_im.retain(|_, v| v != id);
        if code == 480 {
            h.push(("Retry-After", RETRY_AFTER_LINK_DOWN.to_string()));
        }
        if let Some(r) = reason {
            // RFC 7247 §7 (ERR-08, MAY): the XMPP <text/> travels as a Warning.
            h.push((
                "Warning",
                format!("399 {} \"{}\"", self.domain, r.replace('"', "'")),
            ));
        }
        self.respond(now, &p.server, code, &h, None);
    }

    /// An XMPP error for a translated MESSAGE (RFC 7247 §7.1, ERR-01..ERR-04).
    fn on_message_error(&mut self, now: Instant, el: &Element) -> bool {
        let Some(id) = el.attr("id") else {
            return false;
        };
        let Some(p) = self.pending_im.get(id) else {
            return false;
        };
        let from = el.attr("from").and_then(|f| JidParts::parse(f).ok());
        let to = el.attr("to").and_then(|f| JidParts::parse(f).ok());
        let matches = from.is_some_and(|f| f.bare() == p.to.bare())
            && to.is_some_and(|t| t.bare() == p.from.bare());
        if !matches || p.state == ImState::Unsent {
            return false;
        }
        let addressed_full_jid = p.to.is_full();
        let err_el = el.elements().find(|c| c.name == "error");
        let error = err_el.and_then(StanzaError::from_element);
        let cond = error
            .as_ref()
            .map_or(StanzaCondition::UndefinedCondition, |e| e.condition);
        // RFC 7247 §7.1 note 3 (ERR-03): <gone/> or <redirect/> with a new address gives
        // a 301/302 whose Contact is that address (RFC 3261 §21.3.2, §21.3.3); an
        // address that does not map counts as none (410).
        let contact = err_el
            .and_then(crate::translate::error::condition_text)
            .and_then(|t| crate::translate::error::redirect_contact(&t));
        let code = xmpp_to_sip_with(
            cond,
            &XmppErrorContext {
                addressed_full_jid,
                gone_target: contact.as_deref(),
                remote_unreachable: false,
            },
        );
        let extra: Vec<(&str, String)> = match contact {
            Some(c) if (300..400).contains(&code) => vec![("Contact", c)],
            _ => Vec::new(),
        };
        let id = id.to_owned();
        self.finish_im_with(now, &id, code, error.and_then(|e| e.text), extra);
        true
    }

    // -----------------------------------------------------------------------------
    // IM, X→S (RFC 7572 §4)
    // -----------------------------------------------------------------------------

    fn reply_error(&mut self, now: Instant, el: &Element, cond: StanzaCondition) {
        if let Some(b) = bounce(el, &StanzaError::new(cond)) {
            self.emit(now, b);
        }
    }

    fn on_xmpp_message(&mut self, now: Instant, el: &Element, from: &JidParts, to: &JidParts) {
        let mut m = match XmppMessage::from_element(el, None) {
            Ok(m) => m,
            Err(e) => {
                info!(error = %e, "XMPP message not translated");
                self.reply_error(now, el, e.condition());
                return;
            }
        };
        let Some(dest) = self.route_for_user(to) else {
            // RFC 6121 §8.5.2.2.1: no such user here → service-unavailable.
            info!(to = %to, "no SIP route for the recipient");
            self.reply_error(now, el, StanzaCondition::ServiceUnavailable);
            return;
        };
        m.to = self.to_sip_domain(&m.to);
        m.from = from.clone();
        let fallback = new_call_id(&mut *self.rng, &self.domain);
        let s = match xmpp_to_sip_message(&m, &fallback) {
            Ok(s) => s,
            Err(e) => {
                info!(error = %e, "XMPP message not translated");
                self.reply_error(now, el, e.condition());
                return;
            }
        };
        let Some(uri) = Uri::parse(&s.request_uri) else {
            self.reply_error(now, el, StanzaCondition::JidMalformed);
            return;
        };
        let Ok(aor) = NameAddr::parse("From", &s.from) else {
            self.reply_error(now, el, StanzaCondition::JidMalformed);
            return;
        };
        let local = self.local(aor, dest.transport);
        let mut b = RequestBuilder::new(Method::Message, uri)
            .header("From", s.from.clone())
            .header("To", s.to.clone())
            .header("Call-ID", s.call_id.clone());
        if let Some(l) = &s.content_language {
            b = b.header("Content-Language", l.clone());
        }
        if let Some(subj) = &s.subject {
            b = b.header("Subject", subj.clone());
        }
        let req = b
            .body(&s.content_type, s.body.into_bytes())
            .build(&local, &mut *self.rng);
        // IM-04 (RFC 7572 §6, RFC 3428 §7): the 1300-byte pager-mode limit is on the
        // MESSAGE as it goes out, headers included; the translator's check sees only
        // the body and subject.
        let size = req.to_bytes().len();
        if size > PAGER_MODE_LIMIT {
            info!(
                size,
                limit = PAGER_MODE_LIMIT,
                "XMPP message too large for pager mode"
            );
            self.reply_error(now, el, StanzaCondition::PolicyViolation);
            return;
        }
        self.start_client(
            now,
            req,
            dest,
            Purpose::Message {
                original: el.clone(),
            },
        );
    }

    /// RFC 7247 §7.2 (ERR-05..ERR-07) in the RFC 6120 §8.3 shape (ERR-09).
    fn on_message_final(
        &mut self,
        now: Instant,
        original: &Element,
        code: u16,
        resp: Option<&Response>,
    ) {
        let contact = resp
            .and_then(|r| r.headers.contacts().ok())
            .and_then(|c| c.into_iter().next())
            .map(|c| match sip_to_jid(c.uri.as_str()) {
                Ok(j) => format!("xmpp:{j}"),
                Err(_) => c.uri.as_str().to_owned(),
            });
        let reason = resp.map(|r| r.reason.as_str());
        let Some(mapped) = sip_to_xmpp_error(code, contact.as_deref(), reason) else {
            return;
        };
        if original.attr("type") == Some("error") {
            return;
        }
        // IM-13 (RFC 6121 §8.5.2.2.1, §8.5.3.1): a headline that cannot be delivered is
        // dropped silently, never bounced — it expects no answer of any kind.
        if original.attr("type") == Some("headline") {
            info!(code, "undeliverable headline dropped");
            return;
        }
        let mut e = Element::new(ns::SERVER, "message").with_attr("type", "error");
        if let Some(to) = original.attr("to") {
            e.set_attr("from", to);
        }
        if let Some(from) = original.attr("from") {
            e.set_attr("to", from);
        }
        if let Some(id) = original.attr("id") {
            e.set_attr("id", id);
        }
        e.children
            .push(Node::Element(mapped.to_element(ns::SERVER)));
        self.emit(now, e);
    }

    // -----------------------------------------------------------------------------
    // XMPP input
    // -----------------------------------------------------------------------------

    /// A stanza from the component link (in `jabber:server`, as [`ComponentClient`]
    /// delivers them).
    ///
    /// [`ComponentClient`]: crate::xmpp::component::ComponentClient
    pub fn handle_stanza(&mut self, now: Instant, el: Element) {
        let from = el.attr("from").and_then(|f| JidParts::parse(f).ok());
        let to = el.attr("to").and_then(|f| JidParts::parse(f).ok());
        let (Some(from), Some(to)) = (from, to) else {
            debug!(name = %el.name, "stanza without usable from/to dropped");
            return;
        };
        if to.domain != self.domain || from.domain == self.domain {
            debug!(%from, %to, "stanza not for the gateway's domain dropped");
            return;
        }
        let is_error = el.attr("type") == Some("error");
        match el.name.as_str() {
            // ERR-10: an error is never answered with another error.
            "message" if is_error && !self.on_message_error(now, &el) => {
                debug!("unmatched message error dropped");
            }
            "message" if is_error => {}
            "message" => {
                if to.local.is_none() {
                    self.reply_error(now, &el, StanzaCondition::ServiceUnavailable);
                } else {
                    self.on_xmpp_message(now, &el, &from, &to);
                }
            }
            "presence" => self.on_presence(now, &el, from, to),
            "iq" => match el.attr("type") {
                Some("get") | Some("set") => {
                    self.reply_error(now, &el, StanzaCondition::ServiceUnavailable)
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn on_presence(&mut self, now: Instant, el: &Element, from: JidParts, to: JidParts) {
        if to.local.is_none() {
            return;
        }
        let key: PairKey = (to.bare(), from.bare());
        let t = el.attr("type");
        if t == Some("error") {
            // RFC 8048 §8.1: an error to the refresh probe stops refreshing (PSUB-07);
            // an error to a SIP user's `subscribe` ends that request.
            if let Some(e) = self.xs.get_mut(&key) {
                e.machine.handle(now, XsInput::ProbeRejected);
                self.drain_xs(now, &key);
            }
            if let Some(e) = self.sx.get_mut(&key)
                && !e.machine.is_approved()
            {
                e.machine.handle(now, SxInput::XmppUnsubscribed);
                self.drain_sx(now, &key, None);
            }
            return;
        }
        let Some(kind) = PresenceKind::from_type_attr(t) else {
            self.reply_error(now, el, StanzaCondition::BadRequest);
            return;
        };
        match kind {
            PresenceKind::Subscribe => self.on_xmpp_subscribe(now, key),
            PresenceKind::Unsubscribe => {
                if let Some(e) = self.xs.get_mut(&key) {
                    e.machine.handle(now, XsInput::XmppUnsubscribe);
                    self.drain_xs(now, &key);
                }
            }
            // RFC 6121 §3.1.6 / §3.2.3 (PSUB-16, PSUB-17): only with a pending or
            // existing SIP subscription; else ignored silently.
            PresenceKind::Subscribed => {
                if let Some(e) = self.sx.get_mut(&key) {
                    e.machine.handle(now, SxInput::XmppSubscribed);
                    self.drain_sx(now, &key, None);
                }
            }
            PresenceKind::Unsubscribed => {
                if let Some(e) = self.sx.get_mut(&key) {
                    e.machine.handle(now, SxInput::XmppUnsubscribed);
                    self.drain_sx(now, &key, None);
                }
            }
            PresenceKind::Probe => self.on_probe(now, el, &from, &to),
            // Handled above, by the `type` attribute.
            PresenceKind::Error => {}
            PresenceKind::Available | PresenceKind::Unavailable => {
                let presence = match XmppPresence::from_element(el) {
                    Ok(p) => p,
                    Err(e) => {
                        info!(error = %e, "presence not translated");
                        self.reply_error(now, el, StanzaCondition::BadRequest);
                        return;
                    }
                };
                // ARCH-07 (RFC 8048 §8.2): only the addressed SIP user's subscription
                // to the sender sees it.
                if let Some(e) = self.sx.get_mut(&key) {
                    e.machine.handle(
                        now,
                        SxInput::XmppPresence {
                            from: from.clone(),
                            presence,
                        },
                    );
                    self.drain_sx(now, &key, None);
                }
                // PSUB-05 (RFC 8048 §5.2.2): a watcher's resource starting a presence
                // session (its initial presence toward this SIP user) refreshes that
                // subscription at once; later presence of the same resource does not.
                if !self.xs.contains_key(&key) {
                    self.online.remove(&key);
                } else if kind == PresenceKind::Available {
                    let fresh = self
                        .online
                        .entry(key.clone())
                        .or_default()
                        .insert(from.resource.clone());
                    if fresh && let Some(e) = self.xs.get_mut(&key) {
                        e.machine.handle(now, XsInput::XmppSessionStarted);
                        self.drain_xs(now, &key);
                    }
                } else if let Some(r) = self.online.get_mut(&key) {
                    r.remove(&from.resource);
                }
            }
        }
    }

    /// PRB-05 (RFC 6121 §4.3.2): answer for the SIP user from what the gateway holds
    /// for this watcher — the presence the SIP user last notified in the watcher's own
    /// subscription, never another watcher's (ARCH-07). A probe from a full JID (RFC
    /// 3921 servers, PRB-03) counts as from its bare JID; the answer goes to the
    /// prober as addressed.
    /// - not a `from`/`both` watcher, or no such SIP user (§4.3.2, §8.5.1; "ignore or
    ///   `unsubscribed`"): `unsubscribed` from the bare JID, the probe's id mirrored;
    /// - watcher, SIP user offline: `unavailable` from the bare JID, id mirrored
    ///   (§4.3.2 SHOULD; no `<delay/>`: the core has no wall clock, STYLE.md §1);
    /// - watcher, SIP user online: the last presence of each available resource from
    ///   its full JID (§4.3.2 MUST), as it was broadcast — which was without an id.
    fn on_probe(&mut self, now: Instant, el: &Element, from: &JidParts, to: &JidParts) {
        let key: PairKey = (to.bare(), from.bare());
        let user = to.bare();
        let id = el.attr("id").map(str::to_owned);
        let mirrored = |mut stanza: Element| {
            if let Some(id) = &id {
                stanza.set_attr("id", id.clone());
            }
            stanza
        };
        let available = match self.xs.get(&key) {
            Some(e) if e.machine.is_active() => e.machine.available().to_vec(),
            _ => {
                let p = XmppPresence::new(PresenceKind::Unsubscribed);
                let stanza = mirrored(p.to_element(ns::SERVER, &user, from));
                self.emit(now, stanza);
                return;
            }
        };
        if available.is_empty() {
            let p = XmppPresence::new(PresenceKind::Unavailable);
            let stanza = mirrored(p.to_element(ns::SERVER, &user, from));
            self.emit(now, stanza);
            return;
        }
        for (res, p) in available {
            let mut f = user.clone();
            f.resource = res;
            self.emit(now, p.to_element(ns::SERVER, &f, from));
        }
    }

    // -----------------------------------------------------------------------------
    // Presence, X→S (RFC 8048 §5.2): the gateway subscribes for an XMPP watcher
    // -----------------------------------------------------------------------------

    fn on_xmpp_subscribe(&mut self, now: Instant, key: PairKey) {
        if !self.xs.contains_key(&key) {
            let Some(dest) = self.route_for_user(&key.0) else {
                // RFC 6121 §3.1.3: no such contact here.
                info!(contact = %key.0, "subscribe to a SIP user without a route");
                let p = XmppPresence::new(PresenceKind::Unsubscribed);
                let el = p.to_element(ns::SERVER, &key.0, &key.1);
                self.emit(now, el);
                return;
            };
            let machine = XmppToSip::new(self.sub_cfg.clone(), &key.1, &key.0);
            self.xs.insert(
                key.clone(),
                XsEntry {
                    machine,
                    dialog: None,
                    initial: None,
                    dest,
                },
            );
        }
        if let Some(e) = self.xs.get_mut(&key) {
            e.machine.handle(now, XsInput::XmppSubscribe);
        }
        self.drain_xs(now, &key);
    }

    fn drain_xs(&mut self, now: Instant, key: &PairKey) {
        while let Some(action) = self.xs.get_mut(key).and_then(|e| e.machine.poll_action()) {
            match action {
                XsAction::SendPresence { from, to, presence } => {
                    let el = presence.to_element(ns::SERVER, &from, &to);
                    self.emit(now, el);
                }
                XsAction::SendSubscribe {
                    expires,
                    new_dialog,
                } => self.send_xs_subscribe(now, key, expires, new_dialog),
            }
        }
        if self.xs.get(key).is_some_and(|e| e.machine.is_closed()) {
            self.drop_xs(now, key);
        } else {
            let at = self.xs.get(key).and_then(|e| e.machine.poll_timeout());
            self.schedule(at, Due::Xs(key.clone()));
        }
    }

    fn drop_xs(&mut self, now: Instant, key: &PairKey) {
        self.online.remove(key);
        if let Some(e) = self.xs.remove(key) {
            if let Some(d) = e.dialog {
                self.dialogs.remove(&d.id);
                // A final NOTIFY may still come; see `closing`. Bounded by Timer F
                // (64·T1), the longest the notifier's NOTIFY transaction can live.
                self.closing.retain(|_, until| *until > now);
                let until = now + self.timers.transaction_timeout();
                self.closing.insert(d.id, until);
            }
            if let Some(r) = e.initial
                && let Ok(c) = r.headers.call_id()
            {
                self.pending_calls.remove(c);
            }
        }
    }

    fn send_xs_subscribe(&mut self, now: Instant, key: &PairKey, expires: u32, new_dialog: bool) {
        let (Some(from), Some(to)) = (self.sip_uri_of(&key.1), self.sip_uri_of(&key.0)) else {
            warn!(watcher = %key.1, contact = %key.0, "subscription addresses do not map");
            return;
        };
        let Some(dest) = self.xs.get(key).map(|e| e.dest) else {
            return;
        };
        let Some(aor) = Uri::parse(&from).map(NameAddr::new) else {
            return;
        };
        let has_dialog = self.xs.get(key).is_some_and(|e| e.dialog.is_some());
        let (req, dest) = if has_dialog && !new_dialog {
            let remote = self
                .xs
                .get(key)
                .and_then(|e| e.dialog.as_ref())
                .map(|d| d.remote_target.clone());
            let target = remote.and_then(|u| self.resolve(&u)).unwrap_or(dest);
            let local = self.local(aor, target.transport);
            let GatewayCore { xs, rng, .. } = self;
            let Some(d) = xs.get_mut(key).and_then(|e| e.dialog.as_mut()) else {
                return;
            };
            let mut r = d.next_request(Method::Subscribe, &local, &mut **rng);
            r.headers.push("Event", "presence");
            r.headers.push("Accept", PIDF_CONTENT_TYPE);
            r.headers.push("Expires", expires.to_string());
            (r, target)
        } else {
            if new_dialog && let Some(e) = self.xs.get_mut(key) {
                if let Some(d) = e.dialog.take() {
                    self.dialogs.remove(&d.id);
                }
                if let Some(r) = e.initial.take()
                    && let Ok(c) = r.headers.call_id()
                {
                    self.pending_calls.remove(c);
                }
            }
            let Some(uri) = Uri::parse(&to) else { return };
            let local = self.local(aor.clone(), dest.transport);
            let r = RequestBuilder::new(Method::Subscribe, uri)
                .header("From", aor.to_string())
                .header("To", format!("<{to}>"))
                .header("Event", "presence")
                .header("Accept", PIDF_CONTENT_TYPE)
                .header("Expires", expires.to_string())
                .build(&local, &mut *self.rng);
            if let Ok(c) = r.headers.call_id() {
                self.pending_calls.insert(c.to_owned(), key.clone());
            }
            if let Some(e) = self.xs.get_mut(key) {
                e.initial = Some(r.clone());
            }
            (r, dest)
        };
        self.start_client(
            now,
            req.clone(),
            dest,
            Purpose::XsSubscribe {
                key: key.clone(),
                request: req,
            },
        );
    }

    fn on_xs_subscribe_final(
        &mut self,
        now: Instant,
        key: PairKey,
        request: &Request,
        code: u16,
        resp: Option<&Response>,
    ) {
        if (200..300).contains(&code)
            && let Some(resp) = resp
            && let Some(e) = self.xs.get_mut(&key)
            && e.dialog.is_none()
            && let Ok(d) = Dialog::from_uac(request, resp)
        {
            if let Ok(c) = request.headers.call_id() {
                self.pending_calls.remove(c);
            }
            e.initial = None;
            self.dialogs.insert(d.id.clone(), PairRef::Xs(key.clone()));
            e.dialog = Some(d);
        }
        let expires = resp.and_then(|r| r.headers.expires().ok().flatten());
        let min_expires = resp
            .and_then(|r| r.headers.get("Min-Expires"))
            .and_then(|v| v.trim().parse().ok());
        if let Some(e) = self.xs.get_mut(&key) {
            e.machine.handle(
                now,
                XsInput::SubscribeResponse {
                    code,
                    expires,
                    min_expires,
                },
            );
            self.drain_xs(now, &key);
        }
    }

    fn on_sip_notify(&mut self, now: Instant, skey: &ServerKey, req: &Request) {
        let Some(did) = DialogId::of_received_request(req) else {
            self.respond(now, skey, 481, &[], None);
            return;
        };
        let key = match self.dialogs.get(&did) {
            Some(PairRef::Xs(k)) => {
                let k = k.clone();
                let res = self
                    .xs
                    .get_mut(&k)
                    .and_then(|e| e.dialog.as_mut())
                    .map(|d| d.on_remote_request(req));
                match res {
                    Some(Ok(())) => k,
                    Some(Err(e)) => {
                        self.respond(now, skey, e.response_status(), &[], None);
                        return;
                    }
                    None => {
                        self.respond(now, skey, 481, &[], None);
                        return;
                    }
                }
            }
            Some(PairRef::Sx(_)) => {
                // A NOTIFY in a dialog where we are the notifier.
                self.respond(now, skey, 481, &[], None);
                return;
            }
            None if self.closing.get(&did).is_some_and(|until| *until > now) => {
                // The notifier's last word on a subscription we ended (PSUB-08):
                // acknowledged, nothing reaches XMPP any more.
                if matches!(
                    req.headers.subscription_state(),
                    Ok(Some(s)) if s.state == SipSubState::Terminated
                ) {
                    self.closing.remove(&did);
                }
                self.respond(now, skey, 200, &[], None);
                return;
            }
            None => {
                // RFC 6665 §4.1.2.4: the NOTIFY may come before the SUBSCRIBE's 2xx.
                let Some(k) = self.pending_calls.get(&did.call_id).cloned() else {
                    self.respond(now, skey, 481, &[], None);
                    return;
                };
                let made = self
                    .xs
                    .get(&k)
                    .and_then(|e| e.initial.as_ref())
                    .map(|init| Dialog::from_notify(init, req));
                match made {
                    Some(Ok(d)) => {
                        self.pending_calls.remove(&did.call_id);
                        self.dialogs.insert(d.id.clone(), PairRef::Xs(k.clone()));
                        if let Some(e) = self.xs.get_mut(&k) {
                            e.dialog = Some(d);
                        }
                        k
                    }
                    Some(Err(e)) => {
                        self.respond(now, skey, e.response_status(), &[], None);
                        return;
                    }
                    None => {
                        self.respond(now, skey, 481, &[], None);
                        return;
                    }
                }
            }
        };
        let event = req.headers.event();
        if !matches!(&event, Ok(Some(e)) if e.package.eq_ignore_ascii_case("presence")) {
            // RFC 6665 §8.3.2.
            self.respond(now, skey, 489, &[], None);
            return;
        }
        let Ok(Some(state)) = req.headers.subscription_state() else {
            // RFC 6665 §4.1.3: Subscription-State is mandatory.
            self.respond(now, skey, 400, &[], None);
            return;
        };
        let body = self.notify_body(req);
        self.respond(now, skey, 200, &[], None);
        let mstate = machine_state(&state);
        if matches!(mstate, SubState::Terminated(_))
            && let Some(e) = self.xs.get_mut(&key)
            && let Some(d) = e.dialog.take()
        {
            self.dialogs.remove(&d.id);
        }
        if let Some(e) = self.xs.get_mut(&key) {
            e.machine.handle(
                now,
                XsInput::Notify {
                    state: mstate,
                    expires: state.expires,
                    body,
                },
            );
            self.drain_xs(now, &key);
        }
    }

    fn notify_body(&self, req: &Request) -> Option<Pidf> {
        if req.body.is_empty() {
            return None;
        }
        let ct = req.headers.content_type().ok().flatten()?;
        if ct.essence() != PIDF_CONTENT_TYPE {
            debug!(content_type = %ct, "NOTIFY body is not PIDF; ignored");
            return None;
        }
        let text = std::str::from_utf8(&req.body).ok()?;
        match Pidf::parse(text) {
            Ok(mut p) => {
                // RFC 7248 Table 2 (PNOT-04): Content-Language → xml:lang.
                if let Some(lang) = req.headers.get("Content-Language") {
                    p.apply_content_language(lang);
                }
                Some(p)
            }
            Err(e) => {
                info!(error = %e, "NOTIFY PIDF not understood; ignored");
                None
            }
        }
    }

    // -----------------------------------------------------------------------------
    // Presence, S→X (RFC 8048 §5.3): a SIP user subscribes to an XMPP contact
    // -----------------------------------------------------------------------------

    fn on_sip_subscribe(&mut self, now: Instant, skey: &ServerKey, peer: SipTarget, req: &Request) {
        match req.headers.event() {
            Ok(Some(e)) if e.package.eq_ignore_ascii_case("presence") => {}
            Ok(_) => {
                // RFC 6665 §4.2.1: unknown or missing package → 489 with Allow-Events.
                self.respond(now, skey, 489, &[("Allow-Events", "presence".into())], None);
                return;
            }
            Err(_) => {
                self.respond(now, skey, 400, &[], None);
                return;
            }
        }
        let expires = match req.headers.expires() {
            Ok(e) => e.unwrap_or(PRESENCE_DEFAULT_EXPIRES),
            Err(_) => {
                self.respond(now, skey, 400, &[], None);
                return;
            }
        };
        let in_dialog = req.headers.to().ok().and_then(|t| t.tag()).is_some();
        let (key, local_tag) = if in_dialog {
            let did = DialogId::of_received_request(req);
            let Some(PairRef::Sx(k)) = did.as_ref().and_then(|d| self.dialogs.get(d)).cloned()
            else {
                self.respond(now, skey, 481, &[], None);
                return;
            };
            let res = self
                .sx
                .get_mut(&k)
                .and_then(|e| e.dialog.as_mut())
                .map(|d| d.on_remote_request(req));
            match res {
                Some(Ok(())) => (k, None),
                Some(Err(e)) => {
                    self.respond(now, skey, e.response_status(), &[], None);
                    return;
                }
                None => {
                    self.respond(now, skey, 481, &[], None);
                    return;
                }
            }
        } else {
            let watcher = req
                .headers
                .get("From")
                .and_then(|f| self.jid_of(header_uri(f)));
            let contact = self.jid_of(req.uri.as_str());
            let (Some(watcher), Some(contact)) = (watcher, contact) else {
                self.respond(now, skey, 404, &[], None);
                return;
            };
            if watcher.domain != self.domain {
                self.respond(now, skey, 403, &[], None);
                return;
            }
            if self.is_local(&contact) {
                self.respond(now, skey, 404, &[], None);
                return;
            }
            let tag = new_tag(&mut *self.rng);
            let dialog = match Dialog::from_uas(req, &tag) {
                Ok(d) => d,
                Err(e) => {
                    self.respond(now, skey, e.response_status(), &[], None);
                    return;
                }
            };
            let key: PairKey = (watcher.bare(), contact.bare());
            let cfg = self.sub_cfg.clone();
            let e = self.sx.entry(key.clone()).or_insert_with(|| SxEntry {
                machine: SipToXmpp::new(cfg, &watcher, &contact),
                dialog: None,
                peer,
            });
            e.peer = peer;
            if let Some(old) = e.dialog.replace(dialog.clone()) {
                self.dialogs.remove(&old.id);
            }
            self.dialogs.insert(dialog.id, PairRef::Sx(key.clone()));
            (key, Some(tag))
        };
        if let Some(e) = self.sx.get_mut(&key) {
            e.machine.handle(now, SxInput::Subscribe { expires });
        }
        self.drain_sx(now, &key, Some((skey.clone(), local_tag)));
    }

    /// An S→X pair with nothing left (no SIP subscription, no XMPP approval, no timer)
    /// is forgotten, so polls and refused requests leave no state behind.
    fn sweep_sx(&mut self, key: &PairKey) {
        let idle = self.sx.get(key).is_some_and(|e| {
            !e.machine.is_active() && !e.machine.is_approved() && e.machine.poll_timeout().is_none()
        });
        if idle
            && let Some(e) = self.sx.remove(key)
            && let Some(d) = e.dialog
        {
            self.dialogs.remove(&d.id);
        }
    }

    /// `respond_to`: the SUBSCRIBE being handled, and the To tag for its 2xx.
    fn drain_sx(
        &mut self,
        now: Instant,
        key: &PairKey,
        respond_to: Option<(ServerKey, Option<String>)>,
    ) {
        while let Some(action) = self.sx.get_mut(key).and_then(|e| e.machine.poll_action()) {
            match action {
                SxAction::RespondSubscribe { code, expires } => {
                    let Some((skey, tag)) = &respond_to else {
                        continue;
                    };
                    let transport = self
                        .sx
                        .get(key)
                        .map_or(Transport::Udp, |e| e.peer.transport);
                    let h = [
                        ("Expires", expires.to_string()),
                        ("Contact", self.contact_header(transport)),
                    ];
                    self.respond(now, skey, code, &h, tag.as_deref());
                }
                SxAction::SendNotify {
                    state,
                    expires,
                    body,
                } => self.send_notify(now, key, &state, expires, body.as_ref()),
                SxAction::SendPresence { from, to, presence } => {
                    let el = presence.to_element(ns::SERVER, &from, &to);
                    self.emit(now, el);
                }
            }
        }
        self.sweep_sx(key);
        let at = self.sx.get(key).and_then(|e| e.machine.poll_timeout());
        self.schedule(at, Due::Sx(key.clone()));
    }

    fn send_notify(
        &mut self,
        now: Instant,
        key: &PairKey,
        state: &SubState,
        expires: Option<u32>,
        body: Option<&Pidf>,
    ) {
        let Some(e) = self.sx.get(key) else { return };
        let Some(d) = e.dialog.as_ref() else {
            debug!("NOTIFY without a dialog skipped");
            return;
        };
        // TCP: reuse the subscriber's connection; UDP: its Contact (RFC 3261 §12.2.1.1).
        let target = match e.peer.transport {
            Transport::Tcp => e.peer,
            Transport::Udp => self.resolve(&d.remote_target).unwrap_or(e.peer),
        };
        let local = self.local(d.local_uri.clone(), target.transport);
        let GatewayCore { sx, rng, .. } = self;
        let Some(d) = sx.get_mut(key).and_then(|e| e.dialog.as_mut()) else {
            return;
        };
        let mut r = d.next_request(Method::Notify, &local, &mut **rng);
        r.headers.push("Event", "presence");
        r.headers.push(
            "Subscription-State",
            subscription_state_header(state, expires),
        );
        if let Some(b) = body {
            // RFC 7248 Table 1 (PNOT-04): xml:lang → Content-Language.
            if let Some(lang) = b.content_language() {
                r.headers.push("Content-Language", lang);
            }
            r.headers.push("Content-Type", PIDF_CONTENT_TYPE);
            r.body = b.to_xml().into_bytes();
            r.headers.set("Content-Length", r.body.len().to_string());
        }
        if matches!(state, SubState::Terminated(_))
            && let Some(d) = sx.get_mut(key).and_then(|e| e.dialog.take())
        {
            self.dialogs.remove(&d.id);
        }
        self.start_client(now, r, target, Purpose::Notify { key: key.clone() });
    }

    // -----------------------------------------------------------------------------
    // Timers
    // -----------------------------------------------------------------------------

    /// Fire everything due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<Due> = Vec::new();
        while let Some(Reverse((at, seq))) = self.wheel.peek().copied() {
            if at > now {
                break;
            }
            self.wheel.pop();
            if let Some(d) = self.due_refs.remove(&seq) {
                if self.due_last.get(&d) == Some(&at) {
                    self.due_last.remove(&d);
                }
                if !due.contains(&d) {
                    due.push(d);
                }
            }
        }
        let ready = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        for d in due {
            match d {
                Due::Server(k) => {
                    if let Some(e) = self.servers.get_mut(&k)
                        && ready(e.txn.poll_timeout())
                    {
                        e.txn.handle_timeout(now);
                    }
                    self.drain_server(&k);
                }
                Due::Client(k) => {
                    if let Some(e) = self.clients.get_mut(&k)
                        && ready(e.txn.poll_timeout())
                    {
                        e.txn.handle_timeout(now);
                    }
                    self.drain_client(now, &k);
                }
                Due::Xs(k) => {
                    if let Some(e) = self.xs.get_mut(&k)
                        && ready(e.machine.poll_timeout())
                    {
                        e.machine.handle(now, XsInput::Tick);
                    }
                    self.drain_xs(now, &k);
                }
                Due::Sx(k) => {
                    if let Some(e) = self.sx.get_mut(&k)
                        && ready(e.machine.poll_timeout())
                    {
                        e.machine.handle(now, SxInput::Tick);
                    }
                    self.drain_sx(now, &k, None);
                }
                Due::Im(id) => {
                    if self.pending_im.get(&id).is_some_and(
                        |p| matches!(p.state, ImState::Handed { respond_at } if respond_at <= now),
                    ) {
                        self.finish_im(now, &id, 200, None);
                    }
                }
                Due::Queue => self.expire_queue(now),
            }
        }
    }

    /// Held MESSAGEs whose hold ran out: 480 (module docs); the stanza leaves the queue
    /// with its answer, so nothing answered is delivered later.
    fn expire_queue(&mut self, now: Instant) {
        let mut expired = Vec::new();
        self.queue.retain(|q| {
            if q.deadline.is_some_and(|d| d <= now) {
                expired.push(q.token);
                false
            } else {
                true
            }
        });
        for token in expired {
            if let Some(id) = self.token_im.remove(&token) {
                self.finish_im(now, &id, 480, None);
            }
        }
    }
}
