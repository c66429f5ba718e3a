//! Targets: which system under test a run drives, and how to reach (or start) it.
//!
//! - `bundled`: our reference proxy, started in-process per scenario on ephemeral loopback
//!   ports with static routes to the scenario's actors — scenarios run in parallel.
//! - `remote`: a SUT already running somewhere (a third party's), described by a TOML file:
//!   its addresses, its domain, the capabilities it claims, and the fixed addresses where it
//!   dials the simulated domains.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::bundled_sip;
use std::sync::Arc;

use super::load::{Negotiation, Partner, Scenario};
use super::run::{ActorListeners, RunError, SutEndpoints};
use super::tls_io::RunPki;
use crate::proxy;

/// The domain the bundled proxy serves (`{sut}` in scenarios).
pub const BUNDLED_DOMAIN: &str = "sut.test";

/// Capabilities the bundled pair claims.
pub const BUNDLED_CAPABILITIES: &[&str] = &["dialback", "component", "s2s-in", "s2s-out", "sip"];

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}:{line}:{col}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
}

/// A parsed target file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    name: String,
    kind: String,
    #[serde(default)]
    description: Option<String>,
    xmpp: Option<XmppSection>,
    #[serde(default)]
    capabilities: Vec<String>,
    /// Where the SUT dials each simulated domain: domain → "127.0.0.1:port".
    #[serde(default)]
    routes: BTreeMap<String, String>,
    /// The per-partner policies the SUT was configured with, by partner domain.
    #[serde(default)]
    partners: BTreeMap<String, crate::harness::model::PartnerFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct XmppSection {
    domain: String,
    s2s: String,
    #[serde(default)]
    component: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Target {
    Bundled,
    Remote(RemoteTarget),
}

#[derive(Debug, Clone)]
pub struct RemoteTarget {
    pub name: String,
    pub description: Option<String>,
    pub endpoints: SutEndpoints,
    pub capabilities: Vec<String>,
    pub routes: BTreeMap<String, SocketAddr>,
    pub partners: BTreeMap<String, Partner>,
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Bundled => "bundled",
            Target::Remote(r) => &r.name,
        }
    }

    pub fn capabilities(&self) -> Vec<String> {
        match self {
            Target::Bundled => BUNDLED_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            Target::Remote(r) => r.capabilities.clone(),
        }
    }

    /// Domains the SUT serves, for normalisation.
    pub fn domains(&self) -> Vec<String> {
        match self {
            Target::Bundled => vec![BUNDLED_DOMAIN.to_string()],
            Target::Remote(r) => vec![r.endpoints.domain.clone()],
        }
    }

    /// Why this target cannot run a scenario that needs `partner` policy for `domain`:
    /// the bundled pair is configured per scenario; a third-party SUT has what its target
    /// file declares (Lync's defaults when it declares nothing for that domain).
    pub fn partner_mismatch(&self, domain: &str, partner: &Partner) -> Option<String> {
        match self {
            Target::Bundled => None,
            Target::Remote(r) => {
                let have = r.partners.get(domain).copied().unwrap_or(Partner::DEFAULT);
                (have != *partner).then(|| {
                    format!(
                        "the scenario needs partner policy for {domain} tls={} sasl={} dialback={} keepalive={}, \
                         the target declares tls={} sasl={} dialback={} keepalive={}",
                        partner.tls.as_str(),
                        partner.sasl.as_str(),
                        partner.dialback,
                        partner.keepalive,
                        have.tls.as_str(),
                        have.sasl.as_str(),
                        have.dialback,
                        have.keepalive
                    )
                })
            }
        }
    }

    /// Scenarios against a remote SUT share its fixed routes: they must not overlap.
    pub fn parallel_safe(&self) -> bool {
        matches!(self, Target::Bundled)
    }

    pub fn from_file(path: &Path) -> Result<Self, TargetError> {
        let text = std::fs::read_to_string(path).map_err(|e| TargetError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_str(&text, path)
    }

    pub fn from_str(text: &str, path: &Path) -> Result<Self, TargetError> {
        let f: TargetFile = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            TargetError::Syntax {
                path: path.to_path_buf(),
                line,
                col,
                message: e.message().to_string(),
            }
        })?;
        let bad = |message: String| TargetError::File {
            path: path.to_path_buf(),
            message,
        };
        match f.kind.as_str() {
            "bundled" => Ok(Target::Bundled),
            "remote" => {
                let x = f
                    .xmpp
                    .ok_or_else(|| bad("a remote target needs an [xmpp] section".into()))?;
                let addr = |what: &str, v: &str| -> Result<SocketAddr, TargetError> {
                    v.parse()
                        .map_err(|_| bad(format!("{what} = {v:?} is not an IP:port address")))
                };
                let endpoints = SutEndpoints {
                    domain: x.domain.clone(),
                    s2s: addr("xmpp.s2s", &x.s2s)?,
                    component: x
                        .component
                        .as_deref()
                        .map(|c| addr("xmpp.component", c))
                        .transpose()?,
                    sip: Default::default(),
                };
                let mut routes = BTreeMap::new();
                for (d, a) in &f.routes {
                    let sa = addr(&format!("routes.{d}"), a)?;
                    if !sa.ip().is_loopback() {
                        return Err(bad(format!(
                            "routes.{d} = {a}: simulated servers listen on loopback only"
                        )));
                    }
                    routes.insert(d.clone(), sa);
                }
                let mut partners = BTreeMap::new();
                for (d, p) in &f.partners {
                    let neg = |v: &Option<String>, d0: Negotiation, what: &str| {
                        match v.as_deref() {
                        None => Ok(d0),
                        Some(x) => Negotiation::parse(x)
                            .ok_or_else(|| bad(format!("partners.\"{d}\".{what} = {x:?}: required, optional or not_supported"))),
                    }
                    };
                    partners.insert(
                        d.clone(),
                        Partner {
                            tls: neg(&p.tls, Partner::DEFAULT.tls, "tls")?,
                            sasl: neg(&p.sasl, Partner::DEFAULT.sasl, "sasl")?,
                            dialback: p.dialback.unwrap_or(Partner::DEFAULT.dialback),
                            keepalive: p.keepalive.unwrap_or(Partner::DEFAULT.keepalive),
                        },
                    );
                }
                Ok(Target::Remote(RemoteTarget {
                    name: f.name,
                    description: f.description,
                    endpoints,
                    capabilities: f.capabilities,
                    routes,
                    partners,
                }))
            }
            other => Err(bad(format!(
                "kind = {other:?}: expected \"bundled\" or \"remote\""
            ))),
        }
    }
}

/// A started SUT for one scenario; stopping it is part of the run.
pub enum RunningSut {
    Bundled(proxy::RunningProxy),
    /// The proxy and the reference gateway, for scenarios with SIP actors.
    BundledWithGateway(proxy::RunningProxy, crate::gateway::RunningGateway),
    Remote,
}

impl RunningSut {
    pub async fn stop(self) {
        match self {
            RunningSut::Bundled(p) => p.shutdown().await,
            RunningSut::BundledWithGateway(p, g) => {
                g.shutdown().await;
                p.shutdown().await;
            }
            RunningSut::Remote => {}
        }
    }
}

/// What a prepared run has: where the SUT is, the actors' listeners, the running SUT, and
/// the run's test PKI when the scenario negotiates TLS.
pub struct Prepared {
    pub endpoints: SutEndpoints,
    pub listeners: ActorListeners,
    pub running: RunningSut,
    pub pki: Option<Arc<RunPki>>,
}

/// Bind the actors' listeners and start (or locate) the SUT.
pub async fn prepare(target: &Target, scenario: &Scenario) -> Result<Prepared, RunError> {
    let domain = match target {
        Target::Bundled => BUNDLED_DOMAIN.to_string(),
        Target::Remote(r) => r.endpoints.domain.clone(),
    };
    let pki = if scenario.uses_tls() {
        let p = RunPki::for_scenario(scenario, &domain)
            .map_err(|e| RunError::Io(std::io::Error::other(e.to_string())))?;
        Some(Arc::new(p))
    } else {
        None
    };
    let (endpoints, listeners, running) = prepare_sut(target, scenario).await?;
    Ok(Prepared {
        endpoints,
        listeners,
        running,
        pki,
    })
}

async fn prepare_sut(
    target: &Target,
    scenario: &Scenario,
) -> Result<(SutEndpoints, ActorListeners, RunningSut), RunError> {
    match target {
        Target::Bundled => {
            let listeners = ActorListeners::bind(scenario, &BTreeMap::new()).await?;
            let routes = listeners.routes(scenario)?;
            let mut cfg = bundled_config(scenario, routes);
            // SIP actors: the gateway joins as the proxy's component (bundled_sip.rs).
            let mut gw_secret = [0u8; 12];
            let _ = getrandom::fill(&mut gw_secret);
            let gateway_secret = hex::encode(gw_secret);
            if bundled_sip::wanted(scenario) {
                cfg.components.push(bundled_sip::component(&gateway_secret));
            }
            let running = proxy::start(cfg)
                .await
                .map_err(|e| RunError::Io(std::io::Error::other(e.to_string())))?;
            let mut endpoints = SutEndpoints {
                domain: BUNDLED_DOMAIN.to_string(),
                s2s: running.s2s_addr,
                component: running.component_addr,
                sip: Default::default(),
            };
            if bundled_sip::wanted(scenario)
                && let Some(component_addr) = running.component_addr
            {
                let started =
                    bundled_sip::start(component_addr, &gateway_secret, &listeners.sip_routes())
                        .await;
                match started {
                    Ok((gw, sip)) => {
                        endpoints.sip = sip;
                        return Ok((
                            endpoints,
                            listeners,
                            RunningSut::BundledWithGateway(running, gw),
                        ));
                    }
                    Err(e) => {
                        running.shutdown().await;
                        return Err(RunError::Io(std::io::Error::other(e.to_string())));
                    }
                }
            }
            Ok((endpoints, listeners, RunningSut::Bundled(running)))
        }
        Target::Remote(r) => {
            let listeners = ActorListeners::bind(scenario, &r.routes).await?;
            Ok((r.endpoints.clone(), listeners, RunningSut::Remote))
        }
    }
}

/// The bundled proxy's configuration for one scenario: it serves `sut.test`, dials each
/// simulated domain at its actor's listener, and accepts the scenario's components.
fn bundled_config(scenario: &Scenario, routes: BTreeMap<String, SocketAddr>) -> proxy::ProxyConfig {
    use super::load::ActorKind;
    let components = scenario
        .actors
        .iter()
        .filter_map(|a| match &a.kind {
            ActorKind::Component { domain, secret } => Some(proxy::ComponentConfig {
                domain: domain.clone(),
                secret: secret.clone(),
            }),
            ActorKind::Xmpp { .. } | ActorKind::Sip(_) => None,
        })
        .collect();
    let mut secret = [0u8; 16];
    let _ = getrandom::fill(&mut secret);
    let mut cfg = proxy::ProxyConfig::new(BUNDLED_DOMAIN, &hex::encode(secret));
    cfg.component_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.routes = routes
        .into_iter()
        .map(|(d, a)| (d, a.to_string()))
        .collect();
    cfg.components = components;
    // Short enough that a scenario about a silent peer ends in seconds.
    cfg.timeouts.connect = Duration::from_secs(2);
    cfg.timeouts.dialback = Duration::from_secs(3);
    cfg.timeouts.establish = Duration::from_secs(5);
    cfg
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}
