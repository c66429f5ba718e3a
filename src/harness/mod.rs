//! The conformance harness: scenario model → load → run (actors against a target) →
//! matcher → normalise → report. It talks to a system under test over the wire only:
//! nothing here reaches into the bundled proxy's internals (the bundled target only
//! starts it with a configuration and reads back its listening addresses).

pub mod bundled_sip;
pub mod catalogue;
pub mod container;
pub mod load;
pub mod matrix;
pub mod model;
pub mod normalise;
pub mod peers;
pub mod process;
pub mod report;
pub mod run;
pub mod sinks;
pub mod sip_actor;
pub mod sip_match;
pub mod suite;
pub mod target;
pub mod template;
pub mod tls_io;
pub mod transcript;
pub mod verdict;
pub mod waivers;
