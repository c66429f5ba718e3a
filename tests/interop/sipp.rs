//! SIPp (Debian package `sip-tester`) as a real SIP peer of the bundled pair, with a
//! simulated remote XMPP server ([`super::sim_xmpp`]) on the far side of S2S (dialback,
//! XEP-0220, both directions):
//!
//! - SIPp sends a MESSAGE (RFC 3428) to an XMPP user; the gateway translates it
//!   (RFC 7572 §5) and the `<message>` reaches the simulated server.
//! - SIPp subscribes to an XMPP user's presence (RFC 3856); the gateway maps the
//!   subscription (RFC 8048 §5.3) and SIPp receives the NOTIFYs.
//! - SIPp as UAS receives the MESSAGE the gateway translates from a `<message>`
//!   (RFC 7572 §4).
//!
//! SIPp runs as a child process on loopback with a scenario from `fixtures/sipp/`; every
//! port it binds (SIP, and the media port it opens even when no call uses media) is a free
//! loopback port picked here, never its fixed defaults. Its message log (`-trace_msg`)
//! and error log are read back: the tests assert on what SIPp really received, and print
//! both logs, its output and the simulated server's transcript on failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout};

use super::require_peer;

/// The scenario fixtures.
const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sipp");
/// Upper bound for SIPp's whole run (it also gets `-timeout` below this).
const SIPP_TIMEOUT: Duration = Duration::from_secs(20);
/// SIPp's own global timeout (`-timeout`, with `-timeout_error`: reaching it fails).
const SIPP_OWN_TIMEOUT: &str = "10s";
/// How long SIPp may take to bind its SIP socket.
const BIND_TIMEOUT: Duration = Duration::from_secs(5);

/// The `sipp` binary: `FEDCHECK_SIPP`, else `sipp` on `PATH` or in `/usr/bin`.
fn find_sipp() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FEDCHECK_SIPP").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("sipp"))
        .find(|p| p.is_file())
}

/// [`find_sipp`] under the interop policy: fails the test under `CI=true`, otherwise
/// prints a skip message and returns `None`.
pub fn require_sipp() -> Option<PathBuf> {
    require_peer(
        find_sipp(),
        "SIPp (`sipp`)",
        "apt-get install sip-tester, or set FEDCHECK_SIPP",
    )
}

/// A free loopback UDP port `p` with `p + 2` free too (SIPp's media socket takes
/// `-mp` and may take `-mp`+2 for video). The sockets are closed on return; the race with
/// another process grabbing the port in between is accepted for a test.
async fn free_udp_port_pair() -> Result<u16, String> {
    for _ in 0..20 {
        let a = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let port = a.local_addr().map_err(|e| e.to_string())?.port();
        let Some(next) = port.checked_add(2) else {
            continue;
        };
        if UdpSocket::bind(("127.0.0.1", next)).await.is_ok() {
            return Ok(port);
        }
    }
    Err("no free pair of loopback UDP ports".into())
}

/// A free loopback UDP port for SIPp's SIP socket: with no `-p`, SIPp 3.6 tries 5060
/// first, a fixed port other tests or a local SIP stack may hold.
async fn free_udp_port() -> Result<u16, String> {
    let s = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.port())
}

/// Whether a UDP socket is bound to 127.0.0.1:`port`, read from Linux's `/proc/net/udp`
/// without touching the port (a probing bind could steal it from SIPp for a moment).
/// `None` where that table does not exist.
fn udp_bound(port: u16) -> Option<bool> {
    let needle = format!("0100007F:{port:04X} ");
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    Some(table.lines().any(|l| l.contains(&needle)))
}

/// One SIPp process: its scratch dir holds the logs; killed on drop.
pub struct Sipp {
    child: Child,
    scratch: tempfile::TempDir,
    sip_addr: SocketAddr,
}

/// What a finished SIPp run left behind.
#[derive(Debug)]
pub struct SippRun {
    /// `None`: it did not exit within [`SIPP_TIMEOUT`] and was killed.
    pub status: Option<ExitStatus>,
    /// The `-trace_msg` log: every message sent and received, in full.
    pub messages: String,
    /// The `-trace_err` log: unexpected messages and failed checks.
    pub errors: String,
    pub stdout: String,
    pub stderr: String,
}

impl SippRun {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Everything that explains a failure.
    pub fn report(&self) -> String {
        format!(
            "sipp status {:?}\n--- sipp errors ---\n{}\n--- sipp messages ---\n{}\n\
             --- sipp stdout (tail) ---\n{}\n--- sipp stderr ---\n{}",
            self.status,
            self.errors,
            self.messages,
            tail(&self.stdout, 40),
            self.stderr
        )
    }

    /// The messages SIPp received, in order.
    pub fn received(&self) -> Vec<Logged> {
        parse_message_log(&self.messages)
            .into_iter()
            .filter(|m| !m.sent)
            .collect()
    }

    /// The messages SIPp sent, in order.
    pub fn sent(&self) -> Vec<Logged> {
        parse_message_log(&self.messages)
            .into_iter()
            .filter(|m| m.sent)
            .collect()
    }

    /// The received requests with this method, in order.
    pub fn received_requests(&self, method: &str) -> Vec<Logged> {
        self.received()
            .into_iter()
            .filter(|m| m.request_method() == Some(method))
            .collect()
    }
}

/// One SIP message from SIPp's `-trace_msg` log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Sent by SIPp (else received).
    pub sent: bool,
    /// The message, lines joined with `\n` (CRs dropped).
    pub text: String,
}

impl Logged {
    fn head_and_body(&self) -> (&str, &str) {
        self.text.split_once("\n\n").unwrap_or((&self.text, ""))
    }

    pub fn start_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The method of a request (`None` for a response).
    pub fn request_method(&self) -> Option<&str> {
        let line = self.start_line();
        (!line.starts_with("SIP/")).then(|| line.split(' ').next().unwrap_or_default())
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        let line = self.start_line();
        line.strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
    }

    /// The first header with this name (case-insensitive), value trimmed. Compact
    /// forms are not expanded: the gateway writes full names.
    pub fn header(&self, name: &str) -> Option<&str> {
        let (head, _) = self.head_and_body();
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn body(&self) -> &str {
        self.head_and_body().1
    }
}

/// Split SIPp 3.6's message log into messages: each entry is a line of dashes (with a
/// timestamp), a `UDP message received [n] bytes :` / `UDP message sent (n bytes):` line,
/// a blank line, then the message as it went over the wire.
pub fn parse_message_log(text: &str) -> Vec<Logged> {
    let mut out = Vec::new();
    let mut cur: Option<(bool, Vec<&str>)> = None;
    let mut lines = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("----------") {
            if let Some((sent, body)) = cur.take() {
                out.push(finish_entry(sent, &body));
            }
            let kind = lines.next().unwrap_or_default().to_ascii_lowercase();
            if lines.peek().is_some_and(|l| l.is_empty()) {
                lines.next();
            }
            if kind.contains("message sent") {
                cur = Some((true, Vec::new()));
            } else if kind.contains("message received") {
                cur = Some((false, Vec::new()));
            }
            continue;
        }
        if let Some((_, body)) = cur.as_mut() {
            body.push(line);
        }
    }
    if let Some((sent, body)) = cur {
        out.push(finish_entry(sent, &body));
    }
    out
}

fn finish_entry(sent: bool, lines: &[&str]) -> Logged {
    // SIPp ends every entry with an empty line of its own.
    let mut text = lines.join("\n");
    if text.ends_with('\n') {
        text.pop();
    }
    Logged { sent, text }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all.get(all.len().saturating_sub(lines)..)
        .unwrap_or_default()
        .join("\n")
}

impl Sipp {
    /// Start `scenario` (a file in `fixtures/sipp/`): as UAC against `remote`, or as
    /// UAS (`remote` = `None`) waiting on its own SIP port. `keys` are `-key` keywords.
    /// Returns once SIPp's SIP socket is bound.
    pub async fn start(
        bin: &Path,
        scenario: &str,
        remote: Option<SocketAddr>,
        keys: &[(&str, &str)],
    ) -> Result<Self, String> {
        let scratch = tempfile::tempdir().map_err(|e| format!("scratch dir: {e}"))?;
        let sip_port = free_udp_port().await?;
        let media_port = free_udp_port_pair().await?;
        let dir = scratch.path();
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir);
        if let Some(r) = remote {
            cmd.arg(r.to_string());
        }
        cmd.arg("-sf")
            .arg(Path::new(FIXTURE_DIR).join(scenario))
            .args(["-t", "u1", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &sip_port.to_string(), "-bind_local"])
            .args(["-mp", &media_port.to_string()])
            .args(["-m", "1", "-l", "1", "-nostdin"])
            .args(["-timeout", SIPP_OWN_TIMEOUT, "-timeout_error"])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join("messages.log"))
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join("errors.log"));
        for (k, v) in keys {
            cmd.args(["-key", k, v]);
        }
        let stdout = std::fs::File::create(dir.join("stdout.log"))
            .map_err(|e| format!("stdout.log: {e}"))?;
        let stderr = std::fs::File::create(dir.join("stderr.log"))
            .map_err(|e| format!("stderr.log: {e}"))?;
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| format!("spawning sipp: {e}"))?;
        let mut sipp = Self {
            child,
            scratch,
            sip_addr: SocketAddr::from(([127, 0, 0, 1], sip_port)),
        };
        let started = tokio::time::Instant::now();
        loop {
            match udp_bound(sip_port) {
                Some(true) => break,
                Some(false) => {}
                // No socket table to read: give SIPp a moment (the gateway retransmits
                // requests over UDP anyway, RFC 3261 §17.1.2.2).
                None => {
                    sleep(Duration::from_millis(300)).await;
                    break;
                }
            }
            if let Ok(Some(status)) = sipp.child.try_wait() {
                let run = sipp.collect(Some(status));
                return Err(format!("sipp exited at start\n{}", run.report()));
            }
            if started.elapsed() > BIND_TIMEOUT {
                return Err(format!(
                    "sipp did not bind 127.0.0.1:{sip_port} within {BIND_TIMEOUT:?}"
                ));
            }
            sleep(Duration::from_millis(20)).await;
        }
        Ok(sipp)
    }

    /// SIPp's SIP socket (where a UAS scenario receives).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// Wait for SIPp to end (killing it after [`SIPP_TIMEOUT`]) and read its logs.
    pub async fn finish(mut self) -> SippRun {
        let status = match timeout(SIPP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        };
        self.collect(status)
    }

    fn collect(&self, status: Option<ExitStatus>) -> SippRun {
        let read = |name: &str| {
            std::fs::read(self.scratch.path().join(name))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        SippRun {
            status,
            messages: read("messages.log"),
            errors: read("errors.log"),
            stdout: read("stdout.log"),
            stderr: read("stderr.log"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::pair::Pair;
    use crate::interop::sim_xmpp::SimServer;
    use fedcheck::xmpp::element::Element;

    /// The simulated remote XMPP server's domain.
    const REMOTE_DOMAIN: &str = "remote.test";

    /// Gateway/proxy logs go to the test's captured output (shown on failure).
    fn init_tracing() {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fedcheck=debug"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    }

    /// SIPp's logs and the simulated server's transcript.
    fn report(run: &SippRun, remote: &SimServer) -> String {
        format!(
            "{}\n--- simulated XMPP server ---\n{}",
            run.report(),
            remote.transcript()
        )
    }

    fn body_of(el: &Element) -> String {
        el.child("jabber:server", "body")
            .map(Element::text)
            .unwrap_or_default()
    }

    #[test]
    fn the_message_log_is_split_into_messages() {
        let log = "----------------------------------------------- 2026-12-01 11:23:46.963168\n\
            UDP message received [61] bytes :\n\
            \n\
            MESSAGE sip:x@127.0.0.1:25070 SIP/2.0\r\n\
            Content-Type: text/plain\r\n\
            Content-Length:    13\r\n\
            \r\n\
            hello world\r\n\
            \n\
            ----------------------------------------------- 2026-12-01 11:23:46.964145\n\
            UDP message sent (40 bytes):\n\
            \n\
            SIP/2.0 200 OK\r\n\
            Content-Length: 0\r\n\
            \r\n\
            \n";
        let msgs = parse_message_log(log);
        let [m, ok] = msgs.as_slice() else {
            panic!("two messages expected: {msgs:?}");
        };
        assert!(!m.sent && ok.sent);
        assert_eq!(m.request_method(), Some("MESSAGE"));
        assert_eq!(m.header("content-type"), Some("text/plain"));
        assert_eq!(m.header("Content-Length"), Some("13"));
        assert_eq!(m.body().trim_end(), "hello world");
        assert_eq!(ok.status(), Some(200));
        assert_eq!(ok.request_method(), None);
        assert_eq!(ok.body(), "");
        assert_eq!(parse_message_log(""), vec![]);
    }

    /// SIPp sends a MESSAGE to `sip:juliet@remote.test` through the bundled gateway; the
    /// `<message>` reaches the remote XMPP server with the body and the translated
    /// addresses (RFC 7247 §6), and SIPp gets its 200 and exits 0.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sipp_message_reaches_the_remote_xmpp_server() {
        let Some(sipp) = require_sipp() else {
            return;
        };
        init_tracing();
        const TEXT: &str = "Hello from SIPp, wherefore art thou?";
        let mut remote = SimServer::bind(REMOTE_DOMAIN)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pair = Pair::start(&[(REMOTE_DOMAIN, remote.addr())], &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let to_uri = format!("sip:juliet@{REMOTE_DOMAIN}");
        let uac = Sipp::start(
            &sipp,
            "message-uac.xml",
            Some(pair.sip_udp),
            &[
                ("from_user", "romeo"),
                ("sip_domain", pair.sip_domain()),
                ("to_uri", &to_uri),
                ("text", TEXT),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let run = uac.finish().await;
        assert!(run.success(), "sipp failed:\n{}", report(&run, &remote));
        let ok = run.received().into_iter().find(|m| m.status().is_some());
        assert_eq!(
            ok.and_then(|m| m.status()),
            Some(200),
            "{}",
            report(&run, &remote)
        );

        let msg = remote
            .expect("the <message>", |el| el.name == "message")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", report(&run, &remote)));
        assert_eq!(msg.ns, "jabber:server");
        assert_eq!(
            msg.attr("to"),
            Some(format!("juliet@{REMOTE_DOMAIN}").as_str())
        );
        let from = msg.attr("from").unwrap_or_default();
        assert!(
            from.starts_with(&format!("romeo@{}", pair.sip_domain())),
            "from = {from:?}"
        );
        assert_eq!(body_of(&msg).trim(), TEXT, "the <message> was {msg:?}");
        pair.stop().await;
    }

    /// SIPp subscribes to `sip:juliet@remote.test`'s presence (Event: presence, Accept:
    /// application/pidf+xml). The simulated server receives `<presence type='subscribe'>`
    /// from the SIP user's bare JID (RFC 8048 §5.3.1: the subscription is between bare
    /// JIDs), answers `subscribed` and an available presence on its own dialback-verified
    /// stream, and SIPp receives NOTIFY pending, active, and active with an open PIDF
    /// tuple (its scenario checks each), answering every one 200.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sipp_subscribe_gets_notify_active_with_open_pidf() {
        let Some(sipp) = require_sipp() else {
            return;
        };
        init_tracing();
        let mut remote = SimServer::bind(REMOTE_DOMAIN)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pair = Pair::start(&[(REMOTE_DOMAIN, remote.addr())], &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let sip_user = format!("romeo@{}", pair.sip_domain());
        let juliet = format!("juliet@{REMOTE_DOMAIN}");
        let to_uri = format!("sip:{juliet}");
        let uac = Sipp::start(
            &sipp,
            "subscribe-uac.xml",
            Some(pair.sip_udp),
            &[
                ("from_user", "romeo"),
                ("sip_domain", pair.sip_domain()),
                ("to_uri", &to_uri),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

        // The XMPP side, while SIPp waits for its NOTIFYs.
        let xmpp = async {
            let sub = remote
                .expect("<presence type='subscribe'>", |el| {
                    el.name == "presence" && el.attr("type") == Some("subscribe")
                })
                .await?;
            remote
                .open_to(pair.proxy.s2s_addr, pair.sip_domain())
                .await?;
            remote
                .send(&format!(
                    "<presence from='{juliet}' to='{sip_user}' type='subscribed'/>\
                     <presence from='{juliet}/balcony' to='{sip_user}'>\
                     <show>chat</show><status>on the balcony</status></presence>"
                ))
                .await?;
            Ok::<_, String>(sub)
        };
        let (sub, run) = tokio::join!(xmpp, uac.finish());
        let sub = sub.unwrap_or_else(|e| panic!("{e}\n{}", report(&run, &remote)));
        assert_eq!(sub.ns, "jabber:server");
        assert_eq!(
            sub.attr("from"),
            Some(sip_user.as_str()),
            "{}",
            report(&run, &remote)
        );
        assert_eq!(
            sub.attr("to"),
            Some(juliet.as_str()),
            "{}",
            report(&run, &remote)
        );
        assert!(run.success(), "sipp failed:\n{}", report(&run, &remote));

        // What SIPp saw, beyond its own checks: the final response (200: RFC 6665 §8.3.1
        // forbids 202) and three NOTIFYs in the SUBSCRIBE's dialog, each answered 200.
        let received = run.received();
        let final_code = received.iter().find_map(|m| m.status());
        assert!(final_code == Some(200), "{}", report(&run, &remote));
        let notifies = run.received_requests("NOTIFY");
        let states: Vec<&str> = notifies
            .iter()
            .map(|n| n.header("Subscription-State").unwrap_or_default())
            .collect();
        let [pending, active, open] = states.as_slice() else {
            panic!(
                "three NOTIFYs expected: {states:?}\n{}",
                report(&run, &remote)
            );
        };
        assert!(pending.starts_with("pending"), "{states:?}");
        assert!(active.starts_with("active"), "{states:?}");
        assert!(open.starts_with("active"), "{states:?}");
        let last = notifies
            .last()
            .unwrap_or_else(|| panic!("no NOTIFY\n{}", report(&run, &remote)));
        assert_eq!(last.header("Content-Type"), Some("application/pidf+xml"));
        // RFC 3863 §4.1.1 and RFC 8048 §5.3.2: the document is about the XMPP user's
        // bare address, and the tuple of the resource that came online is open.
        let body = last.body();
        assert!(
            body.contains(&format!("entity='pres:{juliet}'"))
                || body.contains(&format!("entity=\"pres:{juliet}\"")),
            "{}",
            last.text
        );
        assert!(body.contains("<basic>open</basic>"), "{}", last.text);
        let oks = run
            .sent()
            .iter()
            .filter(|m| m.status() == Some(200))
            .count();
        assert_eq!(oks, 3, "{}", report(&run, &remote));
        pair.stop().await;
    }

    /// The simulated XMPP server sends a `<message>` to `romeo@<gateway domain>`; the
    /// gateway sends SIPp (UAS, the SIP user's next hop) a MESSAGE (RFC 7572 §4) with the
    /// body and the translated addresses (RFC 7247 §6), SIPp answers 200 and exits 0.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn xmpp_message_reaches_sipp_as_uas() {
        let Some(sipp) = require_sipp() else {
            return;
        };
        init_tracing();
        const TEXT: &str = "But soft, what light through yonder window breaks?";
        let mut remote = SimServer::bind(REMOTE_DOMAIN)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let uas = Sipp::start(&sipp, "message-uas.xml", None, &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pair = Pair::start(
            &[(REMOTE_DOMAIN, remote.addr())],
            &[(
                fedcheck::harness::bundled_sip::BUNDLED_SIP_DOMAIN,
                uas.sip_addr(),
            )],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let sip_user = format!("romeo@{}", pair.sip_domain());
        let sent = async {
            remote
                .open_to(pair.proxy.s2s_addr, pair.sip_domain())
                .await?;
            remote
                .send(&format!(
                    "<message from='juliet@{REMOTE_DOMAIN}/balcony' to='{sip_user}' \
                     id='sim-m1'><body>{TEXT}</body></message>"
                ))
                .await
        };
        let (sent, run) = tokio::join!(sent, uas.finish());
        sent.unwrap_or_else(|e| panic!("{e}\n{}", report(&run, &remote)));
        assert!(run.success(), "sipp failed:\n{}", report(&run, &remote));

        let msgs = run.received_requests("MESSAGE");
        let [m] = msgs.as_slice() else {
            panic!("one MESSAGE expected\n{}", report(&run, &remote));
        };
        assert_eq!(
            m.start_line(),
            format!("MESSAGE sip:{sip_user} SIP/2.0"),
            "{}",
            report(&run, &remote)
        );
        let from = m.header("From").unwrap_or_default();
        assert!(
            from.contains(&format!("sip:juliet@{REMOTE_DOMAIN}")),
            "From: {from}"
        );
        let to = m.header("To").unwrap_or_default();
        assert!(to.contains(&format!("sip:{sip_user}")), "To: {to}");
        assert!(
            m.header("Content-Type")
                .is_some_and(|c| c.starts_with("text/plain")),
            "{}",
            m.text
        );
        assert_eq!(m.body(), TEXT, "{}", m.text);
        let ok = run.sent().into_iter().find_map(|s| s.status());
        assert_eq!(ok, Some(200), "{}", report(&run, &remote));
        // A 200 is not an error: nothing comes back to the XMPP sender (RFC 7572 §4).
        let bounced = timeout(Duration::from_millis(300), remote.next_stanza()).await;
        assert!(
            !matches!(&bounced, Ok(Ok(el)) if el.attr("type") == Some("error")),
            "{bounced:?}\n{}",
            report(&run, &remote)
        );
        pair.stop().await;
    }
}
