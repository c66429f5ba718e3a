//! Prosody 0.12 (Debian package `prosody`) as a real federation peer.
//!
//! [`Prosody`] starts the server as a child process on loopback (through the generic
//! [`process`](crate::harness::process) launcher) with a config rendered from
//! `fixtures/prosody/prosody.cfg.lua.in` — the same template the `process` target
//! `fixtures/targets/prosody.toml` uses: one virtual host, S2S by dialback only (XEP-0220,
//! no TLS, no certificates), and our plugin `mod_fedcheck_routes` giving static S2S targets
//! per remote domain, because Prosody resolves peers with its own DNS code and never reads
//! `/etc/hosts`. Stanzas are triggered through `prosodyctl shell` (mod_admin_shell over a
//! Unix socket in the scratch dir), so nothing but S2S touches the network.
//!
//! With [`ProsodyConfig::tls`] set, the config comes from `prosody-tls.cfg.lua.in` instead:
//! STARTTLS required on S2S (RFC 6120 §5), certificates from a folder in Prosody's
//! `<domain>.crt` / `<domain>.key` convention, a CA file to trust, and optionally
//! `s2s_secure_auth` and SASL EXTERNAL (RFC 6120 §6, XEP-0178; mod_saslauth).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::Command;
use tokio::time::timeout;

use crate::harness::process::{
    self, ConfigFile, ProcessError, ProcessSpec, RunningProcess, StartInputs, Syntax, Value,
};

/// The fixture directory: the config template and `mod_fedcheck_routes.lua`.
const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/prosody");
const TEMPLATE_NAME: &str = "prosody.cfg.lua.in";
/// The STARTTLS variant, used when [`ProsodyConfig::tls`] is set.
const TLS_TEMPLATE_NAME: &str = "prosody-tls.cfg.lua.in";

/// How long Prosody may take to open its S2S port and admin socket.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for one `prosodyctl shell` command.
pub const SHELL_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout passed to `xmpp:ping`; below [`SHELL_TIMEOUT`] so Prosody answers first.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Grace between SIGTERM and SIGKILL on stop.
const STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ProsodyError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("I/O error while {doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("prosodyctl shell `{command}` did not finish within {after:?}")]
    ShellTimeout { command: String, after: Duration },
    #[error("prosodyctl shell `{command}` failed ({}): {}", .output.status, .output.text())]
    Shell {
        command: String,
        output: ShellOutput,
    },
}

/// The two executables of the Debian package.
#[derive(Debug, Clone)]
pub struct ProsodyBin {
    pub prosody: PathBuf,
    pub prosodyctl: PathBuf,
}

impl ProsodyBin {
    /// `prosody` and `prosodyctl` from `FEDCHECK_PROSODY` (path of the `prosody` binary,
    /// `prosodyctl` beside it), else from `PATH`, else from the Debian location.
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
    /// S2S over STARTTLS with certificates; `None` is the dialback-only, no-TLS config.
    pub tls: Option<ProsodyTls>,
}

/// Prosody's S2S TLS settings (the `prosody-tls.cfg.lua.in` template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProsodyTls {
    /// Prosody's `certificates` folder: `<domain>.crt` (chain, leaf first) and
    /// `<domain>.key` for the virtual host. Must exist before [`Prosody::start`].
    pub cert_dir: PathBuf,
    /// PEM file of the CAs Prosody trusts for peer certificates (`ssl.cafile`).
    pub ca_file: PathBuf,
    /// `s2s_secure_auth`: a stream counts as authenticated only with a valid certificate
    /// for the peer's name (RFC 6120 §13.7.1.2); dialback alone is refused.
    pub secure_auth: bool,
    /// Load mod_saslauth, which offers and uses SASL EXTERNAL on S2S (XEP-0178).
    pub sasl_external: bool,
}

impl ProsodyTls {
    /// Secure auth and SASL EXTERNAL on: certificates are the only way in.
    pub fn strict(cert_dir: impl Into<PathBuf>, ca_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_dir: cert_dir.into(),
            ca_file: ca_file.into(),
            secure_auth: true,
            sasl_external: true,
        }
    }

    /// The template variables this adds (Lua literals; switches as `"yes"` / `"no"`).
    fn vars(&self) -> [(String, Value); 4] {
        let yes_no = |b: bool| Value::Str(if b { "yes" } else { "no" }.into());
        [
            (
                "CERT_DIR".into(),
                Value::Str(self.cert_dir.to_string_lossy().into_owned()),
            ),
            (
                "CA_FILE".into(),
                Value::Str(self.ca_file.to_string_lossy().into_owned()),
            ),
            ("SECURE_AUTH".into(), yes_no(self.secure_auth)),
            ("SASL".into(), yes_no(self.sasl_external)),
        ]
    }
}

impl ProsodyConfig {
    /// `domain` on a free loopback port, no routes yet.
    pub fn new(domain: impl Into<String>) -> Result<Self, ProsodyError> {
        Ok(Self {
            domain: domain.into(),
            s2s_addr: process::free_loopback_addr().map_err(|source| ProsodyError::Io {
                doing: "choosing a free port",
                source,
            })?,
            routes: BTreeMap::new(),
            tls: None,
        })
    }

    /// Use STARTTLS and certificates on S2S (see [`ProsodyTls`]).
    pub fn with_tls(mut self, tls: ProsodyTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Route S2S traffic for `remote` to `addr` instead of resolving it.
    pub fn route(mut self, remote: impl Into<String>, addr: SocketAddr) -> Self {
        self.routes.insert(remote.into(), addr);
        self
    }

    /// The launcher description: `prosody -F` with the fixture template, ready when the S2S
    /// port accepts and the admin socket exists.
    fn spec(&self, bin: &ProsodyBin) -> ProcessSpec {
        let mut vars = BTreeMap::from([("PLUGIN_DIR".to_string(), Value::Str(FIXTURE_DIR.into()))]);
        let template = match &self.tls {
            Some(tls) => {
                vars.extend(tls.vars());
                TLS_TEMPLATE_NAME
            }
            None => TEMPLATE_NAME,
        };
        ProcessSpec {
            command: vec![
                bin.prosody.to_string_lossy().into_owned(),
                "--config".into(),
                "{dir}/prosody.cfg.lua".into(),
                "-F".into(),
            ],
            env: BTreeMap::new(),
            cwd: None,
            configs: vec![ConfigFile {
                template: PathBuf::from(FIXTURE_DIR).join(template),
                output: "prosody.cfg.lua".into(),
                syntax: Syntax::Lua,
            }],
            vars,
            ports: vec!["s2s".into()],
            ready_addrs: vec![format!("{}:{{port:s2s}}", self.s2s_addr.ip())],
            ready_files: vec!["prosody.sock".into()],
            ready_timeout: READY_TIMEOUT,
            log_files: vec!["prosody.log".into()],
            ready_log: Vec::new(),
            services: Vec::new(),
            pki: false,
            container: None,
            target_dir: PathBuf::from(FIXTURE_DIR),
        }
    }
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
    /// Security column: `insecure` on plain TCP, else the TLS version (`TLSv1.3`).
    pub security: String,
    /// SASL column (XEP-0178): `Succeeded` when the stream was authenticated by SASL
    /// EXTERNAL, `Offered` / `Failed` on the way, empty when SASL was not involved.
    pub sasl: String,
    /// Dialback column: `Completed` on a stream authenticated by XEP-0220, `Not used` on
    /// the side that only verified.
    pub dialback: String,
    /// Certificate column: `Valid` when the peer's chain and name checked out
    /// (RFC 6120 §13.7.1.2), `Invalid`, `Untrusted`, `Mismatched`, or `Unknown` without TLS.
    pub certificate: String,
}

impl S2sSession {
    /// Encrypted with TLS (the Security column names a TLS version).
    pub fn is_tls(&self) -> bool {
        self.security.starts_with("TLS")
    }

    /// Authenticated by SASL EXTERNAL with a valid certificate, not by dialback.
    pub fn is_certificate_authenticated(&self) -> bool {
        self.is_tls() && self.certificate == "Valid" && self.dialback != "Completed"
    }
}

/// The `s2s:show` column selection [`Prosody::s2s_sessions`] asks for: the default
/// columns plus the certificate status.
const S2S_SHOW_COLUMNS: &str =
    r#"{ "id"; "host"; "dir"; "remote"; "ipv"; "secure"; "s2s_sasl"; "dialback"; "cert" }"#;

/// Rows of the `s2s:show()` table; anything else in the output (banner, header, summary)
/// is skipped.
pub fn parse_s2s_show(text: &str) -> Vec<S2sSession> {
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
            security: cell("Security"),
            sasl: cell("SASL"),
            dialback: cell("Dialback"),
            certificate: cell("Certificate"),
        });
    }
    rows
}

/// Drop the boxed notice Debian's Prosody prints on every start when lua-unbound is
/// missing (a block between two lines of asterisks): it is noise in failure messages.
/// Other text is kept as is.
pub fn strip_notice(text: &str) -> String {
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

/// A running Prosody; killed (with its process group) on stop or drop.
#[derive(Debug)]
pub struct Prosody {
    process: RunningProcess,
    prosodyctl: PathBuf,
    config: ProsodyConfig,
}

impl Prosody {
    /// Render the config into a fresh scratch dir, start `prosody -F` there and wait (at
    /// most [`READY_TIMEOUT`]) until its S2S port accepts and its admin socket exists.
    pub async fn start(bin: &ProsodyBin, config: ProsodyConfig) -> Result<Self, ProsodyError> {
        let inputs = StartInputs {
            domain: config.domain.clone(),
            routes: config.routes.clone(),
            ports: BTreeMap::from([("s2s".to_string(), config.s2s_addr.port())]),
            sip: None,
            tls: None,
        };
        let process = RunningProcess::start(&config.spec(bin), &inputs).await?;
        // Prosody indexes `certs/` beside its config; an empty one keeps the log free of a
        // misleading error. Created after the start is fine: it is read lazily.
        let _ = std::fs::create_dir(process.dir().join("certs"));
        Ok(Self {
            process,
            prosodyctl: bin.prosodyctl.clone(),
            config,
        })
    }

    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    pub fn s2s_addr(&self) -> SocketAddr {
        self.config.s2s_addr
    }

    /// Run one admin-shell command (Lua, e.g. `s2s:show()`) against the running server,
    /// bounded by [`SHELL_TIMEOUT`]. A non-zero exit status is returned as is; callers
    /// decide what counts as failure.
    pub async fn shell(&self, command: &str) -> Result<ShellOutput, ProsodyError> {
        let mut cmd = Command::new(&self.prosodyctl);
        cmd.arg("--config")
            .arg(self.process.dir().join("prosody.cfg.lua"))
            .arg("shell")
            .arg(command)
            .current_dir(self.process.dir())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = timeout(SHELL_TIMEOUT, cmd.output())
            .await
            .map_err(|_| ProsodyError::ShellTimeout {
                command: command.to_owned(),
                after: SHELL_TIMEOUT,
            })?
            .map_err(|source| ProsodyError::Io {
                doing: "running prosodyctl shell",
                source,
            })?;
        Ok(ShellOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Send a XEP-0199 ping from our domain to `remote` over S2S (`xmpp:ping` of
    /// mod_admin_shell) and return the `pong from …` line.
    pub async fn ping(&self, remote: &str) -> Result<String, ProsodyError> {
        let command = format!(
            "xmpp:ping({}, {}, {})",
            process::lua_string(self.domain()),
            process::lua_string(remote),
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

    /// The S2S sessions Prosody currently holds (`s2s:show()` with the certificate column).
    pub async fn s2s_sessions(&self) -> Result<Vec<S2sSession>, ProsodyError> {
        let command = format!("s2s:show(nil, {S2S_SHOW_COLUMNS})");
        let output = self.shell(&command).await?;
        if !output.status.success() {
            return Err(ProsodyError::Shell { command, output });
        }
        Ok(parse_s2s_show(&output.stdout))
    }

    /// Lines of Prosody's debug log that contain every one of `needles` (attribute order
    /// varies between runs, so match pieces, not lines).
    pub fn log_lines_with(&self, needles: &[&str]) -> Vec<String> {
        std::fs::read(self.process.dir().join("prosody.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// The last `lines` lines of the debug log, stdout and stderr (startup errors land
    /// there) without the lua-unbound notice.
    pub fn log_tail(&self, lines: usize) -> String {
        strip_notice(&self.process.log_tail(lines))
    }

    /// Stop the server (SIGTERM, then SIGKILL) and reap it, bounded.
    pub async fn stop(self) -> Result<(), ProsodyError> {
        self.process.stop(STOP_GRACE).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::process::{ExpandContext, expand, leftover_placeholder, render_template};

    #[test]
    fn the_fixture_template_renders_every_placeholder_as_lua() {
        let text = std::fs::read_to_string(PathBuf::from(FIXTURE_DIR).join(TEMPLATE_NAME))
            .unwrap_or_default();
        let routes = BTreeMap::from([(
            "fedcheck.test".to_string(),
            SocketAddr::from(([127, 0, 0, 1], 6001)),
        )]);
        let vars = BTreeMap::from([
            ("DIR".to_string(), Value::Str("/tmp/x\"y".into())),
            ("PLUGIN_DIR".to_string(), Value::Str("/p".into())),
            ("LISTEN_IP".to_string(), Value::Str("127.0.0.1".into())),
            ("PORT_S2S".to_string(), Value::Int(5999)),
            ("ROUTES".to_string(), Value::Routes(routes)),
            ("DOMAIN".to_string(), Value::Str("prosody.test".into())),
        ]);
        let text = render_template(&text, &vars, Syntax::Lua).unwrap_or_else(|e| panic!("{e}"));
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
    fn the_ready_address_follows_the_chosen_port() {
        let cfg = ProsodyConfig {
            domain: "prosody.test".into(),
            s2s_addr: SocketAddr::from(([127, 0, 0, 1], 5999)),
            routes: BTreeMap::new(),
            tls: None,
        };
        let bin = ProsodyBin {
            prosody: "prosody".into(),
            prosodyctl: "prosodyctl".into(),
        };
        let spec = cfg.spec(&bin);
        let ctx = ExpandContext {
            dir: PathBuf::from("/d"),
            target_dir: PathBuf::from("/t"),
            domain: cfg.domain.clone(),
            gw: None,
            ports: BTreeMap::from([("s2s".to_string(), 5999)]),
        };
        let addrs: Vec<String> = spec
            .ready_addrs
            .iter()
            .filter_map(|a| expand(a, &ctx).ok())
            .collect();
        assert_eq!(addrs, vec!["127.0.0.1:5999".to_string()]);
    }

    const SAMPLE_S2S_SHOW: &str = "\
Old DNS resolver library will be used
Session ID           | Host                   | Dir  | Remote                 | IPv  | Security  | SASL       | Dialback     
s2sout55afe4b90de0   | prosody.test           | -->  | fedcheck.test          | IPv4 | insecure  |            | Completed    
s2sin55afe4ba9800    | prosody.test           | <--  | fedcheck.test          | IPv4 | insecure  |            | Not used     
OK: 2 s2s connections shown
";

    /// `s2s:show(nil, S2S_SHOW_COLUMNS)` after a STARTTLS + SASL EXTERNAL federation.
    const SAMPLE_S2S_SHOW_TLS: &str = "\
Session ID           | Host                   | Dir  | Remote                 | IPv  | Security | SASL       | Dialback      | Certificate
s2sout5611e0c3a2f0   | prosody.test           | -->  | fedcheck.test          | IPv4 | TLSv1.3  | Succeeded  | Not used      | Valid      
s2sin5611e0c47d10    | prosody.test           | <--  | fedcheck.test          | IPv4 | TLSv1.3  | Succeeded  | Not used      | Valid      
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
        assert!(rows.iter().all(|r| !r.is_tls() && r.certificate.is_empty()));
    }

    #[test]
    fn tls_columns_are_parsed() {
        let rows = parse_s2s_show(SAMPLE_S2S_SHOW_TLS);
        assert_eq!(rows.len(), 2);
        for row in &rows {
            assert_eq!(row.security, "TLSv1.3");
            assert_eq!(row.sasl, "Succeeded");
            assert_eq!(row.certificate, "Valid");
            assert!(row.is_certificate_authenticated(), "{row:?}");
        }
        let mut by_dialback = rows.first().cloned().unwrap_or_else(|| panic!("no rows"));
        by_dialback.dialback = "Completed".into();
        assert!(!by_dialback.is_certificate_authenticated());
        by_dialback.dialback = "Not used".into();
        by_dialback.certificate = "Mismatched".into();
        assert!(!by_dialback.is_certificate_authenticated());
    }

    #[test]
    fn the_tls_template_renders_certificates_and_switches() {
        let text = std::fs::read_to_string(PathBuf::from(FIXTURE_DIR).join(TLS_TEMPLATE_NAME))
            .unwrap_or_default();
        let tls = ProsodyTls::strict("/c/certs", "/c/ca.crt");
        let mut vars = BTreeMap::from([
            ("DIR".to_string(), Value::Str("/tmp/x".into())),
            ("PLUGIN_DIR".to_string(), Value::Str("/p".into())),
            ("LISTEN_IP".to_string(), Value::Str("127.0.0.1".into())),
            ("PORT_S2S".to_string(), Value::Int(5999)),
            ("ROUTES".to_string(), Value::Routes(BTreeMap::new())),
            ("DOMAIN".to_string(), Value::Str("prosody.test".into())),
        ]);
        vars.extend(tls.vars());
        let text = render_template(&text, &vars, Syntax::Lua).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains(r#"certificates = "/c/certs""#));
        assert!(text.contains(r#"ssl = { cafile = "/c/ca.crt" }"#));
        assert!(text.contains(r#"s2s_secure_auth = "yes" == "yes""#));
        assert!(text.contains(r#""yes" == "yes" and "saslauth" or nil;"#));
        assert!(text.contains("s2s_require_encryption = true"));
        assert_eq!(leftover_placeholder(&text), None);
    }

    #[test]
    fn the_template_follows_the_tls_option() {
        let bin = ProsodyBin {
            prosody: "prosody".into(),
            prosodyctl: "prosodyctl".into(),
        };
        let plain = ProsodyConfig {
            domain: "prosody.test".into(),
            s2s_addr: SocketAddr::from(([127, 0, 0, 1], 5999)),
            routes: BTreeMap::new(),
            tls: None,
        };
        let tls = plain.clone().with_tls(ProsodyTls {
            sasl_external: false,
            ..ProsodyTls::strict("/c", "/c/ca.crt")
        });
        let template = |c: &ProsodyConfig| {
            c.spec(&bin)
                .configs
                .first()
                .map(|f| f.template.clone())
                .unwrap_or_default()
        };
        assert!(template(&plain).ends_with(TEMPLATE_NAME));
        assert!(template(&tls).ends_with(TLS_TEMPLATE_NAME));
        let spec = tls.spec(&bin);
        assert_eq!(spec.vars.get("SASL"), Some(&Value::Str("no".into())));
        assert_eq!(
            spec.vars.get("SECURE_AUTH"),
            Some(&Value::Str("yes".into()))
        );
        assert!(!plain.spec(&bin).vars.contains_key("CERT_DIR"));
    }
}
