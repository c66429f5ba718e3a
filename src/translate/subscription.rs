//! Presence subscription mapping as sans-IO state machines (RFC 8048 §5, RFC 6121 §3,
//! RFC 6665; RFC 7248 §4 as the legacy variant).
//!
//! One machine per (SIP user, XMPP user) pair and direction. Events go in with the
//! current time ([`XmppToSip::handle`], [`SipToXmpp::handle`]); actions come out
//! ([`XmppToSip::poll_action`], …) for the gateway driver to perform; the next timer
//! is [`XmppToSip::poll_timeout`]. Nothing here reads a clock or touches a socket.
//!
//! ```text
//! XMPP user watches SIP user (gateway = SIP subscriber), RFC 8048 §5.2:
//!
//!   Idle --subscribe--> Subscribing --NOTIFY pending--> Pending      (no XMPP output)
//!                          |                              |
//!                          +----NOTIFY active-------------+--> Active
//!                               => `subscribed` (bare), then presence of each
//!                                  open tuple from its resource (PNOT-09)
//!   Active --NOTIFY active + PIDF--> presence per open tuple, `unavailable` for each
//!                                  resource announced before and now gone (PNOT-10)
//!   Active --refresh timer--> probe watcher, re-SUBSCRIBE (RFC 8048 §8.1)
//!   Active --watcher's new presence session--> re-SUBSCRIBE (PSUB-05)
//!   any --unsubscribe--> Unsubscribing (SUBSCRIBE Expires: 0), `unavailable` from
//!                        each announced resource (PSUB-19)
//!                          --final response--> `unsubscribed`, Idle
//!   403/489/603, NOTIFY terminated;reason=rejected  => `unavailable` from each
//!                        announced resource, `unsubscribed`, Terminated (PSUB-18)
//!   423, 481, terminated;reason=deactivated/timeout => re-SUBSCRIBE (transient)
//!
//! SIP user watches XMPP user (gateway = SIP notifier), RFC 8048 §5.3:
//!
//!   Idle --SUBSCRIBE--> 200, NOTIFY pending, `subscribe` (bare->bare) --> Awaiting
//!   Awaiting --`subscribed`--> NOTIFY active --> Active
//!   Awaiting --`unsubscribed`--> NOTIFY terminated;reason=rejected --> Idle
//!   Active --presence--> NOTIFY active + PIDF
//!   Active --re-SUBSCRIBE--> 200, NOTIFY (PIDF if availability known, else empty)
//!   Active --Expires: 0 / lapse--> NOTIFY terminated;reason=timeout (closed),
//!                                  `unavailable`; XMPP subscription kept (D-02)
//!   Idle --SUBSCRIBE Expires: 0--> poll: probe, one NOTIFY terminated (RFC 8048 §7.2)
//! ```
//!
//! Each XMPP watcher has its own SIP subscription, so the SIP notifier does the fan-out
//! to several watchers (PNOT-10) and the SIP user decides on each request (PSUB-13).
//! Left open: a roster/authorisation store shared across pairs (PSUB-14 pre-approvals)
//! and the Retry-After of `probation`/`giveup`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::address::JidParts;
use super::presence::{
    Basic, Pidf, PresenceKind, Tuple, XmppPresence, tuple_id_for_resource, tuple_resource,
    tuple_to_xmpp_presence, xmpp_presence_to_pidf,
};

/// RFC 6665 §4.2.2 / §8.2.3 `Subscription-State` reason codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationReason {
    /// Re-subscribe at once.
    Deactivated,
    /// Re-subscribe later (Retry-After).
    Probation,
    /// Authorisation refused; do not re-subscribe.
    Rejected,
    /// The subscription was not refreshed.
    Timeout,
    /// The notifier could not decide in time.
    Giveup,
    /// The resource no longer exists.
    NoResource,
    /// The resource will never be available.
    Invariant,
    /// An unknown reason, kept verbatim.
    Other(String),
}

impl TerminationReason {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            TerminationReason::Deactivated => "deactivated",
            TerminationReason::Probation => "probation",
            TerminationReason::Rejected => "rejected",
            TerminationReason::Timeout => "timeout",
            TerminationReason::Giveup => "giveup",
            TerminationReason::NoResource => "noresource",
            TerminationReason::Invariant => "invariant",
            TerminationReason::Other(s) => s,
        }
    }

    /// Parse a wire value (case-insensitive).
    pub fn from_name(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "deactivated" => TerminationReason::Deactivated,
            "probation" => TerminationReason::Probation,
            "rejected" => TerminationReason::Rejected,
            "timeout" => TerminationReason::Timeout,
            "giveup" => TerminationReason::Giveup,
            "noresource" => TerminationReason::NoResource,
            "invariant" => TerminationReason::Invariant,
            _ => TerminationReason::Other(s.to_owned()),
        }
    }

    /// RFC 6665 §4.2.2: after these the subscriber should not re-subscribe.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TerminationReason::Rejected
                | TerminationReason::NoResource
                | TerminationReason::Invariant
        )
    }
}

/// RFC 6665 §8.2.3 `Subscription-State` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    /// Awaiting authorisation.
    Pending,
    /// Authorised.
    Active,
    /// Over, with an optional reason.
    Terminated(Option<TerminationReason>),
}

/// Tunables of both machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// Expires the gateway asks for in its SUBSCRIBEs (RFC 8048 §5.2.1: gateway's
    /// choice; RFC 3856 §6.4 suggests 3600 s).
    pub requested_expires: u32,
    /// Largest Expires granted to SIP subscribers.
    pub max_expires: u32,
    /// How long a SIP poll (Expires: 0) waits for the answer to its probe.
    pub poll_timeout: Duration,
    /// Use RFC 7248 §4.3.3 variant (a): a SIP unsubscribe/lapse sends XMPP
    /// `unsubscribe`. Default is RFC 8048 §5.3.3 (long-lived subscription, D-02).
    pub legacy_unsubscribe_on_expiry: bool,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        SubscriptionConfig {
            requested_expires: 3600,
            max_expires: 3600,
            poll_timeout: Duration::from_secs(5),
            legacy_unsubscribe_on_expiry: false,
        }
    }
}

/// PSUB-05: refresh "well before" expiry: a margin of half the granted interval,
/// capped at 10 minutes (3600 s → refresh after 3000 s, 120 s → after 60 s).
pub fn refresh_delay(granted_secs: u32) -> Duration {
    let g = u64::from(granted_secs);
    Duration::from_secs(g - (g / 2).min(600))
}

/// Re-SUBSCRIBEs in a row (481, 423, terminated without a final reason) before the
/// machine gives up, so a misbehaving notifier cannot cause an endless loop.
pub const MAX_RESUBSCRIBES: u8 = 3;

fn presence(kind: PresenceKind) -> XmppPresence {
    XmppPresence::new(kind)
}

// ---------------------------------------------------------------------------------
// XMPP user subscribes to a SIP user.
// ---------------------------------------------------------------------------------

/// Inputs of [`XmppToSip`].
#[derive(Debug, Clone, PartialEq)]
pub enum XsInput {
    /// `<presence type='subscribe'/>` from the watcher (PSUB-01).
    XmppSubscribe,
    /// `<presence type='unsubscribe'/>` from the watcher (PSUB-08).
    XmppUnsubscribe,
    /// The watcher started a presence session (initial presence, PSUB-05).
    XmppSessionStarted,
    /// The watcher's server answered the refresh probe with `unsubscribed` or an
    /// error: the watcher is gone, stop refreshing (PSUB-07, RFC 8048 §8.1).
    ProbeRejected,
    /// Final (or provisional) response to the gateway's SUBSCRIBE.
    SubscribeResponse {
        /// Status code.
        code: u16,
        /// Granted Expires, if given.
        expires: Option<u32>,
        /// `Min-Expires` of a 423 (RFC 3261 §20.23).
        min_expires: Option<u32>,
    },
    /// A NOTIFY in the subscription's dialog. The driver answers it 200 itself.
    Notify {
        /// `Subscription-State`.
        state: SubState,
        /// `expires` parameter of `Subscription-State`.
        expires: Option<u32>,
        /// The PIDF body, if any.
        body: Option<Pidf>,
    },
    /// A timer fired (or any wake-up); the machine checks its deadlines.
    Tick,
}

/// Actions of [`XmppToSip`].
#[derive(Debug, Clone, PartialEq)]
pub enum XsAction {
    /// Send SUBSCRIBE (`Event: presence`, `Accept: application/pidf+xml`) from the
    /// watcher to the SIP user; `new_dialog` when no dialog can be reused.
    SendSubscribe {
        /// Requested Expires; 0 ends the subscription (RFC 6665 §4.1.2.3).
        expires: u32,
        /// Start a new dialog instead of refreshing the current one.
        new_dialog: bool,
    },
    /// Send this presence stanza on the XMPP side.
    SendPresence {
        /// Sender.
        from: JidParts,
        /// Recipient.
        to: JidParts,
        /// Content.
        presence: XmppPresence,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XsState {
    Idle,
    /// SUBSCRIBE sent, neutral until NOTIFY active (RFC 8048 §5.2.1, PSUB-02).
    Subscribing,
    /// NOTIFY pending seen: still neutral.
    Pending,
    Active,
    /// SUBSCRIBE Expires: 0 sent, waiting for its response (RFC 8048 §5.2.3).
    Unsubscribing,
    Terminated,
}

/// X→S subscription for one XMPP watcher and one SIP contact (RFC 8048 §5.2).
#[derive(Debug)]
pub struct XmppToSip {
    cfg: SubscriptionConfig,
    /// The XMPP user (bare JID).
    watcher: JidParts,
    /// The SIP user as an XMPP entity (bare JID).
    contact: JidParts,
    state: XsState,
    /// `subscribed` was sent to the watcher.
    approved: bool,
    /// The SIP user's resources last announced available to the watcher, with that
    /// presence (PNOT-09, PNOT-10; withdrawn one by one, PSUB-18/19; probe answers,
    /// PRB-05).
    available: Vec<(Option<String>, XmppPresence)>,
    refresh_at: Option<Instant>,
    /// Consecutive re-SUBSCRIBEs without an active NOTIFY or 2xx in between.
    resubscribes: u8,
    out: VecDeque<XsAction>,
}

impl XmppToSip {
    /// Both addresses are reduced to bare JIDs (PSUB-15, RFC 6121 §3.1.3).
    pub fn new(cfg: SubscriptionConfig, watcher: &JidParts, contact: &JidParts) -> Self {
        XmppToSip {
            cfg,
            watcher: watcher.bare(),
            contact: contact.bare(),
            state: XsState::Idle,
            approved: false,
            available: Vec::new(),
            refresh_at: None,
            resubscribes: 0,
            out: VecDeque::new(),
        }
    }

    /// True once the watcher has been told `subscribed` and not yet `unsubscribed`.
    pub fn is_active(&self) -> bool {
        self.state == XsState::Active
    }

    /// The SIP user's resources the watcher currently sees as available, with their
    /// last presence; empty while the user is offline or before approval (PRB-05).
    pub fn available(&self) -> &[(Option<String>, XmppPresence)] {
        &self.available
    }

    /// True when nothing is left to do (idle or terminated).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, XsState::Idle | XsState::Terminated)
    }

    /// Next action to perform; drain after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<XsAction> {
        self.out.pop_front()
    }

    /// When to call `handle(now, Tick)` next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.refresh_at
    }

    fn send_to_watcher(&mut self, from: JidParts, p: XmppPresence) {
        self.out.push_back(XsAction::SendPresence {
            from,
            to: self.watcher.clone(),
            presence: p,
        });
    }

    /// Subscription stanzas always come from the contact's bare JID (PSUB-15).
    fn tell(&mut self, kind: PresenceKind) {
        let from = self.contact.clone();
        self.send_to_watcher(from, presence(kind));
    }

    fn subscribe(&mut self, expires: u32, new_dialog: bool) {
        self.out.push_back(XsAction::SendSubscribe {
            expires,
            new_dialog,
        });
    }

    /// Subscribe again after a transient failure, unless that has happened
    /// [`MAX_RESUBSCRIBES`] times in a row: then the subscription is cancelled.
    fn resubscribe(&mut self, expires: u32, new_dialog: bool) {
        if self.resubscribes >= MAX_RESUBSCRIBES {
            self.cancel();
            return;
        }
        self.resubscribes += 1;
        self.subscribe(expires, new_dialog);
    }

    fn contact_with(&self, resource: &Option<String>) -> JidParts {
        let mut j = self.contact.clone();
        j.resource = resource.clone();
        j
    }

    /// `unavailable` from each resource the watcher sees as available (RFC 6121
    /// §3.2.2 when the contact cancels, §3.3.3 when the watcher unsubscribes;
    /// PSUB-18, PSUB-19).
    fn withdraw_presence(&mut self) {
        for (res, _) in std::mem::take(&mut self.available) {
            let from = self.contact_with(&res);
            self.send_to_watcher(from, presence(PresenceKind::Unavailable));
        }
    }

    /// End the subscription towards the watcher: unavailable first if presence was
    /// flowing, then `unsubscribed` (RFC 6121 §3.2.2, PSUB-18).
    fn cancel(&mut self) {
        self.withdraw_presence();
        self.tell(PresenceKind::Unsubscribed);
        self.approved = false;
        self.refresh_at = None;
        self.state = XsState::Terminated;
    }

    /// A NOTIFY body to the watcher (RFC 8048 §6.3). A PIDF document is the
    /// presentity's full state (RFC 3856 §6.6): each open tuple becomes presence from
    /// its resource (tuple id → resource, [`tuple_resource`]), so on approval every
    /// available resource is announced (RFC 6121 §3.1.5, PNOT-09) and every later
    /// change reaches the watcher (RFC 6121 §4.4.2, PNOT-10); a resource announced
    /// before and now closed or gone gets `unavailable` (§4.5.2). A document with no
    /// open tuple while nothing was announced still says so once, as `unavailable`
    /// from its first tuple (PSUB-03: "also send the mapped presence").
    fn forward_body(&mut self, body: &Pidf) {
        let mut now_open: Vec<(Option<String>, XmppPresence)> = Vec::new();
        for t in body.tuples.iter().filter(|t| t.basic == Some(Basic::Open)) {
            let res = tuple_resource(&t.id);
            if now_open.iter().any(|(r, _)| *r == res) {
                continue;
            }
            now_open.push((res, tuple_to_xmpp_presence(t, &body.notes)));
        }
        let before = std::mem::take(&mut self.available);
        for (res, p) in &now_open {
            let from = self.contact_with(res);
            self.send_to_watcher(from, p.clone());
        }
        for (res, _) in before
            .iter()
            .filter(|(r, _)| !now_open.iter().any(|(o, _)| o == r))
        {
            let from = self.contact_with(res);
            self.send_to_watcher(from, presence(PresenceKind::Unavailable));
        }
        if now_open.is_empty()
            && before.is_empty()
            && let Some(t) = body.tuples.first()
        {
            let from = self.contact_with(&tuple_resource(&t.id));
            self.send_to_watcher(from, tuple_to_xmpp_presence(t, &body.notes));
        }
        self.available = now_open;
    }

    /// Feed one event.
    pub fn handle(&mut self, now: Instant, input: XsInput) {
        use XsState::*;
        match input {
            XsInput::XmppSubscribe => match self.state {
                Idle | Terminated => {
                    self.state = Subscribing;
                    self.resubscribes = 0;
                    self.subscribe(self.cfg.requested_expires, true);
                }
                // RFC 6121 §3.1.3 / RFC 8048 §5.3.1: already subscribed, auto-reply.
                Active => self.tell(PresenceKind::Subscribed),
                Subscribing | Pending | Unsubscribing => {}
            },
            XsInput::XmppUnsubscribe => match self.state {
                Subscribing | Pending | Active => {
                    // RFC 8048 §5.2.3: SUBSCRIBE Expires: 0 (MUST), `unsubscribed`
                    // once it is answered (SHOULD). RFC 6121 §3.3.3 (PSUB-19): the
                    // watcher gets `unavailable` from each available resource now.
                    self.state = Unsubscribing;
                    self.refresh_at = None;
                    self.subscribe(0, false);
                    self.withdraw_presence();
                }
                Idle | Terminated | Unsubscribing => {}
            },
            XsInput::XmppSessionStarted => {
                if self.state == Active {
                    self.subscribe(self.cfg.requested_expires, false);
                }
            }
            XsInput::ProbeRejected => {
                if matches!(self.state, Active | Pending | Subscribing) {
                    self.subscribe(0, false);
                    self.available.clear();
                    self.approved = false;
                    self.refresh_at = None;
                    self.state = Terminated;
                }
            }
            XsInput::SubscribeResponse {
                code,
                expires,
                min_expires,
            } => self.on_response(now, code, expires, min_expires),
            XsInput::Notify {
                state,
                expires,
                body,
            } => self.on_notify(now, state, expires, body),
            XsInput::Tick => {
                if self.refresh_at.is_none_or(|t| now < t) {
                    return;
                }
                match self.state {
                    Active => {
                        // RFC 8048 §8.1 (PSUB-07): probe the watcher before refreshing.
                        self.refresh_at = None;
                        let from = self.contact.clone();
                        self.send_to_watcher(from, presence(PresenceKind::Probe));
                        self.subscribe(self.cfg.requested_expires, false);
                    }
                    // RFC 6665 §4.1.2.2: a pending subscription expires too.
                    Subscribing | Pending => {
                        self.refresh_at = None;
                        self.subscribe(self.cfg.requested_expires, false);
                    }
                    Idle | Terminated | Unsubscribing => self.refresh_at = None,
                }
            }
        }
    }

    fn on_response(&mut self, now: Instant, code: u16, expires: Option<u32>, min: Option<u32>) {
        use XsState::*;
        if code < 200 || matches!(self.state, Idle | Terminated) {
            return;
        }
        if self.state == Unsubscribing {
            // Whatever the answer, the subscription is over (RFC 8048 §5.2.3).
            self.tell(PresenceKind::Unsubscribed);
            self.available.clear();
            self.approved = false;
            self.state = Idle;
            return;
        }
        match code {
            200..=299 => {
                let granted = expires.unwrap_or(self.cfg.requested_expires);
                if granted == 0 {
                    return;
                }
                self.resubscribes = 0;
                self.refresh_at = Some(now + refresh_delay(granted));
            }
            // RFC 8048 §5.2.2 (PSUB-06): transient failures keep the subscription.
            423 => {
                let e = min.unwrap_or(self.cfg.requested_expires).max(1);
                self.resubscribe(e, self.state == Subscribing);
            }
            481 => self.resubscribe(self.cfg.requested_expires, true),
            408 | 500..=599 if self.state == Active => {
                self.refresh_at = Some(now + Duration::from_secs(60));
            }
            // 403, 489, 603 and every other failure: permanent (PSUB-06).
            _ => self.cancel(),
        }
    }

    fn on_notify(
        &mut self,
        now: Instant,
        state: SubState,
        expires: Option<u32>,
        body: Option<Pidf>,
    ) {
        use XsState::*;
        if matches!(self.state, Idle | Terminated) {
            return;
        }
        match state {
            SubState::Pending => {
                // RFC 8048 §5.2.1 (PSUB-02): MUST NOT produce anything on XMPP.
                if self.state == Subscribing {
                    self.state = Pending;
                }
            }
            SubState::Active => {
                if self.state == Unsubscribing {
                    return;
                }
                if !self.approved {
                    // RFC 8048 §5.2.1 (PSUB-03): `subscribed` from the bare JID, then
                    // the mapped presence.
                    self.approved = true;
                    self.tell(PresenceKind::Subscribed);
                }
                self.state = Active;
                self.resubscribes = 0;
                if let Some(e) = expires.filter(|e| *e > 0) {
                    self.refresh_at = Some(now + refresh_delay(e));
                }
                if let Some(b) = &body {
                    self.forward_body(b);
                }
            }
            SubState::Terminated(reason) => {
                if self.state == Unsubscribing {
                    return;
                }
                match reason {
                    Some(r) if r.is_final() => self.cancel(),
                    // RFC 6665 §4.2.2: deactivated/timeout/…: subscribe again at once,
                    // keeping the XMPP side unaware (PSUB-05 "looks permanent").
                    _ => {
                        self.refresh_at = None;
                        if self.state != Active {
                            self.state = Subscribing;
                        }
                        self.resubscribe(self.cfg.requested_expires, true);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// SIP user subscribes to an XMPP user.
// ---------------------------------------------------------------------------------

/// Inputs of [`SipToXmpp`].
#[derive(Debug, Clone, PartialEq)]
pub enum SxInput {
    /// SUBSCRIBE (`Event: presence`) from the SIP watcher; initial or refresh.
    Subscribe {
        /// Requested Expires; 0 is an unsubscribe or a poll (RFC 6665 §4.2.1.4).
        expires: u32,
    },
    /// `<presence type='subscribed'/>` from the XMPP contact.
    XmppSubscribed,
    /// `<presence type='unsubscribed'/>` from the XMPP contact.
    XmppUnsubscribed,
    /// Available or unavailable presence from the contact (`from` is its full JID).
    XmppPresence {
        /// Sender (full JID).
        from: JidParts,
        /// Content.
        presence: XmppPresence,
    },
    /// A timer fired (or any wake-up).
    Tick,
}

/// Actions of [`SipToXmpp`].
#[derive(Debug, Clone, PartialEq)]
pub enum SxAction {
    /// Final response to the SUBSCRIBE just handled, with the granted Expires.
    RespondSubscribe {
        /// Always 200: RFC 6665 §8.3.1 deprecates 202 for SUBSCRIBE ("MUST NOT send a 202
        /// response"); the pending state travels in the NOTIFY's Subscription-State.
        code: u16,
        /// Granted Expires.
        expires: u32,
    },
    /// NOTIFY the SIP watcher; `body` `None` is an empty NOTIFY (Content-Length 0).
    SendNotify {
        /// `Subscription-State`.
        state: SubState,
        /// Remaining seconds for `Subscription-State: …;expires=`.
        expires: Option<u32>,
        /// PIDF body, `None` for an empty NOTIFY.
        body: Option<Pidf>,
    },
    /// Send this presence stanza on the XMPP side.
    SendPresence {
        /// Sender (bare).
        from: JidParts,
        /// Recipient (bare).
        to: JidParts,
        /// Content.
        presence: XmppPresence,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SxState {
    Idle,
    AwaitingApproval { expires_at: Instant },
    Active { expires_at: Instant },
    Polling { deadline: Instant },
}

/// S→X subscription for one SIP watcher and one XMPP contact (RFC 8048 §5.3, §7.2).
#[derive(Debug)]
pub struct SipToXmpp {
    cfg: SubscriptionConfig,
    /// The SIP user as an XMPP entity (bare JID).
    watcher: JidParts,
    /// The XMPP user (bare JID).
    contact: JidParts,
    state: SxState,
    /// The XMPP subscription exists (the contact said `subscribed`).
    approved: bool,
    /// Last available presence per resource (PNOT-08: one tuple each).
    available: Vec<(Option<String>, XmppPresence)>,
    /// The last resource that went unavailable, when none is available.
    closed: Option<Option<String>>,
    out: VecDeque<SxAction>,
}

impl SipToXmpp {
    /// Both addresses are reduced to bare JIDs (PSUB-15).
    pub fn new(cfg: SubscriptionConfig, watcher: &JidParts, contact: &JidParts) -> Self {
        SipToXmpp {
            cfg,
            watcher: watcher.bare(),
            contact: contact.bare(),
            state: SxState::Idle,
            approved: false,
            available: Vec::new(),
            closed: None,
            out: VecDeque::new(),
        }
    }

    /// True while a SIP subscription is established and approved.
    pub fn is_active(&self) -> bool {
        matches!(self.state, SxState::Active { .. })
    }

    /// True when the XMPP contact has approved the subscription.
    pub fn is_approved(&self) -> bool {
        self.approved
    }

    /// Next action to perform; drain after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<SxAction> {
        self.out.pop_front()
    }

    /// When to call `handle(now, Tick)` next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            SxState::Idle => None,
            SxState::AwaitingApproval { expires_at } | SxState::Active { expires_at } => {
                Some(expires_at)
            }
            SxState::Polling { deadline } => Some(deadline),
        }
    }

    fn send_to_contact(&mut self, kind: PresenceKind) {
        self.out.push_back(SxAction::SendPresence {
            from: self.watcher.clone(),
            to: self.contact.clone(),
            presence: presence(kind),
        });
    }

    fn notify(&mut self, state: SubState, expires: Option<u32>, body: Option<Pidf>) {
        self.out.push_back(SxAction::SendNotify {
            state,
            expires,
            body,
        });
    }

    fn contact_with(&self, resource: &Option<String>) -> JidParts {
        let mut j = self.contact.clone();
        j.resource = resource.clone();
        j
    }

    /// The PIDF for what is known of the contact (PSUB-11): one open tuple per
    /// available resource, a closed tuple after the last one left, `None` if nothing
    /// is known.
    fn body(&self) -> Option<Pidf> {
        let mut tuples: Vec<Tuple> = Vec::new();
        let mut entity = None;
        for (res, p) in &self.available {
            match xmpp_presence_to_pidf(p, &self.contact_with(res)) {
                Ok(Some(pidf)) => {
                    entity.get_or_insert(pidf.entity);
                    tuples.extend(pidf.tuples);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "presence not mappable to PIDF"),
            }
        }
        if tuples.is_empty()
            && let Some(res) = &self.closed
        {
            let p = presence(PresenceKind::Unavailable);
            match xmpp_presence_to_pidf(&p, &self.contact_with(res)) {
                Ok(Some(pidf)) => return Some(pidf),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "presence not mappable to PIDF"),
            }
        }
        Some(Pidf {
            entity: entity?,
            tuples,
            notes: Vec::new(),
        })
    }

    /// A closed document for the final NOTIFY of an ended subscription.
    fn closed_body(&self) -> Option<Pidf> {
        let entity = xmpp_presence_to_pidf(&presence(PresenceKind::Unavailable), &self.contact)
            .ok()
            .flatten()?
            .entity;
        Some(Pidf {
            entity,
            tuples: vec![Tuple::new(tuple_id_for_resource(None), Basic::Closed)],
            notes: Vec::new(),
        })
    }

    fn remaining(now: Instant, at: Instant) -> Option<u32> {
        u32::try_from(at.saturating_duration_since(now).as_secs()).ok()
    }

    /// The SIP subscription ends by Expires: 0 or by lapsing (RFC 8048 §5.3.3, D-02).
    fn end_sip_subscription(&mut self) {
        if self.cfg.legacy_unsubscribe_on_expiry {
            // RFC 7248 §4.3.3 variant (a): temporary subscription.
            self.notify(
                SubState::Terminated(Some(TerminationReason::Timeout)),
                None,
                None,
            );
            self.send_to_contact(PresenceKind::Unsubscribe);
            self.approved = false;
        } else {
            // RFC 8048 §5.3.3: closed, terminated;reason=timeout, `unavailable`; the
            // XMPP subscription stays.
            let body = self.closed_body();
            self.notify(
                SubState::Terminated(Some(TerminationReason::Timeout)),
                None,
                body,
            );
            self.send_to_contact(PresenceKind::Unavailable);
        }
        self.state = SxState::Idle;
    }

    /// Feed one event.
    pub fn handle(&mut self, now: Instant, input: SxInput) {
        match input {
            SxInput::Subscribe { expires } => self.on_subscribe(now, expires),
            SxInput::XmppSubscribed => {
                // RFC 6121 §3.1.6 (PSUB-16): honoured only while a request is pending.
                if let SxState::AwaitingApproval { expires_at } = self.state {
                    self.approved = true;
                    self.state = SxState::Active { expires_at };
                    // RFC 8048 §5.3.1 (PSUB-10): NOTIFY active, PIDF if known.
                    let body = self.body();
                    self.notify(SubState::Active, Self::remaining(now, expires_at), body);
                }
            }
            SxInput::XmppUnsubscribed => {
                self.approved = false;
                self.available.clear();
                self.closed = None;
                // RFC 8048 §5.3.1 (PSUB-10) and RFC 6121 §3.2.3 (PSUB-17): an empty
                // NOTIFY terminated;reason=rejected; also the answer to a poll whose
                // probe was refused. Unsolicited (Idle): ignored silently.
                if self.state != SxState::Idle {
                    self.notify(
                        SubState::Terminated(Some(TerminationReason::Rejected)),
                        None,
                        None,
                    );
                    self.state = SxState::Idle;
                }
            }
            SxInput::XmppPresence { from, presence } => self.on_presence(now, from, presence),
            SxInput::Tick => match self.state {
                SxState::AwaitingApproval { expires_at } | SxState::Active { expires_at }
                    if now >= expires_at =>
                {
                    self.end_sip_subscription();
                }
                SxState::Polling { deadline } if now >= deadline => {
                    let body = self.body();
                    self.notify(
                        SubState::Terminated(Some(TerminationReason::Timeout)),
                        None,
                        body,
                    );
                    self.state = SxState::Idle;
                }
                _ => {}
            },
        }
    }

    fn on_subscribe(&mut self, now: Instant, expires: u32) {
        let granted = expires.min(self.cfg.max_expires);
        if granted == 0 {
            self.out.push_back(SxAction::RespondSubscribe {
                code: 200,
                expires: 0,
            });
            match self.state {
                SxState::AwaitingApproval { .. } | SxState::Active { .. } => {
                    self.end_sip_subscription();
                }
                // RFC 8048 §7.2 (PRB-02): a poll. Answer from what is known, else probe.
                SxState::Idle => match self.body() {
                    Some(b) => {
                        self.notify(
                            SubState::Terminated(Some(TerminationReason::Timeout)),
                            None,
                            Some(b),
                        );
                    }
                    None => {
                        self.send_to_contact(PresenceKind::Probe);
                        self.state = SxState::Polling {
                            deadline: now + self.cfg.poll_timeout,
                        };
                    }
                },
                SxState::Polling { .. } => {}
            }
            return;
        }
        let expires_at = now + Duration::from_secs(u64::from(granted));
        match self.state {
            SxState::Idle | SxState::Polling { .. } if self.approved => {
                // The XMPP subscription outlived the last SIP dialog (D-02 (b)).
                self.out.push_back(SxAction::RespondSubscribe {
                    code: 200,
                    expires: granted,
                });
                self.state = SxState::Active { expires_at };
                let body = self.body();
                if body.is_none() {
                    self.send_to_contact(PresenceKind::Probe);
                }
                self.notify(SubState::Active, Some(granted), body);
            }
            SxState::Idle | SxState::Polling { .. } => {
                // RFC 8048 §5.3.1 (PSUB-09): `subscribe` bare → bare; the SIP side
                // hears pending until the contact decides (RFC 6665 §4.2.1).
                self.out.push_back(SxAction::RespondSubscribe {
                    code: 200,
                    expires: granted,
                });
                self.notify(SubState::Pending, Some(granted), None);
                self.send_to_contact(PresenceKind::Subscribe);
                self.state = SxState::AwaitingApproval { expires_at };
            }
            SxState::AwaitingApproval { .. } => {
                // PSUB-11: every refresh gets a NOTIFY.
                self.out.push_back(SxAction::RespondSubscribe {
                    code: 200,
                    expires: granted,
                });
                self.notify(SubState::Pending, Some(granted), None);
                self.state = SxState::AwaitingApproval { expires_at };
            }
            SxState::Active { .. } => {
                self.out.push_back(SxAction::RespondSubscribe {
                    code: 200,
                    expires: granted,
                });
                let body = self.body();
                self.notify(SubState::Active, Some(granted), body);
                self.state = SxState::Active { expires_at };
            }
        }
    }

    fn on_presence(&mut self, now: Instant, from: JidParts, p: XmppPresence) {
        // RFC 8048 §6 (PNOT-01): only availability is a notification.
        if !p.kind.is_notification() || from.bare() != self.contact {
            return;
        }
        // RFC 6121 §4.4.3 / §8.5 (PNOT-11): presence from someone not watched is
        // ignored without being stored.
        let watched = self.approved || !matches!(self.state, SxState::Idle);
        if !watched {
            return;
        }
        let res = from.resource.clone();
        self.available.retain(|(r, _)| *r != res);
        if p.kind == PresenceKind::Available {
            self.available.push((res, p));
            self.closed = None;
        } else if self.available.is_empty() {
            self.closed = Some(res);
        }
        match self.state {
            SxState::Active { expires_at } => {
                let body = self.body();
                self.notify(SubState::Active, Self::remaining(now, expires_at), body);
            }
            SxState::Polling { .. } => {
                let body = self.body();
                self.notify(
                    SubState::Terminated(Some(TerminationReason::Timeout)),
                    None,
                    body,
                );
                self.state = SxState::Idle;
            }
            SxState::Idle | SxState::AwaitingApproval { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::presence::Show;
    use rstest::rstest;

    fn juliet() -> JidParts {
        JidParts::new(Some("juliet"), "xmpp.test", Some("balcony"))
    }
    fn romeo() -> JidParts {
        JidParts::new(Some("romeo"), "lync.test", Some("pc"))
    }
    fn bare(j: JidParts) -> JidParts {
        j.bare()
    }

    fn pidf(basic: Basic, show: Option<Show>, id: &str) -> Pidf {
        let mut t = Tuple::new(id, basic);
        t.show = show;
        Pidf {
            entity: "pres:romeo@lync.test".into(),
            tuples: vec![t],
            notes: vec![],
        }
    }

    fn xs_drain(m: &mut XmppToSip) -> Vec<XsAction> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }
    fn sx_drain(m: &mut SipToXmpp) -> Vec<SxAction> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn xs_presence(kind: PresenceKind) -> XsAction {
        XsAction::SendPresence {
            from: bare(romeo()),
            to: bare(juliet()),
            presence: XmppPresence::new(kind),
        }
    }

    fn xs_active(t0: Instant) -> XmppToSip {
        let mut m = XmppToSip::new(SubscriptionConfig::default(), &juliet(), &romeo());
        m.handle(t0, XsInput::XmppSubscribe);
        m.handle(
            t0,
            XsInput::SubscribeResponse {
                code: 200,
                expires: Some(120),
                min_expires: None,
            },
        );
        m.handle(
            t0,
            XsInput::Notify {
                state: SubState::Active,
                expires: Some(120),
                body: Some(pidf(Basic::Open, None, "ID-pc")),
            },
        );
        let _ = xs_drain(&mut m);
        m
    }

    /// Presence of `kind` from romeo's resource `res` to juliet.
    fn xs_from(res: Option<&str>, kind: PresenceKind) -> XsAction {
        XsAction::SendPresence {
            from: JidParts::new(Some("romeo"), "lync.test", res),
            to: bare(juliet()),
            presence: XmppPresence::new(kind),
        }
    }

    #[test]
    fn x_to_s_subscribe_pending_active() {
        // PSUB-01, PSUB-02, PSUB-03, PSUB-15.
        let t0 = Instant::now();
        let mut m = XmppToSip::new(SubscriptionConfig::default(), &juliet(), &romeo());
        m.handle(t0, XsInput::XmppSubscribe);
        assert_eq!(
            xs_drain(&mut m),
            vec![XsAction::SendSubscribe {
                expires: 3600,
                new_dialog: true
            }]
        );
        m.handle(
            t0,
            XsInput::SubscribeResponse {
                code: 202,
                expires: Some(3600),
                min_expires: None,
            },
        );
        m.handle(
            t0,
            XsInput::Notify {
                state: SubState::Pending,
                expires: Some(3600),
                body: None,
            },
        );
        assert_eq!(xs_drain(&mut m), vec![], "pending NOTIFY must stay silent");
        assert!(!m.is_active());
        m.handle(
            t0,
            XsInput::Notify {
                state: SubState::Active,
                expires: Some(3600),
                body: Some(pidf(Basic::Open, Some(Show::Away), "ID-pc")),
            },
        );
        let mut avail = XmppPresence::new(PresenceKind::Available);
        avail.show = Some(Show::Away);
        assert_eq!(
            xs_drain(&mut m),
            vec![
                xs_presence(PresenceKind::Subscribed),
                XsAction::SendPresence {
                    from: romeo(),
                    to: bare(juliet()),
                    presence: avail
                }
            ]
        );
        assert!(m.is_active());
        // A later NOTIFY is only a notification.
        m.handle(
            t0,
            XsInput::Notify {
                state: SubState::Active,
                expires: None,
                body: Some(pidf(Basic::Closed, None, "ID-pc")),
            },
        );
        assert_eq!(
            xs_drain(&mut m),
            vec![XsAction::SendPresence {
                from: romeo(),
                to: bare(juliet()),
                presence: XmppPresence::new(PresenceKind::Unavailable)
            }]
        );
    }

    #[test]
    fn x_to_s_duplicate_subscribe_is_auto_approved() {
        // PSUB-14.
        let t0 = Instant::now();
        let mut m = xs_active(t0);
        m.handle(t0, XsInput::XmppSubscribe);
        assert_eq!(
            xs_drain(&mut m),
            vec![xs_presence(PresenceKind::Subscribed)]
        );
    }

    #[test]
    fn x_to_s_unsubscribe_after_200() {
        // PSUB-08 (RFC 8048 §5.2.3: `unsubscribed` after the 200 OK).
        let t0 = Instant::now();
        let mut m = xs_active(t0);
        m.handle(t0, XsInput::XmppUnsubscribe);
        // PSUB-19 (RFC 6121 §3.3.3): unavailable from each available resource at once.
        assert_eq!(
            xs_drain(&mut m),
            vec![
                XsAction::SendSubscribe {
                    expires: 0,
                    new_dialog: false
                },
                xs_from(Some("pc"), PresenceKind::Unavailable)
            ]
        );
        assert_eq!(m.available(), &[]);
        m.handle(
            t0,
            XsInput::Notify {
                state: SubState::Terminated(None),
                expires: None,
                body: None,
            },
        );
        assert_eq!(xs_drain(&mut m), vec![]);
        m.handle(
            t0,
            XsInput::SubscribeResponse {
                code: 200,
                expires: Some(0),
                min_expires: None,
            },
        );
        assert_eq!(
            xs_drain(&mut m),
            vec![xs_presence(PresenceKind::Unsubscribed)]
        );
        assert!(m.is_closed());
    }

    // PSUB-06: response classes to a refresh.
    #[rstest]
    #[case::forbidden(403, true)]
    #[case::bad_event(489, true)]
    #[case::decline(603, true)]
    #[case::not_found(404, true)]
    #[case::interval_too_brief(423, false)]
    #[case::no_dialog(481, false)]
    #[case::timeout(408, false)]
    #[case::server_error(503, false)]
    fn x_to_s_refresh_failures(#[case] code: u16, #[case] permanent: bool) {
        let t0 = Instant::now();
        let mut m = xs_active(t0);
        m.handle(
            t0,
            XsInput::SubscribeResponse {
                code,
                expires: None,
                min_expires: Some(600),
            },
        );
        let out = xs_drain(&mut m);
        let told = out.contains(&xs_presence(PresenceKind::Unsubscribed));
        assert_eq!(told, permanent, "{code}: {out:?}");
        assert_eq!(m.is_active(), !permanent);
        match code {
            423 => assert_eq!(
                out,
                vec![XsAction::SendSubscribe {
                    expires: 600,
                    new_dialog: false
                }]
            ),
            481 => assert_eq!(
                out,
                vec![XsAction::SendSubscribe {
                    expires: 3600,
                    new_dialog: true
                }]
            ),
            _ => {}
        }
        if permanent {
            // Unavailable from the available resource first, then unsubscribed from
            // the bare JID (RFC 6121 §3.2.2, PSUB-18).
            assert_eq!(
                out,
                vec![
                    xs_from(Some("pc"), PresenceKind::Unavailable),
                    xs_presence(PresenceKind::Unsubscribed)
                ]
            );
        }
    }

    #[rstest]
    #[case(TerminationReason::Rejected, true)]
    #[case(TerminationReason::NoResource, true)]
    #[case(TerminationReason::Invariant, true)]
    #[case(TerminationReason::Deactivated, false)]
    #[case(TerminationReason::Timeout, false)]
    #[case(TerminationReason::Probation, false)]
    fn x_to_s_terminated_notify(#[case] reason: TerminationReason, #[case] final_: bool) {
        let t0 = Instant::now();
        let mut m = xs_active(t0);
        m.handle(
            t0,
            XsInput::Notify {
                state: SubState::Terminated(Some(reason)),
                expires: None,
                body: None,
            },
        );
        let out = xs_drain(&mut m);
        if final_ {
            assert_eq!(out.last(), Some(&xs_presence(PresenceKind::Unsubscribed)));
        } else {
            assert_eq!(
                out,
                vec![XsAction::SendSubscribe {
                    expires: 3600,
                    new_dialog: true
                }]
            );
            assert!(m.is_active());
        }
    }

    #[test]
    fn x_to_s_pending_then_rejected_denies_request() {
        let t0 = Instant::now();
        let mut m = XmppToSip::new(SubscriptionConfig::default(), &juliet(), &romeo());
        m.handle(t0, XsInput::XmppSubscribe);
        m.handle(
            t0,
            XsInput::Notify {
                state: SubState::Pending,
                expires: None,
                body: None,
            },
        );
        let _ = xs_drain(&mut m);
        m.handle(
            t0,
            XsInput::Notify {
                state: SubState::Terminated(Some(TerminationReason::Rejected)),
                expires: None,
                body: None,
            },
        );
        // Never approved: no unavailable, just the denial.
        assert_eq!(
            xs_drain(&mut m),
            vec![xs_presence(PresenceKind::Unsubscribed)]
        );
    }

    #[test]
    fn x_to_s_refresh_probes_first_and_stops_when_rejected() {
        // PSUB-05, PSUB-07.
        let t0 = Instant::now();
        let mut m = xs_active(t0);
        let due = m.poll_timeout().expect("refresh timer");
        assert!(
            due > t0 && due < t0 + Duration::from_secs(120),
            "{:?}",
            due - t0
        );
        m.handle(due - Duration::from_millis(1), XsInput::Tick);
        assert_eq!(xs_drain(&mut m), vec![]);
        m.handle(due, XsInput::Tick);
        assert_eq!(
            xs_drain(&mut m),
            vec![
                xs_presence(PresenceKind::Probe),
                XsAction::SendSubscribe {
                    expires: 3600,
                    new_dialog: false
                }
            ]
        );
        m.handle(due, XsInput::ProbeRejected);
        assert_eq!(
            xs_drain(&mut m),
            vec![XsAction::SendSubscribe {
                expires: 0,
                new_dialog: false
            }]
        );
        assert!(m.is_closed());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn x_to_s_resubscribe_loop_is_bounded() {
        let t0 = Instant::now();
        let mut m = xs_active(t0);
        let mut subscribes = 0;
        for _ in 0..10 {
            m.handle(
                t0,
                XsInput::Notify {
                    state: SubState::Terminated(Some(TerminationReason::Deactivated)),
                    expires: None,
                    body: None,
                },
            );
            for a in xs_drain(&mut m) {
                if matches!(a, XsAction::SendSubscribe { .. }) {
                    subscribes += 1;
                }
            }
        }
        assert_eq!(subscribes, usize::from(MAX_RESUBSCRIBES));
        assert!(m.is_closed());
    }

    #[test]
    fn x_to_s_pending_subscription_is_refreshed_without_probe() {
        let t0 = Instant::now();
        let mut m = XmppToSip::new(SubscriptionConfig::default(), &juliet(), &romeo());
        m.handle(t0, XsInput::XmppSubscribe);
        m.handle(
            t0,
            XsInput::SubscribeResponse {
                code: 202,
                expires: Some(120),
                min_expires: None,
            },
        );
        m.handle(
            t0,
            XsInput::Notify {
                state: SubState::Pending,
                expires: None,
                body: None,
            },
        );
        let _ = xs_drain(&mut m);
        let due = m.poll_timeout().expect("refresh timer");
        m.handle(due, XsInput::Tick);
        assert_eq!(
            xs_drain(&mut m),
            vec![XsAction::SendSubscribe {
                expires: 3600,
                new_dialog: false
            }]
        );
    }

    #[test]
    fn x_to_s_session_start_refreshes() {
        let t0 = Instant::now();
        let mut m = xs_active(t0);
        m.handle(t0, XsInput::XmppSessionStarted);
        assert_eq!(
            xs_drain(&mut m),
            vec![XsAction::SendSubscribe {
                expires: 3600,
                new_dialog: false
            }]
        );
    }

    fn two_tuples(a: (&str, Basic), b: (&str, Basic)) -> Pidf {
        Pidf {
            entity: "pres:romeo@lync.test".into(),
            tuples: vec![Tuple::new(a.0, a.1), Tuple::new(b.0, b.1)],
            notes: vec![],
        }
    }

    fn xs_notify(m: &mut XmppToSip, t0: Instant, state: SubState, body: Pidf) -> Vec<XsAction> {
        m.handle(
            t0,
            XsInput::Notify {
                state,
                expires: None,
                body: Some(body),
            },
        );
        xs_drain(m)
    }

    #[test]
    fn x_to_s_approval_announces_every_available_resource() {
        // PNOT-09 (RFC 6121 §3.1.5): `subscribed`, then presence of each open tuple from
        // its resource; a closed tuple is not announced. PSUB-13: pending stays silent.
        let t0 = Instant::now();
        let mut m = XmppToSip::new(SubscriptionConfig::default(), &juliet(), &romeo());
        m.handle(t0, XsInput::XmppSubscribe);
        let _ = xs_drain(&mut m);
        let body = two_tuples(("ID-desk", Basic::Open), ("t2", Basic::Closed));
        assert_eq!(
            xs_notify(&mut m, t0, SubState::Pending, body.clone()),
            vec![]
        );
        let mut three = body;
        three.tuples.push(Tuple::new("ID-phone", Basic::Open));
        assert_eq!(
            xs_notify(&mut m, t0, SubState::Active, three),
            vec![
                xs_presence(PresenceKind::Subscribed),
                xs_from(Some("desk"), PresenceKind::Available),
                xs_from(Some("phone"), PresenceKind::Available),
            ]
        );
        assert_eq!(m.available().len(), 2);
    }

    #[test]
    fn x_to_s_later_changes_and_sign_out_reach_the_watcher() {
        // PNOT-10 (RFC 6121 §4.4.2, §4.5.2): a change is presence from that resource; a
        // resource that closes or leaves the document gets `unavailable`.
        let t0 = Instant::now();
        let mut m = xs_active(t0);
        let out = xs_notify(
            &mut m,
            t0,
            SubState::Active,
            two_tuples(("ID-pc", Basic::Open), ("t2", Basic::Open)),
        );
        assert_eq!(
            out,
            vec![
                xs_from(Some("pc"), PresenceKind::Available),
                xs_from(Some("t2"), PresenceKind::Available),
            ]
        );
        let out = xs_notify(&mut m, t0, SubState::Active, pidf(Basic::Open, None, "t2"));
        assert_eq!(
            out,
            vec![
                xs_from(Some("t2"), PresenceKind::Available),
                xs_from(Some("pc"), PresenceKind::Unavailable),
            ]
        );
        let out = xs_notify(
            &mut m,
            t0,
            SubState::Active,
            pidf(Basic::Closed, None, "t2"),
        );
        assert_eq!(out, vec![xs_from(Some("t2"), PresenceKind::Unavailable)]);
        assert_eq!(m.available(), &[]);
        // Still closed: said once more, from the tuple's resource.
        let out = xs_notify(
            &mut m,
            t0,
            SubState::Active,
            pidf(Basic::Closed, None, "t2"),
        );
        assert_eq!(out, vec![xs_from(Some("t2"), PresenceKind::Unavailable)]);
        assert!(m.is_active());
    }

    #[test]
    fn x_to_s_revocation_withdraws_each_resource_then_unsubscribed() {
        // PSUB-18 (RFC 6121 §3.2.2).
        let t0 = Instant::now();
        let mut m = xs_active(t0);
        let _ = xs_notify(
            &mut m,
            t0,
            SubState::Active,
            two_tuples(("ID-pc", Basic::Open), ("ID-phone", Basic::Open)),
        );
        let out = xs_notify(
            &mut m,
            t0,
            SubState::Terminated(Some(TerminationReason::Rejected)),
            pidf(Basic::Closed, None, "ID-pc"),
        );
        assert_eq!(
            out,
            vec![
                xs_from(Some("pc"), PresenceKind::Unavailable),
                xs_from(Some("phone"), PresenceKind::Unavailable),
                xs_presence(PresenceKind::Unsubscribed),
            ]
        );
        assert!(m.is_closed());
    }

    #[rstest]
    #[case(120, 60)]
    #[case(3600, 3000)]
    #[case(1, 1)]
    #[case(0, 0)]
    fn refresh_is_well_before_expiry(#[case] granted: u32, #[case] secs: u64) {
        assert_eq!(refresh_delay(granted), Duration::from_secs(secs));
    }

    // ----- S→X -----

    fn sx_to_contact(kind: PresenceKind) -> SxAction {
        SxAction::SendPresence {
            from: bare(romeo()),
            to: bare(juliet()),
            presence: XmppPresence::new(kind),
        }
    }

    fn sx_active(t0: Instant, cfg: SubscriptionConfig) -> SipToXmpp {
        let mut m = SipToXmpp::new(cfg, &romeo(), &juliet());
        m.handle(t0, SxInput::Subscribe { expires: 600 });
        m.handle(t0, SxInput::XmppSubscribed);
        let _ = sx_drain(&mut m);
        m
    }

    #[test]
    fn s_to_x_subscribe_and_approve() {
        // PSUB-09, PSUB-10, PSUB-15.
        let t0 = Instant::now();
        let mut m = SipToXmpp::new(SubscriptionConfig::default(), &romeo(), &juliet());
        m.handle(t0, SxInput::Subscribe { expires: 7200 });
        assert_eq!(
            sx_drain(&mut m),
            vec![
                SxAction::RespondSubscribe {
                    code: 200,
                    expires: 3600
                },
                SxAction::SendNotify {
                    state: SubState::Pending,
                    expires: Some(3600),
                    body: None
                },
                sx_to_contact(PresenceKind::Subscribe),
            ]
        );
        m.handle(t0, SxInput::XmppSubscribed);
        assert_eq!(
            sx_drain(&mut m),
            vec![SxAction::SendNotify {
                state: SubState::Active,
                expires: Some(3600),
                body: None
            }]
        );
        assert!(m.is_active());
    }

    #[test]
    fn s_to_x_denied() {
        // PSUB-10: empty NOTIFY terminated;reason=rejected.
        let t0 = Instant::now();
        let mut m = SipToXmpp::new(SubscriptionConfig::default(), &romeo(), &juliet());
        m.handle(t0, SxInput::Subscribe { expires: 600 });
        let _ = sx_drain(&mut m);
        m.handle(t0, SxInput::XmppUnsubscribed);
        assert_eq!(
            sx_drain(&mut m),
            vec![SxAction::SendNotify {
                state: SubState::Terminated(Some(TerminationReason::Rejected)),
                expires: None,
                body: None
            }]
        );
        assert!(!m.is_active());
    }

    #[test]
    fn s_to_x_unsolicited_stanzas_are_ignored() {
        // PSUB-16, PSUB-17, PNOT-11.
        let t0 = Instant::now();
        let mut m = SipToXmpp::new(SubscriptionConfig::default(), &romeo(), &juliet());
        m.handle(t0, SxInput::XmppSubscribed);
        m.handle(t0, SxInput::XmppUnsubscribed);
        m.handle(
            t0,
            SxInput::XmppPresence {
                from: juliet(),
                presence: XmppPresence::new(PresenceKind::Available),
            },
        );
        assert_eq!(sx_drain(&mut m), vec![]);
        assert!(!m.is_approved());
        // Nothing was stored: a poll has to probe.
        m.handle(t0, SxInput::Subscribe { expires: 0 });
        assert_eq!(
            sx_drain(&mut m),
            vec![
                SxAction::RespondSubscribe {
                    code: 200,
                    expires: 0
                },
                sx_to_contact(PresenceKind::Probe)
            ]
        );
    }

    #[test]
    fn s_to_x_presence_notifies_and_refresh_carries_it() {
        // PNOT-02, PSUB-11, PNOT-08.
        let t0 = Instant::now();
        let mut m = sx_active(t0, SubscriptionConfig::default());
        let mut away = XmppPresence::new(PresenceKind::Available);
        away.show = Some(Show::Away);
        m.handle(
            t0,
            SxInput::XmppPresence {
                from: juliet(),
                presence: away.clone(),
            },
        );
        let out = sx_drain(&mut m);
        let [
            SxAction::SendNotify {
                state: SubState::Active,
                body: Some(b),
                ..
            },
        ] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!(b.tuples.len(), 1);
        assert_eq!(b.tuples[0].show, Some(Show::Away));
        assert_eq!(b.tuples[0].id, "ID-balcony");
        // A second resource adds a tuple; its unavailability removes it again.
        let mut phone = juliet();
        phone.resource = Some("phone".into());
        m.handle(
            t0,
            SxInput::XmppPresence {
                from: phone.clone(),
                presence: XmppPresence::new(PresenceKind::Available),
            },
        );
        m.handle(
            t0,
            SxInput::XmppPresence {
                from: phone,
                presence: XmppPresence::new(PresenceKind::Unavailable),
            },
        );
        let out = sx_drain(&mut m);
        let counts: Vec<usize> = out
            .iter()
            .map(|a| match a {
                SxAction::SendNotify { body: Some(b), .. } => b.tuples.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(counts, vec![2, 1]);
        // Refresh: 200 and a NOTIFY carrying what is known.
        m.handle(t0, SxInput::Subscribe { expires: 600 });
        let out = sx_drain(&mut m);
        assert_eq!(
            out.first(),
            Some(&SxAction::RespondSubscribe {
                code: 200,
                expires: 600
            })
        );
        assert!(matches!(
            out.get(1),
            Some(SxAction::SendNotify { state: SubState::Active, body: Some(b), .. }) if b.tuples[0].show == Some(Show::Away)
        ));
        // Non-notification presence is not forwarded (PNOT-01).
        m.handle(
            t0,
            SxInput::XmppPresence {
                from: juliet(),
                presence: XmppPresence::new(PresenceKind::Probe),
            },
        );
        assert_eq!(sx_drain(&mut m), vec![]);
    }

    #[test]
    fn s_to_x_refresh_before_presence_is_empty() {
        // PSUB-11: no availability known yet → empty NOTIFY.
        let t0 = Instant::now();
        let mut m = sx_active(t0, SubscriptionConfig::default());
        m.handle(t0, SxInput::Subscribe { expires: 600 });
        assert_eq!(
            sx_drain(&mut m),
            vec![
                SxAction::RespondSubscribe {
                    code: 200,
                    expires: 600
                },
                SxAction::SendNotify {
                    state: SubState::Active,
                    expires: Some(600),
                    body: None
                }
            ]
        );
    }

    // D-02 / PSUB-12: Expires: 0 and lapse, RFC 8048 and RFC 7248 (legacy) variants.
    #[rstest]
    #[case::expires0_rfc8048(false, false)]
    #[case::expires0_legacy(false, true)]
    #[case::lapse_rfc8048(true, false)]
    #[case::lapse_legacy(true, true)]
    fn s_to_x_sip_unsubscribe(#[case] lapse: bool, #[case] legacy: bool) {
        let t0 = Instant::now();
        let cfg = SubscriptionConfig {
            legacy_unsubscribe_on_expiry: legacy,
            ..SubscriptionConfig::default()
        };
        let mut m = sx_active(t0, cfg);
        if lapse {
            let at = m.poll_timeout().expect("expiry timer");
            assert_eq!(at, t0 + Duration::from_secs(600));
            m.handle(at, SxInput::Tick);
        } else {
            m.handle(t0, SxInput::Subscribe { expires: 0 });
        }
        let mut out = sx_drain(&mut m);
        if !lapse {
            assert_eq!(
                out.remove(0),
                SxAction::RespondSubscribe {
                    code: 200,
                    expires: 0
                }
            );
        }
        let [
            SxAction::SendNotify {
                state: SubState::Terminated(Some(TerminationReason::Timeout)),
                body,
                ..
            },
            xmpp,
        ] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        if legacy {
            assert_eq!(body, &None);
            assert_eq!(xmpp, &sx_to_contact(PresenceKind::Unsubscribe));
            assert!(!m.is_approved());
        } else {
            let b = body.as_ref().expect("closed body");
            assert_eq!(b.tuples[0].basic, Some(Basic::Closed));
            assert_eq!(xmpp, &sx_to_contact(PresenceKind::Unavailable));
            assert!(m.is_approved(), "XMPP subscription is long-lived");
        }
        assert!(!m.is_active());
        assert_eq!(m.poll_timeout(), None);
        // RFC 8048: a new SUBSCRIBE goes straight to active, no new XMPP request.
        m.handle(t0, SxInput::Subscribe { expires: 600 });
        let out = sx_drain(&mut m);
        assert_eq!(
            out.contains(&sx_to_contact(PresenceKind::Subscribe)),
            legacy
        );
    }

    #[test]
    fn s_to_x_poll_probes_and_answers_once() {
        // PRB-02, PRB-03 (bare → bare).
        let t0 = Instant::now();
        let mut m = SipToXmpp::new(SubscriptionConfig::default(), &romeo(), &juliet());
        m.handle(t0, SxInput::Subscribe { expires: 0 });
        let _ = sx_drain(&mut m);
        m.handle(
            t0,
            SxInput::XmppPresence {
                from: juliet(),
                presence: XmppPresence::new(PresenceKind::Available),
            },
        );
        let out = sx_drain(&mut m);
        assert!(
            matches!(
                out.as_slice(),
                [SxAction::SendNotify { state: SubState::Terminated(Some(TerminationReason::Timeout)), body: Some(b), .. }] if b.tuples[0].basic == Some(Basic::Open)
            ),
            "{out:?}"
        );
        // Without an answer the poll times out with an empty NOTIFY.
        let mut m = SipToXmpp::new(SubscriptionConfig::default(), &romeo(), &juliet());
        m.handle(t0, SxInput::Subscribe { expires: 0 });
        let _ = sx_drain(&mut m);
        let deadline = m.poll_timeout().expect("poll deadline");
        m.handle(deadline, SxInput::Tick);
        assert_eq!(
            sx_drain(&mut m),
            vec![SxAction::SendNotify {
                state: SubState::Terminated(Some(TerminationReason::Timeout)),
                expires: None,
                body: None
            }]
        );
    }

    #[test]
    fn termination_reasons_round_trip() {
        for r in [
            TerminationReason::Deactivated,
            TerminationReason::Probation,
            TerminationReason::Rejected,
            TerminationReason::Timeout,
            TerminationReason::Giveup,
            TerminationReason::NoResource,
            TerminationReason::Invariant,
            TerminationReason::Other("x-custom".into()),
        ] {
            assert_eq!(TerminationReason::from_name(r.as_str()), r);
        }
    }
}
