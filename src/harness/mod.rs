//! The conformance harness: scenario model → load → run (actors against a target) →
//! matcher → normalise → report. It talks to a system under test over the wire only.

pub mod catalogue;
pub mod template;
pub mod transcript;
pub mod load;
pub mod model;
pub mod normalise;
