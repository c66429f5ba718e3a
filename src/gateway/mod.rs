//! The reference SIP/SIMPLE ⇄ XMPP gateway (DESIGN.md §1, "front-end role").
//!
//! An XEP-0114 component of the proxy on one side, a SIP endpoint (UDP and TCP) on the
//! other. All protocol and mapping logic lives in the sans-IO [`GatewayCore`], built on
//! [`crate::translate`] (RFC 7247 addresses and errors, RFC 8048 presence, RFC 7572 IM)
//! and [`crate::sip`] (codec, transactions, dialogs); the tokio driver only moves bytes
//! and time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fedcheck::gateway::{GatewayConfig, start};
//! let cfg = GatewayConfig::from_file(std::path::Path::new("gateway.toml"))?;
//! let gw = start(cfg).await?;
//! println!("SIP on udp {} / tcp {}", gw.sip_udp_addr, gw.sip_tcp_addr);
//! gw.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Requirements covered (see [`engine`] for the choices made where the RFCs leave room):
//! ARCH-04/05/06/07, IM-01/02/05..09/11, ERR-01..09 (through `translate`), PSUB-01..03,
//! -05..19 (through `translate::subscription`), PNOT-01..06, -08..11, PRB-02, -03, -05.

pub mod config;
mod driver;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod sip_input;
#[cfg(test)]
mod tests;

pub use config::{ConfigError, GatewayConfig, Rule, SipRoutes, SipTarget, Transport};
pub use driver::{GatewayError, RunningGateway, run, start};
pub use engine::{GatewayCore, Output};
