//! The reference edge proxy: a thin tokio driver around the sans-IO sessions of
//! [`crate::xmpp::s2s`] and [`crate::xmpp::component`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fedcheck::proxy::{ProxyConfig, start};
//! let cfg = ProxyConfig::from_file(std::path::Path::new("proxy.toml"))?;
//! let proxy = start(cfg).await?;
//! println!("S2S on {}", proxy.s2s_addr);
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```

pub mod config;
mod server;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

pub use config::{
    ComponentConfig, ConfigError, LimitsConfig, PartnerConfig, ProxyConfig, Rule, TimeoutsConfig,
    TlsFiles,
};
pub use server::{ProxyError, RunningProxy, run, start};
