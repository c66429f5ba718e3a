//! Feed arbitrary bytes to the capture reader.
//!
//! Run with `cargo +nightly fuzz run capture_read` from the crate root. Seed the corpus with
//! the files in `tests/data/capture/` for coverage beyond the magic numbers.
//!
//! Oracles beyond "never panics":
//! - reading is deterministic;
//! - every flow is well formed: `tls_from` indexes a chunk, TCP chunks are never empty,
//!   UDP flows stay open;
//! - when no two flows share a pair of addresses (else a later SYN may land inside an
//!   earlier connection's packets) and none talks to itself, the flows written back by
//!   the writer read back with the same bytes per side.
#![no_main]

use fedcheck::capture::{Side, Transport, WriteOptions, read, write_pcapng};
use libfuzzer_sys::fuzz_target;

fn side_bytes(f: &fedcheck::capture::Flow, side: Side) -> Vec<u8> {
    f.chunks.iter().filter(|c| c.from == side).flat_map(|c| c.bytes.iter().copied()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(capture) = read(data) else {
        assert_eq!(read(data).ok(), None, "errors are deterministic");
        return;
    };
    assert_eq!(read(data).as_ref(), Ok(&capture), "reading is deterministic");
    for f in &capture.flows {
        if let Some(i) = f.tls_from {
            assert!(i < f.chunks.len());
        }
        match f.transport {
            Transport::Tcp => assert!(f.chunks.iter().all(|c| !c.bytes.is_empty())),
            Transport::Udp => assert_eq!(f.end, fedcheck::capture::FlowEnd::Open),
        }
    }
    let mut pairs: Vec<_> = capture
        .flows
        .iter()
        .map(|f| (f.transport == Transport::Tcp, f.initiator.min(f.responder), f.initiator.max(f.responder)))
        .collect();
    pairs.sort();
    pairs.dedup();
    if pairs.len() != capture.flows.len() || capture.flows.iter().any(|f| f.initiator == f.responder) {
        return;
    }
    let Ok(file) = write_pcapng(&capture.flows, &WriteOptions::default()) else { return };
    let back = read(&file).expect("the writer's output reads");
    assert_eq!(back.flows.len(), capture.flows.len());
    let mut want: Vec<_> = capture
        .flows
        .iter()
        .map(|f| (f.transport == Transport::Tcp, f.initiator, f.responder, side_bytes(f, Side::Initiator), side_bytes(f, Side::Responder)))
        .collect();
    let mut got: Vec<_> = back
        .flows
        .iter()
        .map(|f| (f.transport == Transport::Tcp, f.initiator, f.responder, side_bytes(f, Side::Initiator), side_bytes(f, Side::Responder)))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
});
