//! The network and transport layers of a packet: addresses, fragment fields, and the UDP or TCP
//! payload that becomes a [`Datagram`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::{Ipv6ExtensionSlice, NetSlice, SlicedPacket, TcpSlice, UdpSlice};

use super::packets::Outcome;
use super::{Datagram, Transport};

/// The network layer of a packet, enough to reassemble and to read the transport header.
pub(super) struct IpView<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub payload: &'a [u8],
    pub fragment: Option<Fragment>,
}

pub(super) struct Fragment {
    pub id: u32,
    pub offset: usize,
    pub more: bool,
}

pub(super) fn ip_view<'a>(sliced: &SlicedPacket<'a>) -> Option<IpView<'a>> {
    match sliced.net.as_ref()? {
        NetSlice::Ipv4(v4) => {
            let header = v4.header();
            let payload = v4.payload();
            let fragment = payload.fragmented.then(|| Fragment {
                id: u32::from(header.identification()),
                offset: usize::from(header.fragments_offset().byte_offset()),
                more: header.more_fragments(),
            });
            Some(IpView {
                src: IpAddr::V4(header.source_addr()),
                dst: IpAddr::V4(header.destination_addr()),
                proto: payload.ip_number.0,
                payload: payload.payload,
                fragment,
            })
        }
        NetSlice::Ipv6(v6) => {
            let header = v6.header();
            let payload = v6.payload();
            let fragment = if payload.fragmented {
                v6.extensions()
                    .clone()
                    .into_iter()
                    .find_map(|ext| match ext {
                        Ipv6ExtensionSlice::Fragment(f) if f.is_fragmenting_payload() => {
                            Some(Fragment {
                                id: f.identification(),
                                offset: usize::from(f.fragment_offset().byte_offset()),
                                more: f.more_fragments(),
                            })
                        }
                        _ => None,
                    })
            } else {
                None
            };
            Some(IpView {
                src: IpAddr::V6(header.source_addr()),
                dst: IpAddr::V6(header.destination_addr()),
                proto: payload.ip_number.0,
                payload: payload.payload,
                fragment,
            })
        }
        NetSlice::Arp(_) => None,
    }
}

const IP_PROTO_TCP: u8 = 6;
const IP_PROTO_UDP: u8 = 17;

pub(super) fn transport(
    time: Duration,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload: &[u8],
) -> Result<Outcome, String> {
    match proto {
        IP_PROTO_UDP => {
            let udp = UdpSlice::from_slice(payload).map_err(|e| format!("UDP: {e}"))?;
            Ok(Outcome::Datagram(Datagram {
                time,
                src: SocketAddr::new(src, udp.source_port()),
                dst: SocketAddr::new(dst, udp.destination_port()),
                transport: Transport::Udp,
                payload: udp.payload().to_vec(),
                tcp_seq: None,
            }))
        }
        IP_PROTO_TCP => {
            let tcp = TcpSlice::from_slice(payload).map_err(|e| format!("TCP: {e}"))?;
            if tcp.payload().is_empty() {
                return Ok(Outcome::Ignored("TCP segment without payload"));
            }
            Ok(Outcome::Datagram(Datagram {
                time,
                src: SocketAddr::new(src, tcp.source_port()),
                dst: SocketAddr::new(dst, tcp.destination_port()),
                transport: Transport::Tcp,
                payload: tcp.payload().to_vec(),
                tcp_seq: Some(tcp.sequence_number()),
            }))
        }
        _ => Ok(Outcome::Ignored("neither UDP nor TCP")),
    }
}
