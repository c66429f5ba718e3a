//! Prosody 0.12 (Debian package `prosody`) as a real federation peer: the
//! launcher lives in `fedcheck::harness::peers::prosody` (the `process` target
//! shares its template and launcher); these tests drive it against the bundled
//! proxy, against itself, and against a fake peer.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

pub use fedcheck::harness::peers::prosody::{Direction, Prosody, ProsodyBin, ProsodyConfig};

use super::require_peer;

/// [`ProsodyBin::find`] under the interop policy: fails the test under
/// `CI=true`, otherwise prints a skip message and returns `None`.
pub fn require_prosody() -> Option<ProsodyBin> {
    require_peer(
        ProsodyBin::find(),
        "Prosody (`prosody` and `prosodyctl`)",
        "apt-get install prosody, or set FEDCHECK_PROSODY",
    )
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

    /// The acceptance test: Prosody (`prosody.test`) and the bundled
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
        let Some(bin) = require_prosody() else {
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
        let Some(bin) = require_prosody() else {
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
        let Some(bin) = require_prosody() else {
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
