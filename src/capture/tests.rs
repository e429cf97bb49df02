//! The capture reader against captures built byte by byte: every format, byte order,
//! resolution, link type and fragment order, and broken files.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use starcode_testkit::net::*;
use starcode_testkit::pcap::*;

use super::*;

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);

fn t(ms: u64) -> Duration {
    Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
}

fn udp4(payload: &[u8]) -> Vec<u8> {
    ipv4(A, B, 17, 1, 0, false, &udp(5060, 5070, payload))
}

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

#[test]
fn pcap_all_byte_orders_and_resolutions() {
    let frame = ethernet(&udp4(b"hello"), None);
    let when = t(1) + Duration::from_micros(234);
    for endianness in [Endianness::Big, Endianness::Little] {
        for res in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
            let file = pcap(
                DataLink::ETHERNET,
                endianness,
                res,
                &[(when, frame.clone())],
            );
            let cap = read_capture(&file).unwrap();
            assert_eq!(cap.stats.packets, 1);
            let d = &cap.datagrams[0];
            assert_eq!(d.time, when, "{endianness:?} {res:?}");
            assert_eq!(d.src, sock(A, 5060));
            assert_eq!(d.dst, sock(B, 5070));
            assert_eq!(d.transport, Transport::Udp);
            assert_eq!(d.payload, b"hello");
        }
    }
}

#[test]
fn nanosecond_stamps_keep_their_precision() {
    let when = t(0) + Duration::from_nanos(123_456_789);
    let file = pcap(
        DataLink::RAW,
        Endianness::Little,
        TsResolution::NanoSecond,
        &[(when, udp4(b"x"))],
    );
    assert_eq!(read_capture(&file).unwrap().datagrams[0].time, when);
}

#[test]
fn every_link_type() {
    let ip = udp4(b"payload");
    let ip6 = ipv6(A6, B6, 17, None, &udp(4000, 4002, b"six"));
    let cases: Vec<(DataLink, Vec<u8>, &[u8])> = vec![
        (DataLink::ETHERNET, ethernet(&ip, Some(42)), b"payload"),
        (DataLink::ETHERNET, ethernet(&ip6, Some(7)), b"six"),
        (DataLink::LINUX_SLL, sll(&ip), b"payload"),
        (DataLink::LINUX_SLL, sll(&ip6), b"six"),
        (DataLink::LINUX_SLL2, sll2(&ip), b"payload"),
        (DataLink::LINUX_SLL2, sll2(&ip6), b"six"),
        (DataLink::RAW, ip.clone(), b"payload"),
        (DataLink::Unknown(12), ip.clone(), b"payload"),
        (DataLink::Unknown(14), ip6.clone(), b"six"),
        (DataLink::IPV6, ip6.clone(), b"six"),
        (DataLink::NULL, null_loopback(&ip), b"payload"),
        (DataLink::LOOP, null_loopback(&ip6), b"six"),
    ];
    for (link, frame, want) in cases {
        let file = pcap(
            link,
            Endianness::Big,
            TsResolution::MicroSecond,
            &[(t(0), frame)],
        );
        let cap = read_capture(&file).unwrap();
        assert_eq!(cap.datagrams.len(), 1, "{link:?}: {:?}", cap.stats);
        assert_eq!(cap.datagrams[0].payload, want, "{link:?}");
    }
}

#[test]
fn etherparse_builder_frames_with_vlan_and_ipv6() {
    use etherparse::{PacketBuilder, VlanId};
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .single_vlan(VlanId::try_new(100).unwrap())
        .ipv6(A6.octets(), B6.octets(), 32)
        .udp(30000, 40000)
        .write(&mut frame, b"built")
        .unwrap();
    let file = pcap(
        DataLink::ETHERNET,
        Endianness::Little,
        TsResolution::MicroSecond,
        &[(t(5), frame)],
    );
    let cap = read_capture(&file).unwrap();
    assert_eq!(cap.datagrams[0].src, SocketAddr::new(IpAddr::V6(A6), 30000));
    assert_eq!(cap.datagrams[0].payload, b"built");
}

#[test]
fn tcp_payloads_are_emitted_and_empty_segments_ignored() {
    use etherparse::PacketBuilder;
    let mut with_data = Vec::new();
    PacketBuilder::ipv4(A.octets(), B.octets(), 64)
        .tcp(40000, 5060, 1, 1000)
        .ack(1)
        .write(&mut with_data, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
        .unwrap();
    let mut ack = Vec::new();
    PacketBuilder::ipv4(B.octets(), A.octets(), 64)
        .tcp(5060, 40000, 1, 1000)
        .ack(2)
        .write(&mut ack, b"")
        .unwrap();
    let file = pcap(
        DataLink::RAW,
        Endianness::Big,
        TsResolution::MicroSecond,
        &[(t(0), with_data), (t(1), ack)],
    );
    let cap = read_capture(&file).unwrap();
    assert_eq!(cap.datagrams.len(), 1);
    assert_eq!(cap.datagrams[0].transport, Transport::Tcp);
    assert_eq!(cap.datagrams[0].dst, sock(B, 5060));
    assert_eq!(cap.stats.ignored, 1);
}

fn fragments_v4(payload: &[u8], chunk: usize, id: u16) -> Vec<Vec<u8>> {
    let dgram = udp(5060, 5060, payload);
    dgram
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let offset = i * chunk;
            ipv4(A, B, 17, id, offset, offset + c.len() < dgram.len(), c)
        })
        .collect()
}

fn fragments_v6(payload: &[u8], chunk: usize, id: u32) -> Vec<Vec<u8>> {
    let dgram = udp(5060, 5060, payload);
    dgram
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let offset = i * chunk;
            ipv6(
                A6,
                B6,
                17,
                Some((id, offset, offset + c.len() < dgram.len())),
                c,
            )
        })
        .collect()
}

#[test]
fn ipv4_fragments_reassembled_in_and_out_of_order() {
    let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let mut frags = fragments_v4(&big, 1480, 77);
    assert_eq!(frags.len(), 3);
    let in_order: Vec<_> = frags.iter().map(|f| (t(0), ethernet(f, None))).collect();
    frags.reverse();
    frags.swap(0, 1);
    let shuffled: Vec<_> = frags.iter().map(|f| (t(0), ethernet(f, None))).collect();
    for frames in [in_order, shuffled] {
        let file = pcap(
            DataLink::ETHERNET,
            Endianness::Big,
            TsResolution::MicroSecond,
            &frames,
        );
        let cap = read_capture(&file).unwrap();
        assert_eq!(cap.datagrams.len(), 1, "{:?}", cap.stats);
        assert_eq!(cap.datagrams[0].payload, big);
        assert_eq!(cap.stats.fragments_reassembled, 1);
        assert_eq!(cap.stats.skipped, 0);
    }
}

#[test]
fn ipv6_fragments_reassembled_out_of_order_across_interfaces() {
    let big: Vec<u8> = (0..2500u32).map(|i| (i % 241) as u8).collect();
    let mut frags = fragments_v6(&big, 1232, 0xDEAD_BEEF);
    assert_eq!(frags.len(), 3);
    frags.rotate_left(1);
    // Interleave with an unrelated IPv4 datagram on a second interface (SLL2, ns stamps).
    let mut frames = vec![(1usize, t(0), sll2(&udp4(b"other")))];
    frames.extend(
        frags
            .iter()
            .enumerate()
            .map(|(i, f)| (0usize, t(i as u64 + 1), ethernet(f, Some(5)))),
    );
    let file = pcapng(
        Endianness::Little,
        &[
            Iface {
                link: DataLink::ETHERNET,
                tsresol: None,
            },
            Iface {
                link: DataLink::LINUX_SLL2,
                tsresol: Some(9),
            },
        ],
        &frames,
    );
    let cap = read_capture(&file).unwrap();
    assert_eq!(cap.datagrams.len(), 2, "{:?}", cap.stats);
    assert_eq!(cap.datagrams[0].payload, b"other");
    assert_eq!(cap.datagrams[1].payload, big);
    assert_eq!(
        cap.datagrams[1].time,
        t(3),
        "time of the completing fragment"
    );
    assert_eq!(cap.stats.fragments_reassembled, 1);
}

#[test]
fn pcapng_interfaces_keep_their_own_resolution() {
    let when = t(0) + Duration::from_nanos(987_654_321);
    for endianness in [Endianness::Big, Endianness::Little] {
        let file = pcapng(
            endianness,
            &[
                Iface {
                    link: DataLink::ETHERNET,
                    tsresol: None,
                },
                Iface {
                    link: DataLink::RAW,
                    tsresol: Some(9),
                },
                Iface {
                    link: DataLink::LINUX_SLL,
                    tsresol: Some(0x80 | 20),
                },
            ],
            &[
                (0, when, ethernet(&udp4(b"micro"), None)),
                (1, when, udp4(b"nano")),
                (2, when, sll(&udp4(b"binary"))),
            ],
        );
        let cap = read_capture(&file).unwrap();
        let got: Vec<(&[u8], Duration)> = cap
            .datagrams
            .iter()
            .map(|d| (&d.payload[..], d.time))
            .collect();
        assert_eq!(
            got[0],
            (&b"micro"[..], t(0) + Duration::from_nanos(987_654_000))
        );
        assert_eq!(got[1], (&b"nano"[..], when));
        // 2^-20 s ticks: within one tick (< 1 µs) below the true time.
        assert_eq!(got[2].0, b"binary");
        assert!(
            when - got[2].1 < Duration::from_micros(1),
            "{:?}",
            when - got[2].1
        );
    }
}

#[test]
fn pcapng_unknown_interface_and_unsupported_link() {
    // A packet naming interface 3 when only one is described is skipped, not fatal.
    let mut file = pcapng(
        Endianness::Little,
        &[Iface {
            link: DataLink::ETHERNET,
            tsresol: None,
        }],
        &[(0, t(0), ethernet(&udp4(b"ok"), None))],
    );
    let bad = pcapng(
        Endianness::Little,
        &[
            Iface {
                link: DataLink::ETHERNET,
                tsresol: None,
            },
            Iface {
                link: DataLink::ETHERNET,
                tsresol: None,
            },
            Iface {
                link: DataLink::ETHERNET,
                tsresol: None,
            },
            Iface {
                link: DataLink::ETHERNET,
                tsresol: None,
            },
        ],
        &[(3, t(1), ethernet(&udp4(b"lost"), None))],
    );
    // Append only the EPB of `bad` (its last block) to `file`.
    let epb_len = u32::from_le_bytes(bad[bad.len() - 4..].try_into().unwrap()) as usize;
    file.extend_from_slice(&bad[bad.len() - epb_len..]);
    let cap = read_capture(&file).unwrap();
    assert_eq!(cap.datagrams.len(), 1);
    assert_eq!(cap.stats.packets, 2);
    assert_eq!(cap.stats.skipped, 1);

    let usb = pcapng(
        Endianness::Big,
        &[Iface {
            link: DataLink::USB_LINUX,
            tsresol: None,
        }],
        &[(0, t(0), vec![0; 64])],
    );
    assert_eq!(
        read_capture(&usb),
        Err(CaptureError::UnsupportedLinkType(189))
    );
}

#[test]
fn malformed_packets_are_skipped_and_counted() {
    let good = ethernet(&udp4(b"fine"), None);
    let mut bad_udp_len = udp4(b"fine");
    bad_udp_len[20 + 5] = 200; // UDP length beyond the IP payload
    let frames = vec![
        (t(0), vec![1, 2, 3]),                 // too short for Ethernet
        (t(1), ethernet(&bad_udp_len, None)),  // bad UDP length
        (t(2), ethernet(&[0x45, 0, 0], None)), // cut IPv4 header
        (t(3), good),
    ];
    let file = pcap(
        DataLink::ETHERNET,
        Endianness::Big,
        TsResolution::MicroSecond,
        &frames,
    );
    let cap = read_capture(&file).unwrap();
    assert_eq!(cap.datagrams.len(), 1);
    assert_eq!(
        cap.stats,
        CaptureStats {
            packets: 4,
            skipped: 3,
            ignored: 0,
            fragments_reassembled: 0,
            truncated_at: None,
        }
    );
}

#[test]
fn clear_errors_for_bad_files() {
    assert_eq!(read_capture(b""), Err(CaptureError::Empty));
    assert!(
        matches!(read_capture(b"hello world"), Err(CaptureError::NotACapture(s)) if s.contains("68 65 6c"))
    );
    assert_eq!(
        read_capture(&[0xD4, 0xC3]),
        Err(CaptureError::Truncated {
            what: "file header",
            offset: 0
        })
    );
    assert_eq!(
        read_capture(&[0xD4, 0xC3, 0xB2, 0xA1, 2, 0]),
        Err(CaptureError::Truncated {
            what: "pcap file header",
            offset: 0
        })
    );
    let file = pcap(
        DataLink::ETHERNET,
        Endianness::Big,
        TsResolution::MicroSecond,
        &[(t(0), ethernet(&udp4(b"abc"), None))],
    );
    // A capture whose writer died mid-record keeps everything before the cut.
    let two = pcap(
        DataLink::ETHERNET,
        Endianness::Big,
        TsResolution::MicroSecond,
        &[
            (t(0), ethernet(&udp4(b"abc"), None)),
            (t(1), ethernet(&udp4(b"def"), None)),
        ],
    );
    let cut = read_capture(&two[..two.len() - 1]).unwrap();
    assert_eq!(cut.datagrams.len(), 1);
    assert_eq!(cut.datagrams[0].payload, b"abc");
    assert_eq!(cut.stats.packets, 1);
    assert!(cut.stats.truncated_at.is_some_and(|o| o > 24));
    let none = read_capture(&file[..file.len() - 1]).unwrap();
    assert!(none.datagrams.is_empty());
    assert_eq!(none.stats.truncated_at, Some(24));
    let usb = pcap(
        DataLink::USB_LINUX,
        Endianness::Big,
        TsResolution::MicroSecond,
        &[],
    );
    let err = read_capture(&usb).unwrap_err();
    assert_eq!(err, CaptureError::UnsupportedLinkType(189));
    assert!(err.to_string().contains("unsupported link type 189"));
}

#[test]
fn every_prefix_of_a_capture_is_handled() {
    let frags = fragments_v4(&[7u8; 100], 48, 9);
    let mut frames: Vec<_> = frags.iter().map(|f| (t(0), ethernet(f, Some(3)))).collect();
    frames.push((t(1), ethernet(&udp4(b"tail"), None)));
    let pcap_file = pcap(
        DataLink::ETHERNET,
        Endianness::Little,
        TsResolution::NanoSecond,
        &frames,
    );
    let ng_frames: Vec<_> = frames
        .iter()
        .map(|(t, f)| (0usize, *t, f.clone()))
        .collect();
    let ng = pcapng(
        Endianness::Big,
        &[Iface {
            link: DataLink::ETHERNET,
            tsresol: Some(9),
        }],
        &ng_frames,
    );
    for file in [pcap_file, ng] {
        assert_eq!(read_capture(&file).unwrap().datagrams.len(), 2);
        for len in 0..file.len() {
            match read_capture(&file[..len]) {
                Ok(_) | Err(_) => {}
            }
        }
    }
}

#[test]
fn pcapng_sections_of_either_byte_order_reset_interfaces() {
    let mut file = pcapng(
        Endianness::Little,
        &[Iface {
            link: DataLink::ETHERNET,
            tsresol: None,
        }],
        &[(0, t(0), ethernet(&udp4(b"first"), None))],
    );
    // A second section (big-endian) whose interface 0 is raw IP with nanosecond stamps.
    file.extend(pcapng(
        Endianness::Big,
        &[Iface {
            link: DataLink::RAW,
            tsresol: Some(9),
        }],
        &[(0, t(1), udp4(b"second"))],
    ));
    let cap = read_capture(&file).unwrap();
    let got: Vec<_> = cap
        .datagrams
        .iter()
        .map(|d| (d.payload.clone(), d.time))
        .collect();
    assert_eq!(
        got,
        vec![(b"first".to_vec(), t(0)), (b"second".to_vec(), t(1))]
    );
}

/// A pcapng block with correct framing around an arbitrary body.
fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(12 + body.len()).unwrap();
    let mut b = block_type.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

#[test]
fn pcapng_simple_and_obsolete_packet_blocks() {
    let mut file = pcapng(
        Endianness::Little,
        &[Iface {
            link: DataLink::RAW,
            tsresol: None,
        }],
        &[(0, t(0), udp4(b"epb"))],
    );
    let packet = udp4(b"spb");
    let mut spb = u32::try_from(packet.len()).unwrap().to_le_bytes().to_vec();
    spb.extend_from_slice(&packet);
    spb.resize(spb.len().div_ceil(4) * 4, 0);
    file.extend(block(3, &spb));

    let packet = udp4(b"old");
    let ticks = ticks(t(2), None).as_nanos() as u64;
    let mut pb = vec![0, 0, 0, 0];
    pb.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
    pb.extend_from_slice(&(ticks as u32).to_le_bytes());
    pb.extend_from_slice(&u32::try_from(packet.len()).unwrap().to_le_bytes());
    pb.extend_from_slice(&u32::try_from(packet.len()).unwrap().to_le_bytes());
    pb.extend_from_slice(&packet);
    pb.resize(pb.len().div_ceil(4) * 4, 0);
    file.extend(block(2, &pb));

    let cap = read_capture(&file).unwrap();
    let got: Vec<_> = cap
        .datagrams
        .iter()
        .map(|d| (d.payload.clone(), d.time))
        .collect();
    assert_eq!(
        got,
        vec![
            (b"epb".to_vec(), t(0)),
            (b"spb".to_vec(), t(0)), // no timestamp: the previous packet's
            (b"old".to_vec(), t(2)),
        ]
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = read_capture(&bytes);
    }

    #[test]
    fn well_framed_random_blocks_never_panic(
        blocks in proptest::collection::vec(
            (prop::sample::select(vec![1u32, 2, 3, 4, 5, 6, 9, 0x0A0D_0D0A, 77]),
             proptest::collection::vec(any::<u32>(), 0..40)),
            0..6),
    ) {
        let mut file = pcapng(Endianness::Little, &[Iface { link: DataLink::ETHERNET, tsresol: None }], &[]);
        for (block_type, words) in blocks {
            let body: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            file.extend(block(block_type, &body));
        }
        let _ = read_capture(&file);
    }

    #[test]
    fn random_bodies_behind_real_headers_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        ng in any::<bool>(),
    ) {
        let mut file = if ng {
            pcapng(Endianness::Little, &[Iface { link: DataLink::ETHERNET, tsresol: None }], &[])
        } else {
            pcap(DataLink::ETHERNET, Endianness::Little, TsResolution::MicroSecond, &[])
        };
        file.extend_from_slice(&body);
        let _ = read_capture(&file);
    }

    #[test]
    fn random_frames_never_panic(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
        link in prop::sample::select(vec![0u32, 1, 12, 101, 113, 276]),
    ) {
        let frames: Vec<_> = frames.into_iter().map(|f| (t(0), f)).collect();
        let file = pcap(DataLink::from(link), Endianness::Big, TsResolution::MicroSecond, &frames);
        let cap = read_capture(&file).unwrap();
        prop_assert_eq!(cap.stats.packets, frames.len() as u64);
    }

    #[test]
    fn random_ip_packets_never_panic(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 20..120), 0..8),
    ) {
        // Force plausible IPv4/IPv6 version nibbles so the IP and fragment paths are reached.
        let frames: Vec<_> = packets.into_iter().enumerate().map(|(i, mut p)| {
            p[0] = if i % 2 == 0 { 0x45 } else { 0x60 | (p[0] & 0x0F) };
            (t(i as u64), p)
        }).collect();
        let file = pcap(DataLink::RAW, Endianness::Big, TsResolution::MicroSecond, &frames);
        let _ = read_capture(&file).unwrap();
    }
}
