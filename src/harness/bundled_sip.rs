//! The bundled pair's SIP side: the reference gateway ([`crate::gateway`]) as the proxy's
//! XEP-0114 component, started per scenario that declares SIP actors, with its next hops
//! pointing at the actors' sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::load::{ActorKind, Scenario};
use super::sip_actor::{SipRoute, SipSut};
use crate::gateway::{self, GatewayConfig, RunningGateway};
use crate::proxy::ComponentConfig;

/// The gateway's component domain, which is also the SIP users' domain (`sip:alice@D` ↔
/// `alice@D`, RFC 7247 §6): SIP actors of a scenario against the bundled pair live here.
pub const BUNDLED_SIP_DOMAIN: &str = "sip.sut.test";

/// The bundled gateway's `message_error_window` (the same as the Prosody-component target's).
pub const MESSAGE_ERROR_WINDOW: Duration = Duration::from_secs(1);

/// Whether the scenario needs the gateway.
pub fn wanted(scenario: &Scenario) -> bool {
    scenario
        .actors
        .iter()
        .any(|a| matches!(a.kind, ActorKind::Sip(_)))
}

/// The proxy's side of the gateway's component link.
pub fn component(secret: &str) -> ComponentConfig {
    ComponentConfig {
        domain: BUNDLED_SIP_DOMAIN.to_string(),
        secret: secret.to_string(),
    }
}

/// Why the bundled gateway could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    #[error(
        "the bundled gateway did not complete its component handshake with the proxy within 5 s"
    )]
    NotLinked,
}

/// Start the gateway against the proxy's component port; `routes` are the actors' sockets.
pub async fn start(
    component_addr: SocketAddr,
    secret: &str,
    routes: &BTreeMap<String, SipRoute>,
) -> Result<(RunningGateway, SipSut), StartError> {
    let mut cfg = GatewayConfig::new(BUNDLED_SIP_DOMAIN, secret, component_addr);
    for (domain, r) in routes {
        let t = match r.transport {
            super::sip_actor::SipTransport::Udp => "udp",
            super::sip_actor::SipTransport::Tcp => "tcp",
        };
        cfg.sip_routes
            .insert(domain.clone(), format!("{};transport={t}", r.addr));
    }
    // Short link back-off: the gateway connects while the proxy is already up, but a
    // scenario must not wait out a long retry if the first attempt races.
    cfg.timers.reconnect_min = Duration::from_millis(50);
    cfg.timers.reconnect_max = Duration::from_millis(400);
    // The wait for an XMPP error before a MESSAGE is answered 200 (RFC 7247 §7.1): the
    // error scenarios answer after a fresh dialback, which on a loaded machine (the test
    // suite on two cores) can take longer than the 250 ms default. Well below Timer F and
    // the scenarios' 2 s expect timeout, so a plain MESSAGE still gets its 200 in time.
    cfg.timers.message_error_window = MESSAGE_ERROR_WINDOW;
    let gw = gateway::start(cfg).await?;
    // The scenario may start with a stanza for the gateway's domain: it must not race the
    // component handshake (the proxy would bounce it as service-unavailable).
    if !gw.wait_linked(Duration::from_secs(5)).await {
        gw.shutdown().await;
        return Err(StartError::NotLinked);
    }
    let sut = SipSut {
        udp: Some(gw.sip_udp_addr),
        tcp: Some(gw.sip_tcp_addr),
    };
    Ok((gw, sut))
}
