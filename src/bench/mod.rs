//! Benchmarks for the performance budget of DESIGN.md §6: they *print figures* next to the
//! budget (OK / OVER); nothing here asserts on time.
//!
//! The proxy runs as a separate process (`fedcheck proxy --config <temp file>`), so the CPU
//! time (`/proc/<pid>/task/*/schedstat`) and resident memory (`VmRSS`) read are its alone.
//! The load generator ([`load`]) runs in this process and plays `N` remote servers that
//! authenticate by Server Dialback (XEP-0220) and answer the proxy's own dialback. Phases
//! are separated by sampling the proxy once it is quiet again:
//!
//! 1. **set-up**: `N` streams in (header, features, `<db:result>`, the proxy's
//!    `<db:verify>` over its own new outbound stream, `valid`);
//! 2. **warm-up**: one ping per stream: the proxy authorizes its outbound pair (its own
//!    `<db:result>`) and answers: reported for information, no budget;
//! 3. **load**: `M` pings (XEP-0199), at most [`load::WINDOW`] in flight per stream, each
//!    answered by the proxy over its outbound stream.
//!
//! Memory per idle stream is the RSS growth from before set-up to after warm-up, divided by
//! the `2N` authenticated streams the proxy then holds (one in, one out per remote domain).
//! The suite rate runs the scenario files in-process with `--jobs`.

pub mod load;
pub mod procfs;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};

use crate::harness::catalogue::Catalogue;
use crate::harness::suite;
use crate::harness::target::Target;
use crate::harness::verdict::Verdict;
use load::{Gen, Phase, Plan};

/// Upper bounds on the options, so a typo cannot exhaust file descriptors or run for hours.
pub const MAX_STREAMS: usize = 5000;
pub const MAX_STANZAS: usize = 2_000_000;
/// Stream set-ups in flight at once (keeps the proxy's accept backlog from overflowing).
const SETUP_CONCURRENCY: usize = 32;
const PROXY_DOMAIN: &str = "proxy.bench.test";
/// A command prefix to run the proxy under, split at whitespace (for profiling, e.g.
/// `valgrind --tool=callgrind --callgrind-out-file=proxy.cg`). When set, the proxy is
/// given longer to start, is stopped with SIGINT (so the tool can write its output) rather
/// than killed, and the suite rate is skipped: such a run profiles the proxy only.
pub const WRAPPER_ENV: &str = "FEDCHECK_BENCH_PROXY_WRAPPER";

/// A command run at each phase boundary, with the phase that just ended (`start`,
/// `setup`, `warmup`, `load`) and the proxy's pid appended, split at whitespace; e.g.
/// `callgrind_control --dump` under a callgrind wrapper, to get one profile per phase.
pub const PHASE_HOOK_ENV: &str = "FEDCHECK_BENCH_PHASE_HOOK";

/// Run the [`PHASE_HOOK_ENV`] command, if any, and wait (bounded) for it.
async fn phase_hook(phase: &str, pid: u32) {
    let Ok(cmd) = std::env::var(PHASE_HOOK_ENV) else {
        return;
    };
    let mut words = cmd.split_whitespace();
    let Some(prog) = words.next() else {
        return;
    };
    let run = tokio::process::Command::new(prog)
        .args(words)
        .arg(phase)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .status();
    if let Ok(Err(e)) | Err(e) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
    {
        tracing::warn!(error = %e, "the phase hook failed");
    }
}

/// The wrapper command prefix, if [`WRAPPER_ENV`] names one.
fn wrapper() -> Option<Vec<String>> {
    let w: Vec<String> = std::env::var(WRAPPER_ENV)
        .ok()?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (!w.is_empty()).then_some(w)
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Remote domains played (each: one stream in, one out).
    pub streams: usize,
    /// Pings in the load phase.
    pub stanzas: usize,
    /// The `fedcheck` executable to run the proxy from.
    pub proxy_exe: PathBuf,
    /// Scenario files for the suite rate; `None` skips it.
    pub scenarios: Option<PathBuf>,
    pub jobs: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("--streams and --stanzas must be in 1..={MAX_STREAMS} and 1..={MAX_STANZAS}")]
    BadOptions,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the proxy process: {0}")]
    Proxy(String),
    #[error("{phase}: {detail}")]
    Load { phase: &'static str, detail: String },
    #[error(transparent)]
    Suite(#[from] suite::SuiteError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "OVER")]
    Over,
    /// A figure with no budget, printed for context.
    #[serde(rename = "info")]
    Info,
    #[serde(rename = "not measured yet")]
    NotMeasured,
}

impl Status {
    fn text(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Over => "OVER",
            Status::Info => "info",
            Status::NotMeasured => "not measured yet",
        }
    }
}

/// Which side of the budget is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Bound {
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">=")]
    AtLeast,
}

/// A budget line of DESIGN §6: the figure must stay on `bound`'s side of `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    pub bound: Bound,
    pub limit: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub operation: &'static str,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub budget: Option<Budget>,
    pub status: Status,
    pub note: String,
}

impl Figure {
    fn new(
        operation: &'static str,
        value: Option<f64>,
        unit: &'static str,
        budget: Option<(Bound, f64)>,
        note: String,
    ) -> Self {
        let budget = budget.map(|(bound, limit)| Budget { bound, limit });
        let status = match (value, budget) {
            (None, _) => Status::NotMeasured,
            (Some(_), None) => Status::Info,
            (Some(v), Some(b)) => judge(v, b.bound, b.limit),
        };
        Figure {
            operation,
            value,
            unit,
            budget,
            status,
            note,
        }
    }
}

/// OK when `value` is on the good side of `limit` (the limit itself included).
pub fn judge(value: f64, bound: Bound, limit: f64) -> Status {
    let ok = match bound {
        Bound::AtMost => value <= limit,
        Bound::AtLeast => value >= limit,
    };
    if ok { Status::Ok } else { Status::Over }
}

/// What was sampled, for anyone who wants to recompute the figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Raw {
    pub setup_cpu_ns: u64,
    pub warmup_cpu_ns: u64,
    pub load_cpu_ns: u64,
    /// utime + stime ticks per phase (set-up, warm-up, load; 10 ms resolution), as a
    /// cross-check of schedstat.
    pub ticks: [u64; 3],
    /// The kernel-mode (stime) part of `ticks`, per phase.
    pub sys_ticks: [u64; 3],
    pub rss_base_kib: u64,
    pub rss_after_setup_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_after_load_kib: u64,
    pub load_wall_ms: f64,
    pub suite_outcomes: Option<usize>,
    pub suite_passed: Option<usize>,
    pub suite_wall_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `debug` or `release`: budgets are meant for release builds.
    pub build: &'static str,
    pub streams: usize,
    pub stanzas: usize,
    pub window: usize,
    pub jobs: usize,
    pub figures: Vec<Figure>,
    pub raw: Raw,
}

impl Report {
    pub fn to_json(&self) -> String {
        let mut s =
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        s.push('\n');
        s
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fedcheck bench ({} build{})",
            self.build,
            if self.build == "debug" {
                ": unoptimised, so CPU figures are pessimistic; the budget is for release"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "proxy: separate process; {} remote domains by dialback ({} S2S streams), \
             {} pings, {} in flight per stream; suite with --jobs {}\n",
            self.streams,
            2 * self.streams,
            self.stanzas,
            self.window,
            self.jobs
        );
        let _ = writeln!(
            s,
            "{:<46} {:>16}  {:<18} status",
            "operation", "measured", "budget"
        );
        for f in &self.figures {
            let value = f
                .value
                .map_or("-".to_string(), |v| format!("{} {}", fmt_num(v), f.unit));
            let budget = f
                .budget
                .map_or("-".to_string(), |Budget { bound, limit: l }| {
                    let op = match bound {
                        Bound::AtMost => "≤",
                        Bound::AtLeast => "≥",
                    };
                    format!("{op} {} {}", fmt_num(l), f.unit)
                });
            let _ = writeln!(
                s,
                "{:<46} {:>16}  {:<18} {}",
                f.operation,
                value,
                budget,
                f.status.text()
            );
            if !f.note.is_empty() {
                let _ = writeln!(s, "    {}", f.note);
            }
        }
        s
    }
}

/// "N% in the kernel" from the tick counts (too few ticks say nothing).
fn kernel_share(ticks: u64, sys: u64) -> String {
    if ticks < 10 {
        "too short to split user/kernel time".into()
    } else {
        format!(
            "{:.0}% of it in the kernel",
            100.0 * sys as f64 / ticks as f64
        )
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Run every benchmark and build the report.
pub async fn run(opts: &Options, catalogue: Arc<Catalogue>) -> Result<Report, BenchError> {
    if !(1..=MAX_STREAMS).contains(&opts.streams) || !(1..=MAX_STANZAS).contains(&opts.stanzas) {
        return Err(BenchError::BadOptions);
    }
    let mut raw = measure_proxy(opts).await?;
    if let Some(dir) = opts.scenarios.as_ref().filter(|_| wrapper().is_none()) {
        let files = suite::discover(std::slice::from_ref(dir))?;
        if !files.is_empty() {
            let started = Instant::now();
            let outcomes = suite::run_all(
                files,
                Arc::new(Target::Bundled),
                catalogue,
                opts.jobs,
                |_| {},
            )
            .await;
            raw.suite_wall_ms = Some(started.elapsed().as_secs_f64() * 1e3);
            raw.suite_outcomes = Some(outcomes.len());
            raw.suite_passed = Some(
                outcomes
                    .iter()
                    .filter(|o| o.verdict == Verdict::Pass)
                    .count(),
            );
        }
    }
    Ok(report(opts, raw))
}

/// Turn the samples into figures (pure, so it is testable).
pub fn report(opts: &Options, raw: Raw) -> Report {
    let n = opts.streams as f64;
    let m = opts.stanzas as f64;
    let idle_kib = raw.rss_idle_kib.saturating_sub(raw.rss_base_kib) as f64;
    let suite_rate = match (raw.suite_outcomes, raw.suite_wall_ms) {
        (Some(k), Some(ms)) if ms > 0.0 => Some(k as f64 / (ms / 1e3)),
        _ => None,
    };
    let figures = vec![
        Figure::new(
            "dialback stream set-up",
            Some(raw.setup_cpu_ns as f64 / n / 1e6),
            "CPU-ms",
            Some((Bound::AtMost, 0.09)),
            format!(
                "per stream in: accept, header, features, db:result, db:verify over the \
                 proxy's new outbound stream, valid; {}",
                kernel_share(raw.ticks[0], raw.sys_ticks[0])
            ),
        ),
        Figure::new(
            "outbound pair dialback + first ping",
            Some(raw.warmup_cpu_ns as f64 / n / 1e6),
            "CPU-ms",
            None,
            "per remote domain: the proxy's own db:result on its outbound stream, valid, \
             one ping answered"
                .into(),
        ),
        Figure::new(
            "one stanza in and routed / answered",
            Some(raw.load_cpu_ns as f64 / m / 1e3),
            "CPU-µs",
            Some((Bound::AtMost, 6.5)),
            format!(
                "XEP-0199 ping in, iq result out over the outbound stream; {:.0} stanzas/s \
                 wall; {}",
                m / (raw.load_wall_ms / 1e3).max(1e-9),
                kernel_share(raw.ticks[2], raw.sys_ticks[2])
            ),
        ),
        Figure::new(
            "one idle authenticated S2S stream",
            Some(idle_kib / (2.0 * n)),
            "KiB",
            Some((Bound::AtMost, 8.0)),
            format!(
                "VmRSS {} → {} KiB over {} streams ({:.1} KiB per remote domain, in + out)",
                raw.rss_base_kib,
                raw.rss_idle_kib,
                2 * opts.streams,
                idle_kib / n
            ),
        ),
        Figure::new(
            "one presence subscription held by the gateway",
            None,
            "KiB",
            Some((Bound::AtMost, 1.0)),
            "not measured yet: the bench does not drive the gateway yet".into(),
        ),
        Figure::new(
            "scenario suite against the bundled pair",
            suite_rate,
            "scenarios/s",
            Some((Bound::AtLeast, 100.0)),
            match (raw.suite_outcomes, raw.suite_passed, raw.suite_wall_ms) {
                (Some(k), Some(p), Some(ms)) => {
                    format!(
                        "{k} scenarios ({p} passed) in {ms:.0} ms with --jobs {}",
                        opts.jobs
                    )
                }
                _ => "not measured: no scenario files".into(),
            },
        ),
    ];
    Report {
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        streams: opts.streams,
        stanzas: opts.stanzas,
        window: load::WINDOW,
        jobs: opts.jobs,
        figures,
        raw,
    }
}

/// The proxy child process and its temporary files; killed and removed on drop.
struct ProxyProcess {
    child: tokio::process::Child,
    pid: u32,
    files: Vec<PathBuf>,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl ProxyProcess {
    /// SIGINT (the proxy's orderly shutdown), then wait (bounded) for it to exit, so a
    /// profiler it runs under can write its output.
    async fn interrupt(&mut self) {
        let sent = tokio::process::Command::new("kill")
            .arg("-INT")
            .arg(self.pid.to_string())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if sent {
            let _ = tokio::time::timeout(Duration::from_secs(300), self.child.wait()).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = self
            .files
            .get(1)
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or("").trim().to_string()
    }
}

/// A loopback port nobody listens on right now (the proxy config needs a fixed one).
fn free_port() -> Result<u16, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding a probe port"))?;
    Ok(l.local_addr().map_err(io("probe port address"))?.port())
}

fn config_text(listen: SocketAddr, remotes: &[String], route: SocketAddr) -> String {
    let mut s = format!(
        "domains = [\"{PROXY_DOMAIN}\"]\nlisten = \"{listen}\"\n\
         dialback_secret = \"bench proxy secret\"\n\n[routes]\n"
    );
    for r in remotes {
        let _ = writeln!(s, "\"{r}\" = \"{route}\"");
    }
    s
}

async fn spawn_proxy(opts: &Options, cfg: &str) -> Result<(ProxyProcess, SocketAddr), BenchError> {
    let dir = std::env::temp_dir();
    let stamp = format!(
        "fedcheck-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let cfg_path = dir.join(format!("{stamp}.toml"));
    let log_path = dir.join(format!("{stamp}.log"));
    std::fs::write(&cfg_path, cfg).map_err(io("writing the proxy config"))?;
    let log = std::fs::File::create(&log_path).map_err(io("creating the proxy log"))?;
    let wrap = wrapper();
    let mut cmd = match wrap.as_deref() {
        Some([tool, args @ ..]) => {
            let mut c = tokio::process::Command::new(tool);
            c.args(args).arg(&opts.proxy_exe);
            c
        }
        _ => tokio::process::Command::new(&opts.proxy_exe),
    };
    let child = cmd
        .arg("--log")
        .arg("warn")
        .arg("proxy")
        .arg("--config")
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(io(format!("starting {}", opts.proxy_exe.display())))?;
    let pid = child
        .id()
        .ok_or_else(|| BenchError::Proxy("exited at once".into()))?;
    let mut p = ProxyProcess {
        child,
        pid,
        files: vec![cfg_path, log_path],
    };
    let addr: SocketAddr = cfg
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .and_then(|l| l.trim_end_matches('"').parse().ok())
        .ok_or_else(|| BenchError::Proxy("no listen address in the config".into()))?;
    // Poll (bounded) until the proxy listens: no fixed sleep. A profiler starts slowly.
    let polls = if wrap.is_some() { 6000 } else { 250 };
    for _ in 0..polls {
        if let Ok(Some(st)) = p.child.try_wait() {
            return Err(BenchError::Proxy(format!(
                "exited ({st}): {}",
                p.log_tail()
            )));
        }
        if TcpStream::connect(addr).await.is_ok() {
            return Ok((p, addr));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(BenchError::Proxy(format!(
        "not listening on {addr} after {} s: {}",
        polls / 50,
        p.log_tail()
    )))
}

/// Wait (bounded) until the proxy uses no CPU, then sample it: work of the phase that just
/// ended still counts towards it, and nothing of the next one does.
async fn quiet_sample(pid: u32) -> Result<(procfs::CpuSample, u64), BenchError> {
    let sample = || procfs::cpu(pid).map_err(io("reading the proxy's /proc stat"));
    let mut last = sample()?;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let now = sample()?;
        let busy = now.ns().saturating_sub(last.ns());
        last = now;
        if busy < 200_000 {
            break;
        }
    }
    let rss = procfs::rss_kib(pid).map_err(io("reading the proxy's /proc status"))?;
    Ok((last, rss))
}

fn load_err(phase: &'static str, g: &Gen, got: usize, want: usize) -> BenchError {
    BenchError::Load {
        phase,
        detail: match g.failure() {
            Some(f) => f,
            None => format!("{got} of {want} answers before the timeout"),
        },
    }
}

async fn measure_proxy(opts: &Options) -> Result<Raw, BenchError> {
    let n = opts.streams;
    let remotes: Vec<String> = (0..n).map(|i| format!("r{i}.bench.test")).collect();
    let auth = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io("binding the authoritative listener"))?;
    let route = auth.local_addr().map_err(io("authoritative address"))?;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let (mut proxy, addr) = spawn_proxy(opts, &config_text(listen, &remotes, route)).await?;
    let g = Gen::new(
        Plan {
            proxy_domain: PROXY_DOMAIN.into(),
            proxy_secret: "bench proxy secret".into(),
            remote_secret: "bench remote secret".into(),
            remotes,
        },
        opts.stanzas,
    );
    let server = tokio::spawn(load::serve_authoritative(g.clone(), auth));
    let mut holders = tokio::task::JoinSet::new();
    let result = phases(opts, &g, &proxy, addr, &mut holders).await;
    g.set_phase(Phase::Done);
    holders.abort_all();
    server.abort();
    if wrapper().is_some() {
        proxy.interrupt().await;
    }
    drop(proxy);
    result
}

async fn phases(
    opts: &Options,
    g: &Arc<Gen>,
    proxy: &ProxyProcess,
    addr: SocketAddr,
    holders: &mut tokio::task::JoinSet<()>,
) -> Result<Raw, BenchError> {
    let (n, m) = (opts.streams, opts.stanzas);
    let mut raw = Raw::default();
    let (c0, r0) = quiet_sample(proxy.pid).await?;
    phase_hook("start", proxy.pid).await;
    raw.rss_base_kib = r0;

    // 1. set-up
    let gate = Arc::new(tokio::sync::Semaphore::new(SETUP_CONCURRENCY));
    let mut setups = tokio::task::JoinSet::new();
    for i in 0..n {
        let (g, gate) = (g.clone(), gate.clone());
        setups.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, load::originate(&g, i, addr).await)
        });
    }
    let deadline = Duration::from_secs(30) + Duration::from_millis(20 * n as u64);
    let collect = async {
        let mut first_err = None;
        while let Some(j) = setups.join_next().await {
            match j {
                Ok((i, Ok(sock))) => {
                    holders.spawn(load::drive_pings(g.clone(), i, sock));
                }
                Ok((_, Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(format!("a set-up task failed: {e}"));
                }
            }
        }
        first_err
    };
    match tokio::time::timeout(deadline, collect).await {
        Err(_) => {
            return Err(BenchError::Load {
                phase: "set-up",
                detail: "timed out".into(),
            });
        }
        Ok(Some(e)) => {
            return Err(BenchError::Load {
                phase: "set-up",
                detail: e,
            });
        }
        Ok(None) => {}
    }
    let (c1, r1) = quiet_sample(proxy.pid).await?;
    phase_hook("setup", proxy.pid).await;
    raw.rss_after_setup_kib = r1;

    // 2. warm-up: one ping per stream
    g.set_phase(Phase::WarmUp);
    let got = g
        .wait_answers(
            n,
            Duration::from_secs(30) + Duration::from_millis(20 * n as u64),
        )
        .await;
    if got < n {
        return Err(load_err("warm-up", g, got, n));
    }
    let (c2, r2) = quiet_sample(proxy.pid).await?;
    phase_hook("warmup", proxy.pid).await;
    raw.rss_idle_kib = r2;

    // 3. load
    g.set_phase(Phase::Load);
    let started = Instant::now();
    let want = n + m;
    let got = g
        .wait_answers(
            want,
            Duration::from_secs(60) + Duration::from_micros(200 * m as u64),
        )
        .await;
    raw.load_wall_ms = started.elapsed().as_secs_f64() * 1e3;
    if got < want {
        return Err(load_err("load", g, got - n.min(got), m));
    }
    let (c3, r3) = quiet_sample(proxy.pid).await?;
    phase_hook("load", proxy.pid).await;
    raw.rss_after_load_kib = r3;

    raw.setup_cpu_ns = c1.ns().saturating_sub(c0.ns());
    raw.warmup_cpu_ns = c2.ns().saturating_sub(c1.ns());
    raw.load_cpu_ns = c3.ns().saturating_sub(c2.ns());
    raw.ticks = [
        c1.ticks.saturating_sub(c0.ticks),
        c2.ticks.saturating_sub(c1.ticks),
        c3.ticks.saturating_sub(c2.ticks),
    ];
    raw.sys_ticks = [
        c1.sys_ticks.saturating_sub(c0.sys_ticks),
        c2.sys_ticks.saturating_sub(c1.sys_ticks),
        c3.sys_ticks.saturating_sub(c2.sys_ticks),
    ];
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(0.05, Bound::AtMost, 0.09, Status::Ok)]
    #[case(0.09, Bound::AtMost, 0.09, Status::Ok)]
    #[case(0.10, Bound::AtMost, 0.09, Status::Over)]
    #[case(150.0, Bound::AtLeast, 100.0, Status::Ok)]
    #[case(99.0, Bound::AtLeast, 100.0, Status::Over)]
    fn judging(#[case] v: f64, #[case] b: Bound, #[case] l: f64, #[case] want: Status) {
        assert_eq!(judge(v, b, l), want);
    }

    fn opts() -> Options {
        Options {
            streams: 100,
            stanzas: 1000,
            proxy_exe: PathBuf::from("fedcheck"),
            scenarios: None,
            jobs: 8,
        }
    }

    /// Figures are per operation: totals divided by streams, stanzas and 2N streams.
    #[test]
    fn figures_divide_by_operations() {
        let raw = Raw {
            setup_cpu_ns: 5_000_000,
            load_cpu_ns: 3_000_000,
            rss_base_kib: 1000,
            rss_idle_kib: 2000,
            load_wall_ms: 100.0,
            suite_outcomes: Some(50),
            suite_passed: Some(50),
            suite_wall_ms: Some(250.0),
            ..Raw::default()
        };
        let r = report(&opts(), raw);
        let get = |op: &str| {
            r.figures
                .iter()
                .find(|f| f.operation == op)
                .cloned()
                .expect("figure present")
        };
        let setup = get("dialback stream set-up");
        assert_eq!(setup.value, Some(0.05));
        assert_eq!(setup.status, Status::Ok);
        let stanza = get("one stanza in and routed / answered");
        assert_eq!(stanza.value, Some(3.0));
        let mem = get("one idle authenticated S2S stream");
        assert_eq!(mem.value, Some(5.0));
        let suite = get("scenario suite against the bundled pair");
        assert_eq!(suite.value, Some(200.0));
        assert_eq!(suite.status, Status::Ok);
        let gw = get("one presence subscription held by the gateway");
        assert_eq!(gw.status, Status::NotMeasured);
        let text = r.to_text();
        assert!(text.contains("not measured yet"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&r.to_json()).expect("report JSON parses");
        assert_eq!(json["figures"][0]["status"], "OK");
    }

    #[test]
    fn config_routes_every_remote_to_the_generator() {
        let remotes = vec!["r0.bench.test".to_string(), "r1.bench.test".to_string()];
        let route: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let listen: SocketAddr = "127.0.0.1:4001".parse().expect("addr");
        let cfg = crate::proxy::ProxyConfig::from_toml(&config_text(listen, &remotes, route))
            .expect("a valid proxy config");
        assert_eq!(cfg.listen, listen);
        assert_eq!(cfg.routes.len(), 2);
        assert_eq!(
            cfg.routes.get("r1.bench.test").map(String::as_str),
            Some("127.0.0.1:4000")
        );
    }
}
