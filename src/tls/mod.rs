//! TLS for S2S streams (RFC 6120 §5, §13.7; RFC 7590; XEP-0178), shared by the bundled proxy
//! and the harness's simulated servers.
//!
//! - [`pki`]: a test CA and leaf certificates made at run time (fixtures that never expire).
//! - [`identity`]: pure certificate checks (chain, validity, EKU, RFC 6125 identities)
//!   giving a [`CertVerdict`] that the sans-IO sessions act on.
//! - [`config`]: rustls server and client configurations (TLS 1.2+, ALPN `xmpp-server`,
//!   client certificates requested and judged by [`identity`], not by rustls).
//!
//! Crypto is rustls with the `ring` provider; nothing here opens a socket or reads a clock
//! except where a caller passes `now`.

pub mod config;
mod der;
pub mod identity;
pub mod pki;

pub use config::{
    ALPN_XMPP_SERVER, TlsConfigError, TlsIdentity, TlsMaterial, TlsSessionInfo, TlsSettings,
};
pub use der::DerError;
pub use identity::{CertInfo, CertVerdict, IdKind, Identity, PeerRole, Problem, verify_peer};
pub use pki::{Eku, Leaf, LeafSpec, PkiError, TestCa};
