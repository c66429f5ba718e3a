//! Bounds-checked integer reads: every header field in a capture comes from the file, so no
//! read may index past the end. Each helper returns `None` when the bytes are not there.

/// Byte order of a pcap file or pcapng section (set by the writer's machine, not by us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endian {
    Little,
    Big,
}

pub(crate) fn bytes<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

pub(crate) fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

pub(crate) fn u16_at(b: &[u8], off: usize, e: Endian) -> Option<u16> {
    let a = bytes::<2>(b, off)?;
    Some(match e {
        Endian::Little => u16::from_le_bytes(a),
        Endian::Big => u16::from_be_bytes(a),
    })
}

pub(crate) fn u32_at(b: &[u8], off: usize, e: Endian) -> Option<u32> {
    let a = bytes::<4>(b, off)?;
    Some(match e {
        Endian::Little => u32::from_le_bytes(a),
        Endian::Big => u32::from_be_bytes(a),
    })
}

pub(crate) fn i64_at(b: &[u8], off: usize, e: Endian) -> Option<i64> {
    let a = bytes::<8>(b, off)?;
    Some(match e {
        Endian::Little => i64::from_le_bytes(a),
        Endian::Big => i64::from_be_bytes(a),
    })
}

/// Network byte order (RFC 791 §3.1 "Appendix B"), for IP, TCP and UDP headers.
pub(crate) fn be16(b: &[u8], off: usize) -> Option<u16> {
    u16_at(b, off, Endian::Big)
}

pub(crate) fn be32(b: &[u8], off: usize) -> Option<u32> {
    u32_at(b, off, Endian::Big)
}

/// Appends integers in a chosen byte order (the writer, and tests building files by hand).
pub(crate) struct Put<'a> {
    pub buf: &'a mut Vec<u8>,
    pub endian: Endian,
}

impl Put<'_> {
    pub fn u16(&mut self, v: u16) {
        match self.endian {
            Endian::Little => self.buf.extend_from_slice(&v.to_le_bytes()),
            Endian::Big => self.buf.extend_from_slice(&v.to_be_bytes()),
        }
    }

    pub fn u32(&mut self, v: u32) {
        match self.endian {
            Endian::Little => self.buf.extend_from_slice(&v.to_le_bytes()),
            Endian::Big => self.buf.extend_from_slice(&v.to_be_bytes()),
        }
    }

    pub fn i64(&mut self, v: i64) {
        match self.endian {
            Endian::Little => self.buf.extend_from_slice(&v.to_le_bytes()),
            Endian::Big => self.buf.extend_from_slice(&v.to_be_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let b = [1u8, 2, 3];
        assert_eq!(u16_at(&b, 1, Endian::Big), Some(0x0203));
        assert_eq!(u16_at(&b, 1, Endian::Little), Some(0x0302));
        assert_eq!(u16_at(&b, 2, Endian::Big), None);
        assert_eq!(u32_at(&b, 0, Endian::Big), None);
        assert_eq!(u32_at(&b, usize::MAX, Endian::Big), None);
        assert_eq!(i64_at(&b, 0, Endian::Big), None);
        assert_eq!(u8_at(&b, 3), None);
    }
}
