//! The capture containers: classic pcap and pcapng, down to (time, link type, frame bytes).
//!
//! Formats: pcap per draft-ietf-opsawg-pcap (§4 file header, §5 packet record), pcapng per
//! draft-ietf-opsawg-pcapng (§4.1 SHB, §4.2 IDB, §4.3 EPB, §4.4 SPB, Appendix A obsolete PB).
//!
//! Truncation policy: a file cut short before its first header is complete (the pcap file
//! header or the first section header block) is an error, [`CaptureError::Truncated`].
//! A file cut short later — the usual state of a capture whose writer was killed — yields
//! every packet before the cut plus a note naming the byte offset of the incomplete record
//! or block. Structural damage that is not a cut (a block length below the minimum, or a
//! trailing length that disagrees) is an error naming the offset.

use super::CaptureError;
use super::wire::{Endian, bytes, i64_at, u16_at, u32_at};

/// One captured frame, borrowed from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawPacket<'a> {
    /// Byte offset of the record or block in the file (for error messages).
    pub offset: usize,
    /// Nanoseconds since the Unix epoch (signed: `if_tsoffset` may move it before 1970).
    pub ts_nanos: i128,
    /// The link type of the interface, as in the file (LINKTYPE_* values).
    pub link: u32,
    pub interface: u32,
    pub data: &'a [u8],
    /// Length on the wire; more than `data.len()` when the snap length cut the packet.
    pub orig_len: u32,
}

/// What a container yields: the frames, and a note if the file was cut short.
#[derive(Debug, Default)]
pub(crate) struct Container<'a> {
    pub packets: Vec<RawPacket<'a>>,
    pub notes: Vec<String>,
}

/// pcap magic numbers (draft-ietf-opsawg-pcap §4): as read big-endian, with whether the
/// fraction field is nanoseconds and the file's byte order.
const PCAP_MAGICS: &[([u8; 4], Endian, bool)] = &[
    ([0xa1, 0xb2, 0xc3, 0xd4], Endian::Big, false),
    ([0xd4, 0xc3, 0xb2, 0xa1], Endian::Little, false),
    ([0xa1, 0xb2, 0x3c, 0x4d], Endian::Big, true),
    ([0x4d, 0x3c, 0xb2, 0xa1], Endian::Little, true),
];

/// pcapng block types (draft-ietf-opsawg-pcapng §10.1).
const SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const BLOCK_IDB: u32 = 0x0000_0001;
const BLOCK_PB: u32 = 0x0000_0002;
const BLOCK_SPB: u32 = 0x0000_0003;
const BLOCK_EPB: u32 = 0x0000_0006;
/// Byte-order magic of a section header (§4.1), as the bytes appear in each byte order.
const BOM_BIG: [u8; 4] = [0x1a, 0x2b, 0x3c, 0x4d];
const BOM_LITTLE: [u8; 4] = [0x4d, 0x3c, 0x2b, 0x1a];
/// IDB options (§4.2): timestamp resolution and offset.
const OPT_ENDOFOPT: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

pub(crate) fn parse(b: &[u8]) -> Result<Container<'_>, CaptureError> {
    let Some(magic) = bytes::<4>(b, 0) else {
        return Err(CaptureError::Truncated {
            what: "file magic",
            offset: 0,
            needed: 4,
            available: b.len(),
        });
    };
    if let Some(&(_, endian, nanos)) = PCAP_MAGICS.iter().find(|(m, _, _)| *m == magic) {
        return parse_pcap(b, endian, nanos);
    }
    if magic == SHB {
        return parse_pcapng(b);
    }
    Err(CaptureError::BadMagic {
        offset: 0,
        found: magic,
    })
}

fn cut_note(what: &str, offset: usize, needed: usize, file_len: usize) -> String {
    format!(
        "capture cut short: the {what} at byte offset {offset} needs {needed} bytes but the file \
         ends at byte {file_len}; the packets before it were read"
    )
}

fn parse_pcap(b: &[u8], e: Endian, nanos: bool) -> Result<Container<'_>, CaptureError> {
    const HEADER: usize = 24;
    const RECORD: usize = 16;
    if b.len() < HEADER {
        return Err(CaptureError::Truncated {
            what: "pcap file header",
            offset: 0,
            needed: HEADER,
            available: b.len(),
        });
    }
    let major = u16_at(b, 4, e).unwrap_or(0);
    let minor = u16_at(b, 6, e).unwrap_or(0);
    if major != 2 {
        return Err(CaptureError::UnsupportedVersion {
            format: "pcap",
            major,
            minor,
            offset: 0,
        });
    }
    // §4: the low 16 bits are the link type; the upper bits carry FCS information, which
    // needs no handling here because IP lengths bound what is read from each frame.
    let link = u32_at(b, 20, e).unwrap_or(0) & 0xffff;
    let mut out = Container::default();
    let mut off = HEADER;
    while off < b.len() {
        let (Some(sec), Some(frac), Some(incl), Some(orig)) = (
            u32_at(b, off, e),
            u32_at(b, off + 4, e),
            u32_at(b, off + 8, e),
            u32_at(b, off + 12, e),
        ) else {
            out.notes
                .push(cut_note("packet record header", off, RECORD, b.len()));
            break;
        };
        let start = off + RECORD;
        let Some(data) = usize::try_from(incl)
            .ok()
            .and_then(|n| start.checked_add(n))
            .and_then(|end| b.get(start..end))
        else {
            let needed = usize::try_from(incl)
                .unwrap_or(usize::MAX)
                .saturating_add(RECORD);
            out.notes
                .push(cut_note("packet record", off, needed, b.len()));
            break;
        };
        let frac_nanos = if nanos {
            i128::from(frac)
        } else {
            i128::from(frac) * 1000
        };
        out.packets.push(RawPacket {
            offset: off,
            ts_nanos: i128::from(sec) * 1_000_000_000 + frac_nanos,
            link,
            interface: 0,
            data,
            orig_len: orig,
        });
        off = start + data.len();
    }
    Ok(out)
}

/// Timestamp resolution of an interface (§4.2 `if_tsresol`): units per second as a power
/// of ten or of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Decimal(u8),
    Binary(u8),
}

impl Resolution {
    fn from_option(v: u8) -> Resolution {
        if v & 0x80 == 0 {
            Resolution::Decimal(v)
        } else {
            Resolution::Binary(v & 0x7f)
        }
    }

    fn to_nanos(self, units: u64) -> i128 {
        let units = u128::from(units);
        let n = match self {
            Resolution::Decimal(p) if p <= 9 => units * 10u128.pow(u32::from(9 - p)),
            Resolution::Decimal(p) => 10u128
                .checked_pow(u32::from(p - 9))
                .map_or(0, |d| units / d),
            // units < 2^64 and 1e9 < 2^30: the product fits; the shift is at most 127.
            Resolution::Binary(p) => (units * 1_000_000_000) >> p,
        };
        i128::try_from(n).unwrap_or(i128::MAX)
    }
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: u32,
    snaplen: u32,
    resolution: Resolution,
    offset_secs: i64,
}

fn parse_pcapng(b: &[u8]) -> Result<Container<'_>, CaptureError> {
    let mut out = Container::default();
    let mut endian: Option<Endian> = None;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut off = 0usize;
    while off < b.len() {
        let first = off == 0;
        let Some(kind) = bytes::<4>(b, off) else {
            out.notes.push(cut_note("block header", off, 8, b.len()));
            break;
        };
        let e = if kind == SHB {
            match bytes::<4>(b, off + 8) {
                Some(BOM_BIG) => Endian::Big,
                Some(BOM_LITTLE) => Endian::Little,
                Some(found) => {
                    return Err(CaptureError::BadMagic {
                        offset: off + 8,
                        found,
                    });
                }
                None if first => {
                    return Err(CaptureError::Truncated {
                        what: "section header block",
                        offset: off,
                        needed: 12,
                        available: b.len(),
                    });
                }
                None => {
                    out.notes
                        .push(cut_note("section header block", off, 12, b.len()));
                    break;
                }
            }
        } else {
            // Only the first block can be without a section, and parse() saw it was an SHB.
            endian.unwrap_or(Endian::Little)
        };
        let Some(len) = u32_at(b, off + 4, e) else {
            out.notes.push(cut_note("block header", off, 8, b.len()));
            break;
        };
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len < 12 || len % 4 != 0 {
            return Err(CaptureError::Malformed {
                what: "pcapng block",
                offset: off,
                reason: format!("block total length {len} is not a multiple of 4 of at least 12"),
            });
        }
        let Some(block) = off.checked_add(len_usize).and_then(|end| b.get(off..end)) else {
            if first {
                return Err(CaptureError::Truncated {
                    what: "section header block",
                    offset: off,
                    needed: len_usize,
                    available: b.len(),
                });
            }
            out.notes.push(cut_note("block", off, len_usize, b.len()));
            break;
        };
        let trailer = u32_at(block, len_usize - 4, e).unwrap_or(0);
        if trailer != len {
            return Err(CaptureError::Malformed {
                what: "pcapng block",
                offset: off,
                reason: format!("leading total length {len} but trailing {trailer}"),
            });
        }
        let body = block.get(8..len_usize - 4).unwrap_or_default();
        if kind == SHB {
            let major = u16_at(body, 4, e).unwrap_or(0);
            let minor = u16_at(body, 6, e).unwrap_or(0);
            if major != 1 {
                return Err(CaptureError::UnsupportedVersion {
                    format: "pcapng",
                    major,
                    minor,
                    offset: off,
                });
            }
            endian = Some(e);
            // §4.1: interface IDs are scoped to their section.
            interfaces.clear();
        } else {
            match u32_at(block, 0, e).unwrap_or(0) {
                BLOCK_IDB => interfaces.push(parse_idb(body, e, off)?),
                BLOCK_EPB => {
                    let iface = u32_at(body, 0, e).unwrap_or(0);
                    let info = interface(&interfaces, iface, off)?;
                    let ts = (u64::from(u32_at(body, 4, e).unwrap_or(0)) << 32)
                        | u64::from(u32_at(body, 8, e).unwrap_or(0));
                    let cap = u32_at(body, 12, e).unwrap_or(0);
                    let orig = u32_at(body, 16, e).unwrap_or(0);
                    let data = packet_data(body, 20, cap, off, "enhanced packet block")?;
                    out.packets.push(packet(off, info, iface, ts, data, orig));
                }
                BLOCK_PB => {
                    let iface = u32::from(u16_at(body, 0, e).unwrap_or(0));
                    let info = interface(&interfaces, iface, off)?;
                    let ts = (u64::from(u32_at(body, 4, e).unwrap_or(0)) << 32)
                        | u64::from(u32_at(body, 8, e).unwrap_or(0));
                    let cap = u32_at(body, 12, e).unwrap_or(0);
                    let orig = u32_at(body, 16, e).unwrap_or(0);
                    let data = packet_data(body, 20, cap, off, "packet block")?;
                    out.packets.push(packet(off, info, iface, ts, data, orig));
                }
                BLOCK_SPB => {
                    // §4.4: no timestamp, interface 0, captured length implied by the block
                    // (the data is padded, so also bounded by the original length and the
                    // snap length).
                    let info = interface(&interfaces, 0, off)?;
                    let orig = u32_at(body, 0, e).unwrap_or(0);
                    let room = body.len().saturating_sub(4);
                    let mut cap = room.min(usize::try_from(orig).unwrap_or(usize::MAX));
                    if info.snaplen != 0 {
                        cap = cap.min(usize::try_from(info.snaplen).unwrap_or(usize::MAX));
                    }
                    let data = body.get(4..4 + cap).unwrap_or_default();
                    let mut p = packet(off, info, 0, 0, data, orig);
                    p.ts_nanos = out.packets.last().map_or(0, |l| l.ts_nanos);
                    out.packets.push(p);
                }
                // Name resolution, statistics, custom and future blocks carry no packets.
                _ => {}
            }
        }
        off += len_usize;
    }
    Ok(out)
}

fn interface(interfaces: &[Interface], id: u32, offset: usize) -> Result<Interface, CaptureError> {
    usize::try_from(id)
        .ok()
        .and_then(|i| interfaces.get(i))
        .copied()
        .ok_or(CaptureError::UnknownInterface {
            interface: id,
            offset,
        })
}

fn packet_data<'a>(
    body: &'a [u8],
    at: usize,
    cap: u32,
    offset: usize,
    what: &'static str,
) -> Result<&'a [u8], CaptureError> {
    usize::try_from(cap)
        .ok()
        .and_then(|n| at.checked_add(n))
        .and_then(|end| body.get(at..end))
        .ok_or_else(|| CaptureError::Malformed {
            what,
            offset,
            reason: format!("captured length {cap} exceeds the block"),
        })
}

fn packet<'a>(
    offset: usize,
    info: Interface,
    interface: u32,
    units: u64,
    data: &'a [u8],
    orig_len: u32,
) -> RawPacket<'a> {
    RawPacket {
        offset,
        ts_nanos: info.resolution.to_nanos(units) + i128::from(info.offset_secs) * 1_000_000_000,
        link: info.link,
        interface,
        data,
        orig_len,
    }
}

fn parse_idb(body: &[u8], e: Endian, offset: usize) -> Result<Interface, CaptureError> {
    let (Some(link), Some(snaplen)) = (u16_at(body, 0, e), u32_at(body, 4, e)) else {
        return Err(CaptureError::Malformed {
            what: "interface description block",
            offset,
            reason: "shorter than its fixed fields".to_string(),
        });
    };
    let mut iface = Interface {
        link: u32::from(link),
        snaplen,
        resolution: Resolution::Decimal(6),
        offset_secs: 0,
    };
    let mut pos = 8usize;
    // §3.5: options are code, length, value padded to 32 bits; malformed options end the
    // list rather than the file (they only refine timestamps).
    while let (Some(code), Some(len)) = (u16_at(body, pos, e), u16_at(body, pos + 2, e)) {
        if code == OPT_ENDOFOPT {
            break;
        }
        let len = usize::from(len);
        let Some(value) = body.get(pos + 4..pos + 4 + len) else {
            break;
        };
        match (code, value) {
            (OPT_IF_TSRESOL, [v, ..]) => iface.resolution = Resolution::from_option(*v),
            (OPT_IF_TSOFFSET, _) => iface.offset_secs = i64_at(value, 0, e).unwrap_or(0),
            _ => {}
        }
        pos += 4 + len.div_ceil(4) * 4;
    }
    Ok(iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions() {
        assert_eq!(Resolution::Decimal(6).to_nanos(1_500_000), 1_500_000_000);
        assert_eq!(Resolution::Decimal(9).to_nanos(7), 7);
        assert_eq!(Resolution::Decimal(12).to_nanos(7_000), 7);
        assert_eq!(Resolution::Decimal(127).to_nanos(u64::MAX), 0);
        assert_eq!(Resolution::Binary(10).to_nanos(1024), 1_000_000_000);
        assert_eq!(Resolution::Binary(127).to_nanos(u64::MAX), 0);
        assert_eq!(Resolution::from_option(0x8a), Resolution::Binary(10));
    }

    #[test]
    fn magic_and_short_files() {
        assert!(matches!(
            parse(b""),
            Err(CaptureError::Truncated {
                what: "file magic",
                ..
            })
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1"),
            Err(CaptureError::BadMagic { offset: 0, .. })
        ));
        assert!(matches!(
            parse(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]),
            Err(CaptureError::Truncated {
                what: "pcap file header",
                ..
            })
        ));
    }
}
