//! Feed arbitrary bytes to the stream decoder, in arbitrary splits.
//!
//! Run with `cargo +nightly fuzz run decoder` from the crate root.
//!
//! Oracles beyond "never panics":
//! - the events (with whitespace runs merged, since a run is reported as it arrives) and the
//!   final error are the same whether the input comes in one piece or in the fuzzed splits;
//! - the raw bytes of the returned units concatenate to a prefix of the input;
//! - every decoded element survives serialise → parse unchanged;
//! - the buffer never holds much more than one stanza's worth of unread bytes.
#![no_main]

use fedcheck::xmpp::codec::{CodecError, Decoder, Event, Limits, parse_element_with};
use libfuzzer_sys::fuzz_target;

struct Run {
    events: Vec<Event>,
    raw: Vec<u8>,
    error: Option<CodecError>,
}

fn run(data: &[u8], sizes: &[usize], limits: Limits, check_round_trip: bool) -> Run {
    let mut d = Decoder::new(limits);
    let mut out = Run { events: Vec::new(), raw: Vec::new(), error: None };
    let mut pos = 0;
    let mut i = 0;
    loop {
        loop {
            match d.next_event() {
                Ok(Some(ev)) => {
                    out.raw.extend_from_slice(d.last_raw());
                    if check_round_trip {
                        if let (Event::Element(e), Some(ctx)) = (&ev, d.context()) {
                            let xml = e.to_xml(ctx);
                            let back = parse_element_with(&xml, ctx, &limits);
                            assert_eq!(back.as_ref(), Ok(e), "round trip of {xml}");
                        }
                    }
                    match (&ev, out.events.last_mut()) {
                        (Event::Whitespace(n), Some(Event::Whitespace(m))) => *m += n,
                        _ => out.events.push(ev),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.next_event(), Err(e.clone()), "errors are sticky");
                    out.error = Some(e);
                    return out;
                }
            }
        }
        if pos >= data.len() {
            return out;
        }
        let n = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(1).max(1);
        let end = (pos + n).min(data.len());
        if let Some(chunk) = data.get(pos..end) {
            d.feed(chunk);
        }
        pos = end;
        i += 1;
        assert!(d.buffered() <= limits.max_stanza_bytes + 64 * 1024 + n);
    }
}

fuzz_target!(|data: &[u8]| {
    // The first four bytes choose the split sizes; the rest is the stream.
    let (ctl, input) = data.split_at(data.len().min(4));
    let sizes: Vec<usize> = ctl.iter().map(|b| usize::from(b % 32) + 1).collect();
    let limits = Limits { max_stanza_bytes: 16 * 1024, max_depth: 16 };
    let whole = run(input, &[input.len().max(1)], limits, true);
    let split = run(input, &sizes, limits, false);
    assert_eq!(whole.events, split.events);
    assert_eq!(whole.error, split.error);
    assert_eq!(whole.raw, split.raw);
    assert!(input.starts_with(&whole.raw));
});
