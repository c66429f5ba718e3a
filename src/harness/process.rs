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
    /// The SUT ended before it was ready, or while a scenario ran.
    #[error("the SUT process {} before it was ready{}", describe_exit(.status), tail_suffix(.log))]
    Exited { status: ExitStatus, log: String },
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

/// A loopback address with a port the kernel just handed out. The listener is closed again
/// before the SUT binds it: racy in theory, but a SUT needs the number in its config before
/// it starts.
pub fn free_loopback_addr() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.local_addr()
}

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
            "gw" => ctx.gw.clone().ok_or_else(|| {
                ProcessError::Template(format!("{s:?}: {{gw}} needs a [sip] section"))
            })?,
            _ => match name.strip_prefix("port:") {
                Some(p) => ctx.ports.get(p).map(|n| n.to_string()).ok_or_else(|| {
                    ProcessError::Template(format!("{s:?}: port `{p}` is not declared in `ports`"))
                })?,
                None => {
                    return Err(ProcessError::Template(format!(
                        "{s:?}: unknown variable {{{name}}} (known: dir, target_dir, domain, gw, port:NAME)"
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
    /// Directory of the target file, for relative paths.
    pub target_dir: PathBuf,
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
}

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

/// A started SUT process: killed with its whole process group on stop or drop.
#[derive(Debug)]
pub struct RunningProcess {
    child: Child,
    /// Process group id (= the child's pid: it leads its own group).
    pgid: Option<i32>,
    exit: Option<ExitStatus>,
    logs: Vec<PathBuf>,
    ctx: ExpandContext,
    // Last: removed after the child is gone.
    dir: ScratchDir,
}

impl RunningProcess {
    /// Choose ports, render the configs into a fresh scratch dir, spawn the command and wait
    /// (bounded by `spec.ready_timeout`) until every ready address accepts and every ready
    /// file exists. An exit before that is [`ProcessError::Exited`].
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
        for c in &spec.configs {
            let text = std::fs::read_to_string(&c.template)
                .map_err(io(format!("reading {}", c.template.display())))?;
            let rendered = render_template(&text, &vars, c.syntax)
                .map_err(|e| ProcessError::Template(format!("{}: {e}", c.template.display())))?;
            let out = dir.path().join(expand(&c.output, &ctx)?);
            std::fs::write(&out, rendered).map_err(io(format!("writing {}", out.display())))?;
        }
        let argv: Vec<String> = spec
            .command
            .iter()
            .map(|a| expand(a, &ctx))
            .collect::<Result<_, _>>()?;
        let Some((program, args)) = argv.split_first() else {
            return Err(ProcessError::Template("`command` is empty".into()));
        };
        let cwd = match &spec.cwd {
            Some(c) => PathBuf::from(expand(c, &ctx)?),
            None => dir.path().to_path_buf(),
        };
        let stdout = std::fs::File::create(dir.path().join("stdout.log"))
            .map_err(io("creating stdout.log"))?;
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))
            .map_err(io("creating stderr.log"))?;
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
        for (k, v) in &spec.env {
            cmd.env(k, expand(v, &ctx)?);
        }
        let child = cmd.spawn().map_err(io(format!("spawning {program:?}")))?;
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        let mut logs = Vec::new();
        for l in &spec.log_files {
            logs.push(dir.path().join(expand(l, &ctx)?));
        }
        logs.push(dir.path().join("stdout.log"));
        logs.push(dir.path().join("stderr.log"));
        let mut p = Self {
            child,
            pgid,
            exit: None,
            logs,
            ctx,
            dir,
        };
        let addrs: Vec<SocketAddr> = spec
            .ready_addrs
            .iter()
            .map(|a| {
                let s = expand(a, &p.ctx)?;
                s.parse().map_err(|_| {
                    ProcessError::Template(format!("ready address {s:?} is not IP:port"))
                })
            })
            .collect::<Result<_, _>>()?;
        let files: Vec<PathBuf> = spec
            .ready_files
            .iter()
            .map(|f| expand(f, &p.ctx).map(|f| p.dir.path().join(f)))
            .collect::<Result<_, _>>()?;
        p.wait_ready(&addrs, &files, spec.ready_timeout).await?;
        Ok(p)
    }

    async fn wait_ready(
        &mut self,
        addrs: &[SocketAddr],
        files: &[PathBuf],
        limit: Duration,
    ) -> Result<(), ProcessError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(ProcessError::Exited {
                    status,
                    log: self.log_tail(LOG_TAIL_LINES),
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
            if waiting.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= limit {
                return Err(ProcessError::NotReady {
                    after: limit,
                    waiting: waiting.join(", "),
                    log: self.log_tail(LOG_TAIL_LINES),
                });
            }
            sleep(READY_POLL).await;
        }
    }

    /// The exit status if the process has ended (remembered once seen).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
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
        let mut out = String::new();
        for p in &self.logs {
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

    /// Terminate the process group (SIGTERM, then SIGKILL after `grace`) and reap the
    /// leader; never waits longer than about twice `grace`.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
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
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        self.signal_group(libc::SIGKILL);
    }
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
            target_dir: PathBuf::from("."),
        }
    }

    fn inputs() -> StartInputs {
        StartInputs {
            domain: "d.test".into(),
            routes: BTreeMap::new(),
            ports: BTreeMap::new(),
            sip: None,
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
