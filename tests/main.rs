//! One integration-test binary made of modules, so the crate links once.

mod harness_errors;
mod interop;
mod scenarios;
