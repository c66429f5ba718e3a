//! Targets: which system under test a run drives, and how to reach (or start) it.
//!
//! - `bundled`: our reference proxy, started in-process per scenario on ephemeral loopback
//!   ports with static routes to the scenario's actors — scenarios run in parallel.
//! - `remote`: a SUT already running somewhere (a third party's), described by a TOML file:
//!   its addresses, its domain, the capabilities it claims, and the fixed addresses where it
//!   dials the simulated domains.
//! - `process`: a SUT the harness starts itself (a third party's server from its package),
//!   from an argv, a rendered config template and readiness ports, per run or per scenario;
//!   see [`super::process`] and docs/interop.md.
//!
//! Any target file may list `[[expected_failure]]` waivers ([`super::waivers`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::bundled_sip;
use super::load::{self, Negotiation, Partner, Scenario};
use super::process::{self, ConfigFile, ProcessSpec, RunningProcess, StartInputs, Syntax, Value};
use super::run::{ActorListeners, RunError, SutEndpoints};
use super::sip_actor::{SipRoute, SipSut, SipTransport};
use super::tls_io::RunPki;
use super::waivers::{self, Waiver};
use crate::proxy;

/// The domain the bundled proxy serves (`{sut}` in scenarios).
pub const BUNDLED_DOMAIN: &str = "sut.test";

/// Capabilities the bundled pair claims.
pub const BUNDLED_CAPABILITIES: &[&str] = &[
    "dialback",
    "component",
    "s2s-in",
    "s2s-out",
    "starttls",
    "sasl-external",
    "sip",
];

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
    /// Where the SUT dials each simulated domain: domain → "127.0.0.1:port" (or `"auto"`
    /// for a process target: a free port chosen when the SUT starts).
    #[serde(default)]
    routes: BTreeMap<String, String>,
    /// The per-partner policies the SUT was configured with, by partner domain.
    #[serde(default)]
    partners: BTreeMap<String, crate::harness::model::PartnerFile>,
    /// Root that `expected_failure.scenario` paths are relative to, itself relative to the
    /// target file (default: `scenarios` in the current directory).
    #[serde(default)]
    scenario_root: Option<String>,
    #[serde(default)]
    process: Option<ProcessSection>,
    /// The SUT's SIP side (its gateway): domain, listeners, next hops.
    #[serde(default)]
    sip: Option<SipSection>,
    /// `kind = "container"`: the image the SUT runs from.
    #[serde(default)]
    container: Option<ContainerSection>,
    #[serde(default)]
    expected_failure: Vec<Waiver>,
}

/// `[container]`: a container target's image (docs/targets.md "kind = container").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerSection {
    image: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Scratch-dir path → path inside the container (bind mounts).
    #[serde(default)]
    mounts: BTreeMap<String, String>,
}

/// `[sip]`: where the SUT's gateway takes SIP and which domain its SIP users have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SipSection {
    domain: Spanned<String>,
    #[serde(default)]
    udp: Option<Spanned<String>>,
    #[serde(default)]
    tcp: Option<Spanned<String>>,
    /// SIP domain → where the SUT sends SIP for it (`"auto"`, `"IP:port"`, either with an
    /// optional `;transport=udp|tcp`).
    #[serde(default)]
    routes: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessSection {
    /// Required for `kind = "process"`; a container target runs its image instead.
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    lifecycle: Lifecycle,
    #[serde(default)]
    ports: Vec<String>,
    /// Addresses polled for readiness (default: `xmpp.s2s` and `xmpp.component`).
    #[serde(default)]
    ready: Option<Vec<String>>,
    #[serde(default)]
    ready_files: Vec<String>,
    #[serde(default)]
    ready_timeout: Option<String>,
    #[serde(default)]
    stop_timeout: Option<String>,
    #[serde(default)]
    log_files: Vec<String>,
    #[serde(default)]
    config: Vec<ConfigSection>,
    #[serde(default)]
    vars: BTreeMap<String, VarValue>,
    /// A command printing the SUT's version on its first line (for reports).
    #[serde(default)]
    version_command: Option<Vec<String>>,
    /// Text that must appear in the main command's logs before it counts as ready.
    #[serde(default)]
    ready_log: Vec<String>,
    /// Write the run's test PKI into the scratch dir for scenarios that negotiate TLS.
    #[serde(default)]
    pki: bool,
    /// Further processes of the SUT (`[[process.service]]`).
    #[serde(default)]
    service: Vec<ServiceSection>,
}

/// `[[process.service]]`: another process of the SUT, started after the main command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    name: Spanned<String>,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    ready: Vec<String>,
    #[serde(default)]
    ready_files: Vec<String>,
    #[serde(default)]
    ready_log: Vec<String>,
    #[serde(default)]
    ready_timeout: Option<String>,
    #[serde(default)]
    log_files: Vec<String>,
    #[serde(default)]
    config: Vec<ConfigSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigSection {
    template: String,
    output: String,
    syntax: Syntax,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum VarValue {
    Int(i64),
    Str(String),
}

/// When a process target's SUT is started and stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// A fresh SUT per scenario (matrix cell): no state leaks between scenarios.
    #[default]
    Scenario,
    /// One SUT for the whole run (restarted if it dies).
    Run,
}

/// Default bound on a process target's start.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a target's `version_command`.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default grace between SIGTERM and SIGKILL when stopping a process target.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(3);

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
    Remote(Box<RemoteTarget>),
    Process(Box<ProcessTarget>),
}

#[derive(Debug, Clone)]
pub struct RemoteTarget {
    pub name: String,
    pub description: Option<String>,
    pub endpoints: SutEndpoints,
    pub capabilities: Vec<String>,
    pub routes: BTreeMap<String, SocketAddr>,
    /// Where the SUT sends SIP for each simulated SIP domain (`[sip.routes]`).
    pub sip_routes: BTreeMap<String, SocketAddr>,
    pub partners: BTreeMap<String, Partner>,
    pub waivers: Vec<Waiver>,
}

/// Where the SUT dials a simulated domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Fixed(SocketAddr),
    /// A free loopback port chosen when the SUT starts.
    Auto,
}

/// A process target's SIP side (`[sip]`).
#[derive(Debug, Clone)]
pub struct SipSpec {
    /// The gateway's domain (`{gw}`): SIP users are `sip:user@D`, in XMPP `user@D`.
    pub domain: String,
    /// Address templates (`127.0.0.1:{port:sip}`), expanded per start.
    pub udp: Option<String>,
    pub tcp: Option<String>,
    /// SIP domain → next hop the SUT is configured with.
    pub routes: BTreeMap<String, SipRouteSpec>,
}

/// One `[sip.routes]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipRouteSpec {
    pub route: Route,
    /// `;transport=` of the entry (default UDP, RFC 3261 §18.1.1).
    pub transport: SipTransport,
}

#[derive(Debug, Clone)]
pub struct ProcessTarget {
    pub name: String,
    pub description: Option<String>,
    /// The SUT's XMPP domain (`{sut}`).
    pub domain: String,
    /// Address templates (`127.0.0.1:{port:s2s}`), expanded per start.
    pub s2s: String,
    pub component: Option<String>,
    pub capabilities: Vec<String>,
    pub routes: BTreeMap<String, Route>,
    /// The per-partner policies its configuration gives each simulated domain.
    pub partners: BTreeMap<String, Partner>,
    /// The SUT's SIP side, if it has one.
    pub sip: Option<SipSpec>,
    pub spec: ProcessSpec,
    pub lifecycle: Lifecycle,
    pub stop_timeout: Duration,
    pub waivers: Vec<Waiver>,
    /// Prints the SUT's version (first line of stdout), e.g. `dpkg-query -W prosody`.
    pub version_command: Option<Vec<String>>,
    /// The running SUT of a `lifecycle = "run"` target.
    shared: Arc<tokio::sync::Mutex<Option<Shared>>>,
}

/// The SUT a `run`-lifecycle target shares between scenarios.
#[derive(Debug)]
pub struct Shared {
    process: RunningProcess,
    endpoints: SutEndpoints,
    routes: BTreeMap<String, SocketAddr>,
    sip_routes: BTreeMap<String, SocketAddr>,
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Bundled => "bundled",
            Target::Remote(r) => &r.name,
            Target::Process(p) => &p.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Target::Bundled => "bundled",
            Target::Remote(_) => "remote",
            Target::Process(p) if p.spec.container.is_some() => "container",
            Target::Process(_) => "process",
        }
    }

    pub fn description(&self) -> Option<&str> {
        match self {
            Target::Bundled => Some("the bundled reference proxy, started in-process"),
            Target::Remote(r) => r.description.as_deref(),
            Target::Process(p) => p.description.as_deref(),
        }
    }

    /// The known deviations the target file lists.
    pub fn waivers(&self) -> &[Waiver] {
        match self {
            Target::Bundled => &[],
            Target::Remote(r) => &r.waivers,
            Target::Process(p) => &p.waivers,
        }
    }

    /// The SUT's version for reports: the bundled proxy's own, or the first line a process
    /// target's `version_command` prints (bounded by [`VERSION_TIMEOUT`]); `None` when unknown.
    pub async fn probe_version(&self) -> Option<String> {
        let argv = match self {
            Target::Bundled => return Some(format!("fedcheck {}", env!("CARGO_PKG_VERSION"))),
            Target::Remote(_) => return None,
            Target::Process(p) => p.version_command.as_ref()?,
        };
        let (program, args) = argv.split_first()?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(VERSION_TIMEOUT, cmd.output())
            .await
            .ok()?
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    }

    /// Stop what a whole run shared (a `lifecycle = "run"` process).
    pub async fn finish(&self) {
        if let Target::Process(p) = self {
            let taken = p.shared.lock().await.take();
            if let Some(s) = taken {
                s.process.stop(p.stop_timeout).await;
            }
        }
    }

    pub fn capabilities(&self) -> Vec<String> {
        match self {
            Target::Bundled => BUNDLED_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            Target::Remote(r) => r.capabilities.clone(),
            Target::Process(p) => p.capabilities.clone(),
        }
    }

    /// The SUT's gateway domain (`{gw}`), if it has a SIP side.
    pub fn gateway_domain(&self) -> Option<String> {
        match self {
            Target::Bundled => Some(bundled_sip::BUNDLED_SIP_DOMAIN.to_string()),
            Target::Remote(r) => r.endpoints.gw_domain.clone(),
            Target::Process(p) => p.sip.as_ref().map(|s| s.domain.clone()),
        }
    }

    /// Domains the SUT serves, for normalisation.
    pub fn domains(&self) -> Vec<String> {
        match self {
            Target::Bundled => vec![BUNDLED_DOMAIN.to_string()],
            Target::Remote(r) => vec![r.endpoints.domain.clone()],
            Target::Process(p) => vec![p.domain.clone()],
        }
    }

    /// Why this target cannot run a scenario that needs `partner` policy for `domain`:
    /// the bundled pair is configured per scenario; a third-party SUT has what its target
    /// file declares (Lync's defaults when it declares nothing for that domain).
    pub fn partner_mismatch(&self, domain: &str, partner: &Partner) -> Option<String> {
        match self {
            Target::Bundled => None,
            Target::Process(_) | Target::Remote(_) => {
                let have = match self {
                    Target::Remote(r) => {
                        r.partners.get(domain).copied().unwrap_or(Partner::DEFAULT)
                    }
                    Target::Process(p) => {
                        p.partners.get(domain).copied().unwrap_or(Partner::DEFAULT)
                    }
                    Target::Bundled => Partner::DEFAULT,
                };
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

    /// Scenarios against a remote SUT share its fixed routes: they must not overlap. A
    /// process target started per scenario with only `auto` routes is as isolated as the
    /// bundled one.
    pub fn parallel_safe(&self) -> bool {
        match self {
            Target::Bundled => true,
            Target::Remote(_) => false,
            Target::Process(p) => {
                p.lifecycle == Lifecycle::Scenario
                    && p.routes.values().all(|r| *r == Route::Auto)
                    && p.sip
                        .iter()
                        .flat_map(|s| s.routes.values())
                        .all(|r| r.route == Route::Auto)
            }
        }
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
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let root = match &f.scenario_root {
            Some(r) => dir.join(r),
            None => PathBuf::from("scenarios"),
        };
        if !f.expected_failure.is_empty() {
            waivers::validate(&f.expected_failure, &root).map_err(|e| bad(e.to_string()))?;
        }
        let addr = |what: &str, v: &str| -> Result<SocketAddr, TargetError> {
            v.parse()
                .map_err(|_| bad(format!("{what} = {v:?} is not an IP:port address")))
        };
        let loopback = |d: &str, a: &str| -> Result<SocketAddr, TargetError> {
            let sa = addr(&format!("routes.{d}"), a)?;
            if !sa.ip().is_loopback() {
                return Err(bad(format!(
                    "routes.{d} = {a}: simulated servers listen on loopback only"
                )));
            }
            Ok(sa)
        };
        if !matches!(f.kind.as_str(), "process" | "container") && f.process.is_some() {
            return Err(bad(format!(
                "a [process] section needs kind = \"process\" or \"container\", not {:?}",
                f.kind
            )));
        }
        if f.kind != "container" && f.container.is_some() {
            return Err(bad(format!(
                "a [container] section needs kind = \"container\", not {:?}",
                f.kind
            )));
        }
        let sip = match &f.sip {
            Some(section) if f.kind == "bundled" => {
                return Err(at(
                    text,
                    path,
                    section.domain.span().start,
                    "the bundled target's SIP side is built in: no [sip] section".into(),
                ));
            }
            Some(section) => Some(sip_spec(section, &f.kind, text, path)?),
            None => None,
        };
        if f.kind != "bundled" && sip.is_none() && f.capabilities.iter().any(|c| c == "sip") {
            let line = crate::proxy::config::find_line(text, "sip", Some("capabilities"));
            return Err(TargetError::Syntax {
                path: path.to_path_buf(),
                line,
                col: 1,
                message: "capability \"sip\" needs a [sip] section (the gateway's domain and where it takes SIP)".into(),
            });
        }
        // The per-partner policies the SUT is configured with (MS-06..MS-09).
        let mut partners = BTreeMap::new();
        for (d, p) in &f.partners {
            let neg = |v: &Option<String>, d0: Negotiation, what: &str| match v.as_deref() {
                None => Ok(d0),
                Some(x) => Negotiation::parse(x).ok_or_else(|| {
                    bad(format!(
                        "partners.\"{d}\".{what} = {x:?}: required, optional or not_supported"
                    ))
                }),
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
        match f.kind.as_str() {
            "bundled" => Ok(Target::Bundled),
            "remote" => {
                let x = f
                    .xmpp
                    .ok_or_else(|| bad("a remote target needs an [xmpp] section".into()))?;
                let endpoints = SutEndpoints {
                    domain: x.domain.clone(),
                    s2s: addr("xmpp.s2s", &x.s2s)?,
                    component: x
                        .component
                        .as_deref()
                        .map(|c| addr("xmpp.component", c))
                        .transpose()?,
                    sip: SipSut {
                        udp: sip
                            .as_ref()
                            .and_then(|s| s.udp.as_deref())
                            .and_then(|a| a.parse().ok()),
                        tcp: sip
                            .as_ref()
                            .and_then(|s| s.tcp.as_deref())
                            .and_then(|a| a.parse().ok()),
                    },
                    gw_domain: sip.as_ref().map(|s| s.domain.clone()),
                };
                let mut routes = BTreeMap::new();
                for (d, a) in &f.routes {
                    routes.insert(d.clone(), loopback(d, a)?);
                }
                let sip_routes = sip
                    .iter()
                    .flat_map(|s| &s.routes)
                    .filter_map(|(d, r)| match r.route {
                        Route::Fixed(a) => Some((d.clone(), a)),
                        Route::Auto => None,
                    })
                    .collect();
                Ok(Target::Remote(Box::new(RemoteTarget {
                    name: f.name,
                    description: f.description,
                    endpoints,
                    capabilities: f.capabilities,
                    routes,
                    sip_routes,
                    partners,
                    waivers: f.expected_failure,
                })))
            }
            kind @ ("process" | "container") => {
                let x = f
                    .xmpp
                    .ok_or_else(|| bad(format!("a {kind} target needs an [xmpp] section")))?;
                let container = match (&f.container, kind) {
                    (Some(c), _) => {
                        if c.image.trim().is_empty() {
                            return Err(bad("container.image must name an image".into()));
                        }
                        Some(super::container::ContainerSpec {
                            image: c.image.clone(),
                            tag: c.tag.clone().unwrap_or_else(|| "latest".into()),
                            command: c.command.clone(),
                            env: c.env.clone(),
                            mounts: c.mounts.clone(),
                        })
                    }
                    (None, "container") => {
                        return Err(bad("a container target needs a [container] section".into()));
                    }
                    (None, _) => None,
                };
                let p = match (f.process, kind) {
                    (Some(p), _) => p,
                    (None, "container") => ProcessSection::default(),
                    (None, _) => {
                        return Err(bad("a process target needs a [process] section".into()));
                    }
                };
                if container.is_none() && p.command.is_empty() {
                    return Err(bad("process.command must name a program".into()));
                }
                if container.is_some() && !p.command.is_empty() {
                    return Err(bad(
                        "a container target runs its image: give container.command, not process.command"
                            .into(),
                    ));
                }
                let mut routes = BTreeMap::new();
                for (d, a) in &f.routes {
                    let r = if a == "auto" {
                        Route::Auto
                    } else {
                        Route::Fixed(loopback(d, a)?)
                    };
                    routes.insert(d.clone(), r);
                }
                let duration = |what: &str, v: &Option<String>, default| match v {
                    Some(v) => load::parse_duration(v).map_err(|e| bad(format!("{what}: {e}"))),
                    None => Ok(default),
                };
                let target_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
                let ready_addrs = p.ready.clone().unwrap_or_else(|| {
                    std::iter::once(x.s2s.clone())
                        .chain(x.component.clone())
                        .collect()
                });
                let mut services = Vec::new();
                for svc in &p.service {
                    let name = svc.name.get_ref();
                    let here = |m: String| at(text, path, svc.name.span().start, m);
                    let name_ok = !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if !name_ok {
                        return Err(here(format!(
                            "process.service name {name:?}: letters, digits, '-' and '_' only (it names log files)"
                        )));
                    }
                    if services
                        .iter()
                        .any(|s: &process::ServiceSpec| s.name == *name)
                    {
                        return Err(here(format!("process.service {name:?} is declared twice")));
                    }
                    if svc.command.is_empty() {
                        return Err(here(format!(
                            "process.service {name:?}: command must name a program"
                        )));
                    }
                    services.push(process::ServiceSpec {
                        name: name.clone(),
                        command: svc.command.clone(),
                        env: svc.env.clone(),
                        cwd: svc.cwd.clone(),
                        configs: svc
                            .config
                            .iter()
                            .map(|c| ConfigFile {
                                template: target_dir.join(&c.template),
                                output: c.output.clone(),
                                syntax: c.syntax,
                            })
                            .collect(),
                        ready_addrs: svc.ready.clone(),
                        ready_files: svc.ready_files.clone(),
                        ready_log: svc.ready_log.clone(),
                        ready_timeout: svc
                            .ready_timeout
                            .as_ref()
                            .map(|v| {
                                load::parse_duration(v).map_err(|e| {
                                    here(format!("process.service {name:?} ready_timeout: {e}"))
                                })
                            })
                            .transpose()?,
                        log_files: svc.log_files.clone(),
                    });
                }
                let spec = ProcessSpec {
                    command: p.command,
                    env: p.env,
                    cwd: p.cwd,
                    configs: p
                        .config
                        .into_iter()
                        .map(|c| ConfigFile {
                            template: target_dir.join(c.template),
                            output: c.output,
                            syntax: c.syntax,
                        })
                        .collect(),
                    vars: p
                        .vars
                        .into_iter()
                        .map(|(k, v)| {
                            let v = match v {
                                VarValue::Int(n) => Value::Int(n),
                                VarValue::Str(s) => Value::Str(s),
                            };
                            (k, v)
                        })
                        .collect(),
                    ports: p.ports,
                    ready_addrs,
                    ready_files: p.ready_files,
                    ready_timeout: duration(
                        "process.ready_timeout",
                        &p.ready_timeout,
                        DEFAULT_READY_TIMEOUT,
                    )?,
                    log_files: p.log_files,
                    ready_log: p.ready_log,
                    services,
                    pki: p.pki,
                    container,
                    target_dir,
                };
                if p.pki && p.lifecycle == Lifecycle::Run {
                    return Err(bad(
                        "process.pki needs lifecycle = \"scenario\": each scenario's test CA is new, so the SUT must start with it".into(),
                    ));
                }
                // Catch a bad `{…}` early, with placeholder values for the ports.
                let probe = process::ExpandContext {
                    dir: PathBuf::from("/"),
                    target_dir: spec.target_dir.clone(),
                    domain: x.domain.clone(),
                    gw: sip.as_ref().map(|s| s.domain.clone()),
                    ports: spec.ports.iter().map(|n| (n.clone(), 1)).collect(),
                };
                for s in spec
                    .command
                    .iter()
                    .chain(&spec.ready_addrs)
                    .chain(std::iter::once(&x.s2s))
                    .chain(x.component.iter())
                {
                    process::expand(s, &probe).map_err(|e| bad(e.to_string()))?;
                }
                if let Some(c) = &spec.container {
                    for v in c.command.iter().chain(c.env.values()) {
                        process::expand(v, &probe).map_err(|e| bad(format!("container: {e}")))?;
                    }
                }
                for (svc, file) in spec.services.iter().zip(&p.service) {
                    for v in svc
                        .command
                        .iter()
                        .chain(&svc.ready_addrs)
                        .chain(&svc.ready_files)
                        .chain(&svc.log_files)
                        .chain(svc.env.values())
                        .chain(svc.cwd.iter())
                    {
                        process::expand(v, &probe).map_err(|e| {
                            at(
                                text,
                                path,
                                file.name.span().start,
                                format!("process.service {:?}: {e}", svc.name),
                            )
                        })?;
                    }
                }
                // The SIP listeners must be addresses once the ports are filled in.
                if let Some(section) = &f.sip {
                    for v in section.udp.iter().chain(section.tcp.iter()) {
                        let e = process::expand(v.get_ref(), &probe)
                            .map_err(|e| e.to_string())
                            .and_then(|a| {
                                a.parse::<SocketAddr>()
                                    .map(|_| ())
                                    .map_err(|_| format!("{a:?} is not an IP:port address"))
                            });
                        if let Err(e) = e {
                            return Err(at(text, path, v.span().start, format!("sip: {e}")));
                        }
                    }
                }
                Ok(Target::Process(Box::new(ProcessTarget {
                    name: f.name,
                    description: f.description,
                    domain: x.domain,
                    s2s: x.s2s,
                    component: x.component,
                    capabilities: f.capabilities,
                    routes,
                    partners,
                    sip,
                    stop_timeout: duration(
                        "process.stop_timeout",
                        &p.stop_timeout,
                        DEFAULT_STOP_TIMEOUT,
                    )?,
                    lifecycle: p.lifecycle,
                    version_command: p.version_command,
                    spec,
                    waivers: f.expected_failure,
                    shared: Arc::new(tokio::sync::Mutex::new(None)),
                })))
            }
            other => Err(bad(format!(
                "kind = {other:?}: expected \"bundled\", \"remote\", \"process\" or \"container\""
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
    Process {
        process: Box<RunningProcess>,
        stop_timeout: Duration,
    },
    Shared(Arc<tokio::sync::Mutex<Option<Shared>>>),
}

/// How a process SUT ended during a scenario.
#[derive(Debug, Clone)]
pub struct SutDied {
    /// "exited with code 3" / "was killed by signal 11 (SIGSEGV)".
    pub how: String,
    pub log: String,
}

impl RunningSut {
    /// If the SUT process ended while the scenario ran, how (and its last log lines). A
    /// `run`-lifecycle SUT found dead is dropped, so the next scenario starts a fresh one.
    pub async fn died(&mut self) -> Option<SutDied> {
        match self {
            RunningSut::Process { process, .. } => {
                let d = process.died()?;
                Some(SutDied {
                    how: d.describe(),
                    log: process.log_tail_of(d.process.as_deref(), process::LOG_TAIL_LINES),
                })
            }
            RunningSut::Shared(m) => {
                let mut guard = m.lock().await;
                let s = guard.as_mut()?;
                let d = s.process.died()?;
                let died = SutDied {
                    how: d.describe(),
                    log: s
                        .process
                        .log_tail_of(d.process.as_deref(), process::LOG_TAIL_LINES),
                };
                *guard = None;
                Some(died)
            }
            RunningSut::Bundled(_) | RunningSut::BundledWithGateway(..) | RunningSut::Remote => {
                None
            }
        }
    }

    /// The tail of the SUT's logs (process targets).
    pub async fn log_tail(&self) -> String {
        match self {
            RunningSut::Process { process, .. } => process.log_tail(process::LOG_TAIL_LINES),
            RunningSut::Shared(m) => m
                .lock()
                .await
                .as_ref()
                .map(|s| s.process.log_tail(process::LOG_TAIL_LINES))
                .unwrap_or_default(),
            RunningSut::Bundled(_) | RunningSut::BundledWithGateway(..) | RunningSut::Remote => {
                String::new()
            }
        }
    }

    pub async fn stop(self) {
        match self {
            RunningSut::Bundled(p) => p.shutdown().await,
            RunningSut::BundledWithGateway(p, g) => {
                g.shutdown().await;
                p.shutdown().await;
            }
            RunningSut::Process {
                process,
                stop_timeout,
            } => {
                process.stop(stop_timeout).await;
            }
            // Stopped by `Target::finish` at the end of the run.
            RunningSut::Shared(_) | RunningSut::Remote => {}
        }
    }
}

/// Why a SUT could not be made ready for a scenario.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The harness or the target file is at fault (verdict `error`).
    #[error(transparent)]
    Harness(#[from] RunError),
    /// The SUT itself died before it was ready or never listened (verdict `fail`).
    #[error("{message}")]
    SutDown { message: String, log: String },
}

impl From<process::ProcessError> for PrepareError {
    fn from(e: process::ProcessError) -> Self {
        match e {
            process::ProcessError::Exited { ref log, .. }
            | process::ProcessError::NotReady { ref log, .. } => PrepareError::SutDown {
                log: log.clone(),
                message: match &e {
                    process::ProcessError::Exited {
                        status, process, ..
                    } => format!(
                        "the SUT process {} before it was ready",
                        process::describe_death(process.as_deref(), status)
                    ),
                    other => other.to_string(),
                },
            },
            other => PrepareError::Harness(RunError::Io(std::io::Error::other(other.to_string()))),
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
pub async fn prepare(target: &Target, scenario: &Scenario) -> Result<Prepared, PrepareError> {
    let domain = target.domains().into_iter().next().unwrap_or_default();
    let pki = if scenario.uses_tls() {
        let p = RunPki::for_scenario(scenario, &domain).map_err(|e| {
            PrepareError::Harness(RunError::Io(std::io::Error::other(e.to_string())))
        })?;
        Some(Arc::new(p))
    } else {
        None
    };
    let (endpoints, listeners, running) = prepare_sut(target, scenario, pki.as_deref()).await?;
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
    pki: Option<&RunPki>,
) -> Result<(SutEndpoints, ActorListeners, RunningSut), PrepareError> {
    match target {
        Target::Bundled => {
            let listeners = ActorListeners::bind(scenario, &BTreeMap::new()).await?;
            let routes = listeners.routes(scenario)?;
            let mut cfg = bundled_config(scenario, routes, pki);
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
                gw_domain: Some(bundled_sip::BUNDLED_SIP_DOMAIN.to_string()),
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
                        return Err(RunError::Io(std::io::Error::other(e.to_string())).into());
                    }
                }
            }
            Ok((endpoints, listeners, RunningSut::Bundled(running)))
        }
        Target::Remote(r) => {
            let listeners = ActorListeners::bind_all(scenario, &r.routes, &r.sip_routes).await?;
            Ok((r.endpoints.clone(), listeners, RunningSut::Remote))
        }
        Target::Process(p) if p.lifecycle == Lifecycle::Scenario => {
            let fixed: BTreeMap<String, SocketAddr> = p
                .routes
                .iter()
                .filter_map(|(d, r)| match r {
                    Route::Fixed(a) => Some((d.clone(), *a)),
                    Route::Auto => None,
                })
                .collect();
            let listeners =
                ActorListeners::bind_all(scenario, &fixed, &p.fixed_sip_routes()).await?;
            let bound = listeners.routes(scenario)?;
            let mut routes = BTreeMap::new();
            for (d, r) in &p.routes {
                let a = match (r, bound.get(d)) {
                    (Route::Fixed(a), _) => *a,
                    (Route::Auto, Some(a)) => *a,
                    // No actor plays this domain here: a port nobody listens on.
                    (Route::Auto, None) => process::free_loopback_addr().map_err(RunError::Io)?,
                };
                routes.insert(d.clone(), a);
            }
            let sip = p.sip_inputs(scenario, &listeners.sip_routes())?;
            let tls = p.tls_files(pki)?;
            let mut inputs = p.inputs(routes, sip);
            inputs.tls = tls;
            let running = RunningProcess::start(&p.spec, &inputs).await?;
            let endpoints = p.endpoints(&running)?;
            Ok((
                endpoints,
                listeners,
                RunningSut::Process {
                    process: Box::new(running),
                    stop_timeout: p.stop_timeout,
                },
            ))
        }
        Target::Process(p) => {
            let mut guard = p.shared.lock().await;
            if let Some(s) = guard.as_mut()
                && let Some(d) = s.process.died()
            {
                tracing::warn!(
                    "target `{}`: the SUT process {} between scenarios; restarting it",
                    p.name,
                    d.describe()
                );
                *guard = None;
            }
            if guard.is_none() {
                let mut routes = BTreeMap::new();
                for (d, r) in &p.routes {
                    let a = match r {
                        Route::Fixed(a) => *a,
                        Route::Auto => process::free_loopback_addr().map_err(RunError::Io)?,
                    };
                    routes.insert(d.clone(), a);
                }
                // One SUT for every scenario: its SIP next hops are chosen once, and each
                // scenario's SIP actors bind there.
                let mut sip_hops = BTreeMap::new();
                for (d, r) in p.sip.iter().flat_map(|s| &s.routes) {
                    let addr = match r.route {
                        Route::Fixed(a) => a,
                        Route::Auto => process::free_loopback_addr().map_err(RunError::Io)?,
                    };
                    sip_hops.insert(
                        d.clone(),
                        SipRoute {
                            addr,
                            transport: r.transport,
                        },
                    );
                }
                let sip = p.sip_inputs_from(sip_hops.clone(), None)?;
                let running =
                    RunningProcess::start(&p.spec, &p.inputs(routes.clone(), sip)).await?;
                let endpoints = p.endpoints(&running)?;
                *guard = Some(Shared {
                    process: running,
                    endpoints,
                    routes,
                    sip_routes: sip_hops.into_iter().map(|(d, r)| (d, r.addr)).collect(),
                });
            }
            let (endpoints, routes, sip_routes) = match guard.as_ref() {
                Some(s) => (s.endpoints.clone(), s.routes.clone(), s.sip_routes.clone()),
                None => {
                    return Err(
                        RunError::Io(std::io::Error::other("the SUT is not running")).into(),
                    );
                }
            };
            drop(guard);
            let listeners = ActorListeners::bind_all(scenario, &routes, &sip_routes).await?;
            Ok((endpoints, listeners, RunningSut::Shared(p.shared.clone())))
        }
    }
}

impl ProcessTarget {
    fn inputs(
        &self,
        routes: BTreeMap<String, SocketAddr>,
        sip: Option<process::SipInputs>,
    ) -> StartInputs {
        StartInputs {
            domain: self.domain.clone(),
            routes,
            ports: BTreeMap::new(),
            sip,
            tls: None,
        }
    }

    /// The run's certificates as files for the SUT (`process.pki`): its domain's chain and
    /// key, the gateway domain's (a component serves S2S under its own name), the CA.
    fn tls_files(&self, pki: Option<&RunPki>) -> Result<Option<process::TlsFiles>, PrepareError> {
        let (true, Some(pki)) = (self.spec.pki, pki) else {
            return Ok(None);
        };
        let mut files = vec![
            (format!("{}.crt", self.domain), pki.sut.chain_pem.clone()),
            (format!("{}.key", self.domain), pki.sut.key_pem.clone()),
            (process::CA_FILE.to_string(), pki.ca.cert_pem().to_string()),
        ];
        if let Some(sip) = &self.sip {
            let leaf = pki.ca.valid(&sip.domain).map_err(|e| {
                PrepareError::Harness(RunError::Io(std::io::Error::other(e.to_string())))
            })?;
            files.push((format!("{}.crt", sip.domain), leaf.chain_pem));
            files.push((format!("{}.key", sip.domain), leaf.key_pem));
        }
        Ok(Some(process::TlsFiles { files }))
    }

    /// `[sip.routes]` entries with a fixed address: the SIP actors of those domains bind there.
    fn fixed_sip_routes(&self) -> BTreeMap<String, SocketAddr> {
        self.sip
            .iter()
            .flat_map(|s| &s.routes)
            .filter_map(|(d, r)| match r.route {
                Route::Fixed(a) => Some((d.clone(), a)),
                Route::Auto => None,
            })
            .collect()
    }

    /// The SIP next hops of one per-scenario start: the actors' sockets, then the declared
    /// routes no actor plays (a port nobody listens on for `auto`).
    fn sip_inputs(
        &self,
        scenario: &Scenario,
        bound: &BTreeMap<String, SipRoute>,
    ) -> Result<Option<process::SipInputs>, PrepareError> {
        if self.sip.is_none() {
            return Ok(None);
        }
        let mut hops = bound.clone();
        for (d, r) in self.sip.iter().flat_map(|s| &s.routes) {
            if hops.contains_key(d) {
                continue;
            }
            let addr = match r.route {
                Route::Fixed(a) => a,
                Route::Auto => process::free_loopback_addr().map_err(RunError::Io)?,
            };
            hops.insert(
                d.clone(),
                SipRoute {
                    addr,
                    transport: r.transport,
                },
            );
        }
        // `@SIP_ROUTE@` is the first SIP actor's socket (file order).
        let first = scenario.actors.iter().find_map(|a| match &a.kind {
            super::load::ActorKind::Sip(s) => bound.get(&s.domain).copied(),
            _ => None,
        });
        self.sip_inputs_from(hops, first)
    }

    /// `first` (or the first declared route, or a port nobody listens on) as `@SIP_ROUTE@`.
    fn sip_inputs_from(
        &self,
        routes: BTreeMap<String, SipRoute>,
        first: Option<SipRoute>,
    ) -> Result<Option<process::SipInputs>, PrepareError> {
        let Some(sip) = &self.sip else {
            return Ok(None);
        };
        let route = match first.or_else(|| {
            sip.routes
                .keys()
                .next()
                .and_then(|d| routes.get(d).copied())
        }) {
            Some(r) => r,
            None => SipRoute {
                addr: process::free_loopback_addr().map_err(RunError::Io)?,
                transport: SipTransport::Udp,
            },
        };
        Ok(Some(process::SipInputs {
            domain: sip.domain.clone(),
            route,
            routes,
        }))
    }

    /// The SUT's addresses for this start (its ports are chosen per start).
    fn endpoints(&self, running: &RunningProcess) -> Result<SutEndpoints, PrepareError> {
        let addr = |what: &str, t: &str| -> Result<SocketAddr, PrepareError> {
            let s = running
                .expand(t)
                .map_err(|e| RunError::Io(std::io::Error::other(e.to_string())))?;
            s.parse().map_err(|_| {
                RunError::Io(std::io::Error::other(format!(
                    "{what} = {s:?} is not an IP:port address"
                )))
                .into()
            })
        };
        Ok(SutEndpoints {
            domain: self.domain.clone(),
            s2s: addr("xmpp.s2s", &self.s2s)?,
            component: self
                .component
                .as_deref()
                .map(|c| addr("xmpp.component", c))
                .transpose()?,
            sip: SipSut {
                udp: self
                    .sip
                    .as_ref()
                    .and_then(|s| s.udp.as_deref())
                    .map(|a| addr("sip.udp", a))
                    .transpose()?,
                tcp: self
                    .sip
                    .as_ref()
                    .and_then(|s| s.tcp.as_deref())
                    .map(|a| addr("sip.tcp", a))
                    .transpose()?,
            },
            gw_domain: self.sip.as_ref().map(|s| s.domain.clone()),
        })
    }
}

/// The bundled proxy's configuration for one scenario: it serves `sut.test`, dials each
/// simulated domain at its actor's listener, and accepts the scenario's components.
fn bundled_config(
    scenario: &Scenario,
    routes: BTreeMap<String, SocketAddr>,
    pki: Option<&RunPki>,
) -> proxy::ProxyConfig {
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
    // MS-10 KeepAliveInterval, scaled down: an EnableKeepAlive partner silent for 1 s is
    // closed, so keepalive scenarios run in about a second (Lync's default is 300 s).
    cfg.timeouts.keepalive_expect = Duration::from_secs(1);
    // TLS only for scenarios that negotiate it: its certificate and trust anchor come from
    // the run's test PKI. The partner policies are the ones the scenario's actors name;
    // for the others the proxy's permissive default (TLS and SASL optional, dialback on).
    if let Some(pki) = pki {
        cfg.tls_material = Some(crate::tls::config::TlsMaterial::from_leaf(
            &pki.sut,
            pki.ca.cert_pem(),
        ));
    }
    for a in &scenario.actors {
        if let (ActorKind::Xmpp { domain, .. }, Some(p)) = (&a.kind, &a.partner) {
            cfg.partners.insert(domain.clone(), partner_config(p));
        }
    }
    cfg
}

fn partner_config(p: &Partner) -> proxy::PartnerConfig {
    use crate::xmpp::s2s::policy::Negotiation as N;
    let n = |x: Negotiation| match x {
        Negotiation::Required => N::Required,
        Negotiation::Optional => N::Optional,
        Negotiation::NotSupported => N::NotSupported,
    };
    proxy::PartnerConfig {
        tls: Some(n(p.tls)),
        sasl: Some(n(p.sasl)),
        dialback: Some(p.dialback),
        keepalive: Some(p.keepalive),
    }
}

/// An error about the value at byte `offset` of the target file, as `file:line:col`.
fn at(text: &str, path: &Path, offset: usize, message: String) -> TargetError {
    let (line, col) = line_col(text, offset);
    TargetError::Syntax {
        path: path.to_path_buf(),
        line,
        col,
        message,
    }
}

/// Validate `[sip]`: a domain name, at least one listener, next hops on loopback (`auto`
/// only where fedcheck starts the SUT). A remote target's listeners are addresses already;
/// a process target's are templates checked once its ports are known.
fn sip_spec(s: &SipSection, kind: &str, text: &str, path: &Path) -> Result<SipSpec, TargetError> {
    let err = |span: std::ops::Range<usize>, m: String| at(text, path, span.start, m);
    let domain = s.domain.get_ref().trim().to_ascii_lowercase();
    let domain_ok = !domain.is_empty()
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !domain_ok {
        return Err(err(
            s.domain.span(),
            format!(
                "sip.domain = {:?} is not a domain name (the SIP users' host, RFC 3261 §19.1.1)",
                s.domain.get_ref()
            ),
        ));
    }
    if s.udp.is_none() && s.tcp.is_none() {
        return Err(err(
            s.domain.span(),
            "[sip] needs `udp` and/or `tcp`: where the SUT takes SIP".into(),
        ));
    }
    if kind == "remote" {
        for (what, v) in [("udp", &s.udp), ("tcp", &s.tcp)] {
            if let Some(v) = v
                && v.get_ref().parse::<SocketAddr>().is_err()
            {
                return Err(err(
                    v.span(),
                    format!("sip.{what} = {:?} is not an IP:port address", v.get_ref()),
                ));
            }
        }
    }
    let mut routes = BTreeMap::new();
    for (d, v) in &s.routes {
        let raw = v.get_ref().trim();
        let (hop, params) = raw.split_once(';').unwrap_or((raw, ""));
        let transport = match params.trim() {
            "" | "transport=udp" => SipTransport::Udp,
            "transport=tcp" => SipTransport::Tcp,
            other => {
                return Err(err(
                    v.span(),
                    format!(
                        "sip.routes.\"{d}\": unknown parameter {other:?} (only transport=udp|tcp)"
                    ),
                ));
            }
        };
        let route = if hop == "auto" {
            if kind != "process" {
                return Err(err(
                    v.span(),
                    format!("sip.routes.\"{d}\" = \"auto\": only a process target chooses ports"),
                ));
            }
            Route::Auto
        } else {
            match hop.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => Route::Fixed(a),
                Ok(_) => {
                    return Err(err(
                        v.span(),
                        format!(
                            "sip.routes.\"{d}\" = {raw:?}: simulated SIP peers listen on loopback only"
                        ),
                    ));
                }
                Err(_) => {
                    return Err(err(
                        v.span(),
                        format!(
                            "sip.routes.\"{d}\" = {raw:?}: expected \"auto\" or IP:port, optionally ;transport=udp|tcp"
                        ),
                    ));
                }
            }
        };
        routes.insert(d.to_ascii_lowercase(), SipRouteSpec { route, transport });
    }
    Ok(SipSpec {
        domain,
        udp: s.udp.as_ref().map(|v| v.get_ref().clone()),
        tcp: s.tcp.as_ref().map(|v| v.get_ref().clone()),
        routes,
    })
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
