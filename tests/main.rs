//! The single integration-test binary (one crate link for all modules).

mod interop;
