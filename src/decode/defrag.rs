//! Bounded IP fragment reassembly on top of etherparse's `IpDefragBuf`
//! (its own pool has no memory bound, so the table and its eviction live here).
//! At most `max_fragmented_datagrams` datagrams are rebuilt at once, each at
//! most 64 KiB (IP's own limit), and a partial datagram expires after
//! `fragment_timeout_secs` of packet time.

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

pub(super) enum FragmentOutcome {
    /// The datagram is whole; its payload is in `Defragmenter::completed`.
    Complete {
        src: IpAddr,
        dst: IpAddr,
        ip_number: IpNumber,
    },
    Pending,
    Dropped,
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

    /// Drops partial datagrams older than the timeout; returns how many.
    pub(super) fn expire(&mut self, now: Timestamp) -> u64 {
        let before = self.active.len();
        let timeout = self.timeout_secs;
        self.active
            .retain(|_, (_, last)| now.secs_since(*last) < timeout);
        (before - self.active.len()) as u64
    }
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

    /// Raw IPv4 fragments of one TCP segment, split at `split` bytes (multiple of 8).
    fn fragments(split: usize) -> (Vec<u8>, Vec<u8>) {
        let mut tcp = Vec::new();
        let seg = etherparse::TcpHeader::new(1234, 80, 1, 100);
        seg.write(&mut tcp).unwrap();
        tcp.extend_from_slice(&[b'a'; 60]);
        let mk = |offset: usize, more: bool, data: &[u8]| {
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
        };
        (mk(0, true, &tcp[..split]), mk(split, false, &tcp[split..]))
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
