//! One integration-test binary made of modules, so the crate links once.

mod cli;
mod harness_errors;
mod import;
mod interop;
mod process_target;
mod reports;
mod scenarios;
mod targets;
