//! Bounded IP fragment reassembly on top of etherparse's `IpDefragBuf`
//! (its own pool has no memory bound, so the table and its eviction live here).
//! At most `max_fragmented_datagrams` datagrams are rebuilt at once, each at
//! most 64 KiB (IP's own limit), and a partial datagram expires after
//! `fragment_timeout_secs` of packet time.
//!
//! Overlap policy (etherparse lets the last copy win silently): a fragment
//! that only repeats bytes already received, byte for byte, is a harmless
//! duplicate and ignored; any other overlap — different bytes for the same
//! offsets, a fragment reaching past the edge of what was received, or a
//! last fragment ending inside received data (teardrop) — drops the whole
//! datagram and is counted. That is RFC 5722's rule, and what Linux (since
//! 4.19) does for a fragment that straddles received data; a fragment that
//! lies wholly inside received data with other bytes Linux drops alone,
//! keeping the first copy, where other stacks keep the last. Hosts differ
//! in which copy they keep, so there is no reading of such a datagram the
//! sensor could trust.

use crate::config::DecodeSettings;
use crate::exchange::Timestamp;
use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber, Ipv6ExtensionSlice, LaxNetSlice};
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DatagramId {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    ip_number: u8,
}

/// The TCP connection of a datagram dropped for overlapping fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OverlapFlow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

pub(super) enum FragmentOutcome {
    /// The datagram is whole; its payload is in `Defragmenter::completed`.
    Complete {
        src: IpAddr,
        dst: IpAddr,
        ip_number: IpNumber,
    },
    Pending,
    /// A repeat of bytes already received: ignored.
    Duplicate,
    /// Overlapping fragments (or a teardrop end): the datagram was dropped.
    /// `tcp` names the connection when the datagram carried TCP and its
    /// first fragment (with the ports) was seen.
    Overlap {
        tcp: Option<OverlapFlow>,
    },
    Dropped,
}

/// How a fragment relates to the bytes of its datagram received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// No byte of it was received yet.
    New,
    /// Every byte of it was received, with the same values.
    Duplicate,
    /// Some byte was received with another value, it straddles the edge of
    /// what was received, or (last fragment) it ends inside received data.
    Overlap,
}

/// Where a fragment of `payload` at byte `start` (`last`: no more fragments)
/// falls among what `buf` received.
fn fit(buf: &IpDefragBuf, start: usize, last: bool, payload: &[u8]) -> Fit {
    let end = start.saturating_add(payload.len());
    let received_end = buf
        .sections()
        .iter()
        .map(|r| usize::from(r.end))
        .max()
        .unwrap_or(0);
    if last && end < received_end {
        return Fit::Overlap;
    }
    for r in buf.sections() {
        let (r_start, r_end) = (usize::from(r.start), usize::from(r.end));
        if end <= r_start || start >= r_end {
            continue;
        }
        if start < r_start || end > r_end {
            return Fit::Overlap;
        }
        // Inside one received range: compare the bytes.
        let same = buf.data().get(start..end).is_some_and(|old| old == payload);
        return if same { Fit::Duplicate } else { Fit::Overlap };
    }
    Fit::New
}

pub(super) struct Defragmenter {
    max_datagrams: usize,
    timeout_secs: u64,
    active: HashMap<DatagramId, (IpDefragBuf, Timestamp)>,
    completed: Vec<u8>,
}

impl Defragmenter {
    pub(super) fn new(settings: &DecodeSettings) -> Self {
        Defragmenter {
            max_datagrams: settings.max_fragmented_datagrams,
            timeout_secs: settings.fragment_timeout_secs,
            active: HashMap::new(),
            completed: Vec::new(),
        }
    }

    pub(super) fn completed(&self) -> &[u8] {
        &self.completed
    }

    pub(super) fn add(&mut self, ts: Timestamp, net: &LaxNetSlice<'_>) -> FragmentOutcome {
        let Some((id, offset, more, payload)) = fragment_of(net) else {
            return FragmentOutcome::Dropped;
        };
        if !self.active.contains_key(&id) && self.active.len() >= self.max_datagrams {
            self.expire(ts);
            if self.active.len() >= self.max_datagrams {
                return FragmentOutcome::Dropped;
            }
        }
        let entry = self.active.entry(id).or_insert_with(|| {
            (
                IpDefragBuf::new(IpNumber(id.ip_number), Vec::new(), Vec::new()),
                ts,
            )
        });
        entry.1 = ts;
        let start = usize::from(offset.byte_offset());
        match fit(&entry.0, start, !more, payload) {
            Fit::New => {}
            // A repeated last fragment still sets the end if it was unknown.
            Fit::Duplicate if more || entry.0.end().is_some() => {
                return FragmentOutcome::Duplicate;
            }
            Fit::Duplicate => {}
            Fit::Overlap => {
                let tcp = tcp_ports(&id, &entry.0, start, payload);
                self.active.remove(&id);
                return FragmentOutcome::Overlap { tcp };
            }
        }
        if entry.0.add(offset, more, payload).is_err() {
            // Overlapping with different lengths, past 64 KiB, or after the end:
            // the whole datagram is untrustworthy.
            self.active.remove(&id);
            return FragmentOutcome::Dropped;
        }
        if !entry.0.is_complete() {
            return FragmentOutcome::Pending;
        }
        let Some((buf, _)) = self.active.remove(&id) else {
            return FragmentOutcome::Dropped;
        };
        let (data, _sections) = buf.take_bufs();
        self.completed = data;
        FragmentOutcome::Complete {
            src: id.src,
            dst: id.dst,
            ip_number: IpNumber(id.ip_number),
        }
    }

    /// The capture ended: drops every partial datagram; returns how many.
    pub(super) fn finish(&mut self) -> u64 {
        let left = self.active.len() as u64;
        self.active.clear();
        left
    }

    /// Drops partial datagrams older than the timeout; returns how many.
    pub(super) fn expire(&mut self, now: Timestamp) -> u64 {
        let before = self.active.len();
        let timeout = self.timeout_secs;
        self.active
            .retain(|_, (_, last)| now.secs_since(*last) < timeout);
        (before - self.active.len()) as u64
    }
}

/// The ports of a TCP datagram, from its first fragment: the one just
/// received or the bytes already held at offset 0.
fn tcp_ports(
    id: &DatagramId,
    buf: &IpDefragBuf,
    start: usize,
    payload: &[u8],
) -> Option<OverlapFlow> {
    if IpNumber(id.ip_number) != IpNumber::TCP {
        return None;
    }
    let held = buf
        .sections()
        .iter()
        .any(|r| r.start == 0 && r.end >= 4)
        .then(|| buf.data().get(..4))
        .flatten();
    let head = if start == 0 { payload.get(..4) } else { None };
    let ports = held.or(head)?;
    let port = |i: usize| {
        u16::from_be_bytes([
            ports.get(i).copied().unwrap_or(0),
            ports.get(i + 1).copied().unwrap_or(0),
        ])
    };
    Some(OverlapFlow {
        src: id.src,
        dst: id.dst,
        src_port: port(0),
        dst_port: port(2),
    })
}

fn fragment_of<'a>(net: &LaxNetSlice<'a>) -> Option<(DatagramId, IpFragOffset, bool, &'a [u8])> {
    match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let payload = v4.payload();
            Some((
                DatagramId {
                    src: IpAddr::from(h.source_addr()),
                    dst: IpAddr::from(h.destination_addr()),
                    id: u32::from(h.identification()),
                    ip_number: payload.ip_number.0,
                },
                h.fragments_offset(),
                h.more_fragments(),
                payload.payload,
            ))
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let payload = v6.payload();
            let frag = v6.extensions().clone().into_iter().find_map(|e| match e {
                Ipv6ExtensionSlice::Fragment(f) => Some(f),
                _ => None,
            })?;
            Some((
                DatagramId {
                    src: IpAddr::from(h.source_addr()),
                    dst: IpAddr::from(h.destination_addr()),
                    id: frag.identification(),
                    ip_number: payload.ip_number.0,
                },
                frag.fragment_offset(),
                frag.more_fragments(),
                payload.payload,
            ))
        }
        LaxNetSlice::Arp(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::config::DecodeSettings;
    use crate::decode::{Decoder, LinkType};
    use crate::exchange::Timestamp;
    use etherparse::{IpFragOffset, IpNumber, Ipv4Header};

    /// A TCP segment (20-byte header, 60 bytes `a`) as an IP payload.
    fn tcp_segment() -> Vec<u8> {
        let mut tcp = Vec::new();
        let seg = etherparse::TcpHeader::new(1234, 80, 1, 100);
        seg.write(&mut tcp).unwrap();
        tcp.extend_from_slice(&[b'a'; 60]);
        tcp
    }

    /// A raw IPv4 fragment of datagram 7 holding `data` at byte `offset`.
    fn fragment(offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
        let mut h = Ipv4Header::new(
            data.len() as u16,
            64,
            IpNumber::TCP,
            [1, 1, 1, 1],
            [2, 2, 2, 2],
        )
        .unwrap();
        h.identification = 7;
        h.more_fragments = more;
        h.fragment_offset = IpFragOffset::try_new((offset / 8) as u16).unwrap();
        let mut out = Vec::new();
        h.write(&mut out).unwrap();
        out.extend_from_slice(data);
        out
    }

    /// Raw IPv4 fragments of one TCP segment, split at `split` bytes (multiple of 8).
    fn fragments(split: usize) -> (Vec<u8>, Vec<u8>) {
        let tcp = tcp_segment();
        (
            fragment(0, true, &tcp[..split]),
            fragment(split, false, &tcp[split..]),
        )
    }

    /// Feeds raw IPv4 frames; the payload of the segment that came out, if any.
    fn feed(d: &mut Decoder, frames: &[Vec<u8>]) -> Option<Vec<u8>> {
        feed_with_notices(d, frames).0
    }

    /// Also the connections (source and destination port) of the notices of
    /// datagrams dropped for overlapping fragments.
    fn feed_with_notices(
        d: &mut Decoder,
        frames: &[Vec<u8>],
    ) -> (Option<Vec<u8>>, Vec<(u16, u16)>) {
        let mut out = None;
        let mut notices = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if let Some(seg) = d.decode(LinkType::RawIp, Timestamp(i as u64 + 1), f, 0) {
                if seg.fragment_overlap {
                    assert!(seg.payload.is_empty());
                    notices.push((seg.src_port, seg.dst_port));
                } else {
                    out = Some(seg.payload.to_vec());
                }
            }
        }
        (out, notices)
    }

    #[test]
    fn overlapping_fragments_with_other_bytes_drop_the_datagram() {
        let tcp = tcp_segment();
        let mut evil = tcp[16..40].to_vec();
        evil[10] = b'X'; // payload byte 6 (offset 26) differs from the first copy
        for order in [false, true] {
            let mut frames = vec![
                fragment(0, true, &tcp[..40]),
                fragment(16, true, &evil),
                fragment(40, false, &tcp[40..]),
            ];
            if order {
                frames.swap(0, 1);
            }
            let mut d = Decoder::new(&DecodeSettings::default());
            let (segment, notices) = feed_with_notices(&mut d, &frames);
            assert_eq!(segment, None, "order {order}");
            // Its connection is named (the first fragment held the ports),
            // so the flow stage can flag it.
            assert_eq!(notices, [(1234, 80)], "order {order}");
            assert_eq!(d.stats.fragment_overlaps, 1, "order {order}");
            assert_eq!(d.stats.fragments_reassembled, 0, "order {order}");
            // The fragment after the drop starts a new datagram, which
            // never completes: counted when the capture ends.
            d.finish();
            assert_eq!(d.stats.fragments_incomplete_at_end, 1, "order {order}");
        }
    }

    /// Without the first fragment the connection is unknown: counted only.
    #[test]
    fn overlap_without_the_first_fragment_is_counted_without_a_notice() {
        let tcp = tcp_segment();
        let mut evil = tcp[24..48].to_vec();
        evil[0] ^= 0xff;
        let frames = [fragment(16, true, &tcp[16..48]), fragment(24, true, &evil)];
        let mut d = Decoder::new(&DecodeSettings::default());
        assert_eq!(feed_with_notices(&mut d, &frames), (None, Vec::new()));
        assert_eq!(d.stats.fragment_overlaps, 1);
    }

    #[test]
    fn overlap_across_the_edge_of_received_bytes_drops_even_with_equal_bytes() {
        let tcp = tcp_segment();
        let frames = [
            fragment(0, true, &tcp[..24]),
            fragment(16, true, &tcp[16..48]), // same bytes, but past offset 24
            fragment(24, false, &tcp[24..]),
        ];
        let mut d = Decoder::new(&DecodeSettings::default());
        assert_eq!(feed(&mut d, &frames), None);
        assert_eq!(d.stats.fragment_overlaps, 1);
    }

    #[test]
    fn teardrop_last_fragment_inside_received_data_is_dropped() {
        let tcp = tcp_segment();
        // The classic teardrop: the second fragment lies inside the first
        // and claims to be the last; etherparse alone called that complete
        // and cut the datagram short.
        let frames = [
            fragment(0, true, &tcp[..40]),
            fragment(24, false, &tcp[24..32]),
        ];
        let mut d = Decoder::new(&DecodeSettings::default());
        assert_eq!(feed(&mut d, &frames), None);
        assert_eq!(d.stats.fragment_overlaps, 1);
        assert_eq!(d.stats.fragments_reassembled, 0);
    }

    #[test]
    fn exact_duplicates_are_ignored_and_the_datagram_still_reassembles() {
        let tcp = tcp_segment();
        let first = fragment(0, true, &tcp[..40]);
        let last = fragment(40, false, &tcp[40..]);
        let inner = fragment(8, true, &tcp[8..24]); // inside the first, same bytes
        let frames = [first.clone(), first, inner, last.clone(), last];
        let mut d = Decoder::new(&DecodeSettings::default());
        let seg = feed(&mut d, &frames[..4]).unwrap();
        assert_eq!(seg, vec![b'a'; 60]);
        assert_eq!(d.stats.fragments_duplicate, 2);
        assert_eq!(d.stats.fragment_overlaps, 0);
        // A copy of the last fragment after completion starts a new datagram.
        assert_eq!(feed(&mut d, &frames[4..]), None);
        d.finish();
        assert_eq!(d.stats.fragments_incomplete_at_end, 1);
        // A duplicate last fragment before the end is known still sets it.
        let mut d = Decoder::new(&DecodeSettings::default());
        let tcp_frames = [
            fragment(40, false, &tcp[40..]),
            fragment(40, false, &tcp[40..]),
            fragment(0, true, &tcp[..40]),
        ];
        assert_eq!(feed(&mut d, &tcp_frames).unwrap(), vec![b'a'; 60]);
        assert_eq!(d.stats.fragments_duplicate, 1);
    }

    #[test]
    fn clean_fragments_in_any_order_reassemble_and_leave_nothing_at_the_end() {
        let tcp = tcp_segment();
        let parts = [
            fragment(0, true, &tcp[..16]),
            fragment(16, true, &tcp[16..48]),
            fragment(48, false, &tcp[48..]),
        ];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1]] {
            let frames: Vec<Vec<u8>> = order.iter().map(|&i| parts[i].clone()).collect();
            let mut d = Decoder::new(&DecodeSettings::default());
            assert_eq!(feed(&mut d, &frames).unwrap(), vec![b'a'; 60], "{order:?}");
            d.finish();
            let s = &d.stats;
            assert_eq!(
                (
                    s.fragments_reassembled,
                    s.fragments_dropped,
                    s.fragment_overlaps
                ),
                (1, 0, 0),
                "{order:?}"
            );
            assert_eq!(s.fragments_incomplete_at_end, 0, "{order:?}");
        }
    }

    #[test]
    fn reassembles_two_fragments_in_any_order() {
        let (a, b) = fragments(24);
        let mut d = Decoder::new(&DecodeSettings::default());
        assert!(d.decode(LinkType::RawIp, Timestamp(1), &b, 0).is_none());
        let seg = d.decode(LinkType::RawIp, Timestamp(2), &a, 0).unwrap();
        assert_eq!(seg.payload, &[b'a'; 60][..]);
        assert_eq!(seg.dst_port, 80);
        assert_eq!(d.stats.fragments_reassembled, 1);
    }

    #[test]
    fn table_is_bounded_and_expires() {
        let settings = DecodeSettings {
            max_fragmented_datagrams: 1,
            fragment_timeout_secs: 1,
            ..DecodeSettings::default()
        };
        let mut d = Decoder::new(&settings);
        let (a, _) = fragments(24);
        let mut other = a.clone();
        other[5] = 99; // different identification
        assert!(d.decode(LinkType::RawIp, Timestamp(1), &a, 0).is_none());
        assert!(d.decode(LinkType::RawIp, Timestamp(2), &other, 0).is_none());
        assert_eq!(d.stats.fragments_dropped, 1);
        d.expire(Timestamp(5_000_000_000));
        assert_eq!(d.stats.fragments_timed_out, 1);
    }
}
