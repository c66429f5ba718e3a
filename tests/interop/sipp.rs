//! SIPp (Debian package `sip-tester`) as a real SIP peer of the bundled pair: SIPp plays a
//! SIP user of the gateway's domain and sends a MESSAGE (RFC 3428) to an XMPP user behind
//! a simulated remote XMPP server; the gateway translates it (RFC 7572 §5) and the proxy
//! carries it over S2S, authenticated by dialback (XEP-0220).
//!
//! SIPp runs as a child process on loopback with the scenario in `fixtures/sipp/`; every
//! port it binds (SIP and the media port it opens even when no call uses media) is a free
//! loopback port picked here, never its fixed defaults.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::process::Command;
use tokio::time::timeout;

use fedcheck::harness::bundled_sip::{self, BUNDLED_SIP_DOMAIN};
use fedcheck::proxy::{self, ProxyConfig};
use fedcheck::xmpp::codec::{Decoder, Event, StreamHeader};
use fedcheck::xmpp::element::Element;

use super::require_peer;

/// The scenario fixtures.
const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sipp");
/// The proxy's own XMPP domain.
const OUR_DOMAIN: &str = "fedcheck.test";
/// The simulated remote XMPP server's domain.
const REMOTE_DOMAIN: &str = "remote.test";
/// Upper bound for SIPp's whole run (it also gets `-timeout` below this).
const SIPP_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound for one read on the simulated remote server's stream.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Read the next non-whitespace event from the proxy (`None` = closed).
async fn next_event(
    sock: &mut TcpStream,
    dec: &mut Decoder,
    buf: &mut [u8],
) -> Result<Option<Event>, String> {
    loop {
        match dec.next_event() {
            Ok(Some(Event::Whitespace(_))) => continue,
            Ok(Some(ev)) => return Ok(Some(ev)),
            Ok(None) => {}
            Err(e) => return Err(format!("the proxy sent bad XML: {e}")),
        }
        let n = match timeout(STEP_TIMEOUT, sock.read(buf)).await {
            Err(_) => return Err("no data from the proxy within the step timeout".into()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return Ok(None);
        }
        dec.feed(buf.get(..n).unwrap_or_default());
    }
}

async fn send(sock: &mut TcpStream, s: &str) -> Result<(), String> {
    sock.write_all(s.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))
}

/// Play the remote domain's receiving server for the one stream the proxy opens: answer
/// the header with dialback offered (XEP-0220 §2.1), accept the proxy's `<db:result>`
/// (the simulated server trusts it; dialback itself is covered by the scenarios), and
/// return the first `<message>` that arrives.
async fn receive_one_message(listener: TcpListener) -> Result<Element, String> {
    let (mut sock, _) = timeout(Duration::from_secs(15), listener.accept())
        .await
        .map_err(|_| "the proxy never connected to the remote server".to_string())?
        .map_err(|e| format!("accept: {e}"))?;
    let mut dec = Decoder::default();
    let mut buf = vec![0u8; 8192];
    let mut header_seen = false;
    loop {
        let Some(ev) = next_event(&mut sock, &mut dec, &mut buf).await? else {
            return Err("the proxy closed the stream before a <message>".into());
        };
        match ev {
            Event::Header(h) => {
                let to = h.to.unwrap_or_default();
                if !to.eq_ignore_ascii_case(REMOTE_DOMAIN) {
                    return Err(format!("the proxy opened a stream to {to:?}"));
                }
                let mut out = StreamHeader::s2s(
                    Some(REMOTE_DOMAIN),
                    Some(OUR_DOMAIN),
                    Some("sipp-interop-1"),
                    Some("1.0"),
                    true,
                )
                .to_xml(true);
                out.push_str(
                    "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/>\
                     </dialback></stream:features>",
                );
                send(&mut sock, &out).await?;
                header_seen = true;
            }
            Event::Element(el) if !header_seen => {
                return Err(format!("<{}> before the stream header", el.name));
            }
            Event::Element(el) if el.name == "result" && el.attr("type").is_none() => {
                // XEP-0220 §2.1.1 step 3 answered as the authoritative server would.
                let ans = format!(
                    "<db:result from='{REMOTE_DOMAIN}' to='{}' type='valid'/>",
                    el.attr("from").unwrap_or(OUR_DOMAIN)
                );
                send(&mut sock, &ans).await?;
            }
            Event::Element(el) if el.name == "message" => return Ok(el),
            Event::Element(el) => return Err(format!("unexpected <{}>", el.name)),
            Event::Close => return Err("the proxy closed the stream before a <message>".into()),
            Event::Whitespace(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let remote = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the remote server: {e}"));
        let remote_addr = remote
            .local_addr()
            .unwrap_or_else(|e| panic!("remote address: {e}"));
        let secret = "sipp-interop-component-secret";
        let mut cfg = ProxyConfig::new(OUR_DOMAIN, "sipp-interop-dialback-secret");
        cfg.routes
            .insert(REMOTE_DOMAIN.to_owned(), remote_addr.to_string());
        cfg.components.push(bundled_sip::component(secret));
        cfg.component_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let proxy = proxy::start(cfg)
            .await
            .unwrap_or_else(|e| panic!("starting the proxy: {e}"));
        let component_addr = proxy
            .component_addr
            .unwrap_or_else(|| panic!("the proxy has no component listener"));
        let (gateway, sut) =
            bundled_sip::start(component_addr, secret, &std::collections::BTreeMap::new())
                .await
                .unwrap_or_else(|e| panic!("starting the gateway: {e}"));
        let sip_addr = sut
            .udp
            .unwrap_or_else(|| panic!("the gateway has no UDP listener"));
        assert!(sip_addr.ip().is_loopback());

        let xmpp_side = tokio::spawn(receive_one_message(remote));

        let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("scratch dir: {e}"));
        let sip_port = free_udp_port().await.unwrap_or_else(|e| panic!("{e}"));
        let media_port = free_udp_port_pair().await.unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(&sipp);
        cmd.current_dir(scratch.path())
            .arg(sip_addr.to_string())
            .arg("-sf")
            .arg(format!("{FIXTURE_DIR}/message-uac.xml"))
            .args(["-t", "u1", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &sip_port.to_string(), "-bind_local"])
            .args(["-mp", &media_port.to_string()])
            .args(["-m", "1", "-l", "1", "-nostdin"])
            .args(["-timeout", "10s", "-timeout_error", "-trace_err"])
            .args(["-key", "from_user", "romeo"])
            .args(["-key", "sip_domain", BUNDLED_SIP_DOMAIN])
            .args(["-key", "to_uri", &format!("sip:juliet@{REMOTE_DOMAIN}")])
            .args(["-key", "text", TEXT])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = timeout(SIPP_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("sipp did not exit within {SIPP_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("running sipp: {e}"));
        let errors = std::fs::read_dir(scratch.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let report = format!(
            "status {:?}\n--- sipp stdout ---\n{}\n--- sipp stderr ---\n{}\n--- sipp errors ---\n{errors}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "sipp failed:\n{report}");

        let msg = timeout(Duration::from_secs(15), xmpp_side)
            .await
            .unwrap_or_else(|_| panic!("no <message> at the remote server\n{report}"))
            .unwrap_or_else(|e| panic!("remote server task: {e}"))
            .unwrap_or_else(|e| panic!("remote server: {e}\n{report}"));
        assert_eq!(msg.ns, "jabber:server");
        assert_eq!(
            msg.attr("to"),
            Some(format!("juliet@{REMOTE_DOMAIN}").as_str())
        );
        let from = msg.attr("from").unwrap_or_default();
        assert!(
            from.starts_with(&format!("romeo@{BUNDLED_SIP_DOMAIN}")),
            "from = {from:?}"
        );
        let body = msg
            .child("jabber:server", "body")
            .map(Element::text)
            .unwrap_or_default();
        assert_eq!(body.trim(), TEXT, "the <message> was {msg:?}");

        gateway.shutdown().await;
    }
}
