//! fedcheck: a conformance harness for SIP <-> XMPP federation gateways.
//!
//! Layout mirrors the architecture (see README "Architecture"):
//! - [`xmpp`]: sans-IO XMPP stream codec and S2S negotiation state machines.
//! - [`sip`]: sans-IO SIP core: message codec, UDP/TCP framing, non-INVITE transactions,
//!   dialogs and subscriptions, builders.
//! - [`translate`]: pure SIP/SIMPLE ↔ XMPP mappings (RFC 7247, RFC 8048, RFC 7572): no I/O.
//! - [`tls`]: test PKI made at run time, RFC 6125 certificate identity checks.
//! - [`proxy`]: the reference edge proxy, a thin tokio driver around [`xmpp`].
//! - [`harness`]: scenario model, loader, runner (actors), matcher, normaliser, reports.
//!   The harness talks to any system under test over the wire only.
//! - [`capture`]: pcap/pcapng captures read into transport flows (sans-IO), for `import`.
//! - [`bench`]: benchmarks printing figures against the performance budget (DESIGN §6).

pub mod bench;
pub mod capture;
pub mod gateway;
pub mod harness;
pub mod import;
pub mod proxy;
pub mod sip;
pub mod tls;
pub mod translate;
pub mod xmpp;
