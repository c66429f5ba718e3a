//! PLACEHOLDER until the capture branch (the pcap/pcapng reader) is merged: DELETE this
//! file at the merge, and the `#[path]` module line naming it in src/main.rs; `fedcheck
//! import` then calls `crate::capture::read` instead.

use fedcheck::capture::Capture;

/// Stands in for the real reader's error.
#[derive(Debug, thiserror::Error)]
#[error("pcap reading not built in this tree")]
pub struct NotBuilt;

/// Always fails: this tree has no pcap reader.
pub fn read(_bytes: &[u8]) -> Result<Capture, NotBuilt> {
    Err(NotBuilt)
}
