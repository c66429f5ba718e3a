//! Non-INVITE transactions (RFC 3261 §17.1.2 client, §17.2.2 server), sans-IO.
//!
//! In the style of quinn-proto and str0m: feed inputs with `handle_input(now, ..)`, drain
//! `poll_output()` after every call, sleep until `poll_timeout()` and then call
//! `handle_timeout(now)`. Nothing here reads a clock or touches a socket.
//!
//! Client state machine (RFC 3261 Figure 6):
//!
//! ```text
//!                        |Request from TU; send request; start E (unreliable), F
//!           Timer E      V
//!           send req +-----------+
//!               +----|  Trying   |-------------+
//!               |    +-----------+             |
//!               +--->|  |  |                   | Timer F or transport error:
//!                       |  | 200-699           | inform TU
//!                  1xx  |  | to TU             |
//!                to TU  |  +----------------+  |
//!           Timer E     V                   |  |
//!           send req +-----------+          |  |
//!               +----| Proceeding|----------+--+
//!               +--->|           |-------+  |  |
//!                    +-----------+ 1xx   |  |  |
//!                       |   ^    to TU   |  |  |
//!              200-699  |   +------------+  |  |
//!              to TU    V                   V  |
//!                    +-----------+             |
//!                    | Completed | Timer K = T4 (unreliable) / 0 (reliable)
//!                    +-----------+             |
//!                       | Timer K              |
//!                       V                      V
//!                    +-----------+
//!                    | Terminated|
//!                    +-----------+
//! ```
//!
//! Server state machine (RFC 3261 Figure 8): Trying → (1xx from TU) Proceeding →
//! (200-699 from TU) Completed → (Timer J = 64*T1 unreliable / 0 reliable) Terminated;
//! request retransmissions get the last response again, transport errors terminate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::headers::{HeaderError, MAGIC_COOKIE};
use super::message::{Method, Request, Response};

/// RTT estimate, the base of every timer (RFC 3261 §17.1.1.1, Table 4: 500 ms).
pub const T1: Duration = Duration::from_millis(500);
/// Largest retransmit interval for non-INVITE requests and INVITE responses (Table 4: 4 s).
pub const T2: Duration = Duration::from_secs(4);
/// Longest time a message stays in the network (Table 4: 5 s).
pub const T4: Duration = Duration::from_secs(5);

/// Timer base values. Tests and scenarios shrink them; RFC 3261 §17.1.1.1 allows a
/// smaller T1 only on networks known to have a smaller RTT, so the defaults are the RFC's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: T1,
            t2: T2,
            t4: T4,
        }
    }
}

impl Timers {
    /// Timer F and J: 64*T1 (RFC 3261 Table 4).
    pub fn transaction_timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Whether the transport retransmits for us (RFC 3261 §17: TCP, TLS, SCTP are reliable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// UDP: the transaction layer retransmits and absorbs retransmissions for a while.
    Unreliable,
    /// TCP/TLS: no retransmissions; Timers K and J are zero.
    Reliable,
}

impl Reliability {
    /// From a Via transport token (RFC 3261 §18, §20.42).
    pub fn from_transport(transport: &str) -> Reliability {
        if transport.eq_ignore_ascii_case("UDP") {
            Reliability::Unreliable
        } else {
            Reliability::Reliable
        }
    }
}

/// API misuse or input that belongs to another transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("{0} is not handled by a non-INVITE transaction (RFC 3261 §17.1.2, §17.2.2)")]
    NotNonInvite(Method),
    #[error("top Via has no branch parameter (RFC 3261 §8.1.1.7)")]
    MissingBranch,
    /// RFC 3261 §17.2.3 keeps an RFC 2543 matching procedure (Request-URI, tags, Call-ID,
    /// CSeq, top Via) for branches without the magic cookie. Peers we test are RFC 3261
    /// stacks, so that fallback is left out and such requests are refused here.
    #[error("branch {0:?} lacks the z9hG4bK magic cookie (RFC 2543 peer; RFC 3261 §17.2.3)")]
    Rfc2543Branch(String),
    #[error("CSeq method {cseq} differs from the request method {request} (RFC 3261 §8.1.1.5)")]
    CSeqMethodMismatch { request: Method, cseq: Method },
    #[error("message does not match this transaction (RFC 3261 §17.1.3, §17.2.3)")]
    NotMatching,
    #[error("status code {0} is not 100..=699 (RFC 3261 §7.2)")]
    BadStatus(u16),
    #[error("the transaction has terminated")]
    Terminated,
}

/// The transaction's branch, lower-cased: branch is a token, and tokens compare
/// case-insensitively (RFC 3261 §7.3.1).
fn branch_of(top_via_branch: Option<String>) -> Result<String, TransactionError> {
    let branch = top_via_branch.ok_or(TransactionError::MissingBranch)?;
    if !branch.starts_with(MAGIC_COOKIE) {
        return Err(TransactionError::Rfc2543Branch(branch));
    }
    Ok(branch.to_ascii_lowercase())
}

/// Client transaction identity (RFC 3261 §17.1.3): the top Via branch and the CSeq method
/// (a CANCEL shares its INVITE's branch but is a transaction of its own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub branch: String,
    pub method: Method,
}

impl ClientKey {
    pub fn from_request(request: &Request) -> Result<ClientKey, TransactionError> {
        Ok(ClientKey {
            branch: branch_of(request.headers.top_via()?.branch())?,
            method: request.method.clone(),
        })
    }

    /// The key a response belongs to: "the branch parameter in the top Via header field"
    /// and "the method parameter in the CSeq header field" (RFC 3261 §17.1.3).
    pub fn from_response(response: &Response) -> Result<ClientKey, TransactionError> {
        Ok(ClientKey {
            branch: branch_of(response.headers.top_via()?.branch())?,
            method: response.headers.cseq()?.method,
        })
    }
}

/// Server transaction identity (RFC 3261 §17.2.3): top Via branch, top Via sent-by (two
/// clients may pick the same branch) and method, with ACK matching the INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    pub branch: String,
    /// `host[:port]` of the top Via, host lower-cased.
    pub sent_by: String,
    pub method: Method,
}

impl ServerKey {
    pub fn from_request(request: &Request) -> Result<ServerKey, TransactionError> {
        let via = request.headers.top_via()?;
        let method = match &request.method {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        let host = via.host.to_ascii_lowercase();
        Ok(ServerKey {
            branch: branch_of(via.branch())?,
            sent_by: match via.port {
                Some(p) => format!("{host}:{p}"),
                None => host,
            },
            method,
        })
    }

    /// The key of a response the TU hands to this transaction (the Via copied from the
    /// request, §8.2.6.2, and the CSeq method).
    fn from_response(response: &Response) -> Result<ServerKey, TransactionError> {
        let via = response.headers.top_via()?;
        let host = via.host.to_ascii_lowercase();
        Ok(ServerKey {
            branch: branch_of(via.branch())?,
            sent_by: match via.port {
                Some(p) => format!("{host}:{p}"),
                None => host,
            },
            method: response.headers.cseq()?.method,
        })
    }
}

/// Timer names of RFC 3261 Table 4 that non-INVITE transactions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Client request retransmission (unreliable transports).
    E,
    /// Client transaction timeout, 64*T1.
    F,
    /// Client wait for response retransmissions, T4 (unreliable) or 0.
    K,
    /// Server wait for request retransmissions, 64*T1 (unreliable) or 0.
    J,
}

const TIMERS: [Timer; 4] = [Timer::E, Timer::F, Timer::K, Timer::J];

/// One deadline per timer; the earliest is the next wake-up (quinn `connection/timer.rs`).
#[derive(Debug, Clone, Default)]
struct TimerTable([Option<Instant>; 4]);

impl TimerTable {
    fn slot(&mut self, t: Timer) -> Option<&mut Option<Instant>> {
        let i = TIMERS.iter().position(|x| *x == t)?;
        self.0.get_mut(i)
    }

    /// Arms `t` to fire `after` from `now`. A deadline past what `Instant` can hold (absurd
    /// configured timers) leaves the timer unarmed rather than panicking.
    fn set(&mut self, t: Timer, now: Instant, after: Duration) {
        if let Some(s) = self.slot(t) {
            *s = now.checked_add(after);
        }
    }

    fn stop(&mut self, t: Timer) {
        if let Some(s) = self.slot(t) {
            *s = None;
        }
    }

    fn stop_all(&mut self) {
        self.0 = [None; 4];
    }

    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// The earliest timer due at `now`, cleared.
    fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.filter(|at| *at <= now).map(|at| (i, at)))
            .min_by_key(|(_, at)| *at)?;
        if let Some(s) = self.0.get_mut(i) {
            *s = None;
        }
        TIMERS.get(i).copied()
    }
}

fn check_non_invite(request: &Request) -> Result<(), TransactionError> {
    if matches!(request.method, Method::Invite | Method::Ack) {
        return Err(TransactionError::NotNonInvite(request.method.clone()));
    }
    let cseq = request.headers.cseq()?;
    if cseq.method != request.method {
        return Err(TransactionError::CSeqMethodMismatch {
            request: request.method.clone(),
            cseq: cseq.method,
        });
    }
    Ok(())
}

/// Client transaction states (RFC 3261 §17.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Inputs from the transport to a client transaction.
#[derive(Debug, Clone)]
pub enum ClientInput {
    /// A response whose key matched (see [`ClientKey::from_response`]).
    Response(Response),
    /// The transport failed to send (RFC 3261 §17.1.4).
    TransportError,
}

/// What a client transaction asks its driver to do or tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Send these bytes to the request's destination.
    Transmit(Vec<u8>),
    /// Pass this response to the TU.
    Response(Response),
    /// Timer F fired before a final response (RFC 3261 §17.1.2.2): the TU treats it as 408.
    Timeout,
    /// The transport failed (RFC 3261 §17.1.4): the TU treats it as 503.
    TransportError,
    /// The transaction is over; drop it.
    Terminated,
}

/// A non-INVITE client transaction (RFC 3261 §17.1.2).
#[derive(Debug)]
pub struct ClientTransaction {
    key: ClientKey,
    request: Vec<u8>,
    state: ClientState,
    reliability: Reliability,
    timers: Timers,
    /// The current Timer E interval.
    interval: Duration,
    table: TimerTable,
    outputs: VecDeque<ClientOutput>,
}

impl ClientTransaction {
    /// Starts the transaction: the request goes out at once (RFC 3261 §17.1.2.2: "the
    /// request MUST be passed to the transport layer for transmission"), Timer F starts,
    /// and on an unreliable transport Timer E starts at T1.
    pub fn new(
        now: Instant,
        request: &Request,
        reliability: Reliability,
        timers: Timers,
    ) -> Result<ClientTransaction, TransactionError> {
        check_non_invite(request)?;
        let key = ClientKey::from_request(request)?;
        let bytes = request.to_bytes();
        let mut table = TimerTable::default();
        table.set(Timer::F, now, timers.transaction_timeout());
        if reliability == Reliability::Unreliable {
            table.set(Timer::E, now, timers.t1);
        }
        Ok(ClientTransaction {
            key,
            request: bytes.clone(),
            state: ClientState::Trying,
            reliability,
            timers,
            interval: timers.t1,
            table,
            outputs: VecDeque::from([ClientOutput::Transmit(bytes)]),
        })
    }

    pub fn key(&self) -> &ClientKey {
        &self.key
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    pub fn handle_input(
        &mut self,
        now: Instant,
        input: ClientInput,
    ) -> Result<(), TransactionError> {
        if self.is_terminated() {
            return Err(TransactionError::Terminated);
        }
        match input {
            ClientInput::TransportError => {
                self.outputs.push_back(ClientOutput::TransportError);
                self.terminate();
            }
            ClientInput::Response(response) => {
                if ClientKey::from_response(&response)? != self.key {
                    return Err(TransactionError::NotMatching);
                }
                self.on_response(now, response);
            }
        }
        Ok(())
    }

    fn on_response(&mut self, now: Instant, response: Response) {
        match (self.state, response.is_provisional()) {
            (ClientState::Trying | ClientState::Proceeding, true) => {
                self.state = ClientState::Proceeding;
                self.outputs.push_back(ClientOutput::Response(response));
            }
            (ClientState::Trying | ClientState::Proceeding, false) => {
                self.outputs.push_back(ClientOutput::Response(response));
                self.table.stop(Timer::E);
                self.table.stop(Timer::F);
                match self.reliability {
                    // "Timer K ... zero seconds for reliable transports" (§17.1.2.2).
                    Reliability::Reliable => self.terminate(),
                    Reliability::Unreliable => {
                        self.state = ClientState::Completed;
                        self.table.set(Timer::K, now, self.timers.t4);
                    }
                }
            }
            // "any retransmissions of the final response that are received while in the
            // 'Completed' state MUST be discarded" (§17.1.2.2).
            (ClientState::Completed, _) => {
                tracing::trace!(status = response.status, "absorbed response retransmission");
            }
            (ClientState::Terminated, _) => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.table.take_expired(now) {
            match (timer, self.state) {
                (Timer::E, ClientState::Trying | ClientState::Proceeding) => {
                    self.outputs
                        .push_back(ClientOutput::Transmit(self.request.clone()));
                    // Trying: MIN(2*E, T2) — doubling; Proceeding: T2 (§17.1.2.2).
                    self.interval = match self.state {
                        ClientState::Trying => self.interval.saturating_mul(2).min(self.timers.t2),
                        _ => self.timers.t2,
                    };
                    self.table.set(Timer::E, now, self.interval);
                }
                (Timer::F, ClientState::Trying | ClientState::Proceeding) => {
                    self.outputs.push_back(ClientOutput::Timeout);
                    self.terminate();
                }
                (Timer::K, ClientState::Completed) => self.terminate(),
                _ => {}
            }
        }
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.table.stop_all();
        self.outputs.push_back(ClientOutput::Terminated);
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.next()
    }
}

/// Server transaction states (RFC 3261 §17.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Inputs to a server transaction.
#[derive(Debug, Clone)]
pub enum ServerInput {
    /// A request from the network whose [`ServerKey`] matched: a retransmission.
    Request(Request),
    /// A response from the TU to send.
    Respond(Response),
    /// The transport failed to send (RFC 3261 §17.2.4).
    TransportError,
}

/// What a server transaction asks its driver to do or tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOutput {
    /// Send these bytes to the response destination (RFC 3261 §18.2.2).
    Transmit(Vec<u8>),
    /// The transport failed (RFC 3261 §17.2.4).
    TransportError,
    /// The transaction is over; drop it.
    Terminated,
}

/// A non-INVITE server transaction (RFC 3261 §17.2.2). The request that created it goes
/// to the TU by the caller; this only handles responses and retransmissions.
#[derive(Debug)]
pub struct ServerTransaction {
    key: ServerKey,
    state: ServerState,
    reliability: Reliability,
    timers: Timers,
    last_response: Option<Vec<u8>>,
    table: TimerTable,
    outputs: VecDeque<ServerOutput>,
}

impl ServerTransaction {
    pub fn new(
        request: &Request,
        reliability: Reliability,
        timers: Timers,
    ) -> Result<ServerTransaction, TransactionError> {
        check_non_invite(request)?;
        Ok(ServerTransaction {
            key: ServerKey::from_request(request)?,
            state: ServerState::Trying,
            reliability,
            timers,
            last_response: None,
            table: TimerTable::default(),
            outputs: VecDeque::new(),
        })
    }

    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    pub fn handle_input(
        &mut self,
        now: Instant,
        input: ServerInput,
    ) -> Result<(), TransactionError> {
        if self.is_terminated() {
            return Err(TransactionError::Terminated);
        }
        match input {
            ServerInput::TransportError => {
                self.outputs.push_back(ServerOutput::TransportError);
                self.terminate();
            }
            ServerInput::Request(request) => {
                if ServerKey::from_request(&request)? != self.key {
                    return Err(TransactionError::NotMatching);
                }
                // Trying: "any retransmissions of the request received while in this state
                // MUST be discarded"; Proceeding/Completed: resend the last response.
                match (&self.state, &self.last_response) {
                    (ServerState::Proceeding | ServerState::Completed, Some(last)) => {
                        self.outputs.push_back(ServerOutput::Transmit(last.clone()));
                    }
                    _ => tracing::trace!("request retransmission absorbed"),
                }
            }
            ServerInput::Respond(response) => {
                if !(100..=699).contains(&response.status) {
                    return Err(TransactionError::BadStatus(response.status));
                }
                if ServerKey::from_response(&response)? != self.key {
                    return Err(TransactionError::NotMatching);
                }
                self.on_tu_response(now, response);
            }
        }
        Ok(())
    }

    fn on_tu_response(&mut self, now: Instant, response: Response) {
        if self.state == ServerState::Completed {
            // "Any other final responses passed by the TU to the server transaction MUST be
            // discarded while in the 'Completed' state" (§17.2.2).
            tracing::debug!(status = response.status, "response after final discarded");
            return;
        }
        let bytes = response.to_bytes();
        self.outputs
            .push_back(ServerOutput::Transmit(bytes.clone()));
        self.last_response = Some(bytes);
        if response.is_provisional() {
            self.state = ServerState::Proceeding;
            return;
        }
        match self.reliability {
            Reliability::Reliable => self.terminate(),
            Reliability::Unreliable => {
                self.state = ServerState::Completed;
                self.table
                    .set(Timer::J, now, self.timers.transaction_timeout());
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.table.take_expired(now) {
            if timer == Timer::J && self.state == ServerState::Completed {
                self.terminate();
            }
        }
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.table.stop_all();
        self.outputs.push_back(ServerOutput::Terminated);
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.outputs.pop_front()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::framing::{Item, parse_datagram};
    use crate::sip::message::Message;
    use crate::sip::{Limits, Uri};

    fn request() -> Request {
        let mut r = Request::new(
            Method::Message,
            Uri::parse("sip:juliet@xmpp.test").expect("uri"),
        );
        r.headers
            .push("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc");
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", "<sip:romeo@sip.test>;tag=1");
        r.headers.push("To", "<sip:juliet@xmpp.test>");
        r.headers.push("Call-ID", "c1@127.0.0.1");
        r.headers.push("CSeq", "1 MESSAGE");
        r.body = b"hi".to_vec();
        r
    }

    fn response(status: u16) -> Response {
        let mut r = Response::new(status, "X");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = request().headers.get(name) {
                r.headers.push(name, v);
            }
        }
        r
    }

    fn drain_client(t: &mut ClientTransaction) -> Vec<ClientOutput> {
        std::iter::from_fn(|| t.poll_output()).collect()
    }

    fn drain_server(t: &mut ServerTransaction) -> Vec<ServerOutput> {
        std::iter::from_fn(|| t.poll_output()).collect()
    }

    /// Runs the client in virtual time until it terminates; returns (offset, output) pairs.
    fn run_client(t: &mut ClientTransaction, start: Instant) -> Vec<(Duration, ClientOutput)> {
        let mut log: Vec<_> = drain_client(t)
            .into_iter()
            .map(|o| (Duration::ZERO, o))
            .collect();
        while let Some(at) = t.poll_timeout() {
            t.handle_timeout(at);
            log.extend(drain_client(t).into_iter().map(|o| (at - start, o)));
        }
        log
    }

    #[test]
    fn timer_e_doubles_to_t2_then_f_times_out() {
        let start = Instant::now();
        let mut t = ClientTransaction::new(
            start,
            &request(),
            Reliability::Unreliable,
            Timers::default(),
        )
        .expect("valid");
        let log = run_client(&mut t, start);
        let sends: Vec<u64> = log
            .iter()
            .filter(|(_, o)| matches!(o, ClientOutput::Transmit(_)))
            .map(|(at, _)| at.as_millis() as u64)
            .collect();
        // 0, then E at 0.5, 1.5, 3.5, 7.5 (interval capped at T2 = 4 s), 11.5, ... < 32 s.
        assert_eq!(
            sends,
            [
                0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        let tail: Vec<_> = log.iter().rev().take(2).collect();
        assert_eq!(tail[1], &(Duration::from_secs(32), ClientOutput::Timeout));
        assert_eq!(
            tail[0],
            &(Duration::from_secs(32), ClientOutput::Terminated)
        );
        assert!(t.is_terminated());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let start = Instant::now();
        let timers = Timers::default();
        let mut t = ClientTransaction::new(start, &request(), Reliability::Unreliable, timers)
            .expect("valid");
        let _ = drain_client(&mut t);
        t.handle_input(
            start + Duration::from_millis(100),
            ClientInput::Response(response(100)),
        )
        .expect("matches");
        assert_eq!(t.state(), ClientState::Proceeding);
        assert!(
            matches!(drain_client(&mut t).as_slice(), [ClientOutput::Response(r)] if r.status == 100)
        );
        // E still fires at 0.5 s; from then on every T2.
        let mut at = Vec::new();
        for _ in 0..3 {
            let next = t.poll_timeout().expect("timer");
            t.handle_timeout(next);
            assert!(matches!(
                drain_client(&mut t).as_slice(),
                [ClientOutput::Transmit(_)]
            ));
            at.push((next - start).as_millis());
        }
        assert_eq!(at, [500, 4500, 8500]);
    }

    #[test]
    fn final_response_over_udp_waits_timer_k_absorbing_retransmissions() {
        let start = Instant::now();
        let mut t = ClientTransaction::new(
            start,
            &request(),
            Reliability::Unreliable,
            Timers::default(),
        )
        .expect("valid");
        let _ = drain_client(&mut t);
        let t1 = start + Duration::from_millis(200);
        t.handle_input(t1, ClientInput::Response(response(200)))
            .expect("matches");
        assert_eq!(t.state(), ClientState::Completed);
        assert!(
            matches!(drain_client(&mut t).as_slice(), [ClientOutput::Response(r)] if r.status == 200)
        );
        assert_eq!(t.poll_timeout(), Some(t1 + T4), "only Timer K is left");
        t.handle_input(
            t1 + Duration::from_secs(1),
            ClientInput::Response(response(200)),
        )
        .expect("matches");
        assert_eq!(drain_client(&mut t), [], "retransmission absorbed");
        t.handle_timeout(t1 + T4 - Duration::from_millis(1));
        assert_eq!(drain_client(&mut t), []);
        t.handle_timeout(t1 + T4);
        assert_eq!(drain_client(&mut t), [ClientOutput::Terminated]);
        assert_eq!(
            t.handle_input(t1 + T4, ClientInput::Response(response(200))),
            Err(TransactionError::Terminated)
        );
    }

    #[test]
    fn reliable_transport_never_retransmits_and_k_is_zero() {
        let start = Instant::now();
        let mut t =
            ClientTransaction::new(start, &request(), Reliability::Reliable, Timers::default())
                .expect("valid");
        assert!(matches!(
            drain_client(&mut t).as_slice(),
            [ClientOutput::Transmit(_)]
        ));
        assert_eq!(t.poll_timeout(), Some(start + 64 * T1), "only Timer F");
        t.handle_input(start, ClientInput::Response(response(404)))
            .expect("matches");
        assert!(matches!(
            drain_client(&mut t).as_slice(),
            [ClientOutput::Response(r), ClientOutput::Terminated] if r.status == 404
        ));
    }

    #[test]
    fn shrunk_timers_scale_everything() {
        let timers = Timers {
            t1: Duration::from_millis(10),
            t2: Duration::from_millis(40),
            t4: Duration::from_millis(50),
        };
        let start = Instant::now();
        let mut t = ClientTransaction::new(start, &request(), Reliability::Unreliable, timers)
            .expect("valid");
        let log = run_client(&mut t, start);
        assert_eq!(log.last().map(|(at, _)| at.as_millis()), Some(640));
    }

    #[test]
    fn client_rejects_foreign_responses_and_bad_requests() {
        let start = Instant::now();
        let mut t = ClientTransaction::new(
            start,
            &request(),
            Reliability::Unreliable,
            Timers::default(),
        )
        .expect("valid");
        let mut other = response(200);
        other
            .headers
            .set("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKother");
        assert_eq!(
            t.handle_input(start, ClientInput::Response(other)),
            Err(TransactionError::NotMatching)
        );
        let mut cancel = response(200);
        cancel.headers.set("CSeq", "1 CANCEL");
        assert_eq!(
            t.handle_input(start, ClientInput::Response(cancel)),
            Err(TransactionError::NotMatching)
        );
        // Branch compares case-insensitively.
        let mut upper = response(200);
        upper
            .headers
            .set("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKABC");
        assert_eq!(t.handle_input(start, ClientInput::Response(upper)), Ok(()));

        let mut invite = request();
        invite.method = Method::Invite;
        invite.headers.set("CSeq", "1 INVITE");
        assert_eq!(
            ClientTransaction::new(start, &invite, Reliability::Reliable, Timers::default())
                .map(|_| ()),
            Err(TransactionError::NotNonInvite(Method::Invite))
        );
        let mut old = request();
        old.headers.set("Via", "SIP/2.0/UDP h;branch=1234");
        assert_eq!(
            ClientTransaction::new(start, &old, Reliability::Reliable, Timers::default())
                .map(|_| ()),
            Err(TransactionError::Rfc2543Branch("1234".into()))
        );
        let mut mismatch = request();
        mismatch.headers.set("CSeq", "1 OPTIONS");
        assert!(matches!(
            ClientTransaction::new(start, &mismatch, Reliability::Reliable, Timers::default()),
            Err(TransactionError::CSeqMethodMismatch { .. })
        ));
    }

    #[test]
    fn absurd_timers_leave_timers_unarmed_instead_of_panicking() {
        let timers = Timers {
            t1: Duration::MAX,
            t2: Duration::MAX,
            t4: Duration::MAX,
        };
        let start = Instant::now();
        let mut t = ClientTransaction::new(start, &request(), Reliability::Unreliable, timers)
            .expect("valid");
        assert_eq!(t.poll_timeout(), None);
        t.handle_input(start, ClientInput::Response(response(200)))
            .expect("matches");
        assert_eq!(t.state(), ClientState::Completed);
        let mut s =
            ServerTransaction::new(&request(), Reliability::Unreliable, timers).expect("valid");
        s.handle_input(start, ServerInput::Respond(response(200)))
            .expect("ok");
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn client_transport_error_terminates() {
        let start = Instant::now();
        let mut t =
            ClientTransaction::new(start, &request(), Reliability::Reliable, Timers::default())
                .expect("valid");
        let _ = drain_client(&mut t);
        t.handle_input(start, ClientInput::TransportError)
            .expect("ok");
        assert_eq!(
            drain_client(&mut t),
            [ClientOutput::TransportError, ClientOutput::Terminated]
        );
    }

    #[test]
    fn server_answers_retransmissions_and_waits_timer_j() {
        let start = Instant::now();
        let req = request();
        let mut t = ServerTransaction::new(&req, Reliability::Unreliable, Timers::default())
            .expect("valid");
        // Trying: retransmissions are discarded.
        t.handle_input(start, ServerInput::Request(req.clone()))
            .expect("matches");
        assert_eq!(drain_server(&mut t), []);
        // Provisional → Proceeding; a retransmission gets the provisional again.
        t.handle_input(start, ServerInput::Respond(response(100)))
            .expect("ok");
        let sent = drain_server(&mut t);
        assert_eq!(t.state(), ServerState::Proceeding);
        t.handle_input(start, ServerInput::Request(req.clone()))
            .expect("matches");
        assert_eq!(drain_server(&mut t), sent);
        // Final → Completed with Timer J = 64*T1.
        let t1 = start + Duration::from_secs(1);
        t.handle_input(t1, ServerInput::Respond(response(200)))
            .expect("ok");
        let final_sent = drain_server(&mut t);
        assert!(
            matches!(final_sent.as_slice(), [ServerOutput::Transmit(b)] if b.starts_with(b"SIP/2.0 200"))
        );
        assert_eq!(t.state(), ServerState::Completed);
        assert_eq!(t.poll_timeout(), Some(t1 + 64 * T1));
        t.handle_input(t1, ServerInput::Request(req.clone()))
            .expect("matches");
        assert_eq!(drain_server(&mut t), final_sent);
        // Later finals are discarded.
        t.handle_input(t1, ServerInput::Respond(response(500)))
            .expect("ok");
        assert_eq!(drain_server(&mut t), []);
        t.handle_timeout(t1 + 64 * T1);
        assert_eq!(drain_server(&mut t), [ServerOutput::Terminated]);
        assert!(t.is_terminated());
    }

    #[test]
    fn server_over_tcp_terminates_on_final() {
        let start = Instant::now();
        let mut t = ServerTransaction::new(&request(), Reliability::Reliable, Timers::default())
            .expect("valid");
        t.handle_input(start, ServerInput::Respond(response(202)))
            .expect("ok");
        let out = drain_server(&mut t);
        assert!(matches!(
            out.as_slice(),
            [ServerOutput::Transmit(_), ServerOutput::Terminated]
        ));
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn server_matching_uses_sent_by_and_ack_maps_to_invite() {
        let req = request();
        let mut t = ServerTransaction::new(&req, Reliability::Unreliable, Timers::default())
            .expect("valid");
        let mut other_host = req.clone();
        other_host
            .headers
            .set("Via", "SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKabc");
        assert_eq!(
            t.handle_input(Instant::now(), ServerInput::Request(other_host)),
            Err(TransactionError::NotMatching)
        );
        let mut bad = response(700);
        bad.status = 700;
        assert_eq!(
            t.handle_input(Instant::now(), ServerInput::Respond(bad)),
            Err(TransactionError::BadStatus(700))
        );
        let mut ack = req.clone();
        ack.method = Method::Ack;
        assert_eq!(
            ServerKey::from_request(&ack).map(|k| k.method),
            Ok(Method::Invite)
        );
    }

    #[test]
    fn transmitted_bytes_parse_back_to_the_request() {
        let start = Instant::now();
        let mut t = ClientTransaction::new(
            start,
            &request(),
            Reliability::Unreliable,
            Timers::default(),
        )
        .expect("valid");
        let Some(ClientOutput::Transmit(bytes)) = t.poll_output() else {
            panic!("transmit first");
        };
        let Ok(Item::Message(Message::Request(parsed))) =
            parse_datagram(&bytes, &Limits::default())
        else {
            panic!("parses");
        };
        assert_eq!(parsed.body, b"hi");
        assert_eq!(parsed.headers.get("Content-Length"), Some("2"));
    }
}
