//! Gateway configuration (TOML), in the style of the proxy's ([`crate::proxy::config`]).
//!
//! ```toml
//! component_domain = "sip.sut.test"        # XEP-0114 domain = the SIP users' domain
//! component_secret = "gateway secret"
//! proxy_component_addr = "127.0.0.1:5347"  # the proxy's component port
//! sip_listen_udp = "127.0.0.1:5060"        # port 0 = ephemeral
//! sip_listen_tcp = "127.0.0.1:5060"
//! # sip_domain = "sip.sut.test"            # defaults to component_domain
//!
//! [sip_routes]                              # static next hops for requests to SIP users
//! "alice@sip.sut.test" = "127.0.0.1:5070;transport=udp"
//! "sip.sut.test" = "127.0.0.1:5080;transport=tcp"
//!
//! [timers]                                  # RFC 3261 Table 4; shrink only in labs
//! t1 = "500ms"
//! t2 = "4s"
//! t4 = "5s"
//! message_error_window = "250ms"            # wait for an XMPP error before 200 OK
//! link_down_hold = "5s"                     # hold a MESSAGE while the XMPP link is down
//! reconnect_min = "500ms"                   # back-off to the proxy: min, doubling, max
//! reconnect_max = "30s"
//!
//! [subscriptions]
//! expires = 3600                            # Expires the gateway asks for (RFC 8048 §5.2.1)
//! max_expires = 3600                        # largest Expires granted to SIP subscribers
//! poll_timeout = "5s"                       # a SIP poll waits this long for its probe
//! legacy_unsubscribe_on_expiry = false      # RFC 7248 §4.3.3 (a) instead of RFC 8048
//!
//! [limits]
//! max_queued = 1000                         # stanzas held while the XMPP link is down
//! max_sip_message_bytes = 65535
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

use crate::proxy::config::{duration, find_line, line_of, valid_host_port};
use crate::sip::transaction::Timers;
use crate::translate::subscription::SubscriptionConfig;
use crate::xmpp::s2s::jid_domain;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The XEP-0114 component domain; also the SIP users' domain unless `sip_domain`
    /// says otherwise (`sip:alice@D` ↔ `alice@D`, RFC 7247 §6).
    pub component_domain: String,
    /// XEP-0114 shared secret.
    pub component_secret: String,
    /// The proxy's component listener, "host:port".
    pub proxy_component_addr: String,
    /// SIP over UDP (port 0 = ephemeral; read [`super::RunningGateway::sip_udp_addr`]).
    pub sip_listen_udp: SocketAddr,
    /// SIP over TCP (port 0 = ephemeral).
    pub sip_listen_tcp: SocketAddr,
    /// The SIP domain of the users behind the gateway; `None` = `component_domain`.
    #[serde(default)]
    pub sip_domain: Option<String>,
    /// SIP user (`user@domain`) or domain → `host:port;transport=udp|tcp`.
    #[serde(default)]
    pub sip_routes: BTreeMap<String, String>,
    #[serde(default)]
    pub timers: TimersConfig,
    #[serde(default)]
    pub subscriptions: SubscriptionsConfig,
    #[serde(default)]
    pub limits: GatewayLimits,
}

/// SIP and link timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersConfig {
    /// RFC 3261 T1 (RTT estimate); Timer F = 64·T1.
    #[serde(deserialize_with = "duration")]
    pub t1: Duration,
    /// RFC 3261 T2.
    #[serde(deserialize_with = "duration")]
    pub t2: Duration,
    /// RFC 3261 T4.
    #[serde(deserialize_with = "duration")]
    pub t4: Duration,
    /// How long after handing a translated MESSAGE to the XMPP link the gateway waits
    /// for an XMPP error before answering 200 (ERR-01 needs a window; IM-08 wants the
    /// 200 within a few hundred milliseconds). Zero answers at once.
    #[serde(deserialize_with = "duration")]
    pub message_error_window: Duration,
    /// While the XMPP link is down a translated MESSAGE is held this long, then
    /// answered 480. Kept below Timer F so the answer still reaches the sender.
    #[serde(deserialize_with = "duration")]
    pub link_down_hold: Duration,
    /// First reconnect delay to the proxy; doubles up to `reconnect_max`.
    #[serde(deserialize_with = "duration")]
    pub reconnect_min: Duration,
    #[serde(deserialize_with = "duration")]
    pub reconnect_max: Duration,
}

impl Default for TimersConfig {
    fn default() -> Self {
        let t = Timers::default();
        TimersConfig {
            t1: t.t1,
            t2: t.t2,
            t4: t.t4,
            message_error_window: Duration::from_millis(250),
            link_down_hold: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

impl TimersConfig {
    /// The RFC 3261 timer bases for transactions.
    pub fn sip(&self) -> Timers {
        Timers {
            t1: self.t1,
            t2: self.t2,
            t4: self.t4,
        }
    }
}

/// Presence subscription defaults (feeds [`SubscriptionConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriptionsConfig {
    /// Expires of the gateway's own SUBSCRIBEs (RFC 8048 §5.2.1: the gateway's choice).
    pub expires: u32,
    /// Largest Expires granted to SIP subscribers.
    pub max_expires: u32,
    /// A SIP poll (Expires: 0) waits this long for the probe's answer (RFC 8048 §7.2).
    #[serde(deserialize_with = "duration")]
    pub poll_timeout: Duration,
    /// RFC 7248 §4.3.3 variant (a) (D-02).
    pub legacy_unsubscribe_on_expiry: bool,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        let d = SubscriptionConfig::default();
        SubscriptionsConfig {
            expires: d.requested_expires,
            max_expires: d.max_expires,
            poll_timeout: d.poll_timeout,
            legacy_unsubscribe_on_expiry: d.legacy_unsubscribe_on_expiry,
        }
    }
}

impl SubscriptionsConfig {
    /// The state machines' configuration.
    pub fn machine(&self) -> SubscriptionConfig {
        SubscriptionConfig {
            requested_expires: self.expires,
            max_expires: self.max_expires,
            poll_timeout: self.poll_timeout,
            legacy_unsubscribe_on_expiry: self.legacy_unsubscribe_on_expiry,
        }
    }
}

/// Bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayLimits {
    /// Stanzas held while the XMPP link is down; beyond it new ones are refused.
    pub max_queued: usize,
    /// Largest SIP message accepted (UDP datagram or TCP message).
    pub max_sip_message_bytes: usize,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits {
            max_queued: 1000,
            max_sip_message_bytes: 65_535,
        }
    }
}

/// SIP transport of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The Via token (RFC 3261 §18).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// The `transport=` URI parameter value (RFC 3261 §19.1.1).
    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// From a `transport=` parameter or Via token (case-insensitive).
    pub fn from_name(s: &str) -> Option<Transport> {
        if s.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if s.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else {
            None
        }
    }
}

/// A next hop: where and how SIP goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SipTarget {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Parse `host:port[;transport=udp|tcp]` with a literal IP host (no DNS, by design).
/// Without a transport parameter UDP is used (RFC 3263 §4.1 default for `sip:`).
pub fn parse_route(v: &str) -> Option<SipTarget> {
    let mut parts = v.trim().split(';');
    let addr: SocketAddr = parts.next()?.trim().parse().ok()?;
    if addr.port() == 0 {
        return None;
    }
    let mut transport = Transport::Udp;
    for p in parts {
        let (k, val) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("transport") {
            return None;
        }
        transport = Transport::from_name(val.trim())?;
    }
    Some(SipTarget { transport, addr })
}

/// The static SIP next hops, shared between a running gateway (which may add routes at
/// run time: harness actors listen on ephemeral ports) and its core. Keys are
/// `user@domain` or `domain`; lookups try the user first (RFC 3261 §19.1.4: the user
/// part compares as written, the domain case-insensitively).
#[derive(Debug, Clone, Default)]
pub struct SipRoutes(Arc<RwLock<BTreeMap<String, SipTarget>>>);

impl SipRoutes {
    /// The routes of a configuration (invalid values were refused by `validate`).
    pub fn from_config(cfg: &GatewayConfig) -> Self {
        let r = SipRoutes::default();
        for (k, v) in &cfg.sip_routes {
            if let Some(t) = parse_route(v) {
                r.insert(k, t);
            }
        }
        r
    }

    fn normalise(key: &str) -> String {
        match key.rsplit_once('@') {
            Some((u, d)) => format!("{u}@{}", d.to_ascii_lowercase()),
            None => key.to_ascii_lowercase(),
        }
    }

    /// Add or replace a route.
    pub fn insert(&self, key: &str, target: SipTarget) {
        let mut m = self.0.write().unwrap_or_else(|e| e.into_inner());
        m.insert(Self::normalise(key), target);
    }

    /// The next hop for `user@domain`, else for `domain`.
    pub fn lookup(&self, user: Option<&str>, domain: &str) -> Option<SipTarget> {
        let m = self.0.read().unwrap_or_else(|e| e.into_inner());
        let domain = domain.to_ascii_lowercase();
        user.and_then(|u| m.get(&format!("{u}@{domain}")))
            .or_else(|| m.get(&domain))
            .copied()
    }
}

/// Largest value any timer may take: bounds `Instant` arithmetic (a day is far beyond
/// any SIP or XMPP timer).
pub const MAX_TIMER: Duration = Duration::from_secs(86_400);

/// A validation rule a configuration broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("{0:?} is not a valid domain name")]
    BadDomain(String),
    #[error("`component_secret` must not be empty")]
    EmptySecret,
    #[error("`proxy_component_addr` {0:?} is not \"host:port\"")]
    BadProxyAddr(String),
    #[error("SIP route for {key:?}: {value:?} is not \"ip:port;transport=udp|tcp\"")]
    BadRoute { key: String, value: String },
    #[error("SIP route key {0:?} is neither `user@domain` nor a domain")]
    BadRouteKey(String),
    #[error("timer `{0}` must be above zero")]
    ZeroTimer(&'static str),
    #[error("timer `{0}` is larger than {MAX_TIMER:?}")]
    TimerTooLarge(&'static str),
    #[error("`link_down_hold` must be below Timer F (64*T1) so the answer still counts")]
    HoldBeyondTimerF,
    #[error("`reconnect_min` must not exceed `reconnect_max`")]
    ReconnectOrder,
    #[error("limit `{0}` must be above zero")]
    ZeroLimit(&'static str),
}

impl Rule {
    fn needle(&self) -> Option<(&str, Option<&'static str>)> {
        match self {
            Rule::BadDomain(d) => Some((d, None)),
            Rule::EmptySecret => Some(("component_secret", None)),
            Rule::BadProxyAddr(_) => Some(("proxy_component_addr", None)),
            Rule::BadRoute { key, .. } | Rule::BadRouteKey(key) => {
                Some((key, Some("[sip_routes]")))
            }
            Rule::ZeroTimer(k) | Rule::TimerTooLarge(k) => Some((k, None)),
            Rule::HoldBeyondTimerF => Some(("link_down_hold", None)),
            Rule::ReconnectOrder => Some(("reconnect_min", None)),
            Rule::ZeroLimit(k) => Some((k, Some("[limits]"))),
        }
    }
}

/// Why a configuration file was refused; `file:line` first, as the proxy's.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: {rule}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        rule: Rule,
    },
}

/// [`GatewayConfig::from_toml`] failure, before a file name is attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromTomlError {
    #[error("{message}")]
    Syntax {
        offset: Option<usize>,
        message: String,
    },
    #[error("{0}")]
    Invalid(Rule),
}

fn line_for(src: &str, rule: &Rule) -> usize {
    match rule.needle() {
        Some((needle, section)) => find_line(src, &needle, section),
        None => 1,
    }
}

impl GatewayConfig {
    /// Read and validate a TOML file; errors name `file:line` and the rule broken.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&src).map_err(|e| match e {
            FromTomlError::Syntax { offset, message } => ConfigError::Syntax {
                file: path.to_path_buf(),
                line: offset.map_or(1, |o| line_of(&src, o)),
                message,
            },
            FromTomlError::Invalid(rule) => ConfigError::Invalid {
                file: path.to_path_buf(),
                line: line_for(&src, &rule),
                rule,
            },
        })
    }

    /// Parse and validate TOML text.
    pub fn from_toml(src: &str) -> Result<Self, FromTomlError> {
        let cfg: GatewayConfig = toml::from_str(src).map_err(|e| FromTomlError::Syntax {
            offset: e.span().map(|s| s.start),
            message: e.message().to_string(),
        })?;
        cfg.validate().map_err(FromTomlError::Invalid)?;
        Ok(cfg)
    }

    /// A minimal configuration for tests and embedding: loopback, ephemeral SIP ports,
    /// no routes.
    pub fn new(component_domain: &str, secret: &str, proxy_component_addr: SocketAddr) -> Self {
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        GatewayConfig {
            component_domain: component_domain.to_owned(),
            component_secret: secret.to_owned(),
            proxy_component_addr: proxy_component_addr.to_string(),
            sip_listen_udp: lo,
            sip_listen_tcp: lo,
            sip_domain: None,
            sip_routes: BTreeMap::new(),
            timers: TimersConfig::default(),
            subscriptions: SubscriptionsConfig::default(),
            limits: GatewayLimits::default(),
        }
    }

    /// The `[[component]]` entry the proxy needs for this gateway.
    pub fn proxy_component(&self) -> crate::proxy::ComponentConfig {
        crate::proxy::ComponentConfig {
            domain: self.component_domain.clone(),
            secret: self.component_secret.clone(),
        }
    }

    /// The SIP users' domain (lower-cased).
    pub fn sip_domain(&self) -> String {
        self.sip_domain
            .as_deref()
            .unwrap_or(&self.component_domain)
            .to_ascii_lowercase()
    }

    /// Check every rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), Rule> {
        let good_domain = |d: &str| jid_domain(d) == Some(d) && !d.contains('@');
        if !good_domain(&self.component_domain) {
            return Err(Rule::BadDomain(self.component_domain.clone()));
        }
        if let Some(d) = &self.sip_domain
            && !good_domain(d)
        {
            return Err(Rule::BadDomain(d.clone()));
        }
        if self.component_secret.is_empty() {
            return Err(Rule::EmptySecret);
        }
        if !valid_host_port(&self.proxy_component_addr) {
            return Err(Rule::BadProxyAddr(self.proxy_component_addr.clone()));
        }
        for (k, v) in &self.sip_routes {
            let domain = k
                .rsplit_once('@')
                .map_or(k.as_str(), |(u, d)| if u.is_empty() { "" } else { d });
            if !good_domain(domain) {
                return Err(Rule::BadRouteKey(k.clone()));
            }
            if parse_route(v).is_none() {
                return Err(Rule::BadRoute {
                    key: k.clone(),
                    value: v.clone(),
                });
            }
        }
        let t = &self.timers;
        for (name, v) in [
            ("t1", t.t1),
            ("t2", t.t2),
            ("t4", t.t4),
            ("link_down_hold", t.link_down_hold),
            ("reconnect_min", t.reconnect_min),
            ("reconnect_max", t.reconnect_max),
        ] {
            if v.is_zero() {
                return Err(Rule::ZeroTimer(name));
            }
            if v > MAX_TIMER {
                return Err(Rule::TimerTooLarge(name));
            }
        }
        for (name, v) in [
            ("message_error_window", t.message_error_window),
            ("poll_timeout", self.subscriptions.poll_timeout),
        ] {
            if v > MAX_TIMER {
                return Err(Rule::TimerTooLarge(name));
            }
        }
        if t.link_down_hold >= t.sip().transaction_timeout() {
            return Err(Rule::HoldBeyondTimerF);
        }
        if t.reconnect_min > t.reconnect_max {
            return Err(Rule::ReconnectOrder);
        }
        for (name, v) in [
            ("max_queued", self.limits.max_queued),
            ("max_sip_message_bytes", self.limits.max_sip_message_bytes),
        ] {
            if v == 0 {
                return Err(Rule::ZeroLimit(name));
            }
        }
        Ok(())
    }

    /// The static next hop for a SIP user: `user@domain` first, then `domain`
    /// (case-insensitive domain; the user part compares as written, RFC 3261 §19.1.4).
    pub fn route_for(&self, user: Option<&str>, domain: &str) -> Option<SipTarget> {
        let by_user = user.and_then(|u| {
            self.sip_routes.iter().find_map(|(k, v)| {
                let (ku, kd) = k.rsplit_once('@')?;
                (ku == u && kd.eq_ignore_ascii_case(domain)).then_some(v)
            })
        });
        let by_domain = || {
            self.sip_routes
                .iter()
                .find(|(k, _)| !k.contains('@') && k.eq_ignore_ascii_case(domain))
                .map(|(_, v)| v)
        };
        by_user.or_else(by_domain).and_then(|v| parse_route(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::io::Write as _;

    const GOOD: &str = r#"
component_domain = "sip.sut.test"
component_secret = "s"
proxy_component_addr = "127.0.0.1:5347"
sip_listen_udp = "127.0.0.1:0"
sip_listen_tcp = "127.0.0.1:0"

[sip_routes]
"alice@sip.sut.test" = "127.0.0.1:5070;transport=udp"
"sip.sut.test" = "127.0.0.1:5080;transport=tcp"

[timers]
t1 = "50ms"
message_error_window = 100
link_down_hold = "1s"
"#;

    #[test]
    fn parses_the_documented_shape() {
        let c = GatewayConfig::from_toml(GOOD).expect("valid");
        assert_eq!(c.sip_domain(), "sip.sut.test");
        assert_eq!(c.timers.t1, Duration::from_millis(50));
        assert_eq!(c.timers.message_error_window, Duration::from_millis(100));
        assert_eq!(c.timers.t2, TimersConfig::default().t2);
        let alice = c.route_for(Some("alice"), "SIP.sut.test").expect("route");
        assert_eq!(alice.transport, Transport::Udp);
        assert_eq!(alice.addr.port(), 5070);
        let bob = c.route_for(Some("bob"), "sip.sut.test").expect("route");
        assert_eq!(bob.transport, Transport::Tcp);
        assert_eq!(c.route_for(Some("x"), "elsewhere.test"), None);
    }

    #[test]
    fn shipped_example_is_valid_and_pairs_with_the_proxy_example() {
        let src = include_str!("../../fixtures/gateway.toml");
        let g = GatewayConfig::from_toml(src).expect("fixtures/gateway.toml");
        let p = crate::proxy::ProxyConfig::from_toml(include_str!("../../fixtures/proxy.toml"))
            .expect("fixtures/proxy.toml");
        assert!(p.components.contains(&g.proxy_component()));
        assert_eq!(
            p.component_listen.map(|a| a.to_string()),
            Some(g.proxy_component_addr)
        );
    }

    #[rstest]
    #[case::bad_domain(
        r#"component_domain = "a b""#,
        Rule::BadDomain("a b".into())
    )]
    #[case::empty_secret(r#"component_secret = """#, Rule::EmptySecret)]
    #[case::bad_proxy(
        r#"proxy_component_addr = "nowhere""#,
        Rule::BadProxyAddr("nowhere".into())
    )]
    fn top_level_rules(#[case] line: &str, #[case] rule: Rule) {
        let key = line.split(' ').next().unwrap_or_default();
        let src: String = GOOD
            .lines()
            .map(|l| if l.starts_with(key) { line } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            GatewayConfig::from_toml(&src),
            Err(FromTomlError::Invalid(rule))
        );
    }

    #[rstest]
    #[case::bad_route(r#""x.test" = "127.0.0.1""#, Rule::BadRoute { key: "x.test".into(), value: "127.0.0.1".into() })]
    #[case::bad_transport(r#""x.test" = "127.0.0.1:1;transport=sctp""#, Rule::BadRoute { key: "x.test".into(), value: "127.0.0.1:1;transport=sctp".into() })]
    #[case::hostname(r#""x.test" = "localhost:5060""#, Rule::BadRoute { key: "x.test".into(), value: "localhost:5060".into() })]
    #[case::bad_key(r#""@x.test" = "127.0.0.1:1""#, Rule::BadRouteKey("@x.test".into()))]
    fn route_rules(#[case] extra: &str, #[case] rule: Rule) {
        let src = GOOD.replace("[sip_routes]\n", &format!("[sip_routes]\n{extra}\n"));
        assert_eq!(
            GatewayConfig::from_toml(&src),
            Err(FromTomlError::Invalid(rule))
        );
    }

    #[rstest]
    #[case("t1 = 0", Rule::ZeroTimer("t1"))]
    #[case("t1 = \"50ms\"\nlink_down_hold = \"10s\"", Rule::HoldBeyondTimerF)]
    #[case("reconnect_min = \"1m\"", Rule::ReconnectOrder)]
    #[case("reconnect_max = \"100000h\"", Rule::TimerTooLarge("reconnect_max"))]
    fn timer_rules(#[case] timers: &str, #[case] rule: Rule) {
        let head = GOOD.split("[timers]").next().unwrap_or_default();
        let src = format!("{head}[timers]\n{timers}\n");
        assert_eq!(
            GatewayConfig::from_toml(&src),
            Err(FromTomlError::Invalid(rule))
        );
    }

    #[rstest]
    #[case("127.0.0.1:5060", Some((Transport::Udp, 5060)))]
    #[case("127.0.0.1:5060;transport=TCP", Some((Transport::Tcp, 5060)))]
    #[case("[::1]:5061;transport=udp", Some((Transport::Udp, 5061)))]
    #[case("127.0.0.1:0", None)]
    #[case("127.0.0.1:5060;lr", None)]
    fn routes(#[case] v: &str, #[case] want: Option<(Transport, u16)>) {
        assert_eq!(parse_route(v).map(|t| (t.transport, t.addr.port())), want);
    }

    #[test]
    fn file_errors_name_file_and_line() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        let src = GOOD.replace("[sip_routes]\n", "[sip_routes]\n\"y.test\" = \"bad\"\n");
        f.write_all(src.as_bytes()).expect("write");
        let e = GatewayConfig::from_file(f.path()).expect_err("invalid");
        let line = src
            .lines()
            .position(|l| l.starts_with("\"y.test\""))
            .map(|i| i + 1);
        assert!(
            matches!(&e, ConfigError::Invalid { line: l, .. } if Some(*l) == line),
            "{e}"
        );

        let mut g = tempfile::NamedTempFile::new().expect("tmp");
        g.write_all(b"component_domain = \"a.test\"\nsip_listen_udp = 5\n")
            .expect("write");
        let e = GatewayConfig::from_file(g.path()).expect_err("syntax");
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
    }
}
