//! The scenario model: one synthetic call, described by what the caller's phone does.
//!
//! All times are milliseconds after the call is answered (the 200 OK to the INVITE). Every
//! value the capture needs and the scenario does not name (SSRC, first sequence number, Call-ID,
//! tags) is derived from the scenario name, so rendering is deterministic.

/// The negotiated audio codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0, 8 kHz.
    Pcmu,
    /// G.711 A-law, static payload type 8, 8 kHz.
    Pcma,
    /// Opus, dynamic payload type 111, RTP clock 48 kHz (RFC 7587).
    Opus,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::Opus => 111,
        }
    }

    pub fn clock(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48_000,
        }
    }

    /// The `a=rtpmap` encoding part, e.g. `PCMU/8000`.
    pub fn rtpmap(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000",
            Codec::Pcma => "PCMA/8000",
            Codec::Opus => "opus/48000/2",
        }
    }

    /// RTP timestamp units in one 20 ms packet.
    pub fn samples_per_packet(self) -> u32 {
        self.clock() / 50
    }

    /// A second codec a real phone would also offer, so the answer has to be read.
    pub fn also_offered(self) -> Option<Codec> {
        match self {
            Codec::Pcmu => Some(Codec::Pcma),
            Codec::Pcma => Some(Codec::Pcmu),
            Codec::Opus => None,
        }
    }
}

/// The capture's link layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// DLT_EN10MB (1), as a capture on `lo` writes it (all-zero MAC addresses).
    Ethernet,
    /// DLT_LINUX_SLL2 (276), as `tcpdump -i any` writes it.
    Sll2,
    /// DLT_RAW (101): the frame starts with the IP header.
    RawIp,
}

/// The capture file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        }
    }
}

/// Which loopback addresses the call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    /// 127.0.0.1 for both ends.
    V4,
    /// ::1 for both ends.
    V6,
}

/// Ways a phone or the network spoils a clean RFC 4733 press.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    /// The three end packets share one sequence number (retransmissions) instead of rising.
    pub end_same_seq: bool,
    /// Every telephone-event packet of the press is on the wire twice.
    pub duplicate_all: bool,
    /// The first two packets (the marked start and the first update) are lost.
    pub lost_start: bool,
    /// All end packets are lost; the receiver must end the press by timeout.
    pub lost_end: bool,
    /// A press longer than [`SEGMENT_SPLIT_MS`], reported as two segments (RFC 4733 §2.5.1.3):
    /// the first ends without the E bit, the second starts at old timestamp + old duration.
    pub long: bool,
}

/// Where a `long` press is split into its second segment.
pub const SEGMENT_SPLIT_MS: u32 = 4000;

/// One key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Press {
    /// Press start, ms after the answer.
    pub at_ms: u32,
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub key: char,
    /// How long the key is held.
    pub duration_ms: u32,
    pub quirks: Quirks,
}

/// One synthetic call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// File stem in `fixtures/`.
    pub name: &'static str,
    /// The caller's extension (From user).
    pub caller: &'static str,
    /// The Request-URI user exactly as the phone writes it (`*46`, or percent-encoded `%2A46`).
    pub feature_code: &'static str,
    pub codec: Codec,
    /// telephone-event payload type.
    pub event_pt: u8,
    /// telephone-event clock; equal to the audio clock (they share SSRC and timestamps).
    pub event_clock: u32,
    pub link: Link,
    pub format: Format,
    pub ip: Ip,
    pub presses: Vec<Press>,
    /// The caller hangs up (BYE) at this time; caller media stops there.
    pub bye_at_ms: Option<u32>,
    /// Without a BYE: when the caller's media stops (the capture ends; the engine's own BYE,
    /// which the replay produces itself, is not in the capture).
    pub media_until_ms: u32,
    /// Include the SIP dialogue at all (without it the replay needs `[given]`).
    pub sip: bool,
    /// Pad the INVITE past 1500 bytes and IP-fragment it, second fragment first in the file.
    pub fragment_invite: bool,
    /// First RTP sequence number and timestamp, when the scenario wants wrap-arounds.
    pub rtp_start: Option<(u16, u32)>,
}

impl Scenario {
    /// A plain PCMU call over IPv4/Ethernet pcap; scenarios change what they need.
    fn base(name: &'static str, caller: &'static str, presses: Vec<Press>) -> Scenario {
        let last = presses.last().map_or(0, |p| p.at_ms + p.duration_ms);
        Scenario {
            name,
            caller,
            feature_code: "*46",
            codec: Codec::Pcmu,
            event_pt: 101,
            event_clock: 8000,
            link: Link::Ethernet,
            format: Format::Pcap,
            ip: Ip::V4,
            presses,
            bye_at_ms: None,
            // The goodbye ("saved ... goodbye") lasts a few seconds; the phone keeps sending
            // until the engine's BYE, which comes well within this.
            media_until_ms: last + 6000,
            sip: true,
            fragment_invite: false,
            rtp_start: None,
        }
    }

    fn opus(mut self) -> Scenario {
        self.codec = Codec::Opus;
        self.event_clock = 48_000;
        self
    }

    /// Capture file name, e.g. `away_confirmed.pcap`.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.name, self.format.extension())
    }

    /// A stable 64-bit value per scenario and purpose (FNV-1a), for SSRCs, tags and the like.
    pub fn derive(&self, purpose: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.name.bytes().chain([0]).chain(purpose.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
}

/// A press of `key` at `at_ms` held `duration_ms`, without quirks.
pub fn press(at_ms: u32, key: char, duration_ms: u32) -> Press {
    Press {
        at_ms,
        key,
        duration_ms,
        quirks: Quirks::default(),
    }
}

fn quirky(at_ms: u32, key: char, duration_ms: u32, quirks: Quirks) -> Press {
    Press {
        at_ms,
        key,
        duration_ms,
        quirks,
    }
}

/// Every fixture. The first key comes ~3.5-4 s after the answer (the greeting of ~2 s is over
/// and the menu plays: barge-in), the confirm key ~2 s after the choice (during the read-back).
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            // Phones that escape '*' in the user part.
            feature_code: "%2A46",
            ..Scenario::base(
                "unavailable_confirmed",
                "1001",
                vec![press(3800, '1', 120), press(5900, '1', 110)],
            )
        },
        Scenario {
            link: Link::RawIp,
            ip: Ip::V6,
            ..Scenario::base(
                "available_confirmed",
                "1002",
                vec![press(3600, '2', 140), press(5700, '#', 100)],
            )
        },
        Scenario::base(
            "away_confirmed",
            "1003",
            vec![press(4000, '3', 160), press(6000, '1', 120)],
        ),
        Scenario {
            link: Link::Sll2,
            format: Format::PcapNg,
            ..Scenario::base(
                "chat_confirmed",
                "1004",
                vec![press(3700, '4', 130), press(5800, '#', 90)],
            )
        },
        Scenario {
            fragment_invite: true,
            ..Scenario::base(
                "dnd_confirmed",
                "1005",
                vec![press(3900, '5', 180), press(6100, '1', 120)],
            )
        },
        Scenario::base(
            "custom_confirmed",
            "1006",
            vec![press(3800, '6', 150), press(5900, '1', 100)],
        ),
        Scenario {
            feature_code: "*48",
            ..Scenario::base(
                "invalid_then_valid",
                "1007",
                vec![
                    press(3800, '9', 140),
                    press(5800, '3', 120),
                    press(7900, '1', 110),
                ],
            )
        },
        Scenario {
            // Three menus with 10 s waits, then the goodbye: about 80 s. Opus at 6 kb/s CBR keeps
            // the capture under 400 KB while the phone stays on the line the whole time.
            media_until_ms: 88_000,
            ..Scenario::base("timeout_no_change", "1008", vec![]).opus()
        },
        Scenario {
            // Sequence numbers wrap after ~4.7 s and timestamps after ~4.1 s, mid-dialogue.
            rtp_start: Some((65_300, 0xFFFF_8000)),
            ..Scenario::base(
                "reselect_then_confirm",
                "1009",
                vec![
                    press(3800, '3', 130),
                    press(5800, '*', 110),
                    press(7800, '5', 150),
                    press(9900, '1', 100),
                ],
            )
        },
        Scenario::base(
            "long_press",
            "1010",
            vec![
                quirky(
                    3800,
                    '3',
                    4600,
                    Quirks {
                        long: true,
                        ..Quirks::default()
                    },
                ),
                press(9900, '1', 120),
            ],
        ),
        Scenario::base(
            "triple_end_redundancy",
            "1011",
            vec![
                quirky(
                    3900,
                    '5',
                    160,
                    Quirks {
                        end_same_seq: true,
                        duplicate_all: true,
                        ..Quirks::default()
                    },
                ),
                quirky(
                    6000,
                    '#',
                    120,
                    Quirks {
                        duplicate_all: true,
                        ..Quirks::default()
                    },
                ),
            ],
        ),
        Scenario {
            codec: Codec::Pcma,
            ..Scenario::base(
                "pcma",
                "1012",
                vec![press(3700, '2', 120), press(5800, '1', 110)],
            )
        },
        Scenario::base(
            "opus",
            "1013",
            vec![press(3800, '4', 140), press(5900, '1', 120)],
        )
        .opus(),
        Scenario {
            // The read-back starts with the '3' at 3.8 s; the caller hangs up 1.5 s into it.
            bye_at_ms: Some(5300),
            ..Scenario::base("hangup_during_confirm", "1014", vec![press(3800, '3', 150)])
        },
        Scenario::base(
            "lost_start_and_end",
            "1015",
            vec![
                quirky(
                    3800,
                    '5',
                    200,
                    Quirks {
                        lost_start: true,
                        ..Quirks::default()
                    },
                ),
                quirky(
                    5900,
                    '1',
                    150,
                    Quirks {
                        lost_end: true,
                        ..Quirks::default()
                    },
                ),
            ],
        ),
        // A slow, hesitant caller, about 65 s (the replay benchmark's call): lets the first
        // menu time out, presses an invalid key, picks Away, re-selects, picks Chat, lets the
        // confirmation time out once, then confirms with #.
        Scenario::base(
            "slow_caller",
            "1017",
            vec![
                press(31_000, '9', 120),
                press(34_000, '3', 140),
                press(37_000, '*', 110),
                press(40_000, '4', 130),
                press(62_000, '#', 120),
            ],
        )
        .opus(),
        Scenario {
            sip: false,
            ..Scenario::base(
                "no_sip",
                "1016",
                vec![press(3700, '2', 120), press(5800, '1', 110)],
            )
        },
    ]
}
