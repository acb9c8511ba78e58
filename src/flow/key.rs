//! Connection identity: a canonical (direction-free) key, which side of it a
//! packet came from, and the symmetric hash that picks a flow's worker.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

/// The two endpoints of a connection, ordered so both directions map to the
/// same key: `lo` is the smaller (address, port) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub lo: SocketAddr,
    pub hi: SocketAddr,
}

/// The flow tables hash every packet's key, several times for a short
/// connection. The derived hash feeds the keyed hasher eight small writes
/// (address kind, length-prefixed octets, port, per side); this feeds it the
/// same addresses and ports in two or three words. IPv6 flow label and scope
/// are left out: keys equal under `Eq` still hash equal.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let ports = u32::from(self.lo.port()) << 16 | u32::from(self.hi.port());
        match (self.lo.ip(), self.hi.ip()) {
            (IpAddr::V4(lo), IpAddr::V4(hi)) => {
                state.write_u64(u64::from(u32::from(lo)) << 32 | u64::from(u32::from(hi)));
            }
            (lo, hi) => {
                state.write_u128(ip_bits(lo));
                state.write_u128(ip_bits(hi));
            }
        }
        state.write_u32(ports);
    }
}

/// An address as one number; an IPv4-mapped IPv6 address keeps its
/// `::ffff:` prefix, so it stays apart from the IPv4 address it maps.
fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Which endpoint of a `FlowKey` sent a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Sent by `lo` to `hi`.
    FromLo,
    /// Sent by `hi` to `lo`.
    FromHi,
}

impl Side {
    pub const fn index(self) -> usize {
        match self {
            Side::FromLo => 0,
            Side::FromHi => 1,
        }
    }
    pub const fn other(self) -> Side {
        match self {
            Side::FromLo => Side::FromHi,
            Side::FromHi => Side::FromLo,
        }
    }
}

impl FlowKey {
    pub fn new(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> (FlowKey, Side) {
        let a = SocketAddr::new(src, src_port);
        let b = SocketAddr::new(dst, dst_port);
        if (src, src_port) <= (dst, dst_port) {
            (FlowKey { lo: a, hi: b }, Side::FromLo)
        } else {
            (FlowKey { lo: b, hi: a }, Side::FromHi)
        }
    }

    /// Address that sent packets on `side`.
    pub fn sender(&self, side: Side) -> SocketAddr {
        match side {
            Side::FromLo => self.lo,
            Side::FromHi => self.hi,
        }
    }

    /// Same value for both directions of a connection, so one worker sees
    /// both. Not used for hash tables (those use a keyed hasher against
    /// collision floods), only to spread flows over workers.
    pub fn shard_hash(&self) -> u64 {
        let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
        for addr in [self.lo, self.hi] {
            let bits = ip_bits(addr.ip());
            h = mix(h ^ (bits as u64));
            h = mix(h ^ ((bits >> 64) as u64));
            h = mix(h ^ u64::from(addr.port()));
        }
        h
    }
}

/// splitmix64 finaliser: cheap and spreads low-entropy input over all bits.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_key_and_hash() {
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let s: IpAddr = "10.0.0.2".parse().unwrap();
        let (k1, side1) = FlowKey::new(c, 40000, s, 80);
        let (k2, side2) = FlowKey::new(s, 80, c, 40000);
        assert_eq!(k1, k2);
        assert_eq!(k1.shard_hash(), k2.shard_hash());
        assert_eq!(side1.other(), side2);
        assert_eq!(k1.sender(side1), SocketAddr::new(c, 40000));
    }

    #[test]
    fn table_hash_agrees_with_equality() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let keys = [
            FlowKey::new(ip("10.0.0.1"), 40000, ip("10.0.0.2"), 80).0,
            FlowKey::new(ip("10.0.0.1"), 40001, ip("10.0.0.2"), 80).0,
            FlowKey::new(ip("10.0.0.2"), 40000, ip("10.0.0.1"), 80).0,
            FlowKey::new(ip("::ffff:10.0.0.1"), 40000, ip("::ffff:10.0.0.2"), 80).0,
            FlowKey::new(ip("10.0.0.1"), 40000, ip("::ffff:10.0.0.2"), 80).0,
            FlowKey::new(ip("2001:db8::1"), 40000, ip("2001:db8::2"), 80).0,
        ];
        for a in &keys {
            for b in &keys {
                let same_hash = hasher.hash_one(a) == hasher.hash_one(b);
                assert_eq!(a == b, same_hash, "{a:?} {b:?}");
            }
        }
        let (k1, _) = FlowKey::new(ip("2001:db8::1"), 1, ip("2001:db8::2"), 2);
        let (k2, _) = FlowKey::new(ip("2001:db8::2"), 2, ip("2001:db8::1"), 1);
        assert_eq!(hasher.hash_one(k1), hasher.hash_one(k2));
    }

    #[test]
    fn shard_hash_spreads_ports() {
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let s: IpAddr = "10.0.0.2".parse().unwrap();
        let mut per_shard = [0u32; 4];
        for port in 1000..5000u16 {
            let (k, _) = FlowKey::new(c, port, s, 80);
            per_shard[(k.shard_hash() % 4) as usize] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 800), "{per_shard:?}");
    }
}
