//! Prosody 0.12 (Debian package `prosody`) as a real federation peer.
//!
//! [`Prosody`] starts the server as a child process on loopback with a config
//! generated from `fixtures/prosody/prosody.cfg.lua.in`: one virtual host,
//! S2S by dialback only (XEP-0220, no TLS, no certificates), and our plugin
//! `mod_fedcheck_routes` giving static S2S targets per remote domain, because
//! Prosody resolves peers with its own DNS code and never reads `/etc/hosts`.
//! Stanzas are triggered through `prosodyctl shell` (mod_admin_shell over a
//! Unix socket in the temp dir), so nothing but S2S touches the network.
//!
//! The launcher is kept free of test specifics so a `process` target can
//! reuse it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use super::{free_loopback_addr, require_peer};

const TEMPLATE: &str = include_str!("../../fixtures/prosody/prosody.cfg.lua.in");
const PLUGIN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/prosody");

/// How long Prosody may take to open its S2S port and admin socket.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for one `prosodyctl shell` command.
pub const SHELL_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout passed to `xmpp:ping`; below [`SHELL_TIMEOUT`] so Prosody answers first.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ProsodyError {
    #[error("I/O error while {doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("config template placeholder {0} was not substituted")]
    Template(String),
    #[error("prosody exited before it was ready ({0})")]
    Exited(ExitStatus),
    #[error("prosody did not listen on {addr} and open its admin socket within {after:?}")]
    NotReady { addr: SocketAddr, after: Duration },
    #[error("prosodyctl shell `{command}` did not finish within {after:?}")]
    ShellTimeout { command: String, after: Duration },
    #[error("prosodyctl shell `{command}` failed ({}): {}", .output.status, .output.text())]
    Shell {
        command: String,
        output: ShellOutput,
    },
}

fn io(doing: &'static str) -> impl FnOnce(std::io::Error) -> ProsodyError {
    move |source| ProsodyError::Io { doing, source }
}

/// The two executables of the Debian package.
#[derive(Debug, Clone)]
pub struct ProsodyBin {
    pub prosody: PathBuf,
    pub prosodyctl: PathBuf,
}

impl ProsodyBin {
    /// `prosody` and `prosodyctl` from `FEDCHECK_PROSODY` (path of the
    /// `prosody` binary, `prosodyctl` beside it), else from `PATH`, else from
    /// the Debian location.
    pub fn find() -> Option<Self> {
        if let Some(p) = std::env::var_os("FEDCHECK_PROSODY").map(PathBuf::from) {
            let ctl = p.with_file_name("prosodyctl");
            return (p.is_file() && ctl.is_file()).then_some(Self {
                prosody: p,
                prosodyctl: ctl,
            });
        }
        let dirs = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        dirs.into_iter()
            .chain([PathBuf::from("/usr/bin")])
            .map(|d| Self {
                prosody: d.join("prosody"),
                prosodyctl: d.join("prosodyctl"),
            })
            .find(|b| b.prosody.is_file() && b.prosodyctl.is_file())
    }

    /// [`find`](Self::find) under the interop policy: fails the test under
    /// `CI=true`, otherwise prints a skip message and returns `None`.
    pub fn require() -> Option<Self> {
        require_peer(
            Self::find(),
            "Prosody (`prosody` and `prosodyctl`)",
            "apt-get install prosody, or set FEDCHECK_PROSODY",
        )
    }
}

/// What the generated config says.
#[derive(Debug, Clone)]
pub struct ProsodyConfig {
    /// The one virtual host Prosody serves.
    pub domain: String,
    /// Where Prosody listens for S2S (a loopback address).
    pub s2s_addr: SocketAddr,
    /// Static S2S targets: remote domain → address (`mod_fedcheck_routes`).
    pub routes: BTreeMap<String, SocketAddr>,
}

impl ProsodyConfig {
    /// `domain` on a free loopback port, no routes yet.
    pub fn new(domain: impl Into<String>) -> Result<Self, ProsodyError> {
        Ok(Self {
            domain: domain.into(),
            s2s_addr: free_loopback_addr().map_err(io("choosing a free port"))?,
            routes: BTreeMap::new(),
        })
    }

    /// Route S2S traffic for `remote` to `addr` instead of resolving it.
    pub fn route(mut self, remote: impl Into<String>, addr: SocketAddr) -> Self {
        self.routes.insert(remote.into(), addr);
        self
    }

    /// The config file text for a server whose files live in `dir`.
    pub fn render(&self, dir: &Path) -> Result<String, ProsodyError> {
        let path = |name: &str| lua_string(&dir.join(name).to_string_lossy());
        let mut routes = String::from("{");
        for (domain, addr) in &self.routes {
            let _ = write!(
                routes,
                " [{}] = {{ {}, {} }};",
                lua_string(domain),
                lua_string(&addr.ip().to_string()),
                addr.port()
            );
        }
        routes.push_str(" }");
        let values = [
            ("@DATA_DIR@", lua_string(&dir.to_string_lossy())),
            ("@PIDFILE@", path("prosody.pid")),
            ("@PLUGIN_DIR@", lua_string(PLUGIN_DIR)),
            ("@ADMIN_SOCKET@", path("prosody.sock")),
            ("@LOG_FILE@", path("prosody.log")),
            ("@LISTEN_IP@", lua_string(&self.s2s_addr.ip().to_string())),
            ("@S2S_PORT@", self.s2s_addr.port().to_string()),
            ("@ROUTES@", routes),
            ("@DOMAIN@", lua_string(&self.domain)),
        ];
        let mut text = TEMPLATE.to_owned();
        for (key, value) in values {
            text = text.replace(key, &value);
        }
        match leftover_placeholder(&text) {
            Some(p) => Err(ProsodyError::Template(p)),
            None => Ok(text),
        }
    }
}

/// A Lua double-quoted string literal (Lua 5.4 manual §3.1): escapes
/// backslash, quote and every control byte as `\ddd`.
fn lua_string(s: &str) -> String {
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

/// The first `@UPPER_CASE@` token still in `text`, if any.
fn leftover_placeholder(text: &str) -> Option<String> {
    text.split('@')
        .skip(1)
        .step_by(2)
        .find(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|t| format!("@{t}@"))
}

/// Output of one `prosodyctl shell` command.
#[derive(Debug, Clone)]
pub struct ShellOutput {
    /// prosodyctl exits with the number of errors the command returned.
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ShellOutput {
    /// stdout then stderr, without the lua-unbound notice.
    pub fn text(&self) -> String {
        format!(
            "{}{}",
            strip_notice(&self.stdout),
            strip_notice(&self.stderr)
        )
    }
}

/// Direction of an S2S session as `s2s:show()` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `-->`: Prosody initiated the stream (RFC 6120 §4.2 initiating entity).
    Outgoing,
    /// `<--`: the peer initiated it.
    Incoming,
}

/// One row of `s2s:show()` (mod_admin_shell, Prosody 0.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S2sSession {
    pub id: String,
    pub host: String,
    pub direction: Direction,
    pub remote: String,
    /// Dialback column: `Completed` on a stream authenticated by XEP-0220,
    /// `Not used` on the side that only verified.
    pub dialback: String,
}

/// Rows of the `s2s:show()` table; anything else in the output (banner,
/// header, summary) is skipped.
fn parse_s2s_show(text: &str) -> Vec<S2sSession> {
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for line in text.lines() {
        let cells: Vec<String> = line.split('|').map(|c| c.trim().to_owned()).collect();
        if cells.len() < 4 {
            continue;
        }
        let Some(names) = &header else {
            if cells.first().is_some_and(|c| c == "Session ID") {
                header = Some(cells);
            }
            continue;
        };
        let cell = |name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .and_then(|i| cells.get(i))
                .cloned()
                .unwrap_or_default()
        };
        let direction = match cell("Dir").as_str() {
            "-->" => Direction::Outgoing,
            "<--" => Direction::Incoming,
            _ => continue,
        };
        rows.push(S2sSession {
            id: cell("Session ID"),
            host: cell("Host"),
            direction,
            remote: cell("Remote"),
            dialback: cell("Dialback"),
        });
    }
    rows
}

/// Drop the boxed notice Debian's Prosody prints on every start when
/// lua-unbound is missing (a block between two lines of asterisks): it is
/// noise in failure messages. Other text is kept as is.
fn strip_notice(text: &str) -> String {
    let mut inside = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let fence = line.len() >= 10 && line.chars().all(|c| c == '*');
        if fence {
            inside = !inside;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A running Prosody; killed (with its process group's leader) on drop.
#[derive(Debug)]
pub struct Prosody {
    child: Child,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    prosodyctl: PathBuf,
    config: ProsodyConfig,
}

impl Prosody {
    /// Write the config to a fresh temp dir, start `prosody -F` there and
    /// wait (at most [`READY_TIMEOUT`]) until its S2S port accepts and its
    /// admin socket exists.
    pub async fn start(bin: &ProsodyBin, config: ProsodyConfig) -> Result<Self, ProsodyError> {
        let dir = tempfile::Builder::new()
            .prefix("fedcheck-prosody-")
            .tempdir()
            .map_err(io("creating the temp dir"))?;
        let config_path = dir.path().join("prosody.cfg.lua");
        std::fs::write(&config_path, config.render(dir.path())?)
            .map_err(io("writing the config"))?;
        // Prosody indexes `certs/` beside its config; an empty one keeps the
        // log free of a misleading error.
        std::fs::create_dir(dir.path().join("certs")).map_err(io("creating certs/"))?;
        let stdout = std::fs::File::create(dir.path().join("stdout.log"))
            .map_err(io("creating stdout.log"))?;
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))
            .map_err(io("creating stderr.log"))?;
        let child = Command::new(&bin.prosody)
            .arg("--config")
            .arg(&config_path)
            .arg("-F")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Own process group: a terminal's Ctrl-C goes to the test only,
            // and the whole group can be signalled as one.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(io("spawning prosody"))?;
        let mut prosody = Self {
            child,
            dir,
            config_path,
            prosodyctl: bin.prosodyctl.clone(),
            config,
        };
        prosody.wait_ready().await?;
        Ok(prosody)
    }

    async fn wait_ready(&mut self) -> Result<(), ProsodyError> {
        let started = Instant::now();
        let addr = self.config.s2s_addr;
        let socket = self.dir.path().join("prosody.sock");
        loop {
            if let Some(status) = self.child.try_wait().map_err(io("polling prosody"))? {
                return Err(ProsodyError::Exited(status));
            }
            let listening = matches!(
                timeout(Duration::from_secs(1), TcpStream::connect(addr)).await,
                Ok(Ok(_))
            );
            if listening && socket.exists() {
                return Ok(());
            }
            if started.elapsed() >= READY_TIMEOUT {
                return Err(ProsodyError::NotReady {
                    addr,
                    after: READY_TIMEOUT,
                });
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    pub fn s2s_addr(&self) -> SocketAddr {
        self.config.s2s_addr
    }

    /// Run one admin-shell command (Lua, e.g. `s2s:show()`) against the
    /// running server, bounded by [`SHELL_TIMEOUT`]. A non-zero exit
    /// status is returned as is; callers decide what counts as failure.
    pub async fn shell(&self, command: &str) -> Result<ShellOutput, ProsodyError> {
        let mut cmd = Command::new(&self.prosodyctl);
        cmd.arg("--config")
            .arg(&self.config_path)
            .arg("shell")
            .arg(command)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = timeout(SHELL_TIMEOUT, cmd.output())
            .await
            .map_err(|_| ProsodyError::ShellTimeout {
                command: command.to_owned(),
                after: SHELL_TIMEOUT,
            })?
            .map_err(io("running prosodyctl shell"))?;
        Ok(ShellOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Send a XEP-0199 ping from our domain to `remote` over S2S
    /// (`xmpp:ping` of mod_admin_shell) and return the `pong from …` line.
    pub async fn ping(&self, remote: &str) -> Result<String, ProsodyError> {
        let command = format!(
            "xmpp:ping({}, {}, {})",
            lua_string(self.domain()),
            lua_string(remote),
            PING_TIMEOUT.as_secs()
        );
        let output = self.shell(&command).await?;
        let expected = format!("pong from {remote}");
        // The shell prints `Result: pong from <remote> in <t>s`.
        let pong = output
            .stdout
            .lines()
            .find_map(|l| l.find(&expected).map(|i| l.get(i..).unwrap_or(l)))
            .map(|l| l.trim().to_owned());
        match pong {
            Some(line) if output.status.success() => Ok(line),
            _ => Err(ProsodyError::Shell { command, output }),
        }
    }

    /// The S2S sessions Prosody currently holds (`s2s:show()`).
    pub async fn s2s_sessions(&self) -> Result<Vec<S2sSession>, ProsodyError> {
        let command = "s2s:show()";
        let output = self.shell(command).await?;
        if !output.status.success() {
            return Err(ProsodyError::Shell {
                command: command.to_owned(),
                output,
            });
        }
        Ok(parse_s2s_show(&output.stdout))
    }

    /// Lines of Prosody's debug log that contain every one of `needles`
    /// (attribute order varies between runs, so match pieces, not lines).
    pub fn log_lines_with(&self, needles: &[&str]) -> Vec<String> {
        std::fs::read(self.dir.path().join("prosody.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// The last `lines` lines of the debug log, then Prosody's stdout and
    /// stderr (startup errors land there) without the lua-unbound notice.
    pub fn log_tail(&self, lines: usize) -> String {
        let read = |name: &str| {
            std::fs::read(self.dir.path().join(name))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let log = read("prosody.log");
        let all: Vec<&str> = log.lines().collect();
        let mut out = all
            .get(all.len().saturating_sub(lines)..)
            .unwrap_or_default()
            .join("\n");
        for name in ["stdout.log", "stderr.log"] {
            let text = strip_notice(&read(name));
            if !text.trim().is_empty() {
                let _ = write!(out, "\n==> {name} <==\n{text}");
            }
        }
        out
    }

    /// Kill the server and reap it (bounded); dropping does the same
    /// without waiting.
    pub async fn stop(mut self) -> Result<(), ProsodyError> {
        self.child.start_kill().map_err(io("killing prosody"))?;
        let _ = timeout(Duration::from_secs(5), self.child.wait()).await;
        Ok(())
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        // kill_on_drop covers this too; explicit so the intent is visible.
        let _ = self.child.start_kill();
    }
}

/// Read from `stream` until a complete `<stream:stream …>` start tag has
/// arrived (bounded by `limit` bytes), and return its attributes as written.
async fn read_stream_header(
    stream: &mut TcpStream,
    limit: usize,
) -> Result<BTreeMap<String, String>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while buf.len() < limit {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "peer closed before a stream header: {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(attrs) = parse_stream_header(&buf) {
            return Ok(attrs);
        }
    }
    Err(format!(
        "no stream header within {limit} bytes: {:?}",
        String::from_utf8_lossy(&buf)
    ))
}

/// The stream header's attributes once `data` holds the whole start tag.
fn parse_stream_header(data: &[u8]) -> Option<BTreeMap<String, String>> {
    let mut reader = quick_xml::Reader::from_reader(data);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(tag)) if tag.name().as_ref() == b"stream:stream" => {
                return tag
                    .attributes()
                    .map(|a| {
                        let a = a.ok()?;
                        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                        let value = a.unescape_value().ok()?.into_owned();
                        Some((key, value))
                    })
                    .collect();
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedcheck::proxy::{self, ProxyConfig};

    /// Proxy logs go to the test's captured output (shown on failure);
    /// `RUST_LOG` overrides the default filter.
    fn init_tracing() {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fedcheck=debug"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    }

    const PROSODY_DOMAIN: &str = "prosody.test";
    const OUR_DOMAIN: &str = "fedcheck.test";
    /// Pieces of the log line for a `<db:verify type='valid'>` from our
    /// domain arriving on Prosody's outgoing stream.
    const VERIFY_VALID_FROM_OUR_DOMAIN: &[&str] = &[
        "Received[s2sout",
        "<verify ",
        "type='valid'",
        "from='fedcheck.test'",
    ];

    #[test]
    fn config_renders_every_placeholder_as_lua() {
        let cfg = ProsodyConfig {
            domain: PROSODY_DOMAIN.into(),
            s2s_addr: "127.0.0.1:5999".parse().unwrap_or_else(|e| panic!("{e}")),
            routes: BTreeMap::new(),
        }
        .route(
            OUR_DOMAIN,
            "127.0.0.1:6001".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        let text = cfg
            .render(Path::new("/tmp/x\"y"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.contains(r#"fedcheck_routes = { ["fedcheck.test"] = { "127.0.0.1", 6001 }; }"#)
        );
        assert!(text.contains(r#"s2s_ports = { 5999 }"#));
        assert!(text.contains(r#"s2s_interfaces = { "127.0.0.1" }"#));
        assert!(text.contains(r#"data_path = "/tmp/x\"y""#));
        assert!(text.contains(r#"VirtualHost "prosody.test""#));
        assert_eq!(leftover_placeholder(&text), None);
    }

    #[test]
    fn lua_strings_escape_quotes_and_controls() {
        assert_eq!(lua_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(lua_string("a\nb"), r#""a\010b""#);
    }

    #[test]
    fn leftover_placeholders_are_found() {
        assert_eq!(leftover_placeholder("a @X_Y@ b"), Some("@X_Y@".into()));
        assert_eq!(leftover_placeholder("mail a@b.c or d@e"), None);
    }

    #[test]
    fn stream_header_needs_the_whole_start_tag() {
        let full = b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
            xmlns:db='jabber:server:dialback' to='a' from='b' version='1.0'>";
        assert_eq!(parse_stream_header(&full[..40]), None);
        let attrs = parse_stream_header(full).unwrap_or_default();
        assert_eq!(
            attrs.get("xmlns:db").map(String::as_str),
            Some("jabber:server:dialback")
        );
        assert_eq!(attrs.get("to").map(String::as_str), Some("a"));
    }

    const SAMPLE_S2S_SHOW: &str = "\
Old DNS resolver library will be used
Session ID           | Host                   | Dir  | Remote                 | IPv  | Security  | SASL       | Dialback     
s2sout55afe4b90de0   | prosody.test           | -->  | fedcheck.test          | IPv4 | insecure  |            | Completed    
s2sin55afe4ba9800    | prosody.test           | <--  | fedcheck.test          | IPv4 | insecure  |            | Not used     
OK: 2 s2s connections shown
";

    #[test]
    fn notice_is_stripped_and_the_rest_kept() {
        let text = "\n**************************\nProsody was unable to find lua-unbound\n\
            **************************\n\nResult: pong from a in 1s\n";
        assert_eq!(strip_notice(text), "\n\nResult: pong from a in 1s\n");
        assert_eq!(strip_notice("a*b\n"), "a*b\n");
    }

    #[test]
    fn s2s_show_table_is_parsed() {
        let rows = parse_s2s_show(SAMPLE_S2S_SHOW);
        assert_eq!(rows.len(), 2);
        let out = rows.first().unwrap_or_else(|| panic!("no rows"));
        assert_eq!(out.id, "s2sout55afe4b90de0");
        assert_eq!(out.host, "prosody.test");
        assert_eq!(out.direction, Direction::Outgoing);
        assert_eq!(out.remote, "fedcheck.test");
        assert_eq!(out.dialback, "Completed");
        assert_eq!(rows.get(1).map(|r| r.direction), Some(Direction::Incoming));
        assert_eq!(parse_s2s_show("OK: 0 s2s connections shown"), vec![]);
    }

    /// The issue's acceptance test: Prosody (`prosody.test`) and the bundled
    /// proxy (`fedcheck.test`) federate by dialback over loopback, and a
    /// XEP-0199 ping from Prosody's domain to ours round-trips.
    ///
    /// Dialback must run both ways (XEP-0220 §2): Prosody's outgoing stream
    /// is authenticated by the proxy (which sends `db:verify` back to
    /// Prosody and then `db:result type='valid'`, so `s2s:show` says
    /// `Completed`); the pong travels on the proxy's own outgoing stream,
    /// which Prosody authenticates by asking the proxy to verify its key
    /// (the `db:verify type='valid'` from our domain in Prosody's log).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prosody_pings_the_bundled_proxy_over_dialback() {
        let Some(bin) = ProsodyBin::require() else {
            return;
        };
        init_tracing();
        let pcfg = ProsodyConfig::new(PROSODY_DOMAIN).unwrap_or_else(|e| panic!("{e}"));
        let mut cfg = ProxyConfig::new(OUR_DOMAIN, "interop-test-dialback-secret");
        cfg.routes
            .insert(PROSODY_DOMAIN.to_owned(), pcfg.s2s_addr.to_string());
        let proxy = proxy::start(cfg)
            .await
            .unwrap_or_else(|e| panic!("starting the proxy: {e}"));
        assert!(proxy.s2s_addr.ip().is_loopback());
        let prosody = Prosody::start(&bin, pcfg.route(OUR_DOMAIN, proxy.s2s_addr))
            .await
            .unwrap_or_else(|e| panic!("starting prosody: {e}"));
        let fail = |what: &dyn std::fmt::Display| -> ! {
            panic!("{what}\n--- prosody log tail ---\n{}", prosody.log_tail(80))
        };

        let pong = match prosody.ping(OUR_DOMAIN).await {
            Ok(p) => p,
            Err(e) => fail(&e),
        };
        assert!(pong.starts_with("pong from fedcheck.test"), "{pong}");

        let sessions = match prosody.s2s_sessions().await {
            Ok(s) => s,
            Err(e) => fail(&e),
        };
        let outgoing_done = sessions.iter().any(|s| {
            s.direction == Direction::Outgoing
                && s.host == PROSODY_DOMAIN
                && s.remote == OUR_DOMAIN
                && s.dialback == "Completed"
        });
        if !outgoing_done {
            fail(&format!(
                "no dialback-completed stream to the proxy: {sessions:?}"
            ));
        }
        if !sessions
            .iter()
            .any(|s| s.direction == Direction::Incoming && s.remote == OUR_DOMAIN)
        {
            fail(&format!("no stream from the proxy: {sessions:?}"));
        }
        if prosody
            .log_lines_with(VERIFY_VALID_FROM_OUR_DOMAIN)
            .is_empty()
        {
            fail(&"the proxy never answered Prosody's db:verify with type='valid'");
        }
        if prosody
            .log_lines_with(&[
                "Received[s2sin]",
                "<iq ",
                "type='result'",
                "from='fedcheck.test'",
            ])
            .is_empty()
        {
            fail(&"the pong did not arrive on the proxy's own stream");
        }

        prosody.stop().await.unwrap_or_else(|e| panic!("{e}"));
        proxy.shutdown().await;
    }

    /// Two Prosodys routed at each other federate by dialback and a ping
    /// round-trips. This checks the launcher and the route plugin in both
    /// directions without our proxy, so a failure of the proxy test can be
    /// told apart from a broken Prosody setup.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_prosodys_federate_through_static_routes() {
        let Some(bin) = ProsodyBin::require() else {
            return;
        };
        let a = ProsodyConfig::new(PROSODY_DOMAIN).unwrap_or_else(|e| panic!("{e}"));
        let b = ProsodyConfig::new(OUR_DOMAIN).unwrap_or_else(|e| panic!("{e}"));
        let (a_addr, b_addr) = (a.s2s_addr, b.s2s_addr);
        let (a, b) = tokio::join!(
            Prosody::start(&bin, a.route(OUR_DOMAIN, b_addr)),
            Prosody::start(&bin, b.route(PROSODY_DOMAIN, a_addr)),
        );
        let a = a.unwrap_or_else(|e| panic!("starting {PROSODY_DOMAIN}: {e}"));
        let b = b.unwrap_or_else(|e| panic!("starting {OUR_DOMAIN}: {e}"));
        let logs = || {
            format!(
                "--- A ---\n{}\n--- B ---\n{}",
                a.log_tail(40),
                b.log_tail(40)
            )
        };

        let pong = a
            .ping(OUR_DOMAIN)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
        assert!(pong.starts_with("pong from fedcheck.test"), "{pong}");
        let sessions = a
            .s2s_sessions()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
        assert!(
            sessions.iter().any(|s| s.direction == Direction::Outgoing
                && s.remote == OUR_DOMAIN
                && s.dialback == "Completed"),
            "{sessions:?}"
        );
        assert!(
            sessions
                .iter()
                .any(|s| s.direction == Direction::Incoming && s.remote == OUR_DOMAIN),
            "{sessions:?}"
        );
        // A asked B to verify B's key (piggybacked on A's outgoing stream)
        // and B said valid: dialback ran the other way too (XEP-0220 §2.4).
        let verified = a.log_lines_with(VERIFY_VALID_FROM_OUR_DOMAIN);
        assert!(!verified.is_empty(), "no valid db:verify\n{}", logs());
    }

    /// Prosody with our plugin dials the static route for a domain instead
    /// of resolving it, from loopback, and opens a dialback-capable S2S
    /// stream (RFC 6120 §4.7, XEP-0220 §2.1: `xmlns:db` on the header).
    /// The fake peer closes right after the header, so the ping fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prosody_dials_the_static_route() {
        let Some(bin) = ProsodyBin::require() else {
            return;
        };
        let peer = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind fake peer: {e}"));
        let peer_addr = peer.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let cfg = ProsodyConfig::new(PROSODY_DOMAIN)
            .unwrap_or_else(|e| panic!("{e}"))
            .route(OUR_DOMAIN, peer_addr);
        let prosody = Prosody::start(&bin, cfg)
            .await
            .unwrap_or_else(|e| panic!("starting prosody: {e}"));

        let ping = prosody.ping(OUR_DOMAIN);
        let accept = async {
            let (mut conn, from) = timeout(Duration::from_secs(10), peer.accept())
                .await
                .map_err(|_| "prosody never dialled the routed address".to_owned())?
                .map_err(|e| e.to_string())?;
            let header = timeout(Duration::from_secs(5), read_stream_header(&mut conn, 4096))
                .await
                .map_err(|_| "no stream header within 5 s".to_owned())??;
            let _ = conn.shutdown().await;
            Ok::<_, String>((from, header))
        };
        let (ping, accepted) = tokio::join!(ping, accept);
        let (from, header) = accepted
            .unwrap_or_else(|e| panic!("{e}\n--- prosody log tail ---\n{}", prosody.log_tail(60)));
        assert!(from.ip().is_loopback(), "connection from {from}");
        assert!(prosody.s2s_addr().ip().is_loopback());
        assert_eq!(header.get("to").map(String::as_str), Some(OUR_DOMAIN));
        assert_eq!(header.get("from").map(String::as_str), Some(PROSODY_DOMAIN));
        assert_eq!(
            header.get("xmlns").map(String::as_str),
            Some("jabber:server")
        );
        assert_eq!(
            header.get("xmlns:db").map(String::as_str),
            Some("jabber:server:dialback")
        );
        assert!(ping.is_err(), "a peer that hangs up cannot pong: {ping:?}");
        prosody.stop().await.unwrap_or_else(|e| panic!("{e}"));
    }
}
