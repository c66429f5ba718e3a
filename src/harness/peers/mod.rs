//! Launchers for real third-party peers, shared by the interop tests and the `process`
//! target (both start the SUT through [`super::process`]).

pub mod prosody;
