//! Dialogs and subscriptions for SUBSCRIBE/NOTIFY (RFC 3261 §12, RFC 6665 §4).
//!
//! Just enough state to build in-dialog requests and check the peer's: the dialog id,
//! local CSeq, remote target and route set ([`Dialog`]), and the subscription state with
//! its expiry time computed from Expires or Subscription-State (`now` passed in,
//! [`Subscription`]). Transactions are separate ([`super::transaction`]).

use std::time::{Duration, Instant};

use super::builder::{DEFAULT_MAX_FORWARDS, Local, RandomSource, new_branch};
use super::headers::{Event, HeaderError, NameAddr, SubState, SubscriptionState};
use super::message::{Method, Request, Response, Uri};

/// Why a dialog or subscription cannot be created or a request does not fit it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("{0} has no tag, so there is no dialog (RFC 3261 §12.1)")]
    MissingTag(&'static str),
    #[error("no Contact: the remote target is unknown (RFC 3261 §12.1.1, RFC 6665 §4.1.2.1)")]
    MissingContact,
    #[error("request does not belong to this dialog (RFC 3261 §12.2.2)")]
    NotInDialog,
    #[error("CSeq {got} is lower than the remote sequence number {remote} (RFC 3261 §12.2.2)")]
    OutOfOrder { got: u32, remote: u32 },
    #[error("the response is not a 2xx and creates no dialog (RFC 6665 §4.1.2.1)")]
    NotSuccess(u16),
    #[error("a 2xx to SUBSCRIBE lacks Expires (RFC 6665 §4.2.1.1)")]
    MissingExpires,
    #[error("NOTIFY lacks Subscription-State (RFC 6665 §4.1.3)")]
    MissingSubscriptionState,
    #[error("Event package or id does not match the subscription (RFC 6665 §4.1.3, §8.2.1)")]
    EventMismatch,
}

impl DialogError {
    /// The response a UAS answers an offending request with.
    pub fn response_status(&self) -> u16 {
        match self {
            // RFC 3261 §12.2.2: no matching dialog → 481; out of order → 500.
            DialogError::NotInDialog => 481,
            DialogError::OutOfOrder { .. } => 500,
            // RFC 6665 §4.1.3: a NOTIFY that matches no subscription gets 481.
            DialogError::EventMismatch => 481,
            _ => 400,
        }
    }
}

/// Dialog id (RFC 3261 §12): Call-ID, local tag, remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The id of the dialog a received request belongs to, seen from the receiver: the To
    /// tag is local, the From tag remote (RFC 3261 §12.2.2). `None` outside a dialog.
    pub fn of_received_request(request: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: request.headers.call_id().ok()?.to_owned(),
            local_tag: request.headers.to().ok()?.tag()?,
            remote_tag: request.headers.from().ok()?.tag()?,
        })
    }

    /// The id of the dialog a received response belongs to: From tag local, To remote.
    pub fn of_received_response(response: &Response) -> Option<DialogId> {
        Some(DialogId {
            call_id: response.headers.call_id().ok()?.to_owned(),
            local_tag: response.headers.from().ok()?.tag()?,
            remote_tag: response.headers.to().ok()?.tag()?,
        })
    }
}

/// Dialog state (RFC 3261 §12.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    /// Our address, sent as From in our requests (tag = local tag).
    pub local_uri: NameAddr,
    /// The peer's address, sent as To (tag = remote tag).
    pub remote_uri: NameAddr,
    /// The last CSeq we used.
    pub local_seq: u32,
    /// The last CSeq the peer used, if it has sent a request yet.
    pub remote_seq: Option<u32>,
    /// Where in-dialog requests go: the peer's Contact (§12.1.1, §12.1.2).
    pub remote_target: Uri,
    /// Proxies that stay on the path, in the order our requests traverse them.
    pub route_set: Vec<NameAddr>,
}

fn tag_of(addr: &NameAddr, which: &'static str) -> Result<String, DialogError> {
    addr.tag().ok_or(DialogError::MissingTag(which))
}

fn first_contact(headers: &super::message::Headers) -> Result<Uri, DialogError> {
    headers
        .contacts()?
        .into_iter()
        .next()
        .map(|c| c.uri)
        .ok_or(DialogError::MissingContact)
}

impl Dialog {
    /// UAC side: we sent `request` (e.g. SUBSCRIBE) and received the 2xx `response`
    /// (RFC 3261 §12.1.2): route set = Record-Route reversed, target = response Contact.
    pub fn from_uac(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        if !(200..300).contains(&response.status) {
            return Err(DialogError::NotSuccess(response.status));
        }
        let from = request.headers.from()?;
        let to = response.headers.to()?;
        let mut route_set = response.headers.record_route()?;
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: request.headers.call_id()?.to_owned(),
                local_tag: tag_of(&from, "From")?,
                remote_tag: tag_of(&to, "To")?,
            },
            local_uri: from,
            remote_uri: to,
            local_seq: request.headers.cseq()?.seq,
            remote_seq: None,
            remote_target: first_contact(&response.headers)?,
            route_set,
        })
    }

    /// Subscriber side when a NOTIFY arrives for our SUBSCRIBE before (or instead of) its
    /// 2xx — RFC 6665 §4.1.2.4: the NOTIFY creates the dialog. We are the UAS of the
    /// NOTIFY, so its Record-Route is taken in order (§12.1.1).
    pub fn from_notify(subscribe: &Request, notify: &Request) -> Result<Dialog, DialogError> {
        let from = subscribe.headers.from()?;
        let remote = notify.headers.from()?;
        let call_id = subscribe.headers.call_id()?;
        if notify.headers.call_id()? != call_id || notify.headers.to()?.tag() != from.tag() {
            return Err(DialogError::NotInDialog);
        }
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag: tag_of(&from, "From")?,
                remote_tag: tag_of(&remote, "From")?,
            },
            local_uri: from,
            remote_uri: remote,
            local_seq: subscribe.headers.cseq()?.seq,
            remote_seq: Some(notify.headers.cseq()?.seq),
            remote_target: first_contact(&notify.headers)?,
            route_set: notify.headers.record_route()?,
        })
    }

    /// UAS side: we received the dialog-creating `request` (e.g. SUBSCRIBE) and answer it
    /// with `local_tag` in the To of our 2xx (RFC 3261 §12.1.1).
    pub fn from_uas(request: &Request, local_tag: &str) -> Result<Dialog, DialogError> {
        let remote = request.headers.from()?;
        let to = request.headers.to()?;
        Ok(Dialog {
            id: DialogId {
                call_id: request.headers.call_id()?.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: tag_of(&remote, "From")?,
            },
            local_uri: to.with_tag(local_tag),
            remote_uri: remote,
            // Our first request uses 1 (§12.1.1 leaves the initial value to the UAS).
            local_seq: 0,
            remote_seq: Some(request.headers.cseq()?.seq),
            remote_target: first_contact(&request.headers)?,
            route_set: request.headers.record_route()?,
        })
    }

    /// Builds the next in-dialog request (RFC 3261 §12.2.1.1): CSeq one higher, From/To
    /// with the dialog's tags, Request-URI and Route from the remote target and route set
    /// (loose routing when the first route has `lr`, strict routing otherwise), a new
    /// Via branch, and our Contact (SUBSCRIBE and NOTIFY are target-refresh requests,
    /// RFC 6665 §4.1.2.1, §4.2.2). The caller adds Event, Subscription-State and a body.
    pub fn next_request(
        &mut self,
        method: Method,
        local: &Local,
        rng: &mut dyn RandomSource,
    ) -> Request {
        self.local_seq = self.local_seq.saturating_add(1);
        let (uri, routes) = match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(first) if first.uri.param("lr").is_some() => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            // Strict routing: the first route becomes the Request-URI and the remote
            // target goes to the end of the Route header (§12.2.1.1).
            Some(first) => {
                let mut routes: Vec<NameAddr> = self.route_set.iter().skip(1).cloned().collect();
                routes.push(NameAddr::new(self.remote_target.clone()));
                let mut uri = first.uri.as_str().to_owned();
                // URI headers are not allowed in a Request-URI (§19.1.5).
                if let Some(i) = uri.find('?') {
                    uri.truncate(i);
                }
                (
                    Uri::parse(&uri).unwrap_or_else(|| first.uri.clone()),
                    routes,
                )
            }
        };
        let mut r = Request::new(method.clone(), uri);
        r.headers.push("Via", local.via(&new_branch(rng)));
        r.headers
            .push("Max-Forwards", DEFAULT_MAX_FORWARDS.to_string());
        for route in &routes {
            r.headers.push("Route", route.to_string());
        }
        r.headers.push(
            "From",
            self.local_uri
                .clone()
                .with_tag(&self.id.local_tag)
                .to_string(),
        );
        r.headers.push(
            "To",
            self.remote_uri
                .clone()
                .with_tag(&self.id.remote_tag)
                .to_string(),
        );
        r.headers.push("Call-ID", self.id.call_id.clone());
        r.headers
            .push("CSeq", format!("{} {method}", self.local_seq));
        if let Some(contact) = &local.contact {
            r.headers
                .push("Contact", NameAddr::new(contact.clone()).to_string());
        }
        r.headers.push("Content-Length", "0");
        r
    }

    /// Checks a request the peer sent in this dialog (RFC 3261 §12.2.2) and records its
    /// CSeq; a target-refresh request (SUBSCRIBE, NOTIFY, UPDATE, INVITE) with a Contact
    /// moves the remote target.
    pub fn on_remote_request(&mut self, request: &Request) -> Result<(), DialogError> {
        if DialogId::of_received_request(request).as_ref() != Some(&self.id) {
            return Err(DialogError::NotInDialog);
        }
        let seq = request.headers.cseq()?.seq;
        if let Some(remote) = self.remote_seq
            && seq < remote
        {
            return Err(DialogError::OutOfOrder { got: seq, remote });
        }
        self.remote_seq = Some(seq);
        if matches!(
            request.method,
            Method::Subscribe | Method::Notify | Method::Update | Method::Invite
        ) && let Some(contact) = request.headers.contacts()?.into_iter().next()
        {
            self.remote_target = contact.uri;
        }
        Ok(())
    }
}

/// One subscription's state (RFC 6665 §4.1, §4.2), on either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub event: Event,
    /// `None` until the first NOTIFY (the "neutral" state of RFC 7248 §4.2.1).
    pub state: Option<SubState>,
    /// The reason of a terminated subscription.
    pub reason: Option<String>,
    /// When the subscription lapses unless refreshed.
    pub expires_at: Option<Instant>,
    /// When a subscriber should refresh: half-way through the granted duration.
    pub refresh_at: Option<Instant>,
}

impl Subscription {
    pub fn new(event: Event) -> Self {
        Subscription {
            event,
            state: None,
            reason: None,
            expires_at: None,
            refresh_at: None,
        }
    }

    fn set_duration(&mut self, now: Instant, seconds: u32) {
        let d = Duration::from_secs(u64::from(seconds));
        self.expires_at = now.checked_add(d);
        self.refresh_at = now.checked_add(d / 2);
    }

    /// Subscriber: a 2xx to our SUBSCRIBE. Its Expires is the duration the notifier
    /// granted, which may be shorter than asked (RFC 6665 §4.1.2.1, §4.2.1.1); without it
    /// the duration is unknown, which is an error here.
    pub fn on_subscribe_response(
        &mut self,
        now: Instant,
        response: &Response,
    ) -> Result<(), DialogError> {
        if !(200..300).contains(&response.status) {
            return Err(DialogError::NotSuccess(response.status));
        }
        let expires = response
            .headers
            .expires()?
            .ok_or(DialogError::MissingExpires)?;
        self.set_duration(now, expires);
        Ok(())
    }

    /// Subscriber: a NOTIFY (RFC 6665 §4.1.3). The Event must match; Subscription-State
    /// is mandatory; its `expires` replaces the duration; `terminated` ends the
    /// subscription. Returns the parsed state for the caller to act on.
    pub fn on_notify(
        &mut self,
        now: Instant,
        notify: &Request,
    ) -> Result<SubscriptionState, DialogError> {
        let event = notify.headers.event()?.ok_or(DialogError::EventMismatch)?;
        if !event.matches(&self.event) {
            return Err(DialogError::EventMismatch);
        }
        let state = notify
            .headers
            .subscription_state()?
            .ok_or(DialogError::MissingSubscriptionState)?;
        match state.state {
            SubState::Terminated => {
                self.expires_at = None;
                self.refresh_at = None;
            }
            _ => {
                if let Some(e) = state.expires {
                    self.set_duration(now, e);
                }
            }
        }
        self.state = Some(state.state.clone());
        self.reason = state.reason.clone();
        Ok(state)
    }

    /// Notifier: a SUBSCRIBE (initial or refresh). The granted duration is the request's
    /// Expires (or the package default when absent, RFC 6665 §4.1.2.1 — 3600 s for
    /// presence, RFC 3856 §6.4), capped at `max`; 0 is a one-shot fetch that terminates
    /// after its NOTIFY (RFC 6665 §4.2.1.4). Returns the granted seconds for the 2xx Expires.
    pub fn on_subscribe_request(
        &mut self,
        now: Instant,
        subscribe: &Request,
        default_expires: u32,
        max: u32,
    ) -> Result<u32, DialogError> {
        let event = subscribe
            .headers
            .event()?
            .ok_or(DialogError::EventMismatch)?;
        if !event.matches(&self.event) {
            return Err(DialogError::EventMismatch);
        }
        let granted = subscribe
            .headers
            .expires()?
            .unwrap_or(default_expires)
            .min(max);
        if granted == 0 {
            self.state = Some(SubState::Terminated);
            self.reason = Some("timeout".into());
            self.expires_at = None;
            self.refresh_at = None;
        } else {
            self.set_duration(now, granted);
            if self.state.is_none() {
                self.state = Some(SubState::Pending);
            }
        }
        Ok(granted)
    }

    /// Seconds left, rounded down; `None` without a duration.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.expires_at.map(|at| at.saturating_duration_since(now))
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The Subscription-State a notifier sends now (RFC 6665 §4.2.2): the state with the
    /// remaining seconds, or `terminated` with the reason (`timeout` once expired).
    pub fn notify_state(&self, now: Instant) -> SubscriptionState {
        let state = if self.is_expired(now) {
            SubState::Terminated
        } else {
            self.state.clone().unwrap_or(SubState::Pending)
        };
        let mut s = SubscriptionState::new(state);
        if s.state == SubState::Terminated {
            s.reason = self.reason.clone().or_else(|| Some("timeout".into()));
        } else {
            s.expires = self
                .remaining(now)
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::builder::{RequestBuilder, ResponseBuilder, SeededRandom};
    use crate::sip::validate::validate_request;

    fn local(user: &str, host: &str) -> Local {
        Local {
            aor: NameAddr::parse("From", &format!("<sip:{user}@{host}>")).expect("valid"),
            transport: "TCP".into(),
            sent_by: format!("{host}:5060"),
            contact: Uri::parse(&format!("sip:{user}@{host}:5060;transport=tcp")),
        }
    }

    fn subscribe(rng: &mut SeededRandom) -> Request {
        RequestBuilder::new(
            Method::Subscribe,
            Uri::parse("sip:juliet@xmpp.test").expect("uri"),
        )
        .header("Event", "presence")
        .header("Expires", "600")
        .build(&local("romeo", "127.0.0.1"), rng)
    }

    fn ok_with(sub: &Request, rr: &[&str], rng: &mut SeededRandom) -> Response {
        let mut b = ResponseBuilder::new(sub, 200)
            .to_tag("notifier")
            .header("Expires", "300")
            .header("Contact", "<sip:juliet@127.0.0.2:5060;transport=tcp>");
        for r in rr {
            b = b.header("Record-Route", *r);
        }
        b.build(rng)
    }

    #[test]
    fn subscriber_and_notifier_dialogs_mirror_each_other() {
        let mut rng = SeededRandom(5);
        let sub = subscribe(&mut rng);
        let ok = ok_with(&sub, &["<sip:p2.test;lr>", "<sip:p1.test;lr>"], &mut rng);
        let mut uac = Dialog::from_uac(&sub, &ok).expect("dialog");
        let mut uas = Dialog::from_uas(&sub, "notifier").expect("dialog");
        assert_eq!(uac.id.call_id, uas.id.call_id);
        assert_eq!(uac.id.local_tag, uas.id.remote_tag);
        assert_eq!(uac.id.remote_tag, "notifier");
        assert_eq!(
            uac.remote_target.as_str(),
            "sip:juliet@127.0.0.2:5060;transport=tcp"
        );
        // UAC reverses Record-Route; p1 is nearest to the subscriber.
        assert_eq!(uac.route_set[0].uri.as_str(), "sip:p1.test;lr");

        // The notifier's NOTIFY is in the subscriber's dialog.
        let notify = uas.next_request(Method::Notify, &local("juliet", "127.0.0.2"), &mut rng);
        assert_eq!(notify.headers.get("CSeq"), Some("1 NOTIFY"));
        assert_eq!(
            notify.uri.as_str(),
            "sip:romeo@127.0.0.1:5060;transport=tcp"
        );
        assert_eq!(uac.on_remote_request(&notify), Ok(()));
        assert_eq!(uac.remote_seq, Some(1));

        // The subscriber's refresh is loose-routed through p1 then p2.
        let refresh = uac.next_request(Method::Subscribe, &local("romeo", "127.0.0.1"), &mut rng);
        assert_eq!(refresh.uri, uac.remote_target);
        assert_eq!(
            refresh.headers.get_all("Route").collect::<Vec<_>>(),
            ["<sip:p1.test;lr>", "<sip:p2.test;lr>"]
        );
        assert_eq!(refresh.headers.cseq().map(|c| c.seq), Ok(2));
        assert_eq!(uas.on_remote_request(&refresh), Ok(()));
        assert!(validate_request(&refresh).is_ok());
    }

    #[test]
    fn strict_route_goes_into_the_request_uri() {
        let mut rng = SeededRandom(6);
        let sub = subscribe(&mut rng);
        let ok = ok_with(&sub, &["<sip:strict.test>"], &mut rng);
        let mut d = Dialog::from_uac(&sub, &ok).expect("dialog");
        let r = d.next_request(Method::Subscribe, &local("romeo", "127.0.0.1"), &mut rng);
        assert_eq!(r.uri.as_str(), "sip:strict.test");
        assert_eq!(
            r.headers.get_all("Route").collect::<Vec<_>>(),
            ["<sip:juliet@127.0.0.2:5060;transport=tcp>"]
        );
    }

    #[test]
    fn in_dialog_checks() {
        let mut rng = SeededRandom(7);
        let sub = subscribe(&mut rng);
        let ok = ok_with(&sub, &[], &mut rng);
        let mut uac = Dialog::from_uac(&sub, &ok).expect("dialog");
        let mut uas = Dialog::from_uas(&sub, "notifier").expect("dialog");
        let notifier = local("juliet", "127.0.0.2");
        let n1 = uas.next_request(Method::Notify, &notifier, &mut rng);
        let n2 = uas.next_request(Method::Notify, &notifier, &mut rng);
        assert_eq!(uac.on_remote_request(&n2), Ok(()));
        let err = uac.on_remote_request(&n1).expect_err("out of order");
        assert_eq!(err, DialogError::OutOfOrder { got: 1, remote: 2 });
        assert_eq!(err.response_status(), 500);
        let mut stranger = n2.clone();
        stranger
            .headers
            .set("From", "<sip:juliet@xmpp.test>;tag=other");
        let err = uac.on_remote_request(&stranger).expect_err("not in dialog");
        assert_eq!(err.response_status(), 481);
    }

    #[test]
    fn dialog_creation_errors() {
        let mut rng = SeededRandom(8);
        let sub = subscribe(&mut rng);
        let mut no_contact = ok_with(&sub, &[], &mut rng);
        no_contact.headers.remove("Contact");
        assert_eq!(
            Dialog::from_uac(&sub, &no_contact),
            Err(DialogError::MissingContact)
        );
        let mut no_tag = ok_with(&sub, &[], &mut rng);
        no_tag.headers.set("To", "<sip:juliet@xmpp.test>");
        assert_eq!(
            Dialog::from_uac(&sub, &no_tag),
            Err(DialogError::MissingTag("To"))
        );
        let mut failure = ok_with(&sub, &[], &mut rng);
        failure.status = 403;
        assert_eq!(
            Dialog::from_uac(&sub, &failure),
            Err(DialogError::NotSuccess(403))
        );
    }

    #[test]
    fn notify_may_create_the_dialog() {
        let mut rng = SeededRandom(9);
        let sub = subscribe(&mut rng);
        let mut uas = Dialog::from_uas(&sub, "n").expect("dialog");
        let notify = uas.next_request(Method::Notify, &local("juliet", "127.0.0.2"), &mut rng);
        let d = Dialog::from_notify(&sub, &notify).expect("dialog");
        assert_eq!(d.id.remote_tag, "n");
        assert_eq!(d.remote_seq, Some(1));
        assert_eq!(
            d.remote_target.as_str(),
            "sip:juliet@127.0.0.2:5060;transport=tcp"
        );
    }

    fn notify_with(state: &str, event: &str) -> Request {
        RequestBuilder::new(
            Method::Notify,
            Uri::parse("sip:romeo@127.0.0.1").expect("uri"),
        )
        .header("Event", event)
        .header("Subscription-State", state)
        .build(&local("juliet", "127.0.0.2"), &mut SeededRandom(1))
    }

    #[test]
    fn subscriber_expiry_from_expires_and_subscription_state() {
        let mut rng = SeededRandom(10);
        let sub = subscribe(&mut rng);
        let t0 = Instant::now();
        let mut s = Subscription::new(Event::parse("presence").expect("event"));
        s.on_subscribe_response(t0, &ok_with(&sub, &[], &mut rng))
            .expect("2xx");
        assert_eq!(s.expires_at, Some(t0 + Duration::from_secs(300)));
        assert_eq!(s.refresh_at, Some(t0 + Duration::from_secs(150)));
        assert_eq!(s.state, None, "neutral until the first NOTIFY");

        let t1 = t0 + Duration::from_secs(10);
        let st = s
            .on_notify(t1, &notify_with("pending;expires=120", "presence"))
            .expect("notify");
        assert_eq!(st.state, SubState::Pending);
        assert_eq!(s.expires_at, Some(t1 + Duration::from_secs(120)));
        s.on_notify(t1, &notify_with("active", "Presence"))
            .expect("notify");
        assert_eq!(s.state, Some(SubState::Active));
        assert_eq!(
            s.expires_at,
            Some(t1 + Duration::from_secs(120)),
            "no expires: unchanged"
        );
        assert!(!s.is_expired(t1 + Duration::from_secs(119)));
        assert!(s.is_expired(t1 + Duration::from_secs(120)));

        s.on_notify(t1, &notify_with("terminated;reason=noresource", "presence"))
            .expect("notify");
        assert_eq!(s.state, Some(SubState::Terminated));
        assert_eq!(s.reason.as_deref(), Some("noresource"));
        assert_eq!(s.expires_at, None);
    }

    #[test]
    fn notify_errors() {
        let t0 = Instant::now();
        let mut s = Subscription::new(Event::parse("presence").expect("event"));
        let err = s
            .on_notify(t0, &notify_with("active", "dialog"))
            .expect_err("mismatch");
        assert_eq!(err.response_status(), 481);
        let mut n = notify_with("active", "presence");
        n.headers.remove("Subscription-State");
        assert_eq!(
            s.on_notify(t0, &n),
            Err(DialogError::MissingSubscriptionState)
        );
        let mut ok = Response::new(200, "OK");
        ok.headers.push("CSeq", "1 SUBSCRIBE");
        assert_eq!(
            s.on_subscribe_response(t0, &ok),
            Err(DialogError::MissingExpires)
        );
    }

    #[test]
    fn notifier_grants_and_reports_remaining_time() {
        let mut rng = SeededRandom(11);
        let sub = subscribe(&mut rng);
        let t0 = Instant::now();
        let mut s = Subscription::new(Event::parse("presence").expect("event"));
        assert_eq!(
            s.on_subscribe_request(t0, &sub, 3600, 300),
            Ok(300),
            "capped"
        );
        s.state = Some(SubState::Active);
        let st = s.notify_state(t0 + Duration::from_millis(100_500));
        assert_eq!(st.to_string(), "active;expires=199");
        assert_eq!(
            s.notify_state(t0 + Duration::from_secs(300)).to_string(),
            "terminated;reason=timeout"
        );
        let mut fetch = sub.clone();
        fetch.headers.set("Expires", "0");
        assert_eq!(s.on_subscribe_request(t0, &fetch, 3600, 300), Ok(0));
        assert_eq!(s.notify_state(t0).state, SubState::Terminated);
        let mut no_expires = sub.clone();
        no_expires.headers.remove("Expires");
        let mut fresh = Subscription::new(Event::parse("presence").expect("event"));
        assert_eq!(
            fresh.on_subscribe_request(t0, &no_expires, 3600, 7200),
            Ok(3600)
        );
        assert_eq!(fresh.notify_state(t0).to_string(), "pending;expires=3600");
    }
}
