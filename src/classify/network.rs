//! Network identifiers: IPv4 and IPv6 addresses and Ethernet MAC addresses.
//! Version strings (`1.2.3.4` under `version`) and times (`12:30:45`) are the
//! look-alikes to avoid.

use super::keys::Hint;
use super::{Cand, DataType, Val};
use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) fn detect(v: &Val, hint: Hint, c: &mut Cand) {
    let b = v.bytes();
    if b.len() < 3 || b.len() > 45 || !v.ascii || v.has_space {
        return;
    }
    if hint == Hint::Version {
        return;
    }
    if v.ndigits >= 4 && b.iter().all(|x| x.is_ascii_digit() || *x == b'.') {
        if let Some(ip) = parse_ipv4(v.s) {
            let conf = if hint == Hint::Ip {
                96
            } else if ip.is_unspecified() || ip.is_broadcast() {
                return;
            } else {
                75
            };
            c.offer(DataType::Ipv4, conf);
        }
        return;
    }
    if b.contains(&b':') {
        if let Some(conf) = mac(b, hint) {
            c.offer(DataType::MacAddress, conf);
            return;
        }
        if let Some(conf) = ipv6(v.s, hint) {
            c.offer(DataType::Ipv6, conf);
        }
    } else if b.len() == 17 || b.len() == 14 {
        if let Some(conf) = mac(b, hint) {
            c.offer(DataType::MacAddress, conf);
        }
    }
}

/// Dotted quad, each part 0-255 without leading zeros.
pub fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u8; 4];
    let mut n = 0;
    for part in s.split('.') {
        let slot = parts.get_mut(n)?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part.starts_with('0')) {
            return None;
        }
        *slot = part.parse().ok()?;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(parts))
}

fn ipv6(s: &str, hint: Hint) -> Option<u8> {
    let (addr, zone) = match s.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (s, None),
    };
    if zone.is_some_and(|z| z.is_empty()) {
        return None;
    }
    let ip: Ipv6Addr = addr.parse().ok()?;
    if ip.is_unspecified() {
        return None;
    }
    let colons = addr.bytes().filter(|&b| b == b':').count();
    let has_hex_letter = addr.bytes().any(|b| b.is_ascii_alphabetic());
    let conf = if hint == Hint::Ip {
        96
    } else if colons >= 5 || (colons >= 2 && has_hex_letter && addr.len() >= 10) {
        85
    } else {
        45
    };
    Some(conf)
}

/// `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` or `aabb.ccdd.eeff`.
fn mac(b: &[u8], hint: Hint) -> Option<u8> {
    let ok = match b.len() {
        17 => {
            let sep = *b.get(2)?;
            (sep == b':' || sep == b'-')
                && b.iter().enumerate().all(|(i, &c)| {
                    if i % 3 == 2 {
                        c == sep
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        14 => b.iter().enumerate().all(|(i, &c)| {
            if i % 5 == 4 {
                c == b'.'
            } else {
                c.is_ascii_hexdigit()
            }
        }),
        _ => false,
    };
    if !ok {
        return None;
    }
    let hex = || b.iter().filter(|c| c.is_ascii_hexdigit());
    if hex().all(|&c| c == b'0') {
        return None;
    }
    Some(if hint == Hint::Mac { 96 } else { 85 })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{is, not};
    use super::*;

    #[test]
    fn ipv4() {
        is("client_ip", "203.0.113.7", DataType::Ipv4);
        is("", "198.51.100.23", DataType::Ipv4);
        not("version", "1.2.3.4");
        not("app_version", "10.0.19041.1");
        not("", "256.1.1.1");
        not("", "01.02.03.04");
        not("", "0.0.0.0");
        not("", "1.2.3");
        not("build", "192.168.1.1");
    }

    #[test]
    fn ipv6() {
        is("", "2001:db8:85a3::8a2e:370:7334", DataType::Ipv6);
        is("ip", "::1", DataType::Ipv6);
        is("", "fe80::1ff:fe23:4567:890a%eth0", DataType::Ipv6);
        not("", "12:30:45");
        not("", "::");
        not("", "a::b");
        not("", "2001:db8:::1");
    }

    #[test]
    fn mac() {
        is("", "00:1A:2B:3C:4D:5E", DataType::MacAddress);
        is("mac", "00-1a-2b-3c-4d-5e", DataType::MacAddress);
        is("", "001a.2b3c.4d5e", DataType::MacAddress);
        not("", "00:00:00:00:00:00");
        not("", "00:1A:2B:3C:4D");
        not("", "00:1A-2B:3C:4D:5E");
        not("time", "12:30:45.123");
    }
}
