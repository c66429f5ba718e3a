//! A minimal DER reader and writer (ITU-T X.690 §8, §10), just enough for what rustls and
//! webpki do not expose: reading the subjectAltName otherNames XMPP uses (SRV-ID,
//! XmppAddr), the EKU list, the validity window and the subject CN; and writing those
//! otherNames into test certificates (rcgen only writes UTF8String otherNames, SRV-ID is an
//! IA5String, RFC 4985 §2).
//!
//! The reader never panics and never reads past its slice: every length is checked with
//! `get`/`split_at_checked`, so it can face certificates from the network.

/// Universal and context tags used here (X.690 §8.1.2).
pub(crate) mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const OCTET_STRING: u8 = 0x04;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[0]` constructed (EXPLICIT, or IMPLICIT of a constructed type).
    pub const CTX0_CONSTRUCTED: u8 = 0xa0;
    /// `[3]` constructed: the extensions of a TBSCertificate (RFC 5280 §4.1).
    pub const CTX3_CONSTRUCTED: u8 = 0xa3;
    /// `[2]` primitive: dNSName in GeneralName (RFC 5280 §4.2.1.6).
    pub const CTX2_PRIMITIVE: u8 = 0x82;
}

/// Why DER could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    #[error("truncated DER")]
    Truncated,
    #[error("unsupported DER length form")]
    BadLength,
    #[error("unexpected DER tag {found:#04x}, wanted {wanted:#04x}")]
    UnexpectedTag { wanted: u8, found: u8 },
}

/// A cursor over a sequence of TLVs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Read one TLV: its tag and its content. Only single-byte tags (all X.509 uses) and
    /// definite lengths up to 4 bytes (DER forbids the indefinite form, X.690 §10.1).
    pub fn read_any(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&t, rest) = self.rest.split_first().ok_or(DerError::Truncated)?;
        if t & 0x1f == 0x1f {
            return Err(DerError::BadLength); // multi-byte tag: not used by X.509
        }
        let (&l0, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let len = if l0 < 0x80 {
            usize::from(l0)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 || n > 4 {
                return Err(DerError::BadLength);
            }
            let (lb, r) = rest.split_at_checked(n).ok_or(DerError::Truncated)?;
            rest = r;
            lb.iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let (content, rest) = rest.split_at_checked(len).ok_or(DerError::Truncated)?;
        self.rest = rest;
        Ok((t, content))
    }

    /// Read one TLV that must carry `wanted`.
    pub fn read(&mut self, wanted: u8) -> Result<&'a [u8], DerError> {
        let (t, c) = self.read_any()?;
        if t != wanted {
            return Err(DerError::UnexpectedTag { wanted, found: t });
        }
        Ok(c)
    }

    /// Read the TLV only if it carries `wanted` (OPTIONAL / DEFAULT fields).
    pub fn read_optional(&mut self, wanted: u8) -> Result<Option<&'a [u8]>, DerError> {
        if self.peek_tag() == Some(wanted) {
            self.read(wanted).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Encode one TLV (X.690 §8.1.3: short length form below 128, long form above).
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let sig = bytes.get(skip..).unwrap_or(&[]);
        out.push(0x80 | sig.len() as u8);
        out.extend_from_slice(sig);
    }
    out.extend_from_slice(content);
    out
}

/// Encoded OID content bytes (without tag and length) for arcs `a.b.c…` (X.690 §8.19).
pub(crate) fn oid_content(arcs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        [a] => (a * 40, &[][..]),
        [] => return out,
    };
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        let mut chunk = Vec::new();
        let mut v = arc;
        chunk.push((v & 0x7f) as u8);
        v >>= 7;
        while v > 0 {
            chunk.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        chunk.reverse();
        out.extend_from_slice(&chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_lengths() {
        for n in [0usize, 1, 127, 128, 255, 256, 70000] {
            let content = vec![7u8; n];
            let enc = tlv(tag::OCTET_STRING, &content);
            let mut r = Reader::new(&enc);
            assert_eq!(r.read(tag::OCTET_STRING), Ok(&content[..]));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn truncated_and_bad_input_never_panic() {
        let enc = tlv(tag::SEQUENCE, &[1, 2, 3, 4, 5]);
        for cut in 0..enc.len() {
            let mut r = Reader::new(&enc[..cut]);
            assert!(r.read_any().is_err(), "cut {cut}");
        }
        assert_eq!(
            Reader::new(&[0x30, 0x80]).read_any(),
            Err(DerError::BadLength)
        );
        assert_eq!(
            Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).read_any(),
            Err(DerError::BadLength)
        );
        assert_eq!(
            Reader::new(&[0x1f, 0x01]).read_any(),
            Err(DerError::BadLength)
        );
        let mut r = Reader::new(&[0x02, 0x01, 0x05]);
        assert_eq!(
            r.read(tag::SEQUENCE),
            Err(DerError::UnexpectedTag {
                wanted: 0x30,
                found: 0x02
            })
        );
    }

    #[test]
    fn oids() {
        // 1.3.6.1.5.5.7.8.7 (id-on-dnsSRV, RFC 4985 §2).
        assert_eq!(
            oid_content(&[1, 3, 6, 1, 5, 5, 7, 8, 7]),
            [0x2b, 6, 1, 5, 5, 7, 8, 7]
        );
        // 2.5.29.17 subjectAltName; 840 needs two bytes.
        assert_eq!(oid_content(&[2, 5, 29, 17]), [0x55, 0x1d, 0x11]);
        assert_eq!(oid_content(&[1, 2, 840]), [0x2a, 0x86, 0x48]);
    }
}
