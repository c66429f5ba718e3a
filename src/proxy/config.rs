//! Proxy configuration (TOML).
//!
//! ```toml
//! domains = ["xmpp-a.test"]            # served domains; the first is the primary one
//! listen = "127.0.0.1:5269"            # S2S listener; port 0 = ephemeral
//! component_listen = "127.0.0.1:5347"  # XEP-0114 listener (optional)
//! dialback_secret = "change me"        # XEP-0185 secret
//!
//! [routes]                             # static routes instead of DNS SRV
//! "xmpp-b.test" = "127.0.0.1:5270"
//!
//! [[component]]
//! domain = "sip.xmpp-a.test"
//! secret = "gateway secret"
//!
//! [timeouts]                           # "500ms", "2s", "1m", "1h", or an integer of ms
//! connect = "2s"
//! dialback = "10s"
//! establish = "30s"
//! idle = "10m"
//!
//! keepalive_send = "4m"                # whitespace keepalive interval (off when absent)
//! keepalive_expect = "5m"              # EnableKeepAlive partners: silence closes the stream
//! tls_handshake = "10s"
//!
//! [limits]
//! max_stanza_bytes = 262144            # at least 10000 (RFC 6120 §13.12)
//! max_depth = 64
//! max_pairs_per_stream = 64
//! max_queued_stanzas = 1000
//! max_inbound_streams = 1000           # MS-10 ConnectionLimit
//! max_streams_per_partner = 20         # MS-10 PartnerConnectionLimit
//!
//! [tls]                                # PEM files, relative to this file
//! cert = "certs/xmpp-a.test.crt"       # our chain, leaf first; must name our domains
//! key = "certs/xmpp-a.test.key"
//! ca = "certs/ca.crt"                  # CAs trusted for peer certificates
//!
//! [default_partner]                    # every partner not listed below (MS-06..MS-08)
//! tls = "optional"                     # required | optional | not_supported
//! sasl = "optional"                    # SASL EXTERNAL: required | optional | not_supported
//! dialback = true                      # SupportDialbackNegotiation
//! keepalive = false                    # EnableKeepAlive: expect the partner's keepalives
//!
//! [partners."gtalk.test"]              # unset keys come from [default_partner]
//! tls = "not_supported"
//! sasl = "not_supported"
//! ```
//! Invalid partner settings (SASL without TLS, no usable method, TLS required without a
//! certificate) are rejected at load, naming the partner and the rule (MS-07, MS-09).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::tls::{TlsConfigError, TlsMaterial, TlsSettings};
use crate::xmpp::s2s::{Negotiation, PartnerPolicy, Policies, PolicyRule, jid_domain};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Served XMPP domains; the first is the primary one.
    pub domains: Vec<String>,
    /// S2S listening address (port 0 = ephemeral; read the bound one from
    /// [`super::RunningProxy::s2s_addr`]).
    pub listen: SocketAddr,
    /// XEP-0114 component listener.
    #[serde(default)]
    pub component_listen: Option<SocketAddr>,
    pub dialback_secret: String,
    /// Remote domain → "host:port" (static routes; no DNS SRV in the proxy).
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Components allowed to connect (XEP-0114).
    #[serde(default, rename = "component")]
    pub components: Vec<ComponentConfig>,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[tls]`: certificate, key and CA files.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// TLS material given directly (embedding, the harness's bundled target). It wins over
    /// `tls`; [`ProxyConfig::from_file`] fills it from the `[tls]` files.
    #[serde(skip)]
    pub tls_material: Option<TlsMaterial>,
    /// `[default_partner]`: the policy for partners not listed in `[partners]`.
    #[serde(default)]
    pub default_partner: PartnerConfig,
    /// `[partners."domain"]`: per-partner overrides of `[default_partner]`.
    #[serde(default)]
    pub partners: BTreeMap<String, PartnerConfig>,
}

/// `[tls]`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// One partner's settings, as Lync names them (MS-06..MS-08, MS-10); unset keys inherit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerConfig {
    /// TlsNegotiation.
    pub tls: Option<Negotiation>,
    /// SaslNegotiation.
    pub sasl: Option<Negotiation>,
    /// SupportDialbackNegotiation.
    pub dialback: Option<bool>,
    /// EnableKeepAlive.
    pub keepalive: Option<bool>,
}

impl PartnerConfig {
    /// These settings over `base`.
    pub fn over(&self, base: PartnerPolicy) -> PartnerPolicy {
        PartnerPolicy {
            tls: self.tls.unwrap_or(base.tls),
            sasl: self.sasl.unwrap_or(base.sasl),
            dialback: self.dialback.unwrap_or(base.dialback),
            keepalive: self.keepalive.unwrap_or(base.keepalive),
        }
    }

    /// Set every key from `p` (embedding).
    pub fn from_policy(p: PartnerPolicy) -> Self {
        PartnerConfig {
            tls: Some(p.tls),
            sasl: Some(p.sasl),
            dialback: Some(p.dialback),
            keepalive: Some(p.keepalive),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    pub domain: String,
    pub secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// TCP connect to a static route (failure → `remote-server-timeout`, RFC 6120 §10.4.3).
    #[serde(deserialize_with = "duration")]
    pub connect: Duration,
    /// Waiting for a dialback answer or verdict (XEP-0220 §2.1.1).
    #[serde(deserialize_with = "duration")]
    pub dialback: Duration,
    /// From connect until the stream is usable; a stalled peer is closed after this.
    #[serde(deserialize_with = "duration")]
    pub establish: Duration,
    /// A stream without traffic is closed after this (RFC 6120 §4.6.3: be lenient).
    #[serde(deserialize_with = "duration")]
    pub idle: Duration,
    /// Whitespace keepalive send interval on established streams (KA-01); none if unset.
    #[serde(deserialize_with = "opt_duration")]
    pub keepalive_send: Option<Duration>,
    /// MS-10 KeepAliveInterval: an EnableKeepAlive partner silent this long is closed.
    #[serde(deserialize_with = "duration")]
    pub keepalive_expect: Duration,
    /// A TLS handshake that has not finished by then costs its stream.
    #[serde(deserialize_with = "duration")]
    pub tls_handshake: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: Duration::from_secs(5),
            dialback: Duration::from_secs(15),
            establish: Duration::from_secs(30),
            idle: Duration::from_secs(600),
            keepalive_send: None,
            keepalive_expect: Duration::from_secs(300),
            tls_handshake: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_pairs_per_stream: usize,
    pub max_queued_stanzas: usize,
    /// MS-10 ConnectionLimit: inbound S2S connections at once; more are closed at accept.
    pub max_inbound_streams: usize,
    /// MS-10 PartnerConnectionLimit: inbound streams naming one partner domain at once;
    /// more get a `policy-violation` stream error.
    pub max_streams_per_partner: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
            max_pairs_per_stream: 64,
            max_queued_stanzas: 1000,
            max_inbound_streams: 1000,
            max_streams_per_partner: 20,
        }
    }
}

/// Parse `"500ms"`, `"2s"`, `"1m"`, `"1h"` (an integer with a unit).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

/// Serde adapter for durations (`"500ms"`, `"2s"`, … or an integer of milliseconds), shared
/// by the proxy's and the gateway's configuration files.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                r#"a duration such as "500ms", "2s", "1m", "1h", or an integer of milliseconds"#,
            )
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_millis)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A validation rule a configuration broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("`domains` must list at least one served domain")]
    NoDomains,
    #[error("{0:?} is not a valid domain name")]
    BadDomain(String),
    #[error("domain {0:?} is listed twice")]
    DuplicateDomain(String),
    #[error("`dialback_secret` must not be empty")]
    EmptySecret,
    #[error("route for {0:?}, a domain served here (a route must lead elsewhere)")]
    RouteForOwnDomain(String),
    #[error("route for {domain:?}: {value:?} is not \"host:port\"")]
    BadRoute { domain: String, value: String },
    #[error("component {0:?} is configured twice")]
    DuplicateComponent(String),
    #[error("component {0:?} has an empty secret")]
    EmptyComponentSecret(String),
    #[error("components are configured but `component_listen` is missing")]
    ComponentsWithoutListener,
    #[error("timeout `{0}` must be above zero")]
    ZeroTimeout(&'static str),
    #[error("`limits.max_stanza_bytes` must be at least 10000 (RFC 6120 §13.12)")]
    StanzaLimitTooSmall,
    #[error("limit `{0}` must be above zero")]
    ZeroLimit(&'static str),
    #[error("partner {partner:?}: {rule}")]
    Partner { partner: String, rule: PolicyRule },
    #[error(
        "partner {0:?} needs TLS (required TLS or SASL) but no [tls] certificate is configured"
    )]
    TlsWithoutCertificate(String),
}

impl Rule {
    /// Text to look for in the file to report a line: the offending value or key.
    fn needle(&self) -> Option<(&str, Option<&'static str>)> {
        match self {
            Rule::BadDomain(d) | Rule::DuplicateDomain(d) => Some((d, Some("domains"))),
            Rule::RouteForOwnDomain(d) | Rule::BadRoute { domain: d, .. } => {
                Some((d, Some("[routes]")))
            }
            Rule::DuplicateComponent(d) | Rule::EmptyComponentSecret(d) => {
                Some((d, Some("[[component]]")))
            }
            Rule::NoDomains => Some(("domains", None)),
            Rule::EmptySecret => Some(("dialback_secret", None)),
            Rule::ComponentsWithoutListener => Some(("[[component]]", None)),
            Rule::ZeroTimeout(k) | Rule::ZeroLimit(k) => Some((k, None)),
            Rule::StanzaLimitTooSmall => Some(("max_stanza_bytes", None)),
            Rule::Partner { partner: p, .. } | Rule::TlsWithoutCertificate(p) => {
                if p == DEFAULT_PARTNER {
                    Some(("[default_partner]", None))
                } else {
                    Some((p, Some("[partners")))
                }
            }
        }
    }
}

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
    #[error("{}:{line}: [tls]: {source}", file.display())]
    Tls {
        file: PathBuf,
        line: usize,
        source: TlsConfigError,
    },
}

/// How errors name `[default_partner]`.
pub const DEFAULT_PARTNER: &str = "default_partner";

pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    src.get(..offset).map_or(1, |s| s.matches('\n').count() + 1)
}

/// The 1-based line where `needle` appears, preferring a quoted occurrence and one after
/// `section` (best effort: 1 when not found). Shared with the gateway's configuration.
pub(crate) fn find_line(src: &str, needle: &str, section: Option<&str>) -> usize {
    let start = section.and_then(|s| src.find(s)).unwrap_or(0);
    let quoted = [format!("\"{needle}\""), format!("'{needle}'")];
    let hit = quoted
        .iter()
        .filter_map(|q| src.get(start..).and_then(|s| s.find(q.as_str())))
        .min()
        .map(|i| start + i)
        .or_else(|| {
            src.get(start..)
                .and_then(|s| s.find(needle))
                .map(|i| start + i)
        })
        .or_else(|| src.find(needle));
    hit.map_or(1, |i| line_of(src, i))
}

/// The 1-based line where `rule`'s subject appears.
fn line_for(src: &str, rule: &Rule) -> usize {
    match rule.needle() {
        Some((needle, section)) => find_line(src, &needle, section),
        None => 1,
    }
}

/// `host:port` with a non-empty host and a port in 1..=65535 (a route, a next hop).
pub(crate) fn valid_host_port(v: &str) -> bool {
    match v.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

impl ProxyConfig {
    /// Read and validate a TOML file; errors name `file:line` and the rule broken.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::from_toml(&src).map_err(|e| match e {
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
        })?;
        // `[tls]` paths are relative to the file; load and check them now so a bad
        // certificate is a load error with a line, not a failure at the first stream.
        if let Some(files) = &cfg.tls {
            let base = path.parent().unwrap_or(Path::new(""));
            let at = |p: &Path| base.join(p);
            let loaded = TlsMaterial::from_files(&at(&files.cert), &at(&files.key), &at(&files.ca))
                .and_then(|m| TlsSettings::new(&m).map(|_| m));
            match loaded {
                Ok(m) => cfg.tls_material = Some(m),
                Err(source) => {
                    return Err(ConfigError::Tls {
                        file: path.to_path_buf(),
                        line: src.find("[tls]").map_or(1, |i| line_of(&src, i)),
                        source,
                    });
                }
            }
        }
        Ok(cfg)
    }

    /// Has TLS material, from `[tls]` or given directly.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some() || self.tls_material.is_some()
    }

    /// The TLS material to use: the direct one, else the `[tls]` files (relative paths
    /// against the current directory here; [`ProxyConfig::from_file`] resolves them
    /// against the file's directory).
    pub fn load_tls(&self) -> Result<Option<TlsMaterial>, TlsConfigError> {
        if let Some(m) = &self.tls_material {
            return Ok(Some(m.clone()));
        }
        match &self.tls {
            Some(f) => TlsMaterial::from_files(&f.cert, &f.key, &f.ca).map(Some),
            None => Ok(None),
        }
    }

    /// The resolved per-partner policies (MS-06..MS-09).
    pub fn policies(&self) -> Policies {
        let default = self.default_partner.over(PartnerPolicy::default());
        Policies {
            default,
            partners: self
                .partners
                .iter()
                .map(|(d, p)| (d.to_ascii_lowercase(), p.over(default)))
                .collect(),
        }
    }

    /// Parse and validate TOML text.
    pub fn from_toml(src: &str) -> Result<Self, FromTomlError> {
        let cfg: ProxyConfig = toml::from_str(src).map_err(|e| FromTomlError::Syntax {
            offset: e.span().map(|s| s.start),
            message: e.message().to_string(),
        })?;
        cfg.validate().map_err(FromTomlError::Invalid)?;
        Ok(cfg)
    }

    /// Check every rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), Rule> {
        if self.domains.is_empty() {
            return Err(Rule::NoDomains);
        }
        let mut seen: Vec<String> = Vec::new();
        for d in &self.domains {
            if jid_domain(d) != Some(d.as_str()) || d.contains('@') {
                return Err(Rule::BadDomain(d.clone()));
            }
            if seen.iter().any(|s| s.eq_ignore_ascii_case(d)) {
                return Err(Rule::DuplicateDomain(d.clone()));
            }
            seen.push(d.clone());
        }
        if self.dialback_secret.is_empty() {
            return Err(Rule::EmptySecret);
        }
        for c in &self.components {
            if jid_domain(&c.domain) != Some(c.domain.as_str()) || c.domain.contains('@') {
                return Err(Rule::BadDomain(c.domain.clone()));
            }
            if self
                .components
                .iter()
                .filter(|o| o.domain.eq_ignore_ascii_case(&c.domain))
                .count()
                > 1
            {
                return Err(Rule::DuplicateComponent(c.domain.clone()));
            }
            if self
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&c.domain))
            {
                return Err(Rule::DuplicateDomain(c.domain.clone()));
            }
            if c.secret.is_empty() {
                return Err(Rule::EmptyComponentSecret(c.domain.clone()));
            }
        }
        if !self.components.is_empty() && self.component_listen.is_none() {
            return Err(Rule::ComponentsWithoutListener);
        }
        for (d, v) in &self.routes {
            if self.serves(d) {
                return Err(Rule::RouteForOwnDomain(d.clone()));
            }
            if jid_domain(d) != Some(d.as_str()) || !valid_host_port(v) {
                return Err(Rule::BadRoute {
                    domain: d.clone(),
                    value: v.clone(),
                });
            }
        }
        let t = &self.timeouts;
        for (name, v) in [
            ("connect", t.connect),
            ("dialback", t.dialback),
            ("establish", t.establish),
            ("idle", t.idle),
        ] {
            if v.is_zero() {
                return Err(Rule::ZeroTimeout(name));
            }
        }
        let l = &self.limits;
        if l.max_stanza_bytes < 10_000 {
            return Err(Rule::StanzaLimitTooSmall);
        }
        for (name, v) in [
            ("max_depth", l.max_depth),
            ("max_pairs_per_stream", l.max_pairs_per_stream),
            ("max_queued_stanzas", l.max_queued_stanzas),
            ("max_inbound_streams", l.max_inbound_streams),
            ("max_streams_per_partner", l.max_streams_per_partner),
        ] {
            if v == 0 {
                return Err(Rule::ZeroLimit(name));
            }
        }
        for (name, v) in [
            ("keepalive_expect", Some(t.keepalive_expect)),
            ("tls_handshake", Some(t.tls_handshake)),
            ("keepalive_send", t.keepalive_send),
        ] {
            if v.is_some_and(|d| d.is_zero()) {
                return Err(Rule::ZeroTimeout(name));
            }
        }
        self.validate_partners()
    }

    /// MS-07, MS-08, MS-09: every partner policy must leave a usable method, SASL needs
    /// TLS, and required TLS needs our certificate.
    fn validate_partners(&self) -> Result<(), Rule> {
        let policies = self.policies();
        let named = self
            .partners
            .keys()
            .map(|d| (d.clone(), *policies.for_domain(d)));
        for (name, p) in
            std::iter::once((DEFAULT_PARTNER.to_string(), policies.default)).chain(named)
        {
            if name != DEFAULT_PARTNER
                && (jid_domain(&name) != Some(name.as_str()) || name.contains('@'))
            {
                return Err(Rule::BadDomain(name));
            }
            p.check().map_err(|rule| Rule::Partner {
                partner: name.clone(),
                rule,
            })?;
            let needs_tls = p.tls == Negotiation::Required || p.sasl == Negotiation::Required;
            if needs_tls && !self.has_tls() {
                return Err(Rule::TlsWithoutCertificate(name));
            }
        }
        Ok(())
    }

    /// Served here: one of `domains` or a component domain.
    pub fn serves(&self, d: &str) -> bool {
        self.domains
            .iter()
            .chain(self.components.iter().map(|c| &c.domain))
            .any(|x| x.eq_ignore_ascii_case(d))
    }

    /// A minimal configuration for tests and embedding: one domain, ephemeral loopback
    /// port, no routes, no components.
    pub fn new(domain: &str, dialback_secret: &str) -> Self {
        ProxyConfig {
            domains: vec![domain.to_string()],
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            component_listen: None,
            dialback_secret: dialback_secret.to_string(),
            routes: BTreeMap::new(),
            components: Vec::new(),
            timeouts: TimeoutsConfig::default(),
            limits: LimitsConfig::default(),
            tls: None,
            tls_material: None,
            default_partner: PartnerConfig::default(),
            partners: BTreeMap::new(),
        }
    }
}

/// [`ProxyConfig::from_toml`] failure, before a file name is attached.
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::io::Write as _;

    const GOOD: &str = r#"
domains = ["a.test"]
listen = "127.0.0.1:0"
component_listen = "127.0.0.1:0"
dialback_secret = "s"

[routes]
"b.test" = "127.0.0.1:5269"

[[component]]
domain = "gw.a.test"
secret = "x"

[timeouts]
connect = "2s"
dialback = 1500
establish = "1m"
"#;

    #[test]
    fn parses_the_documented_shape() {
        let c = ProxyConfig::from_toml(GOOD).expect("valid");
        assert_eq!(c.domains, ["a.test"]);
        assert_eq!(
            c.routes.get("b.test").map(String::as_str),
            Some("127.0.0.1:5269")
        );
        assert_eq!(c.components[0].domain, "gw.a.test");
        assert_eq!(c.timeouts.connect, Duration::from_secs(2));
        assert_eq!(c.timeouts.dialback, Duration::from_millis(1500));
        assert_eq!(c.timeouts.establish, Duration::from_secs(60));
        assert_eq!(c.timeouts.idle, TimeoutsConfig::default().idle);
    }

    #[rstest]
    #[case::no_domains("domains = []", Rule::NoDomains)]
    #[case::own_route(r#"[routes]
"a.test" = "127.0.0.1:1""#, Rule::RouteForOwnDomain("a.test".into()))]
    #[case::bad_route(r#"[routes]
"c.test" = "nowhere""#, Rule::BadRoute { domain: "c.test".into(), value: "nowhere".into() })]
    #[case::dup_component(r#"[[component]]
domain = "gw.a.test"
secret = "y""#, Rule::DuplicateComponent("gw.a.test".into()))]
    fn validation(#[case] extra: &str, #[case] rule: Rule) {
        let src = if extra.starts_with("domains") {
            GOOD.replace(r#"domains = ["a.test"]"#, extra)
        } else {
            format!("{GOOD}\n{extra}\n")
        };
        // `[routes]` twice is a TOML error; merge route cases into the existing table.
        let src = if extra.starts_with("[routes]") {
            GOOD.replace("[routes]\n", &format!("{extra}\n"))
        } else {
            src
        };
        assert_eq!(
            ProxyConfig::from_toml(&src),
            Err(FromTomlError::Invalid(rule))
        );
    }

    #[test]
    fn file_errors_name_file_and_line() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        let src = GOOD.replace("[routes]\n", "[routes]\n\"a.test\" = \"127.0.0.1:1\"\n");
        f.write_all(src.as_bytes()).expect("write");
        let e = ProxyConfig::from_file(f.path()).expect_err("invalid");
        let line = src
            .lines()
            .position(|l| l.starts_with("\"a.test\""))
            .map(|i| i + 1);
        assert!(
            matches!(&e, ConfigError::Invalid { line: l, .. } if Some(*l) == line),
            "{e}"
        );
        assert!(e.to_string().contains("a domain served here"), "{e}");

        let mut g = tempfile::NamedTempFile::new().expect("tmp");
        g.write_all(b"domains = [\"a.test\"]\nlisten = 5\n")
            .expect("write");
        let e = ProxyConfig::from_file(g.path()).expect_err("syntax");
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
    }

    const PARTNERS: &str = r#"
domains = ["a.test"]
listen = "127.0.0.1:0"
dialback_secret = "s"

[default_partner]
tls = "optional"
sasl = "not_supported"
dialback = true
keepalive = false

[partners."b.test"]
tls = "not_supported"
keepalive = true

[partners."c.test"]
sasl = "optional"
dialback = false
"#;

    #[test]
    fn partner_policies_inherit_from_the_default() {
        let c = ProxyConfig::from_toml(PARTNERS).expect("valid");
        let p = c.policies();
        assert_eq!(p.default.sasl, Negotiation::NotSupported);
        let b = p.for_domain("B.test");
        assert_eq!(
            (b.tls, b.sasl, b.dialback, b.keepalive),
            (
                Negotiation::NotSupported,
                Negotiation::NotSupported,
                true,
                true
            )
        );
        let cc = p.for_domain("c.test");
        assert_eq!(
            (cc.tls, cc.sasl, cc.dialback),
            (Negotiation::Optional, Negotiation::Optional, false)
        );
        assert_eq!(c.timeouts.keepalive_send, None);
        assert_eq!(c.limits.max_streams_per_partner, 20);
    }

    #[rstest]
    #[case::sasl_without_tls(
        "[partners.\"d.test\"]\ntls = \"not_supported\"\nsasl = \"optional\"",
        Rule::Partner { partner: "d.test".into(), rule: PolicyRule::SaslWithoutTls }
    )]
    #[case::no_method(
        "[partners.\"d.test\"]\ndialback = false",
        Rule::Partner { partner: "d.test".into(), rule: PolicyRule::NoUsableMethod }
    )]
    #[case::tls_required_without_cert(
        "[partners.\"d.test\"]\ntls = \"required\"",
        Rule::TlsWithoutCertificate("d.test".into())
    )]
    #[case::bad_partner_domain(
        "[partners.\"not a domain\"]\ntls = \"optional\"",
        Rule::BadDomain("not a domain".into())
    )]
    fn partner_rules(#[case] extra: &str, #[case] rule: Rule) {
        let src = format!("{PARTNERS}\n{extra}\n");
        assert_eq!(
            ProxyConfig::from_toml(&src),
            Err(FromTomlError::Invalid(rule))
        );
    }

    #[test]
    fn default_partner_rules_name_the_section_and_line() {
        let src = PARTNERS.replace("dialback = true", "dialback = false");
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(src.as_bytes()).expect("write");
        let e = ProxyConfig::from_file(f.path()).expect_err("invalid");
        let line = src
            .lines()
            .position(|l| l == "[default_partner]")
            .map(|i| i + 1);
        assert!(
            matches!(&e, ConfigError::Invalid { line: l, .. } if Some(*l) == line),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("\"default_partner\": no usable authentication method"),
            "{e}"
        );
        let bad = PARTNERS.replace("tls = \"optional\"", "tls = \"sometimes\"");
        assert!(matches!(
            ProxyConfig::from_toml(&bad),
            Err(FromTomlError::Syntax { .. })
        ));
    }

    #[test]
    fn tls_files_load_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let ca = crate::tls::TestCa::new("cfg CA").expect("ca");
        ca.write_to(&dir.path().join("certs")).expect("ca");
        ca.valid("a.test")
            .expect("leaf")
            .write_to(&dir.path().join("certs"), "a.test")
            .expect("leaf");
        let tls = "[tls]\ncert = \"certs/a.test.crt\"\nkey = \"certs/a.test.key\"\nca = \"certs/ca.crt\"\n";
        let src = format!(
            "{}\n{tls}",
            PARTNERS.replace("tls = \"optional\"", "tls = \"required\"")
        );
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, &src).expect("write");
        let c = ProxyConfig::from_file(&path).expect("loads");
        assert!(c.tls_material.is_some() && c.has_tls());
        // A missing key file is a load error on the [tls] line.
        std::fs::remove_file(dir.path().join("certs/a.test.key")).expect("rm");
        let e = ProxyConfig::from_file(&path).expect_err("missing key");
        let line = src.lines().position(|l| l == "[tls]").map(|i| i + 1);
        assert!(
            matches!(&e, ConfigError::Tls { line: l, .. } if Some(*l) == line),
            "{e}"
        );
    }

    #[rstest]
    #[case("500ms", Some(Duration::from_millis(500)))]
    #[case("2s", Some(Duration::from_secs(2)))]
    #[case("3m", Some(Duration::from_secs(180)))]
    #[case("2x", None)]
    #[case("s", None)]
    fn durations(#[case] s: &str, #[case] want: Option<Duration>) {
        assert_eq!(parse_duration(s), want);
    }
}
