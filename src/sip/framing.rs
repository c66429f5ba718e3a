//! Message framing over datagram and stream transports (RFC 3261 §18.3, RFC 5626 §3.5.1).
//!
//! - UDP: one message per datagram. Content-Length is optional; without it the body is
//!   the rest of the datagram, with it any bytes beyond the body are discarded, and a
//!   Content-Length larger than what arrived is an error (RFC 3261 §18.3).
//! - TCP/TLS: [`StreamDecoder`] follows tokio-util's `Decoder` contract: `Ok(None)` means
//!   "feed more bytes", `Err` means the stream is dead (every later call repeats the error),
//!   input may be split at any byte and one feed may hold several messages. Content-Length
//!   is mandatory (RFC 3261 §18.3). CRLF keep-alives between messages (RFC 5626 §3.5.1:
//!   a "ping" is CRLFCRLF, a "pong" is CRLF) are consumed and reported.

use super::codec::{Limits, ParseError, find_head_end, parse_head};
use super::message::Message;

/// RFC 5626 §3.5.1 keep-alive, seen between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// CRLFCRLF: the peer expects a pong (a single CRLF) back.
    Ping,
    /// A single CRLF: the answer to our ping.
    Pong,
}

/// What a transport yields: a message or a keep-alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Message(Message),
    Keepalive(Keepalive),
}

/// Parses one UDP datagram (RFC 3261 §18.3). A datagram made only of CRLFs is a
/// keep-alive, as NAT keep-alive senders use on UDP too.
pub fn parse_datagram(datagram: &[u8], limits: &Limits) -> Result<Item, ParseError> {
    if datagram.len() > limits.max_message_bytes {
        return Err(ParseError::MessageTooLarge {
            limit: limits.max_message_bytes,
        });
    }
    match datagram {
        b"\r\n\r\n" => return Ok(Item::Keepalive(Keepalive::Ping)),
        b"\r\n" => return Ok(Item::Keepalive(Keepalive::Pong)),
        _ => {}
    }
    let end = find_head_end(datagram, 0).ok_or(ParseError::Truncated)?;
    let head = parse_head(datagram.get(..end).unwrap_or_default(), limits)?;
    let rest = datagram.get(end..).unwrap_or_default();
    let body = match head.content_length {
        // "If there are additional bytes in the transport packet beyond the end of the
        // body, they MUST be discarded." (RFC 3261 §18.3)
        Some(n) => rest
            .get(..n)
            .ok_or(ParseError::BodyShorterThanContentLength {
                declared: n,
                available: rest.len(),
            })?,
        None => rest,
    };
    Ok(Item::Message(head.into_message(body.to_vec())))
}

/// Incremental decoder for SIP over a byte stream (TCP, TLS).
#[derive(Debug)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
    /// How far the search for the end of the head has got (absolute index in `buf`).
    scanned: usize,
    /// Where the message being decoded starts (== `pos` between messages): what
    /// [`Self::unread`] hands back after a framing error or a cut-off end of stream.
    msg_start: usize,
    state: State,
    limits: Limits,
}

/// What the decoder waits for.
#[derive(Debug)]
enum State {
    /// Between messages: keep-alives or the first byte of a start line.
    ExpectMessage,
    /// Inside a head, looking for CRLFCRLF.
    ExpectHeadEnd,
    /// Head parsed; waiting for `len` body bytes starting at `pos`.
    ExpectBody {
        head: super::codec::Head,
        len: usize,
    },
    /// A framing error killed the stream (tokio-util `Decoder` contract).
    Failed(ParseError),
}

/// Consumed bytes are moved out of the buffer only past this many and half the buffer,
/// so compaction stays amortised linear.
const COMPACT_MIN: usize = 4 * 1024;

/// Buffer capacity kept while no message is pending.
const IDLE_CAPACITY: usize = 8 * 1024;

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl StreamDecoder {
    pub fn new(limits: Limits) -> Self {
        StreamDecoder {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            msg_start: 0,
            state: State::ExpectMessage,
            limits,
        }
    }

    /// Appends bytes read from the stream. Call [`Self::next`] until it returns `Ok(None)`.
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        // Only what lies before the message in progress may go: it is handed back
        // whole by `unread`.
        let done = self.msg_start.min(self.pos);
        if done > COMPACT_MIN && done * 2 > self.buf.len() {
            self.buf.drain(..done);
            self.scanned -= done.min(self.scanned);
            self.pos -= done;
            self.msg_start -= done;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// True while a single CRLF waits at a message boundary: it is a pong unless the next
    /// bytes make it a ping. A driver that sent a ping may treat this as the pong.
    pub fn pending_crlf(&self) -> bool {
        matches!(self.state, State::ExpectMessage) && self.rest() == b"\r\n"
    }

    /// The bytes from the start of the message being decoded to the end of what was fed:
    /// after [`Self::next`] failed, the message the error names and all that followed it;
    /// at end of stream, the message [`Self::finish`] reports as cut off. The decoder
    /// hands them back because a receiver must still answer a bad request with 400
    /// where it can form a response (RFC 3261 §18.3, §21.4.1), which needs its head,
    /// before closing a stream whose framing is lost. Empty between messages.
    pub fn unread(&self) -> &[u8] {
        match self.state {
            State::ExpectMessage => {
                let rest = self.rest();
                if rest.iter().all(|&b| b == b'\r' || b == b'\n') {
                    &[]
                } else {
                    rest
                }
            }
            _ => self.buf.get(self.msg_start..).unwrap_or_default(),
        }
    }

    /// At end of stream: an error if a message was cut off (RFC 3261 §18.3).
    pub fn finish(&self) -> Result<(), ParseError> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::ExpectMessage if self.rest().iter().all(|&b| b == b'\r' || b == b'\n') => Ok(()),
            State::ExpectBody { len, .. } => Err(ParseError::BodyShorterThanContentLength {
                declared: *len,
                available: self.rest().len(),
            }),
            _ => Err(ParseError::Truncated),
        }
    }

    /// What follows the consumed bytes.
    fn rest(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// The next message or keep-alive; `Ok(None)` if more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Item>, ParseError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        match self.step() {
            Ok(item) => Ok(item),
            Err(e) => {
                tracing::debug!(error = %e, "SIP stream framing error");
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn step(&mut self) -> Result<Option<Item>, ParseError> {
        loop {
            match std::mem::replace(&mut self.state, State::ExpectMessage) {
                State::Failed(e) => {
                    self.state = State::Failed(e.clone());
                    return Err(e);
                }
                State::ExpectMessage => {
                    // RFC 3261 §7.5: CRLFs before a start line are ignored on streams;
                    // RFC 5626 §3.5.1 gives them keep-alive meaning.
                    self.msg_start = self.pos;
                    let unread = self.rest();
                    if unread.starts_with(b"\r\n\r\n") {
                        self.pos += 4;
                        self.msg_start = self.pos;
                        return Ok(Some(Item::Keepalive(Keepalive::Ping)));
                    }
                    match unread {
                        [] | [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => return Ok(None),
                        [b'\r', b'\n', ..] => {
                            self.pos += 2;
                            self.msg_start = self.pos;
                            return Ok(Some(Item::Keepalive(Keepalive::Pong)));
                        }
                        [b'\r', ..] | [b'\n', ..] => {
                            return Err(ParseError::BadLineEnding { line: 1 });
                        }
                        _ => {
                            self.scanned = self.pos;
                            self.state = State::ExpectHeadEnd;
                        }
                    }
                }
                State::ExpectHeadEnd => {
                    let from = self.scanned.saturating_sub(3).max(self.pos);
                    match find_head_end(&self.buf, from) {
                        None => {
                            self.scanned = self.buf.len();
                            if self.buf.len() - self.pos > self.limits.max_message_bytes {
                                return Err(ParseError::MessageTooLarge {
                                    limit: self.limits.max_message_bytes,
                                });
                            }
                            self.check_line_endings(from)?;
                            self.state = State::ExpectHeadEnd;
                            return Ok(None);
                        }
                        Some(end) => {
                            if end - self.pos > self.limits.max_message_bytes {
                                return Err(ParseError::MessageTooLarge {
                                    limit: self.limits.max_message_bytes,
                                });
                            }
                            let head = parse_head(
                                self.buf.get(self.pos..end).unwrap_or_default(),
                                &self.limits,
                            )?;
                            let len = head
                                .content_length
                                .ok_or(ParseError::MissingContentLength)?;
                            if (end - self.pos).saturating_add(len) > self.limits.max_message_bytes
                            {
                                return Err(ParseError::MessageTooLarge {
                                    limit: self.limits.max_message_bytes,
                                });
                            }
                            self.pos = end;
                            self.state = State::ExpectBody { head, len };
                        }
                    }
                }
                State::ExpectBody { head, len } => {
                    let Some(body) = self.buf.get(self.pos..self.pos.saturating_add(len)) else {
                        self.state = State::ExpectBody { head, len };
                        return Ok(None);
                    };
                    let message = head.into_message(body.to_vec());
                    self.pos += len;
                    self.msg_start = self.pos;
                    if self.pos == self.buf.len() {
                        self.buf.clear();
                        self.pos = 0;
                        self.msg_start = 0;
                        // Idle streams stay small after one large message.
                        if self.buf.capacity() > IDLE_CAPACITY {
                            self.buf.shrink_to(IDLE_CAPACITY);
                        }
                    }
                    return Ok(Some(Item::Message(message)));
                }
            }
        }
    }

    /// While a head is incomplete, a bare LF already seen means the peer does not frame
    /// with CRLF; fail now rather than wait for a CRLFCRLF that never comes.
    fn check_line_endings(&self, from: usize) -> Result<(), ParseError> {
        let region = self.buf.get(from..).unwrap_or_default();
        for (i, &b) in region.iter().enumerate() {
            let abs = from + i;
            if b == b'\n' && (abs == 0 || self.buf.get(abs - 1) != Some(&b'\r')) {
                let line = 1 + self
                    .buf
                    .get(self.pos..abs)
                    .unwrap_or_default()
                    .iter()
                    .filter(|&&c| c == b'\n')
                    .count();
                return Err(ParseError::BadLineEnding { line });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Method, Request, Response};
    use rstest::rstest;

    const MESSAGE: &str = concat!(
        "MESSAGE sip:juliet@xmpp.test SIP/2.0\r\n",
        "Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK776sgdkse\r\n",
        "Max-Forwards: 70\r\n",
        "From: <sip:romeo@sip.test>;tag=49583\r\n",
        "To: <sip:juliet@xmpp.test>\r\n",
        "Call-ID: asd88asd77a@127.0.0.1\r\n",
        "CSeq: 1 MESSAGE\r\n",
        "Content-Type: text/plain\r\n",
        "Content-Length: 18\r\n",
        "\r\n",
        "Watson, come here."
    );
    const OK: &str = concat!(
        "SIP/2.0 200 OK\r\n",
        "Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK776sgdkse;received=127.0.0.1\r\n",
        "From: <sip:romeo@sip.test>;tag=49583\r\n",
        "To: <sip:juliet@xmpp.test>;tag=ab30317f\r\n",
        "Call-ID: asd88asd77a@127.0.0.1\r\n",
        "CSeq: 1 MESSAGE\r\n",
        "Content-Length: 0\r\n",
        "\r\n"
    );
    const PIDF: &str = concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n",
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:juliet@xmpp.test\">",
        "<tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>"
    );

    fn notify() -> String {
        format!(
            concat!(
                "NOTIFY sip:romeo@127.0.0.1:5060;transport=tcp SIP/2.0\r\n",
                "v: SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bKnotify1\r\n",
                "Max-Forwards: 70\r\n",
                "f: <sip:juliet@xmpp.test>;tag=ab30317f\r\n",
                "t: <sip:romeo@sip.test>;tag=49583\r\n",
                "i: sub1@127.0.0.2\r\n",
                "CSeq: 2 NOTIFY\r\n",
                "o: presence\r\n",
                "Subscription-State: active;expires=599\r\n",
                "m: <sip:juliet@127.0.0.2:5060;transport=tcp>\r\n",
                "c: application/pidf+xml\r\n",
                "l: {}\r\n",
                "\r\n",
                "{}"
            ),
            PIDF.len(),
            PIDF
        )
    }

    fn recorded_stream() -> Vec<u8> {
        format!("{MESSAGE}{OK}\r\n\r\n{}", notify()).into_bytes()
    }

    fn drain(d: &mut StreamDecoder, out: &mut Vec<Item>) {
        while let Some(item) = d.next().expect("valid stream") {
            out.push(item);
        }
    }

    fn decode_all(chunks: &[&[u8]]) -> Vec<Item> {
        let mut d = StreamDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c);
            drain(&mut d, &mut out);
        }
        assert_eq!(d.finish(), Ok(()));
        out
    }

    #[test]
    fn recorded_stream_in_one_feed() {
        let items = decode_all(&[&recorded_stream()]);
        assert_eq!(items.len(), 4);
        let Item::Message(Message::Request(req)) = &items[0] else {
            panic!("first item is the MESSAGE: {items:?}");
        };
        assert_eq!(req.method, Method::Message);
        assert_eq!(req.body, b"Watson, come here.");
        assert!(matches!(
            &items[1],
            Item::Message(Message::Response(Response { status: 200, .. }))
        ));
        assert_eq!(items[2], Item::Keepalive(Keepalive::Ping));
        let Item::Message(Message::Request(Request { method, body, .. })) = &items[3] else {
            panic!("last item is the NOTIFY: {items:?}");
        };
        assert_eq!(*method, Method::Notify);
        assert_eq!(body.as_slice(), PIDF.as_bytes());
    }

    #[test]
    fn every_two_way_split_gives_the_same_items() {
        let stream = recorded_stream();
        let whole = decode_all(&[&stream]);
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            assert_eq!(decode_all(&[a, b]), whole, "split at {i}");
        }
    }

    #[test]
    fn byte_at_a_time_gives_the_same_items() {
        let stream = recorded_stream();
        let whole = decode_all(&[&stream]);
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(&chunks), whole);
        let chunks: Vec<&[u8]> = stream.chunks(7).collect();
        assert_eq!(decode_all(&chunks), whole);
    }

    #[test]
    fn pong_waits_for_the_next_byte() {
        let mut d = StreamDecoder::default();
        d.feed(b"\r\n");
        assert_eq!(d.next(), Ok(None));
        assert!(d.pending_crlf());
        d.feed(OK.as_bytes());
        assert_eq!(d.next(), Ok(Some(Item::Keepalive(Keepalive::Pong))));
        assert!(matches!(d.next(), Ok(Some(Item::Message(_)))));
        assert_eq!(d.next(), Ok(None));
    }

    #[rstest]
    #[case::missing_length(
        "OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n",
        ParseError::MissingContentLength
    )]
    #[case::bare_lf_start("\nOPTIONS sip:a@b SIP/2.0\r\n", ParseError::BadLineEnding { line: 1 })]
    #[case::bare_lf_in_head("OPTIONS sip:a@b SIP/2.0\nCall-ID: x\n", ParseError::BadLineEnding { line: 1 })]
    #[case::stray_cr("\r\r\n", ParseError::BadLineEnding { line: 1 })]
    #[case::bad_start(
        "HELLO\r\n\r\n",
        ParseError::BadStartLine(crate::sip::codec::StartLineError::MissingPart)
    )]
    fn stream_errors_kill_the_stream(#[case] input: &str, #[case] e: ParseError) {
        let mut d = StreamDecoder::default();
        d.feed(input.as_bytes());
        assert_eq!(d.next(), Err(e.clone()));
        assert_eq!(
            d.unread(),
            input.as_bytes(),
            "the bad message is handed back"
        );
        d.feed(OK.as_bytes());
        assert_eq!(d.next(), Err(e.clone()), "the stream stays dead");
        assert_eq!(d.finish(), Err(e));
    }

    /// A good message, then a bad one, in one feed: the good one comes out, then the
    /// error, and `unread` is the bad message with everything after it (RFC 3261 §18.3:
    /// the receiver answers it with 400 from its head before closing).
    #[rstest]
    #[case::garbage_content_length(
        "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nContent-Length: ten\r\n\r\nbody"
    )]
    #[case::negative_content_length("MESSAGE sip:a@b SIP/2.0\r\nContent-Length: -3\r\n\r\n")]
    #[case::missing_content_length("MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nbody")]
    #[case::garbage_start_line("\u{1}\u{2} nonsense\r\nCall-ID: x\r\n\r\n")]
    #[case::huge_header(&format!("MESSAGE sip:a@b SIP/2.0\r\nX-Big: {}\r\nl: 0\r\n\r\n", "x".repeat(9000)))]
    #[case::bare_lf("MESSAGE sip:a@b SIP/2.0\nCall-ID: x\n")]
    fn errors_hand_back_the_bad_message(#[case] bad: &str) {
        let after = "OPTIONS sip:c@d SIP/2.0\r\nl: 0\r\n\r\n";
        let mut d = StreamDecoder::default();
        d.feed(format!("\r\n\r\n{OK}{bad}{after}").as_bytes());
        assert_eq!(d.next(), Ok(Some(Item::Keepalive(Keepalive::Ping))));
        assert!(matches!(
            d.next(),
            Ok(Some(Item::Message(Message::Response(_))))
        ));
        assert!(d.next().is_err());
        let unread = d.unread();
        assert!(
            unread.starts_with(bad.as_bytes()),
            "{:?}",
            String::from_utf8_lossy(unread)
        );
        assert!(unread.ends_with(after.as_bytes()));
        // Bytes fed after the error are not kept: the stream is dead.
        d.feed(b"more");
        assert!(d.unread().ends_with(after.as_bytes()));
    }

    #[test]
    fn unread_is_empty_between_messages_and_whole_while_one_is_cut_off() {
        let mut d = StreamDecoder::default();
        assert_eq!(d.unread(), b"");
        d.feed(OK.as_bytes());
        d.feed(b"\r\n");
        assert!(matches!(d.next(), Ok(Some(Item::Message(_)))));
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.unread(), b"", "a pending CRLF is no message");
        let cut = &MESSAGE.as_bytes()[..MESSAGE.len() - 3];
        let mut d = StreamDecoder::default();
        d.feed(cut);
        assert_eq!(d.next(), Ok(None));
        assert!(d.finish().is_err());
        assert_eq!(d.unread(), cut, "head and partial body, not just the body");
    }

    #[test]
    fn compaction_keeps_the_message_in_progress() {
        // 100 responses and the head of a MESSAGE in one feed: the responses come out,
        // the head is parsed (the read position moves past it) and the body is awaited.
        let head_end = MESSAGE.find("\r\n\r\n").map_or(0, |i| i + 4);
        let mut d = StreamDecoder::default();
        let mut first = OK.repeat(100);
        first.push_str(&MESSAGE[..head_end + 2]);
        d.feed(first.as_bytes());
        let mut out = Vec::new();
        drain(&mut d, &mut out);
        assert_eq!(out.len(), 100);
        // The next feed compacts the consumed responses, never the MESSAGE's head.
        d.feed(&MESSAGE.as_bytes()[head_end + 2..MESSAGE.len() - 1]);
        assert_eq!(d.next(), Ok(None));
        assert!(d.buf.len() < MESSAGE.len(), "compacted");
        assert_eq!(d.unread(), &MESSAGE.as_bytes()[..MESSAGE.len() - 1]);
        d.feed(&MESSAGE.as_bytes()[MESSAGE.len() - 1..]);
        assert!(matches!(d.next(), Ok(Some(Item::Message(_)))));
        assert_eq!(d.unread(), b"");
    }

    #[test]
    fn stream_size_limits() {
        let limits = Limits {
            max_message_bytes: 100,
            ..Limits::default()
        };
        // A head that never ends.
        let mut d = StreamDecoder::new(limits);
        d.feed(b"OPTIONS sip:a@b SIP/2.0\r\n");
        assert_eq!(d.next(), Ok(None));
        d.feed(&[b'X'; 100]);
        assert_eq!(d.next(), Err(ParseError::MessageTooLarge { limit: 100 }));
        // A head that declares a body over the limit fails before the body arrives.
        let mut d = StreamDecoder::new(limits);
        d.feed(b"OPTIONS sip:a@b SIP/2.0\r\nl: 90\r\n\r\n");
        assert_eq!(d.next(), Err(ParseError::MessageTooLarge { limit: 100 }));
        // A Content-Length near usize::MAX must not overflow the arithmetic.
        let mut d = StreamDecoder::default();
        d.feed(format!("OPTIONS sip:a@b SIP/2.0\r\nl: {}\r\n\r\n", usize::MAX).as_bytes());
        assert_eq!(d.next(), Err(ParseError::MessageTooLarge { limit: 65_536 }));
        let dgram = format!("OPTIONS sip:a@b SIP/2.0\r\nl: {}\r\n\r\nx", usize::MAX);
        assert!(matches!(
            parse_datagram(dgram.as_bytes(), &Limits::default()),
            Err(ParseError::BodyShorterThanContentLength { .. })
        ));
    }

    #[test]
    fn truncated_stream_is_reported_at_finish() {
        let mut d = StreamDecoder::default();
        d.feed(&MESSAGE.as_bytes()[..40]);
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.finish(), Err(ParseError::Truncated));
        let mut d = StreamDecoder::default();
        d.feed(&MESSAGE.as_bytes()[..MESSAGE.len() - 3]);
        assert_eq!(d.next(), Ok(None));
        assert_eq!(
            d.finish(),
            Err(ParseError::BodyShorterThanContentLength {
                declared: 18,
                available: 15
            })
        );
    }

    #[test]
    fn long_streams_compact_their_buffer() {
        let mut d = StreamDecoder::default();
        let mut n = 0;
        for _ in 0..500 {
            d.feed(OK.as_bytes());
            d.feed(&OK.as_bytes()[..10]);
            let mut out = Vec::new();
            drain(&mut d, &mut out);
            d.feed(&OK.as_bytes()[10..]);
            drain(&mut d, &mut out);
            n += out.len();
        }
        assert_eq!(n, 1000);
        assert!(d.buf.len() < 3 * COMPACT_MIN);
    }

    #[test]
    fn idle_buffer_is_released_after_a_large_message() {
        let body = "x".repeat(40_000);
        let big = format!("MESSAGE sip:a@b SIP/2.0\r\nl: {}\r\n\r\n{body}", body.len());
        let mut d = StreamDecoder::default();
        d.feed(big.as_bytes());
        assert!(matches!(d.next(), Ok(Some(Item::Message(_)))));
        assert!(d.buf.capacity() <= IDLE_CAPACITY);
    }

    #[test]
    fn udp_body_is_the_rest_without_content_length() {
        let dgram = b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nhello\r\n";
        let Ok(Item::Message(m)) = parse_datagram(dgram, &Limits::default()) else {
            panic!("parses");
        };
        assert_eq!(m.body(), b"hello\r\n");
    }

    #[test]
    fn udp_extra_bytes_beyond_content_length_are_discarded() {
        let dgram = b"MESSAGE sip:a@b SIP/2.0\r\nl: 3\r\n\r\nhello";
        let Ok(Item::Message(m)) = parse_datagram(dgram, &Limits::default()) else {
            panic!("parses");
        };
        assert_eq!(m.body(), b"hel");
    }

    #[rstest]
    #[case::short_body(&b"MESSAGE sip:a@b SIP/2.0\r\nl: 9\r\n\r\nhello"[..], ParseError::BodyShorterThanContentLength { declared: 9, available: 5 })]
    #[case::truncated(&b"MESSAGE sip:a@b SIP/2.0\r\nl: 9\r\n"[..], ParseError::Truncated)]
    #[case::empty(&b""[..], ParseError::Truncated)]
    #[case::too_large(&[b'A'; 70_000][..], ParseError::MessageTooLarge { limit: 65_536 })]
    fn udp_errors(#[case] dgram: &[u8], #[case] e: ParseError) {
        assert_eq!(parse_datagram(dgram, &Limits::default()), Err(e));
    }

    #[test]
    fn udp_keepalives() {
        let l = Limits::default();
        assert_eq!(
            parse_datagram(b"\r\n\r\n", &l),
            Ok(Item::Keepalive(Keepalive::Ping))
        );
        assert_eq!(
            parse_datagram(b"\r\n", &l),
            Ok(Item::Keepalive(Keepalive::Pong))
        );
    }
}
