//! A real XMPP user chats with a SIP user through the bundled pair, every hop a real
//! implementation but the pair itself:
//!
//! ```text
//!  slixmpp ──c2s──► Prosody ──S2S (dialback)──► proxy ──XEP-0114──► gateway ──SIP──► SIPp
//!  (alice@prosody.test)                        (fedcheck.test)     (sip.sut.test)   (romeo)
//!          ◄───────────────── the same way back ◄─────────────────────── MESSAGE ◄──┘
//! ```
//!
//! Prosody runs as a child process with `fixtures/prosody/prosody-c2s.cfg.lua.in` (client
//! port, in-memory accounts, static S2S routes through `mod_fedcheck_routes`); the account
//! is created through its admin shell. The client is `fixtures/slixmpp/chat.py` under
//! Debian's python3 with python3-slixmpp; SIPp answers with
//! `fixtures/sipp/message-uas-reply.xml`. Everything listens on 127.0.0.1 and no one
//! resolves a name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::timeout;

use fedcheck::harness::peers::prosody::{ProsodyBin, strip_notice};
use fedcheck::harness::process::{
    ConfigFile, ProcessSpec, RunningProcess, StartInputs, Syntax, Value, lua_string,
};

use super::require_peer;

const PROSODY_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/prosody");
const CHAT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/slixmpp/chat.py");
const TEMPLATE: &str = "prosody-c2s.cfg.lua.in";
/// Prosody's S2S port, client port and admin socket.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// One `prosodyctl shell` command.
const SHELL_TIMEOUT: Duration = Duration::from_secs(15);
/// The client's whole run (it gets its own, shorter `--timeout`).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
const CLIENT_OWN_TIMEOUT_SECS: &str = "12";

/// A Python 3 with slixmpp: `FEDCHECK_PYTHON`, else Debian's `/usr/bin/python3` (a pyenv
/// `python3` earlier on `PATH` usually lacks the Debian package).
fn find_slixmpp_python() -> Option<PathBuf> {
    let py = std::env::var_os("FEDCHECK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"));
    let ok = std::process::Command::new(&py)
        .args(["-c", "import slixmpp"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

/// [`find_slixmpp_python`] under the interop policy.
pub fn require_slixmpp() -> Option<PathBuf> {
    require_peer(
        find_slixmpp_python(),
        "python3 with slixmpp",
        "apt-get install python3-slixmpp, or set FEDCHECK_PYTHON",
    )
}

/// Prosody with client connections; killed (with its process group) on drop.
pub struct ProsodyC2s {
    process: RunningProcess,
    prosodyctl: PathBuf,
}

impl ProsodyC2s {
    /// Render the c2s template for `domain` with static S2S `routes` and start it.
    pub async fn start(
        bin: &ProsodyBin,
        domain: &str,
        routes: BTreeMap<String, SocketAddr>,
    ) -> Result<Self, String> {
        let spec = ProcessSpec {
            command: vec![
                bin.prosody.to_string_lossy().into_owned(),
                "--config".into(),
                "{dir}/prosody.cfg.lua".into(),
                "-F".into(),
            ],
            env: BTreeMap::new(),
            cwd: None,
            configs: vec![ConfigFile {
                template: Path::new(PROSODY_FIXTURES).join(TEMPLATE),
                output: "prosody.cfg.lua".into(),
                syntax: Syntax::Lua,
            }],
            vars: BTreeMap::from([(
                "PLUGIN_DIR".to_string(),
                Value::Str(PROSODY_FIXTURES.into()),
            )]),
            ports: vec!["s2s".into(), "c2s".into()],
            ready_addrs: vec!["127.0.0.1:{port:s2s}".into(), "127.0.0.1:{port:c2s}".into()],
            ready_files: vec!["prosody.sock".into()],
            ready_timeout: READY_TIMEOUT,
            log_files: vec!["prosody.log".into()],
            ready_log: Vec::new(),
            services: Vec::new(),
            pki: false,
            container: None,
            target_dir: PathBuf::from(PROSODY_FIXTURES),
        };
        let inputs = StartInputs {
            domain: domain.to_owned(),
            routes,
            ports: BTreeMap::new(),
            sip: None,
            tls: None,
        };
        let process = RunningProcess::start(&spec, &inputs)
            .await
            .map_err(|e| format!("starting prosody: {e}"))?;
        // Prosody indexes `certs/` beside its config; an empty one keeps the log free of a
        // misleading error.
        let _ = std::fs::create_dir(process.dir().join("certs"));
        Ok(Self {
            process,
            prosodyctl: bin.prosodyctl.clone(),
        })
    }

    fn port(&self, name: &str) -> Result<SocketAddr, String> {
        self.process
            .ports()
            .get(name)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .ok_or_else(|| format!("no {name} port"))
    }

    pub fn s2s_addr(&self) -> Result<SocketAddr, String> {
        self.port("s2s")
    }

    pub fn c2s_addr(&self) -> Result<SocketAddr, String> {
        self.port("c2s")
    }

    /// Create an account through the admin shell (mod_admin_shell `user:create`): with
    /// in-memory storage only the running server can hold it.
    pub async fn create_user(&self, jid: &str, password: &str) -> Result<(), String> {
        let command = format!("user:create({}, {})", lua_string(jid), lua_string(password));
        let mut cmd = Command::new(&self.prosodyctl);
        cmd.arg("--config")
            .arg(self.process.dir().join("prosody.cfg.lua"))
            .arg("shell")
            .arg(&command)
            .current_dir(self.process.dir())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = timeout(SHELL_TIMEOUT, cmd.output())
            .await
            .map_err(|_| format!("prosodyctl shell `{command}` timed out"))?
            .map_err(|e| format!("running prosodyctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "prosodyctl shell `{command}` failed ({}): {}{}",
                out.status,
                strip_notice(&String::from_utf8_lossy(&out.stdout)),
                strip_notice(&String::from_utf8_lossy(&out.stderr))
            ))
        }
    }

    /// Lines of the debug log that contain every one of `needles`.
    pub fn log_lines_with(&self, needles: &[&str]) -> Vec<String> {
        std::fs::read(self.process.dir().join("prosody.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        strip_notice(&self.process.log_tail(lines))
    }

    pub async fn stop(self) {
        self.process.stop(Duration::from_secs(3)).await;
    }
}

/// One JSON line the client printed.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ClientEvent {
    pub event: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// What the client run left behind.
#[derive(Debug)]
pub struct ClientRun {
    /// `None`: killed after [`CLIENT_TIMEOUT`].
    pub code: Option<i32>,
    pub events: Vec<ClientEvent>,
    pub stdout: String,
    pub stderr: String,
}

impl ClientRun {
    pub fn report(&self) -> String {
        let all: Vec<&str> = self.stderr.lines().collect();
        let tail = all.get(all.len().saturating_sub(60)..).unwrap_or_default();
        format!(
            "slixmpp exit {:?}\n--- slixmpp stdout ---\n{}\n--- slixmpp stderr (tail) ---\n{}",
            self.code,
            self.stdout,
            tail.join("\n")
        )
    }
}

/// Run `chat.py`: log in as `jid`, send `body` to `to`, wait for a message from
/// `expect_from` (bare JID).
pub async fn run_client(
    python: &Path,
    server: SocketAddr,
    jid: &str,
    password: &str,
    to: &str,
    body: &str,
    expect_from: &str,
) -> ClientRun {
    let port = server.port().to_string();
    let ip = server.ip().to_string();
    let mut cmd = Command::new(python);
    cmd.arg(CHAT_SCRIPT)
        .args(["--jid", jid, "--password", password])
        .args(["--server", &ip, "--port", &port])
        .args(["--to", to, "--body", body, "--expect-from", expect_from])
        .args(["--timeout", CLIENT_OWN_TIMEOUT_SECS])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match timeout(CLIENT_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let events = stdout
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            ClientRun {
                code: out.status.code(),
                events,
                stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Ok(Err(e)) => ClientRun {
            code: None,
            events: Vec::new(),
            stdout: String::new(),
            stderr: format!("running {}: {e}", python.display()),
        },
        Err(_) => ClientRun {
            code: None,
            events: Vec::new(),
            stdout: String::new(),
            stderr: format!("killed after {CLIENT_TIMEOUT:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::pair::{OUR_DOMAIN, Pair};
    use crate::interop::prosody::require_prosody;
    use crate::interop::sipp::{Sipp, require_sipp};

    const PROSODY_DOMAIN: &str = "prosody.test";

    fn init_tracing() {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fedcheck=debug"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    }

    /// alice (slixmpp, logged in to Prosody) sends a chat message to `romeo@sip.sut.test`;
    /// Prosody federates with the bundled proxy by dialback (XEP-0220), the gateway sends
    /// SIPp a MESSAGE (RFC 7572 §4), SIPp answers 200 and sends a MESSAGE back to alice's
    /// address, which the gateway turns into a `<message>` (RFC 7572 §5) that Prosody
    /// receives over S2S and delivers to slixmpp. Asserted on every side: the client's
    /// received message (from, body), SIPp's message log (request URI, From, body of what
    /// it received; the 200s), and Prosody's log (both stanzas crossed S2S).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slixmpp_user_chats_with_sipp_through_prosody_and_the_pair() {
        let (Some(prosody_bin), Some(sipp_bin), Some(python)) =
            (require_prosody(), require_sipp(), require_slixmpp())
        else {
            return;
        };
        init_tracing();
        const HELLO: &str = "Hello Romeo, it is Alice on XMPP";
        const REPLY: &str = "Hello Alice, Romeo here, on SIP";
        let alice = format!("alice@{PROSODY_DOMAIN}");

        let sipp = Sipp::start(
            &sipp_bin,
            "message-uas-reply.xml",
            None,
            &[("reply_text", REPLY)],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let pair = Pair::start(
            &[],
            &[(
                fedcheck::harness::bundled_sip::BUNDLED_SIP_DOMAIN,
                sipp.sip_addr(),
            )],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let romeo = format!("romeo@{}", pair.sip_domain());
        let routes = BTreeMap::from([
            (pair.sip_domain().to_owned(), pair.proxy.s2s_addr),
            (OUR_DOMAIN.to_owned(), pair.proxy.s2s_addr),
        ]);
        let prosody = ProsodyC2s::start(&prosody_bin, PROSODY_DOMAIN, routes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let fail = |what: &dyn std::fmt::Display| -> ! {
            panic!(
                "{what}\n--- prosody log tail ---\n{}",
                prosody.log_tail(120)
            )
        };
        let s2s = prosody.s2s_addr().unwrap_or_else(|e| fail(&e));
        let c2s = prosody.c2s_addr().unwrap_or_else(|e| fail(&e));
        pair.proxy.add_route(PROSODY_DOMAIN, s2s);
        if let Err(e) = prosody.create_user(&alice, "alice-secret").await {
            fail(&e);
        }

        let (client, run) = tokio::join!(
            run_client(&python, c2s, &alice, "alice-secret", &romeo, HELLO, &romeo),
            sipp.finish()
        );
        let report = || {
            format!(
                "{}\n{}\n--- prosody log tail ---\n{}",
                client.report(),
                run.report(),
                prosody.log_tail(150)
            )
        };

        // The client: logged in, sent, and received romeo's reply.
        assert_eq!(client.code, Some(0), "{}", report());
        let got = client
            .events
            .iter()
            .find(|e| e.event == "received")
            .unwrap_or_else(|| panic!("the client received nothing\n{}", report()));
        let from = got.from.as_deref().unwrap_or_default();
        assert!(
            from == romeo || from.starts_with(&format!("{romeo}/")),
            "from = {from:?}\n{}",
            report()
        );
        assert_eq!(
            got.to.as_deref().map(|t| t.split('/').next().unwrap_or(t)),
            Some(alice.as_str())
        );
        assert_eq!(
            got.body.as_deref().map(str::trim),
            Some(REPLY),
            "{}",
            report()
        );
        assert_ne!(got.kind.as_deref(), Some("error"));

        // SIPp: received alice's message, answered 200, got 200 for its reply.
        assert!(run.success(), "sipp failed:\n{}", report());
        let msgs = run.received_requests("MESSAGE");
        let [m] = msgs.as_slice() else {
            panic!("one MESSAGE expected\n{}", report());
        };
        assert_eq!(
            m.start_line(),
            format!("MESSAGE sip:{romeo} SIP/2.0"),
            "{}",
            report()
        );
        let sip_from = m.header("From").unwrap_or_default();
        assert!(
            sip_from.contains(&format!("sip:{alice}")),
            "From: {sip_from}"
        );
        assert_eq!(m.body(), HELLO, "{}", m.text);
        let codes: Vec<u16> = run.received().iter().filter_map(|m| m.status()).collect();
        assert!(
            codes.contains(&200),
            "responses SIPp got: {codes:?}\n{}",
            report()
        );
        assert_eq!(
            run.sent()
                .iter()
                .filter_map(|m| m.status())
                .collect::<Vec<_>>(),
            vec![200],
            "{}",
            report()
        );

        // Prosody: the message left over S2S and the reply came in over S2S (its debug
        // log shows each stanza's start tag; attribute order varies, so match pieces).
        let to_romeo = format!("to='{romeo}'");
        let from_alice = format!("from='{alice}/");
        let out = prosody.log_lines_with(&["Sending[s2sout]", "<message", &to_romeo, &from_alice]);
        assert!(
            !out.is_empty(),
            "alice's message did not leave over S2S\n{}",
            report()
        );
        let from_romeo = format!("from='{romeo}'");
        let to_alice = format!("to='{alice}'");
        let inn = prosody.log_lines_with(&["Received[s2sin]", "<message", &from_romeo, &to_alice]);
        assert!(
            !inn.is_empty(),
            "romeo's reply did not arrive over S2S\n{}",
            report()
        );

        prosody.stop().await;
        pair.stop().await;
    }
}
