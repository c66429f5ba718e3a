//! Systems under test that run as child processes: a scratch directory, a configuration
//! rendered from a template, readiness by polling the ports the SUT must open (bounded),
//! its stdout/stderr/log files kept for the report, and a stop that cannot hang.
//!
//! Why a generic launcher: third-party servers (Prosody, Kamailio, …) differ in their
//! config language, not in how a test harness has to drive them. The parts that are
//! per-server (quoting of values, which files prove readiness) are data in the target file;
//! the Prosody helpers in [`super::peers::prosody`] build on the same pieces.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use super::sip_actor::{SipRoute, SipTransport};

/// Lines of each log file kept in a report.
pub const LOG_TAIL_LINES: usize = 60;
/// Poll interval while waiting for readiness.
const READY_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("I/O error while {doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Template(String),
    /// The SUT (its main command, or the service `process`) ended before it was ready.
    #[error("the SUT process {} before it was ready{}", describe_death(.process.as_deref(), .status), tail_suffix(.log))]
    Exited {
        /// The service that ended; `None` for the main command.
        process: Option<String>,
        status: ExitStatus,
        log: String,
    },
    #[error("the SUT did not become ready within {after:?} (waiting for {waiting}){}", tail_suffix(.log))]
    NotReady {
        after: Duration,
        waiting: String,
        log: String,
    },
}

impl ProcessError {
    /// True when the failure says something about the SUT (it died or never listened),
    /// false when the harness or the target file is at fault.
    pub fn is_sut_fault(&self) -> bool {
        matches!(
            self,
            ProcessError::Exited { .. } | ProcessError::NotReady { .. }
        )
    }
}

fn tail_suffix(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!("; last log lines:\n{log}")
    }
}

fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProcessError {
    let doing = doing.into();
    move |source| ProcessError::Io { doing, source }
}

/// Signal names for exit reports (POSIX numbering as on Linux, signal(7)).
const SIGNALS: &[(i32, &str)] = &[
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (11, "SIGSEGV"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
];

/// "exited with code 3", or "`gateway` exited with code 3" for a service.
pub fn describe_death(process: Option<&str>, status: &ExitStatus) -> String {
    match process {
        Some(name) => format!("`{name}` {}", describe_exit(status)),
        None => describe_exit(status),
    }
}

/// "exited with code 3" / "was killed by signal 11 (SIGSEGV)".
pub fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => match SIGNALS.iter().find(|(n, _)| *n == sig) {
            Some((_, name)) => format!("was killed by signal {sig} ({name})"),
            None => format!("was killed by signal {sig}"),
        },
        None => format!("ended ({status})"),
    }
}

/// A loopback address with a port the kernel just handed out, free for TCP and for UDP (a
/// SIP listener takes both; the SIP actors' UDP sockets share the ephemeral range). The
/// sockets are closed again before the SUT binds it: racy in theory, but a SUT needs the
/// number in its config before it starts.
///
/// The port is drawn at random from [`SUT_PORTS`], below Linux's ephemeral range
/// (32768–60999 by default): the actors' listeners and sockets bind port 0, so between the
/// choice and the SUT's bind no actor of a parallel scenario can be handed the same port
/// (its listener would then answer the other SUT's readiness probe).
pub fn free_loopback_addr() -> std::io::Result<SocketAddr> {
    let mut last = None;
    for _ in 0..64 {
        let mut r = [0u8; 2];
        getrandom::fill(&mut r).map_err(|e| std::io::Error::other(e.to_string()))?;
        let span = SUT_PORTS.end - SUT_PORTS.start;
        let port = SUT_PORTS.start + u16::from_le_bytes(r) % span;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let tcp = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match std::net::UdpSocket::bind(addr) {
            Ok(_) => {
                drop(tcp);
                return Ok(addr);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free loopback port")))
}

/// Where [`free_loopback_addr`] draws SUT ports from.
pub const SUT_PORTS: std::ops::Range<u16> = 20000..32000;

/// A directory under the system temp dir, removed (with its contents) on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(prefix: &str) -> Result<Self, ProcessError> {
        let base = std::env::temp_dir();
        for _ in 0..8 {
            let mut rnd = [0u8; 8];
            getrandom::fill(&mut rnd).map_err(|e| ProcessError::Io {
                doing: "naming the scratch dir".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let path = base.join(format!("{prefix}{}", hex::encode(rnd)));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("creating the scratch dir")(e)),
            }
        }
        Err(ProcessError::Template(
            "could not find a fresh scratch dir name".into(),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A value substituted into a config template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    /// Static routes: remote domain → address (rendered as the syntax's map literal).
    Routes(BTreeMap<String, SocketAddr>),
    /// SIP next hops: domain → address and transport (the syntax's map literal).
    SipRoutes(BTreeMap<String, SipRoute>),
}

/// How values are written into a template: as literals of the config language, so a path
/// with a quote cannot break (or inject into) the generated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Syntax {
    /// Lua 5.4 (Prosody): strings as `"…"` literals, routes as
    /// `{ ["domain"] = { "ip", port }; }`, SIP routes as `{ ["domain"] = { "ip", port, "udp" }; }`.
    Lua,
    /// TOML: basic strings, routes as an inline table `{ "domain" = "ip:port" }`, SIP
    /// routes as `{ "domain" = "ip:port;transport=udp" }` (the reference gateway's format).
    Toml,
    /// Plain text: strings as they are, routes as `domain=ip:port` separated by spaces, SIP
    /// routes as `domain=ip:port;transport=udp`.
    Text,
}

impl Syntax {
    pub fn render(self, v: &Value) -> String {
        match (self, v) {
            (_, Value::Int(n)) => n.to_string(),
            (Syntax::Lua, Value::Str(s)) => lua_string(s),
            (Syntax::Toml, Value::Str(s)) => toml_string(s),
            (Syntax::Text, Value::Str(s)) => s.clone(),
            (Syntax::Lua, Value::Routes(r)) => {
                let mut out = String::from("{");
                for (domain, addr) in r {
                    let _ = write!(
                        out,
                        " [{}] = {{ {}, {} }};",
                        lua_string(domain),
                        lua_string(&addr.ip().to_string()),
                        addr.port()
                    );
                }
                out.push_str(" }");
                out
            }
            (Syntax::Toml, Value::Routes(r)) => {
                let items: Vec<String> = r
                    .iter()
                    .map(|(d, a)| format!("{} = {}", toml_string(d), toml_string(&a.to_string())))
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
            (Syntax::Text, Value::Routes(r)) => r
                .iter()
                .map(|(d, a)| format!("{d}={a}"))
                .collect::<Vec<_>>()
                .join(" "),
            (Syntax::Lua, Value::SipRoutes(r)) => {
                let mut out = String::from("{");
                for (domain, route) in r {
                    let _ = write!(
                        out,
                        " [{}] = {{ {}, {}, {} }};",
                        lua_string(domain),
                        lua_string(&route.addr.ip().to_string()),
                        route.addr.port(),
                        lua_string(transport_param(route.transport))
                    );
                }
                out.push_str(" }");
                out
            }
            (Syntax::Toml, Value::SipRoutes(r)) => {
                let items: Vec<String> = r
                    .iter()
                    .map(|(d, route)| {
                        format!("{} = {}", toml_string(d), toml_string(&sip_hop(route)))
                    })
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
            (Syntax::Text, Value::SipRoutes(r)) => r
                .iter()
                .map(|(d, route)| format!("{d}={}", sip_hop(route)))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// The `transport` URI parameter value of a SIP transport (RFC 3261 §19.1.1).
pub fn transport_param(t: SipTransport) -> &'static str {
    match t {
        SipTransport::Udp => "udp",
        SipTransport::Tcp => "tcp",
    }
}

/// `ip:port;transport=udp`: a next hop as the reference gateway's `sip_routes` write it.
pub fn sip_hop(r: &SipRoute) -> String {
    format!("{};transport={}", r.addr, transport_param(r.transport))
}

/// A Lua double-quoted string literal (Lua 5.4 manual §3.1): escapes backslash, quote and
/// every control byte as `\ddd`.
pub fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\{:03}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML basic string (TOML 1.0 "Basic strings": `"`, `\` and control characters escaped).
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Replace every `@NAME@` of `vars` in `text` with its literal; a placeholder left over
/// (a name the harness does not define) is an error, not a silently broken config.
pub fn render_template(
    text: &str,
    vars: &BTreeMap<String, Value>,
    syntax: Syntax,
) -> Result<String, ProcessError> {
    let mut out = text.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("@{name}@"), &syntax.render(value));
    }
    match leftover_placeholder(&out) {
        Some(p) => Err(ProcessError::Template(format!(
            "config template placeholder {p} is not defined"
        ))),
        None => Ok(out),
    }
}

/// The first `@UPPER_CASE@` token still in `text`, if any.
pub fn leftover_placeholder(text: &str) -> Option<String> {
    text.split('@')
        .skip(1)
        .step_by(2)
        .find(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(|t| format!("@{t}@"))
}

/// Expand `{dir}`, `{target_dir}`, `{domain}` and `{port:NAME}` in a target-file string.
/// `{{`/`}}` write literal braces.
pub fn expand(s: &str, ctx: &ExpandContext) -> Result<String, ProcessError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(rest.get(..i).unwrap_or_default());
        let tail = rest.get(i..).unwrap_or_default();
        if let Some(t) = tail.strip_prefix("{{") {
            out.push('{');
            rest = t;
            continue;
        }
        if let Some(t) = tail.strip_prefix("}}") {
            out.push('}');
            rest = t;
            continue;
        }
        if tail.starts_with('}') {
            return Err(ProcessError::Template(format!("{s:?}: unmatched `}}`")));
        }
        let Some(end) = tail.find('}') else {
            return Err(ProcessError::Template(format!("{s:?}: unclosed `{{`")));
        };
        let name = tail.get(1..end).unwrap_or_default();
        let value = match name {
            "dir" => ctx.dir.to_string_lossy().into_owned(),
            "target_dir" => ctx.target_dir.to_string_lossy().into_owned(),
            "domain" => ctx.domain.clone(),
            "fedcheck" => fedcheck_bin()?.to_string_lossy().into_owned(),
            "gw" => ctx.gw.clone().ok_or_else(|| {
                ProcessError::Template(format!("{s:?}: {{gw}} needs a [sip] section"))
            })?,
            _ => match name.strip_prefix("port:") {
                Some(p) => ctx.ports.get(p).map(|n| n.to_string()).ok_or_else(|| {
                    ProcessError::Template(format!("{s:?}: port `{p}` is not declared in `ports`"))
                })?,
                None => {
                    return Err(ProcessError::Template(format!(
                        "{s:?}: unknown variable {{{name}}} (known: dir, target_dir, domain, gw, port:NAME, fedcheck)"
                    )));
                }
            },
        };
        out.push_str(&value);
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// Set by [`set_fedcheck_bin`]: what `{fedcheck}` expands to, before `FEDCHECK_BIN`.
static FEDCHECK_BIN_OVERRIDE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Make `{fedcheck}` name `path` for the rest of this process, whatever `FEDCHECK_BIN` and
/// the current executable are: for programs that embed the harness (an integration-test
/// binary is not fedcheck). The first call wins.
pub fn set_fedcheck_bin(path: impl Into<PathBuf>) {
    let _ = FEDCHECK_BIN_OVERRIDE.set(path.into());
}

/// The fedcheck executable a target may start (`{fedcheck}`, e.g. its gateway as a service):
/// [`set_fedcheck_bin`]'s path, else `FEDCHECK_BIN` if set, else the running executable.
pub fn fedcheck_bin() -> Result<PathBuf, ProcessError> {
    if let Some(p) = FEDCHECK_BIN_OVERRIDE.get() {
        return Ok(p.clone());
    }
    match std::env::var_os("FEDCHECK_BIN") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => std::env::current_exe().map_err(io("finding the fedcheck executable ({fedcheck})")),
    }
}

/// What `{…}` variables expand to for one start of the SUT.
#[derive(Debug, Clone)]
pub struct ExpandContext {
    pub dir: PathBuf,
    pub target_dir: PathBuf,
    pub domain: String,
    /// The gateway's domain (`[sip] domain`), for `{gw}`.
    pub gw: Option<String>,
    pub ports: BTreeMap<String, u16>,
}

/// One config file the harness renders before starting the SUT.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The template, already resolved against the target file's directory.
    pub template: PathBuf,
    /// Output path, relative to the scratch dir.
    pub output: String,
    pub syntax: Syntax,
}

/// Everything needed to start one SUT process (as a target file describes it).
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// argv; `{…}` variables are expanded. The first element is looked up in `PATH`.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the scratch dir).
    pub cwd: Option<String>,
    pub configs: Vec<ConfigFile>,
    /// Extra template variables (`@NAME@`); string values are `{…}`-expanded.
    pub vars: BTreeMap<String, Value>,
    /// Named ports chosen free on 127.0.0.1 at each start (`{port:NAME}`, `@PORT_NAME@`).
    pub ports: Vec<String>,
    /// Addresses that must accept a TCP connection before the SUT counts as ready.
    pub ready_addrs: Vec<String>,
    /// Files that must exist before the SUT counts as ready (e.g. an admin socket).
    pub ready_files: Vec<String>,
    pub ready_timeout: Duration,
    /// Log files the SUT writes (beside its stdout and stderr, always captured).
    pub log_files: Vec<String>,
    /// Text each of which must have appeared in the process's logs (stdout, stderr,
    /// `log_files`) before it counts as ready, e.g. a "link up" line.
    pub ready_log: Vec<String>,
    /// Further processes of the same SUT, started in order once the main command is ready
    /// and stopped in reverse order before it.
    pub services: Vec<ServiceSpec>,
    /// The SUT takes the run's test PKI (`@TLS@`, `@PKI_DIR@`, `@CA_FILE@`): the files are
    /// written for scenarios that negotiate TLS ([`StartInputs::tls`]).
    pub pki: bool,
    /// `kind = "container"`: the main program is this image, not `command` (which is then
    /// empty); see [`super::container`].
    pub container: Option<super::container::ContainerSpec>,
    /// Directory of the target file, for relative paths.
    pub target_dir: PathBuf,
}

/// One `[[process.service]]`: another process of the SUT (e.g. a gateway beside a
/// server), sharing the scratch dir, ports and variables of the main command.
#[derive(Debug, Clone, Default)]
pub struct ServiceSpec {
    /// Names it in reports and logs (`NAME.stdout.log`, `NAME.stderr.log`).
    pub name: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// Its own templates, rendered with the target's before anything starts.
    pub configs: Vec<ConfigFile>,
    pub ready_addrs: Vec<String>,
    pub ready_files: Vec<String>,
    pub ready_log: Vec<String>,
    /// Default: the target's `ready_timeout`.
    pub ready_timeout: Option<Duration>,
    pub log_files: Vec<String>,
}

/// Inputs a start needs from the harness.
#[derive(Debug, Clone)]
pub struct StartInputs {
    pub domain: String,
    pub routes: BTreeMap<String, SocketAddr>,
    /// Ports the caller chose already (it needed them before the start, e.g. to route a
    /// peer to the SUT); the spec's other ports are chosen free.
    pub ports: BTreeMap<String, u16>,
    /// The SIP side, for targets with a `[sip]` section.
    pub sip: Option<SipInputs>,
    /// The run's certificates for a scenario that negotiates TLS (targets with `pki`).
    pub tls: Option<TlsFiles>,
}

/// PEM files written under `pki/` in the scratch dir before the configs are rendered.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// (file name, PEM text): `<domain>.crt` (chain, leaf first) and `<domain>.key` per
    /// domain the SUT serves, and `ca.crt`, the run's test CA.
    pub files: Vec<(String, String)>,
}

/// The folder under the scratch dir that [`TlsFiles`] go to (`@PKI_DIR@`).
pub const PKI_DIR: &str = "pki";
/// The CA file in it (`@CA_FILE@`).
pub const CA_FILE: &str = "ca.crt";

/// Where a SUT with a SIP side sends SIP for this start.
#[derive(Debug, Clone)]
pub struct SipInputs {
    /// The gateway's domain (`@SIP_DOMAIN@`, `{gw}`).
    pub domain: String,
    /// The first SIP actor's socket (`@SIP_ROUTE@`), or a declared route, or a port nobody
    /// listens on when the scenario has no SIP actor.
    pub route: SipRoute,
    /// Every SIP domain's next hop (`@SIP_ROUTES@`).
    pub routes: BTreeMap<String, SipRoute>,
}

/// One spawned process of a SUT (the main command or a service), leading its own process
/// group.
#[derive(Debug)]
struct Proc {
    /// `None` for the main command.
    name: Option<String>,
    child: Child,
    /// Process group id (= the child's pid: it leads its own group).
    pgid: Option<i32>,
    exit: Option<ExitStatus>,
    /// Its log files: its own `log_files`, then its stdout and stderr.
    logs: Vec<PathBuf>,
}

impl Proc {
    fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    fn signal_group(&self, sig: i32) {
        if let Some(pgid) = self.pgid.filter(|p| *p > 1) {
            // SAFETY: kill(2) with a negative pid signals the process group we created for
            // the child (`process_group(0)`); it touches no memory of ours.
            unsafe {
                libc::kill(-pgid, sig);
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; never waits longer than about twice `grace`.
    async fn stop(&mut self, grace: Duration) {
        if self.exited().is_none() {
            self.signal_group(libc::SIGTERM);
            if let Ok(Ok(s)) = timeout(grace, self.child.wait()).await {
                self.exit = Some(s);
            }
        }
        // Whatever is left of the group (a wrapper's children) goes too.
        self.signal_group(libc::SIGKILL);
        if self.exit.is_none() {
            let _ = self.child.start_kill();
            if let Ok(Ok(s)) = timeout(grace, self.child.wait()).await {
                self.exit = Some(s);
            }
        }
    }
}

/// How one process of a SUT ended.
#[derive(Debug, Clone)]
pub struct Death {
    /// The service; `None` for the main command.
    pub process: Option<String>,
    pub status: ExitStatus,
}

impl Death {
    /// "exited with code 3" / "`gateway` was killed by signal 9 (SIGKILL)".
    pub fn describe(&self) -> String {
        describe_death(self.process.as_deref(), &self.status)
    }
}

/// What one process needs to be spawned and found ready (the main command or a service).
struct Launch<'a> {
    name: Option<&'a str>,
    command: &'a [String],
    env: &'a BTreeMap<String, String>,
    cwd: Option<&'a str>,
    ready_addrs: &'a [String],
    ready_files: &'a [String],
    ready_log: &'a [String],
    ready_timeout: Duration,
    log_files: &'a [String],
}

/// A started SUT: its main process and its services, each killed with its whole process
/// group on stop or drop.
#[derive(Debug)]
pub struct RunningProcess {
    /// The main command first, then the services in start order.
    procs: Vec<Proc>,
    /// A container target's main program (then `procs` holds the services only).
    container: Option<super::container::RunningContainer>,
    ctx: ExpandContext,
    // Last: removed after the children are gone.
    dir: ScratchDir,
}

impl RunningProcess {
    /// Choose ports, render the configs (the target's and every service's) into a fresh
    /// scratch dir, spawn the command and wait (bounded by `spec.ready_timeout`) until every
    /// ready address accepts, every ready file exists and every `ready_log` text appeared;
    /// then the same for each service in order. Any of them ending before that is
    /// [`ProcessError::Exited`], naming which.
    pub async fn start(spec: &ProcessSpec, inputs: &StartInputs) -> Result<Self, ProcessError> {
        let dir = ScratchDir::new("fedcheck-sut-")?;
        let mut ports = BTreeMap::new();
        for name in &spec.ports {
            let port = match inputs.ports.get(name) {
                Some(p) => *p,
                None => free_loopback_addr()
                    .map_err(io("choosing a free port"))?
                    .port(),
            };
            ports.insert(name.clone(), port);
        }
        let ctx = ExpandContext {
            dir: dir.path().to_path_buf(),
            target_dir: spec.target_dir.clone(),
            domain: inputs.domain.clone(),
            gw: inputs.sip.as_ref().map(|s| s.domain.clone()),
            ports,
        };
        let vars = template_vars(spec, inputs, &ctx)?;
        if let Some(tls) = &inputs.tls {
            write_pki(&dir.path().join(PKI_DIR), tls)?;
        }
        for c in spec
            .configs
            .iter()
            .chain(spec.services.iter().flat_map(|s| &s.configs))
        {
            let text = std::fs::read_to_string(&c.template)
                .map_err(io(format!("reading {}", c.template.display())))?;
            let rendered = render_template(&text, &vars, c.syntax)
                .map_err(|e| ProcessError::Template(format!("{}: {e}", c.template.display())))?;
            let out = dir.path().join(expand(&c.output, &ctx)?);
            std::fs::write(&out, rendered).map_err(io(format!("writing {}", out.display())))?;
        }
        let mut p = Self {
            procs: Vec::new(),
            container: None,
            ctx,
            dir,
        };
        if let Some(c) = &spec.container {
            p.launch_container(c, spec).await?;
        } else {
            p.launch(&Launch {
                name: None,
                command: &spec.command,
                env: &spec.env,
                cwd: spec.cwd.as_deref(),
                ready_addrs: &spec.ready_addrs,
                ready_files: &spec.ready_files,
                ready_log: &spec.ready_log,
                ready_timeout: spec.ready_timeout,
                log_files: &spec.log_files,
            })
            .await?;
        }
        for svc in &spec.services {
            p.launch(&Launch {
                name: Some(&svc.name),
                command: &svc.command,
                env: &svc.env,
                cwd: svc.cwd.as_deref(),
                ready_addrs: &svc.ready_addrs,
                ready_files: &svc.ready_files,
                ready_log: &svc.ready_log,
                ready_timeout: svc.ready_timeout.unwrap_or(spec.ready_timeout),
                log_files: &svc.log_files,
            })
            .await?;
        }
        Ok(p)
    }

    /// Start a container target's image (host network, configs mounted) and wait until it
    /// is ready, as for a process.
    async fn launch_container(
        &mut self,
        c: &super::container::ContainerSpec,
        spec: &ProcessSpec,
    ) -> Result<(), ProcessError> {
        let ctx = &self.ctx;
        let command: Vec<String> = c
            .command
            .iter()
            .map(|a| expand(a, ctx))
            .collect::<Result<_, _>>()?;
        let mut env = BTreeMap::new();
        for (k, v) in &c.env {
            env.insert(k.clone(), expand(v, ctx)?);
        }
        let addrs = ready_addrs(&spec.ready_addrs, ctx)?;
        let files: Vec<PathBuf> = spec
            .ready_files
            .iter()
            .map(|f| expand(f, ctx).map(|f| self.dir.path().join(f)))
            .collect::<Result<_, _>>()?;
        let running = super::container::start(c, self.dir.path(), command, env).await?;
        self.container = Some(running);
        self.wait_ready(&addrs, &files, &spec.ready_log, spec.ready_timeout)
            .await
    }

    /// Spawn one process in its own group and wait until it is ready.
    async fn launch(&mut self, l: &Launch<'_>) -> Result<(), ProcessError> {
        let ctx = &self.ctx;
        let argv: Vec<String> = l
            .command
            .iter()
            .map(|a| expand(a, ctx))
            .collect::<Result<_, _>>()?;
        let Some((program, args)) = argv.split_first() else {
            return Err(ProcessError::Template(match l.name {
                Some(n) => format!("service `{n}`: `command` is empty"),
                None => "`command` is empty".into(),
            }));
        };
        let cwd = match l.cwd {
            Some(c) => PathBuf::from(expand(c, ctx)?),
            None => self.dir.path().to_path_buf(),
        };
        let prefix = l.name.map(|n| format!("{n}.")).unwrap_or_default();
        let out_name = format!("{prefix}stdout.log");
        let err_name = format!("{prefix}stderr.log");
        let stdout = std::fs::File::create(self.dir.path().join(&out_name))
            .map_err(io(format!("creating {out_name}")))?;
        let stderr = std::fs::File::create(self.dir.path().join(&err_name))
            .map_err(io(format!("creating {err_name}")))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Own process group: a terminal's Ctrl-C reaches the harness only, and a
            // wrapper script's children are stopped with it.
            .process_group(0)
            .kill_on_drop(true);
        for (k, v) in l.env {
            cmd.env(k, expand(v, ctx)?);
        }
        let mut logs = Vec::new();
        for f in l.log_files {
            logs.push(self.dir.path().join(expand(f, ctx)?));
        }
        logs.push(self.dir.path().join(&out_name));
        logs.push(self.dir.path().join(&err_name));
        let addrs = ready_addrs(l.ready_addrs, ctx)?;
        let files: Vec<PathBuf> = l
            .ready_files
            .iter()
            .map(|f| expand(f, ctx).map(|f| self.dir.path().join(f)))
            .collect::<Result<_, _>>()?;
        let child = cmd.spawn().map_err(io(match l.name {
            Some(n) => format!("spawning service `{n}` ({program:?})"),
            None => format!("spawning {program:?}"),
        }))?;
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        self.procs.push(Proc {
            name: l.name.map(str::to_string),
            child,
            pgid,
            exit: None,
            logs,
        });
        self.wait_ready(&addrs, &files, l.ready_log, l.ready_timeout)
            .await
    }

    /// Wait until the last-started process is ready; any started process ending first is
    /// an error naming it.
    async fn wait_ready(
        &mut self,
        addrs: &[SocketAddr],
        files: &[PathBuf],
        texts: &[String],
        limit: Duration,
    ) -> Result<(), ProcessError> {
        let started = Instant::now();
        loop {
            if let Some(d) = self.died() {
                return Err(ProcessError::Exited {
                    log: self.log_tail_of(d.process.as_deref(), LOG_TAIL_LINES),
                    process: d.process,
                    status: d.status,
                });
            }
            let mut waiting = Vec::new();
            for a in addrs {
                let ok = matches!(
                    timeout(Duration::from_millis(500), TcpStream::connect(a)).await,
                    Ok(Ok(_))
                );
                if !ok {
                    waiting.push(format!("a listener on {a}"));
                }
            }
            for f in files {
                if !f.exists() {
                    let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
                    waiting.push(format!("file {}", name.unwrap_or_default()));
                }
            }
            if !texts.is_empty() {
                let logged: String = self
                    .last_logs()
                    .iter()
                    .filter_map(|f| std::fs::read(f).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .collect();
                for t in texts {
                    if !logged.contains(t.as_str()) {
                        waiting.push(format!("{t:?} in its logs"));
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= limit {
                let name = self.procs.last().and_then(|p| p.name.clone());
                let waiting = waiting.join(", ");
                return Err(ProcessError::NotReady {
                    after: limit,
                    waiting: match &name {
                        Some(n) => format!("service `{n}`: {waiting}"),
                        None => waiting,
                    },
                    log: self.log_tail_of(name.as_deref(), LOG_TAIL_LINES),
                });
            }
            sleep(READY_POLL).await;
        }
    }

    /// The logs of the process started last (the one being waited for).
    fn last_logs(&self) -> Vec<PathBuf> {
        match (self.procs.last(), &self.container) {
            (Some(p), _) => p.logs.clone(),
            (None, Some(_)) => super::container::log_files(self.dir.path()),
            (None, None) => Vec::new(),
        }
    }

    /// The main command's exit status if it has ended (remembered once seen).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if let Some(c) = &self.container {
            return c.exited();
        }
        self.procs.first_mut().and_then(Proc::exited)
    }

    /// The first process of the SUT found ended (the main command, then services in start
    /// order): any of them dying is the SUT dying.
    pub fn died(&mut self) -> Option<Death> {
        if let Some(status) = self.container.as_ref().and_then(|c| c.exited()) {
            return Some(Death {
                process: None,
                status,
            });
        }
        self.procs.iter_mut().find_map(|p| {
            let status = p.exited()?;
            Some(Death {
                process: p.name.clone(),
                status,
            })
        })
    }

    /// The ports chosen for this start.
    pub fn ports(&self) -> &BTreeMap<String, u16> {
        &self.ctx.ports
    }

    pub fn expand(&self, s: &str) -> Result<String, ProcessError> {
        expand(s, &self.ctx)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `lines` lines of every log file that has content, each under a
    /// `==> name <==` header (as `tail` prints several files).
    pub fn log_tail(&self, lines: usize) -> String {
        self.log_tail_of(None, lines)
    }

    /// As [`RunningProcess::log_tail`], with the logs of `last` (a service, or `None` for
    /// the main command) at the end, so a report's last lines are the dead process's.
    pub fn log_tail_of(&self, last: Option<&str>, lines: usize) -> String {
        let mut order: Vec<&Proc> = self
            .procs
            .iter()
            .filter(|p| p.name.as_deref() != last)
            .collect();
        order.extend(self.procs.iter().filter(|p| p.name.as_deref() == last));
        let mut files: Vec<PathBuf> = Vec::new();
        let container_logs = match self.container {
            Some(_) => super::container::log_files(self.dir.path()),
            None => Vec::new(),
        };
        if last.is_some() {
            files.extend(container_logs.iter().cloned());
        }
        files.extend(order.iter().flat_map(|p| p.logs.iter().cloned()));
        if last.is_none() {
            files.extend(container_logs);
        }
        let mut out = String::new();
        for p in &files {
            let text = std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if text.trim().is_empty() {
                continue;
            }
            let all: Vec<&str> = text.lines().collect();
            let tail = all
                .get(all.len().saturating_sub(lines)..)
                .unwrap_or_default();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let _ = writeln!(out, "==> {} <==", name.unwrap_or_default());
            for l in tail {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }

    /// Stop the services in reverse start order, then the main command (each: SIGTERM to
    /// its group, SIGKILL after `grace`); returns the main command's exit status.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        for p in self.procs.iter_mut().rev() {
            p.stop(grace).await;
        }
        if let Some(mut c) = self.container.take() {
            let status = c.exited();
            c.stop(grace).await;
            return status;
        }
        self.procs.first().and_then(|p| p.exit)
    }
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        for p in self.procs.iter().rev() {
            p.signal_group(libc::SIGKILL);
        }
    }
}

/// Ready addresses, expanded and parsed.
fn ready_addrs(list: &[String], ctx: &ExpandContext) -> Result<Vec<SocketAddr>, ProcessError> {
    list.iter()
        .map(|a| {
            let s = expand(a, ctx)?;
            s.parse()
                .map_err(|_| ProcessError::Template(format!("ready address {s:?} is not IP:port")))
        })
        .collect()
}

/// Write the PEM files; keys readable by their owner only.
fn write_pki(dir: &Path, tls: &TlsFiles) -> Result<(), ProcessError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).map_err(io("creating the pki dir"))?;
    for (name, pem) in &tls.files {
        // A plain file name: nothing may land outside `pki/`.
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(ProcessError::Template(format!(
                "bad PKI file name {name:?}"
            )));
        }
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(io(format!("writing {}", path.display())))?;
        if name.ends_with(".key") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(format!("restricting {}", path.display())))?;
        }
    }
    Ok(())
}

/// The `@NAME@` variables of one start: built-ins, then the target's own.
fn template_vars(
    spec: &ProcessSpec,
    inputs: &StartInputs,
    ctx: &ExpandContext,
) -> Result<BTreeMap<String, Value>, ProcessError> {
    let mut vars = BTreeMap::new();
    vars.insert(
        "DIR".to_string(),
        Value::Str(ctx.dir.to_string_lossy().into_owned()),
    );
    vars.insert(
        "TARGET_DIR".to_string(),
        Value::Str(ctx.target_dir.to_string_lossy().into_owned()),
    );
    vars.insert("DOMAIN".to_string(), Value::Str(inputs.domain.clone()));
    vars.insert("LISTEN_IP".to_string(), Value::Str("127.0.0.1".into()));
    vars.insert("ROUTES".to_string(), Value::Routes(inputs.routes.clone()));
    if spec.pki {
        let pki = ctx.dir.join(PKI_DIR);
        let on = if inputs.tls.is_some() { "yes" } else { "no" };
        vars.insert("TLS".to_string(), Value::Str(on.into()));
        vars.insert(
            "PKI_DIR".to_string(),
            Value::Str(pki.to_string_lossy().into_owned()),
        );
        vars.insert(
            "CA_FILE".to_string(),
            Value::Str(pki.join(CA_FILE).to_string_lossy().into_owned()),
        );
    }
    if let Some(sip) = &inputs.sip {
        let r = sip.route;
        let strs = [
            ("SIP_DOMAIN", sip.domain.clone()),
            ("SIP_ROUTE", r.addr.to_string()),
            ("SIP_ROUTE_IP", r.addr.ip().to_string()),
            (
                "SIP_ROUTE_TRANSPORT",
                transport_param(r.transport).to_string(),
            ),
        ];
        for (k, v) in strs {
            vars.insert(k.to_string(), Value::Str(v));
        }
        vars.insert(
            "SIP_ROUTE_PORT".to_string(),
            Value::Int(i64::from(r.addr.port())),
        );
        vars.insert(
            "SIP_ROUTES".to_string(),
            Value::SipRoutes(sip.routes.clone()),
        );
    }
    for (name, port) in &ctx.ports {
        vars.insert(
            format!("PORT_{}", name.to_ascii_uppercase()),
            Value::Int(i64::from(*port)),
        );
    }
    for (k, v) in &spec.vars {
        let v = match v {
            Value::Str(s) => Value::Str(expand(s, ctx)?),
            other => other.clone(),
        };
        vars.insert(k.clone(), v);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn ctx() -> ExpandContext {
        ExpandContext {
            dir: PathBuf::from("/scratch"),
            target_dir: PathBuf::from("/t"),
            domain: "prosody.test".into(),
            gw: Some("gw.prosody.test".into()),
            ports: BTreeMap::from([("s2s".to_string(), 5999)]),
        }
    }

    #[rstest]
    #[case("{dir}/x.cfg", "/scratch/x.cfg")]
    #[case("127.0.0.1:{port:s2s}", "127.0.0.1:5999")]
    #[case("{target_dir}/../p", "/t/../p")]
    #[case("{{literal}} {domain}", "{literal} prosody.test")]
    #[case("sip:{gw}", "sip:gw.prosody.test")]
    fn variables_expand(#[case] input: &str, #[case] want: &str) {
        assert_eq!(expand(input, &ctx()).ok().as_deref(), Some(want));
    }

    #[rstest]
    #[case("{nope}", "unknown variable")]
    #[case("{port:c2s}", "not declared")]
    #[case("{dir", "unclosed")]
    #[case("a}b", "unmatched")]
    fn bad_variables_are_errors(#[case] input: &str, #[case] msg: &str) {
        let e = expand(input, &ctx()).err().map(|e| e.to_string());
        assert!(e.as_deref().unwrap_or("").contains(msg), "{e:?}");
    }

    #[test]
    fn values_render_as_literals_of_each_syntax() {
        let routes = Value::Routes(BTreeMap::from([(
            "fedcheck.test".to_string(),
            SocketAddr::from(([127, 0, 0, 1], 6001)),
        )]));
        assert_eq!(
            Syntax::Lua.render(&routes),
            r#"{ ["fedcheck.test"] = { "127.0.0.1", 6001 }; }"#
        );
        assert_eq!(
            Syntax::Toml.render(&routes),
            r#"{ "fedcheck.test" = "127.0.0.1:6001" }"#
        );
        assert_eq!(Syntax::Text.render(&routes), "fedcheck.test=127.0.0.1:6001");
        assert_eq!(
            Syntax::Lua.render(&Value::Str(r#"a"b\c"#.into())),
            r#""a\"b\\c""#
        );
        assert_eq!(
            Syntax::Lua.render(&Value::Str("a\nb".into())),
            r#""a\010b""#
        );
        assert_eq!(
            Syntax::Toml.render(&Value::Str("a\"\n".into())),
            r#""a\"\u000A""#
        );
        assert_eq!(Syntax::Lua.render(&Value::Int(5269)), "5269");
        let sip = Value::SipRoutes(BTreeMap::from([(
            "gw.test".to_string(),
            SipRoute {
                addr: SocketAddr::from(([127, 0, 0, 1], 5070)),
                transport: SipTransport::Tcp,
            },
        )]));
        assert_eq!(
            Syntax::Lua.render(&sip),
            r#"{ ["gw.test"] = { "127.0.0.1", 5070, "tcp" }; }"#
        );
        assert_eq!(
            Syntax::Toml.render(&sip),
            r#"{ "gw.test" = "127.0.0.1:5070;transport=tcp" }"#
        );
        assert_eq!(
            Syntax::Text.render(&sip),
            "gw.test=127.0.0.1:5070;transport=tcp"
        );
    }

    #[test]
    fn sip_placeholders_are_defined_for_a_sip_side() {
        let hop = SipRoute {
            addr: SocketAddr::from(([127, 0, 0, 1], 5070)),
            transport: SipTransport::Udp,
        };
        let mut i = inputs();
        i.sip = Some(SipInputs {
            domain: "gw.test".into(),
            route: hop,
            routes: BTreeMap::from([("gw.test".to_string(), hop)]),
        });
        let s = spec(&["true"]);
        let vars = template_vars(&s, &i, &ctx()).expect("vars");
        let out = render_template(
            "@SIP_DOMAIN@ @SIP_ROUTE@ @SIP_ROUTE_IP@ @SIP_ROUTE_PORT@ @SIP_ROUTE_TRANSPORT@ @SIP_ROUTES@",
            &vars,
            Syntax::Text,
        );
        assert_eq!(
            out.ok().as_deref(),
            Some("gw.test 127.0.0.1:5070 127.0.0.1 5070 udp gw.test=127.0.0.1:5070;transport=udp")
        );
        // Without a SIP side the placeholders are not defined: a template using them is an
        // error, not a config pointing nowhere.
        let vars = template_vars(&s, &inputs(), &ctx()).expect("vars");
        assert!(render_template("@SIP_ROUTE@", &vars, Syntax::Text).is_err());
    }

    #[test]
    fn templates_must_not_keep_placeholders() {
        let vars = BTreeMap::from([("PORT_S2S".to_string(), Value::Int(1))]);
        assert_eq!(
            render_template("p = @PORT_S2S@", &vars, Syntax::Lua)
                .ok()
                .as_deref(),
            Some("p = 1")
        );
        let e = render_template("p = @NOPE@", &vars, Syntax::Lua).err();
        assert!(e.is_some_and(|e| e.to_string().contains("@NOPE@")));
        assert_eq!(leftover_placeholder("mail a@b.c or d@e"), None);
    }

    #[test]
    fn exits_are_described_by_code_or_signal() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            describe_exit(&ExitStatus::from_raw(3 << 8)),
            "exited with code 3"
        );
        assert_eq!(
            describe_exit(&ExitStatus::from_raw(11)),
            "was killed by signal 11 (SIGSEGV)"
        );
    }

    fn spec(command: &[&str]) -> ProcessSpec {
        ProcessSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            cwd: None,
            configs: Vec::new(),
            vars: BTreeMap::new(),
            ports: vec!["main".into()],
            ready_addrs: vec!["127.0.0.1:{port:main}".into()],
            ready_files: Vec::new(),
            ready_timeout: Duration::from_secs(5),
            log_files: Vec::new(),
            ready_log: Vec::new(),
            services: Vec::new(),
            pki: false,
            container: None,
            target_dir: PathBuf::from("."),
        }
    }

    /// A main command that records its start and its SIGTERM in `order`, ready by a file.
    fn recording(name: &str, delay: &str) -> Vec<String> {
        let script = format!(
            "trap 'echo stop {name} >> order; exit 0' TERM; sleep {delay}; echo {name} >> order; touch {name}.ready; while :; do sleep 0.05; done"
        );
        vec!["sh".into(), "-c".into(), script]
    }

    fn service(name: &str, command: Vec<String>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            command,
            ready_files: vec![format!("{name}.ready")],
            ..ServiceSpec::default()
        }
    }

    fn main_spec(command: Vec<String>, services: Vec<ServiceSpec>) -> ProcessSpec {
        let mut s = spec(&[]);
        s.command = command;
        s.ready_addrs = Vec::new();
        s.ready_files = vec!["main.ready".into()];
        s.services = services;
        s
    }

    #[tokio::test]
    async fn services_start_in_order_once_ready_and_stop_in_reverse() {
        let s = main_spec(
            recording("main", "0.2"),
            vec![
                service("a", recording("a", "0.3")),
                service("b", recording("b", "0")),
            ],
        );
        let p = match RunningProcess::start(&s, &inputs()).await {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let order = p.dir().join("order");
        assert_eq!(
            std::fs::read_to_string(&order).unwrap_or_default(),
            "main\na\nb\n",
            "each starts after the previous one is ready"
        );
        let dir = p.dir().to_path_buf();
        let keep = tempfile::tempdir().expect("tempdir");
        // The scratch dir goes with the process: watch the order file through a hard link.
        let seen = keep.path().join("order");
        std::fs::hard_link(&order, &seen).expect("link");
        let status = p.stop(Duration::from_secs(2)).await;
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap_or_default(),
            "main\na\nb\nstop b\nstop a\nstop main\n"
        );
        assert!(!dir.exists(), "scratch dir removed");
    }

    #[tokio::test]
    async fn a_service_dying_is_the_sut_dying_and_is_named() {
        let dying = vec![
            "sh".into(),
            "-c".into(),
            "touch gw.ready; sleep 0.2; echo 'gw: fatal' >&2; exit 7".into(),
        ];
        let s = main_spec(recording("main", "0"), vec![service("gw", dying)]);
        let mut p = match RunningProcess::start(&s, &inputs()).await {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let mut death = None;
        for _ in 0..100 {
            death = p.died();
            if death.is_some() {
                break;
            }
            sleep(Duration::from_millis(20)).await;
        }
        let d = death.expect("the service died");
        assert_eq!(d.describe(), "`gw` exited with code 7");
        assert!(p.exited().is_none(), "the main command still runs");
        let tail = p.log_tail_of(d.process.as_deref(), 10);
        assert!(tail.trim_end().ends_with("gw: fatal"), "{tail}");
        assert!(tail.contains("==> gw.stderr.log <=="), "{tail}");
    }

    #[tokio::test]
    async fn a_service_exiting_before_ready_names_itself() {
        let s = main_spec(
            recording("main", "0"),
            vec![service(
                "gw",
                vec![
                    "sh".into(),
                    "-c".into(),
                    "echo 'no config' >&2; exit 5".into(),
                ],
            )],
        );
        let e = RunningProcess::start(&s, &inputs()).await.err();
        let text = e.as_ref().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.is_some_and(|e| e.is_sut_fault()));
        assert!(
            text.contains("the SUT process `gw` exited with code 5 before it was ready"),
            "{text}"
        );
        assert!(text.contains("no config"), "{text}");
    }

    #[tokio::test]
    async fn ready_log_waits_for_a_line() {
        let talker = |line: &str| {
            vec![
                "sh".into(),
                "-c".into(),
                format!("sleep 0.2; echo '{line}' >&2; sleep 30"),
            ]
        };
        let mut svc = service("gw", talker("component link ready"));
        svc.ready_files = Vec::new();
        svc.ready_log = vec!["link ready".into()];
        let s = main_spec(recording("main", "0"), vec![svc.clone()]);
        let p = RunningProcess::start(&s, &inputs()).await;
        assert!(p.is_ok(), "{:?}", p.err());
        svc.command = talker("something else");
        svc.ready_timeout = Some(Duration::from_millis(600));
        let s = main_spec(recording("main", "0"), vec![svc]);
        let e = RunningProcess::start(&s, &inputs()).await.err();
        let text = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("service `gw`: \"link ready\" in its logs"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn pki_files_and_placeholders() {
        let mut s = main_spec(recording("main", "0"), Vec::new());
        s.pki = true;
        let keep = tempfile::tempdir().expect("tempdir");
        let template = keep.path().join("t.in");
        std::fs::write(&template, "@TLS@ @PKI_DIR@ @CA_FILE@").expect("template");
        s.configs = vec![ConfigFile {
            template,
            output: "out.txt".into(),
            syntax: Syntax::Text,
        }];
        let mut i = inputs();
        i.tls = Some(TlsFiles {
            files: vec![
                ("d.test.crt".into(), "CRT".into()),
                ("d.test.key".into(), "KEY".into()),
                (CA_FILE.into(), "CA".into()),
            ],
        });
        let p = match RunningProcess::start(&s, &i).await {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let pki = p.dir().join(PKI_DIR);
        let out = std::fs::read_to_string(p.dir().join("out.txt")).unwrap_or_default();
        assert_eq!(
            out,
            format!("yes {} {}", pki.display(), pki.join(CA_FILE).display())
        );
        assert_eq!(
            std::fs::read_to_string(pki.join("d.test.key"))
                .ok()
                .as_deref(),
            Some("KEY")
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode =
            std::fs::metadata(pki.join("d.test.key")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        p.stop(Duration::from_secs(1)).await;
        // Without TLS files: the placeholders still render, TLS is "no".
        let p = match RunningProcess::start(&s, &inputs()).await {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let out = std::fs::read_to_string(p.dir().join("out.txt")).unwrap_or_default();
        assert!(out.starts_with("no "), "{out}");
        p.stop(Duration::from_secs(1)).await;
    }

    #[test]
    fn fedcheck_names_an_executable() {
        let bin = fedcheck_bin().expect("an executable");
        assert_eq!(
            expand("{fedcheck}", &ctx()).ok(),
            Some(bin.to_string_lossy().into_owned())
        );
    }

    fn inputs() -> StartInputs {
        StartInputs {
            domain: "d.test".into(),
            routes: BTreeMap::new(),
            ports: BTreeMap::new(),
            sip: None,
            tls: None,
        }
    }

    #[tokio::test]
    async fn an_exit_before_ready_names_the_code_and_the_output() {
        let e = RunningProcess::start(&spec(&["sh", "-c", "echo boom >&2; exit 3"]), &inputs())
            .await
            .err();
        let text = e.as_ref().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.is_some_and(|e| e.is_sut_fault()));
        assert!(text.contains("exited with code 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
    }

    #[tokio::test]
    async fn a_process_that_never_listens_is_not_ready_in_bounded_time() {
        let mut s = spec(&["sleep", "30"]);
        s.ready_timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let e = RunningProcess::start(&s, &inputs()).await.err();
        assert!(matches!(e, Some(ProcessError::NotReady { .. })), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_harness_error() {
        let e = RunningProcess::start(&spec(&["/nonexistent/fedcheck-sut"]), &inputs())
            .await
            .err();
        assert!(e.is_some_and(|e| !e.is_sut_fault()));
    }
}
