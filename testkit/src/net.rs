//! Packets as they appear on a wire: UDP, IPv4 and IPv6 (fragments too), and the link layers a
//! capture may hold them in (Ethernet with an optional VLAN tag, Linux cooked v1 and v2, BSD
//! loopback).

use std::net::{Ipv4Addr, Ipv6Addr};

/// A UDP header plus payload (checksum left 0: "not computed", valid for IPv4).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap();
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

/// An IPv4 packet, optionally a fragment (`offset` in bytes, `more` = MF).
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    offset: usize,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap();
    let frag = u16::try_from(offset / 8).unwrap() | if more { 0x2000 } else { 0 };
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    h[10..12].copy_from_slice(&checksum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 packet; with `fragment = Some((id, offset, more))` a fragment header is added,
/// after a hop-by-hop header so the extension chain is exercised too.
pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
    fragment: Option<(u32, usize, bool)>,
    payload: &[u8],
) -> Vec<u8> {
    let mut exts = Vec::new();
    let first_next = match fragment {
        None => proto,
        Some((id, offset, more)) => {
            // Hop-by-hop: next = fragment (44), len 0 (8 bytes), PadN option.
            exts.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
            let off = u16::try_from(offset).unwrap() | u16::from(more);
            exts.push(proto);
            exts.push(0);
            exts.extend_from_slice(&off.to_be_bytes());
            exts.extend_from_slice(&id.to_be_bytes());
            0 // hop-by-hop
        }
    };
    let plen = u16::try_from(exts.len() + payload.len()).unwrap();
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&plen.to_be_bytes());
    v.push(first_next);
    v.push(64);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(&exts);
    v.extend_from_slice(payload);
    v
}

/// An Ethernet II frame around an IP packet, with an optional 802.1Q tag.
pub fn ethernet(ip: &[u8], vlan: Option<u16>) -> Vec<u8> {
    let ether_type: u16 = if ip.first().is_some_and(|b| b >> 4 == 6) {
        0x86DD
    } else {
        0x0800
    };
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if let Some(id) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// The EtherType of an IP packet: IPv6 when its version nibble says so, else IPv4.
pub fn ether_type_of(ip: &[u8]) -> [u8; 2] {
    if ip.first().is_some_and(|b| b >> 4 == 6) {
        [0x86, 0xDD]
    } else {
        [0x08, 0x00]
    }
}

/// Linux cooked capture v1 (16-byte header).
pub fn sll(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    f.extend_from_slice(&ether_type_of(ip));
    f.extend_from_slice(ip);
    f
}

/// Linux cooked capture v2 (20-byte header).
pub fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut f = ether_type_of(ip).to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    f.extend_from_slice(ip);
    f
}

/// BSD loopback: address family in host byte order.
pub fn null_loopback(ip: &[u8]) -> Vec<u8> {
    let mut f = 2u32.to_le_bytes().to_vec();
    f.extend_from_slice(ip);
    f
}
