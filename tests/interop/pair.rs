//! The bundled pair as the real-peer tests start it: the reference proxy (serving
//! [`OUR_DOMAIN`], with the gateway as its XEP-0114 component for
//! [`BUNDLED_SIP_DOMAIN`]) and the reference gateway, both in-process on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use fedcheck::gateway::RunningGateway;
use fedcheck::harness::bundled_sip::{self, BUNDLED_SIP_DOMAIN};
use fedcheck::harness::sip_actor::{SipRoute, SipTransport};
use fedcheck::proxy::{self, ProxyConfig, RunningProxy};

/// The proxy's own XMPP domain.
pub const OUR_DOMAIN: &str = "fedcheck.test";
const COMPONENT_SECRET: &str = "interop-component-secret";
const DIALBACK_SECRET: &str = "interop-dialback-secret";

/// A running proxy + gateway.
pub struct Pair {
    pub proxy: RunningProxy,
    pub gateway: RunningGateway,
    /// The gateway's SIP UDP listener.
    pub sip_udp: SocketAddr,
}

impl Pair {
    /// Start the proxy with static S2S `routes` (remote domain → address, no DNS) and the
    /// gateway with SIP next hops `sip_routes` (a SIP user `user@domain` or a whole domain
    /// → UDP address), and wait for the component link.
    pub async fn start(
        routes: &[(&str, SocketAddr)],
        sip_routes: &[(&str, SocketAddr)],
    ) -> Result<Self, String> {
        let mut cfg = ProxyConfig::new(OUR_DOMAIN, DIALBACK_SECRET);
        for (domain, addr) in routes {
            cfg.routes.insert((*domain).to_owned(), addr.to_string());
        }
        cfg.components
            .push(bundled_sip::component(COMPONENT_SECRET));
        cfg.component_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let proxy = proxy::start(cfg)
            .await
            .map_err(|e| format!("starting the proxy: {e}"))?;
        let component_addr = proxy
            .component_addr
            .ok_or("the proxy has no component listener")?;
        let sip: BTreeMap<String, SipRoute> = sip_routes
            .iter()
            .map(|(k, addr)| {
                let r = SipRoute {
                    addr: *addr,
                    transport: SipTransport::Udp,
                };
                ((*k).to_owned(), r)
            })
            .collect();
        let (gateway, sut) = bundled_sip::start(component_addr, COMPONENT_SECRET, &sip)
            .await
            .map_err(|e| format!("starting the gateway: {e}"))?;
        let sip_udp = sut.udp.ok_or("the gateway has no UDP listener")?;
        if !sip_udp.ip().is_loopback() || !proxy.s2s_addr.ip().is_loopback() {
            return Err(format!(
                "the pair listens off loopback: {sip_udp}, {}",
                proxy.s2s_addr
            ));
        }
        Ok(Self {
            proxy,
            gateway,
            sip_udp,
        })
    }

    /// The SIP users' domain (the gateway's component domain).
    pub fn sip_domain(&self) -> &'static str {
        BUNDLED_SIP_DOMAIN
    }

    pub async fn stop(self) {
        self.gateway.shutdown().await;
        self.proxy.shutdown().await;
    }
}
