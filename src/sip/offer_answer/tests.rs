//! Offer/answer against offers shaped like real phones', PBXes' and browsers'.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::sip::sdp::{parse, Attribute};

const US_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const OUR_PORT: u16 = 30_000;

fn policy(codecs: &[Codec]) -> MediaPolicy {
    MediaPolicy {
        codecs: codecs.to_vec(),
        ptime_ms: 20,
        telephone_event: true,
    }
}

fn all() -> MediaPolicy {
    policy(&[Codec::Pcmu, Codec::Pcma, Codec::Opus])
}

fn session() -> LocalSession {
    LocalSession::new(4242, US_V4)
}

fn sdp(text: &str) -> SessionDescription {
    parse(text).unwrap()
}

/// Answers `offer` with a fresh session and the full policy; returns the parsed answer too.
fn answer_with(
    offer: &str,
    policy: &MediaPolicy,
) -> Result<(Negotiated, String, SessionDescription), OfferAnswerError> {
    let mut local = session();
    let (negotiated, text) = local.answer(&sdp(offer), policy, OUR_PORT)?;
    let parsed = parse(&text).unwrap();
    Ok((negotiated, text, parsed))
}

fn audio(answer: &SessionDescription) -> &MediaDescription {
    answer.first_audio().unwrap()
}

const YEALINK: &str = "v=0\r\n\
o=- 20014 20014 IN IP4 192.168.1.50\r\n\
s=SDP data\r\n\
c=IN IP4 192.168.1.50\r\n\
t=0 0\r\n\
m=audio 11800 RTP/AVP 0 8 9 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n";

const POLYCOM: &str = "v=0\r\n\
o=- 1618433112 1618433112 IN IP4 10.1.1.20\r\n\
s=Polycom IP Phone\r\n\
c=IN IP4 10.1.1.20\r\n\
t=0 0\r\n\
a=sendrecv\r\n\
m=audio 2222 RTP/AVP 9 0 8 18 127\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:127 telephone-event/8000\r\n";

const GRANDSTREAM: &str = "v=0\r\n\
o=1001 8000 8000 IN IP4 192.168.0.23\r\n\
s=SIP Call\r\n\
c=IN IP4 192.168.0.23\r\n\
t=0 0\r\n\
m=audio 5004 RTP/AVP 8 0 9 18 2 101\r\n\
a=sendrecv\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:2 G726-32/8000\r\n\
a=ptime:20\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n";

const WEBRTC_ISH: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 111 9 0 8 110 126\r\n\
c=IN IP4 203.0.113.5\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const ASTERISK: &str = "v=0\r\n\
o=- 1234 1234 IN IP4 10.0.0.5\r\n\
s=Asterisk\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
m=audio 17000 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:30\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

#[test]
fn yealink_offer_gets_a_complete_answer() {
    let mut local = session();
    let (negotiated, text) = local.answer(&sdp(YEALINK), &all(), OUR_PORT).unwrap();
    assert_eq!(
        text,
        "v=0\r\n\
o=starcode 4242 1 IN IP4 198.51.100.7\r\n\
s=starcode\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
    );
    assert_eq!(
        negotiated,
        Negotiated {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(TelephoneEventFormat {
                payload_type: 101,
                clock_rate: 8000
            }),
            ptime_ms: 20,
            remote_rtp: Some("192.168.1.50:11800".parse().unwrap()),
            direction: Direction::SendRecv,
            remote_direction: Direction::SendRecv,
        }
    );
    assert!(negotiated.may_send());
    assert!(negotiated.expects_media());
}

#[test]
fn polycom_g722_first_is_skipped_and_session_direction_inherited() {
    let (negotiated, _, answer) = answer_with(POLYCOM, &all()).unwrap();
    let audio = audio(&answer);
    assert_eq!(audio.formats, ["0", "8", "127"]);
    assert_eq!(negotiated.codec, Codec::Pcmu);
    assert_eq!(negotiated.payload_type, 0);
    // No fmtp in the offer means 0-15 (RFC 4733 §7.1.1); we say so explicitly.
    assert_eq!(audio.fmtps.get(&127).map(String::as_str), Some("0-15"));
    assert_eq!(
        negotiated.telephone_event,
        Some(TelephoneEventFormat {
            payload_type: 127,
            clock_rate: 8000
        })
    );
    assert_eq!(negotiated.remote_direction, Direction::SendRecv);
    assert_eq!(negotiated.ptime_ms, 20);
}

#[test]
fn grandstream_pcma_first_keeps_offer_order() {
    let (negotiated, _, answer) = answer_with(GRANDSTREAM, &all()).unwrap();
    assert_eq!(audio(&answer).formats, ["8", "0", "101"]);
    assert_eq!(negotiated.codec, Codec::Pcma);
    assert_eq!(negotiated.payload_type, 8);
    // Our policy order does not reorder the offerer's preference.
    let (negotiated, _, answer) =
        answer_with(GRANDSTREAM, &policy(&[Codec::Pcmu, Codec::Pcma])).unwrap();
    assert_eq!(audio(&answer).formats, ["8", "0", "101"]);
    assert_eq!(negotiated.codec, Codec::Pcma);
}

#[test]
fn policy_filters_the_offer() {
    let (negotiated, _, answer) = answer_with(YEALINK, &policy(&[Codec::Pcma])).unwrap();
    let audio = audio(&answer);
    assert_eq!(audio.formats, ["8", "101"]);
    assert_eq!(negotiated.codec, Codec::Pcma);
    assert_eq!(negotiated.payload_type, 8);

    let no_dtmf = MediaPolicy {
        telephone_event: false,
        ..all()
    };
    let (negotiated, _, answer) = answer_with(YEALINK, &no_dtmf).unwrap();
    assert_eq!(answer.media[0].formats, ["0", "8"]);
    assert!(answer.media[0].fmtps.is_empty());
    assert_eq!(negotiated.telephone_event, None);
}

#[test]
fn opus_first_offer_picks_the_telephone_event_on_the_opus_clock() {
    let (negotiated, text, answer) = answer_with(WEBRTC_ISH, &all()).unwrap();
    let audio = audio(&answer);
    assert_eq!(audio.formats, ["111", "0", "8", "110"]);
    assert!(text.contains("a=rtpmap:111 opus/48000/2\r\n"), "{text}");
    assert!(
        text.contains("a=rtpmap:110 telephone-event/48000\r\n"),
        "{text}"
    );
    assert!(!text.contains("126"), "{text}");
    assert_eq!(negotiated.codec, Codec::Opus);
    assert_eq!(negotiated.payload_type, 111);
    assert_eq!(
        negotiated.telephone_event,
        Some(TelephoneEventFormat {
            payload_type: 110,
            clock_rate: 48_000
        })
    );
    // Media-level c= wins over the (absent) session one.
    assert_eq!(
        negotiated.remote_rtp,
        Some("203.0.113.5:40000".parse().unwrap())
    );

    // Without Opus the 8 kHz event format goes with G.711.
    let (negotiated, _, answer) =
        answer_with(WEBRTC_ISH, &policy(&[Codec::Pcmu, Codec::Pcma])).unwrap();
    assert_eq!(answer.media[0].formats, ["0", "8", "126"]);
    assert_eq!(
        negotiated.telephone_event,
        Some(TelephoneEventFormat {
            payload_type: 126,
            clock_rate: 8000
        })
    );
}

#[test]
fn a_mismatched_telephone_event_clock_is_still_used_when_it_is_the_only_one() {
    let offer = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 107 101\r\n\
a=rtpmap:107 opus/48000/2\r\na=rtpmap:101 telephone-event/8000/1\r\n";
    let (negotiated, text, _) = answer_with(offer, &all()).unwrap();
    assert_eq!(negotiated.codec, Codec::Opus);
    assert_eq!(
        negotiated.telephone_event,
        Some(TelephoneEventFormat {
            payload_type: 101,
            clock_rate: 8000
        })
    );
    assert!(
        text.contains("a=rtpmap:101 telephone-event/8000\r\n"),
        "{text}"
    );

    let wideband = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 0 100\r\n\
a=rtpmap:100 telephone-event/16000\r\na=fmtp:100 0-15\r\n";
    let (negotiated, _, _) = answer_with(wideband, &all()).unwrap();
    assert_eq!(
        negotiated.telephone_event,
        Some(TelephoneEventFormat {
            payload_type: 100,
            clock_rate: 16_000
        })
    );
}

#[test]
fn asterisk_ptime_30_is_honoured_and_event_list_trimmed() {
    let (negotiated, text, answer) = answer_with(ASTERISK, &all()).unwrap();
    assert_eq!(negotiated.codec, Codec::Pcma);
    assert_eq!(negotiated.ptime_ms, 30);
    assert_eq!(audio(&answer).ptime, Some(30));
    assert!(text.contains("a=fmtp:101 0-15\r\n"), "{text}");
}

#[test]
fn ptime_rules() {
    // What our packetizer cannot do falls back to the policy's default.
    assert_eq!(choose_ptime(Codec::Opus, Some(30), None, 20), 20);
    assert_eq!(choose_ptime(Codec::Pcmu, Some(25), None, 40), 40);
    assert_eq!(choose_ptime(Codec::Pcmu, None, None, 60), 60);
    // A bad default falls back to 20.
    assert_eq!(choose_ptime(Codec::Opus, None, None, 30), 20);
    // maxptime caps.
    assert_eq!(choose_ptime(Codec::Pcmu, Some(60), Some(40), 20), 40);
    assert_eq!(choose_ptime(Codec::Pcmu, Some(60), Some(35), 20), 30);
    assert_eq!(choose_ptime(Codec::Opus, Some(60), Some(35), 20), 20);
    assert_eq!(choose_ptime(Codec::Pcmu, None, Some(5), 20), 10);
    assert_eq!(choose_ptime(Codec::Pcmu, Some(20), Some(150), 20), 20);

    let offer = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 96\r\n\
a=rtpmap:96 opus/48000/2\r\na=ptime:40\r\na=maxptime:20\r\n";
    let (negotiated, _, answer) = answer_with(offer, &all()).unwrap();
    assert_eq!(negotiated.ptime_ms, 20);
    assert_eq!(audio(&answer).ptime, Some(20));
}

#[test]
fn names_are_case_insensitive_and_static_types_get_rtpmaps() {
    let offer = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 109 0 8 101\r\n\
a=rtpmap:109 OPUS/48000/2\r\na=rtpmap:0 pcmu/8000\r\na=rtpmap:101 Telephone-Event/48000\r\n";
    let (negotiated, text, _) = answer_with(offer, &all()).unwrap();
    assert_eq!(negotiated.codec, Codec::Opus);
    assert_eq!(negotiated.payload_type, 109);
    assert!(text.contains("a=rtpmap:109 opus/48000/2\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:0 PCMU/8000\r\n"), "{text}");
    // PT 8 came without an rtpmap (static); we still write one.
    assert!(text.contains("a=rtpmap:8 PCMA/8000\r\n"), "{text}");
    assert!(
        text.contains("a=rtpmap:101 telephone-event/48000\r\n"),
        "{text}"
    );

    // A 16 kHz "PCMU" is not G.711; mono Opus is tolerated.
    let odd = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 97 98\r\n\
a=rtpmap:97 PCMU/16000\r\na=rtpmap:98 opus/48000\r\n";
    let (negotiated, text, _) = answer_with(odd, &all()).unwrap();
    assert_eq!(negotiated.codec, Codec::Opus);
    assert_eq!(negotiated.payload_type, 98);
    assert!(text.contains("m=audio 30000 RTP/AVP 98\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:98 opus/48000/2\r\n"), "{text}");
}

#[test]
fn only_g729_is_refused_with_488() {
    let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let mut local = session();
    let err = local.answer(&sdp(offer), &all(), OUR_PORT).unwrap_err();
    assert!(
        matches!(err, OfferAnswerError::NoCommonCodec { .. }),
        "{err:?}"
    );
    assert_eq!(err.status_code(), 488);
    assert_eq!(err.warning_code(), 305);
    let text = err.to_string();
    assert!(text.contains("18 G729/8000"), "{text}");
    assert!(text.contains("PCMU, PCMA, opus"), "{text}");
    // A failed answer leaves the session untouched: the next good answer is version 1.
    let (_, answer) = local.answer(&sdp(YEALINK), &all(), OUR_PORT).unwrap();
    assert!(answer.contains("o=starcode 4242 1 IN IP4"), "{answer}");

    // A dynamic type without rtpmap is unknown, not guessed.
    let bare = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 96\r\n";
    assert!(matches!(
        answer_with(bare, &all()),
        Err(OfferAnswerError::NoCommonCodec { .. })
    ));
}

#[test]
fn video_is_rejected_in_place_with_port_zero() {
    let offer = "v=0\r\no=- 7 7 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
m=video 5006 RTP/AVP 96 97\r\na=rtpmap:96 H264/90000\r\na=rtpmap:97 VP8/90000\r\n\
m=audio 5004 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
m=audio 5008 RTP/AVP 8\r\n\
m=image 5010 udptl t38\r\n";
    let (negotiated, text, answer) = answer_with(offer, &all()).unwrap();
    assert_eq!(answer.media.len(), 4);
    let kinds: Vec<(&str, u16)> = answer
        .media
        .iter()
        .map(|m| (m.media.as_str(), m.port))
        .collect();
    assert_eq!(
        kinds,
        [
            ("video", 0),
            ("audio", OUR_PORT),
            ("audio", 0),
            ("image", 0)
        ]
    );
    assert_eq!(answer.media[0].formats, ["96", "97"]);
    assert_eq!(answer.media[3].protocol, "udptl");
    assert_eq!(answer.media[3].formats, ["t38"]);
    assert!(answer.media[0].rtpmaps.is_empty());
    assert!(text.contains("m=video 0 RTP/AVP 96 97\r\n"), "{text}");
    assert_eq!(
        negotiated.remote_rtp,
        Some("10.0.0.9:5004".parse().unwrap())
    );
}

#[test]
fn audio_problems_are_errors_with_sip_codes() {
    let video_only = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=video 5006 RTP/AVP 96\r\n";
    let err = answer_with(video_only, &all()).unwrap_err();
    assert_eq!(err, OfferAnswerError::NoAudio);
    assert_eq!((err.status_code(), err.warning_code()), (488, 304));

    let disabled = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 0 RTP/AVP 0\r\n";
    assert_eq!(
        answer_with(disabled, &all()).unwrap_err(),
        OfferAnswerError::NoAudio
    );

    let srtp = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 5004 RTP/SAVP 0\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n";
    let err = answer_with(srtp, &all()).unwrap_err();
    assert_eq!(
        err,
        OfferAnswerError::UnsupportedTransport("RTP/SAVP".into())
    );
    assert_eq!(err.warning_code(), 302);

    // SRTP and plain RTP both offered: the plain one is used, the SRTP line rejected.
    let both = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 5004 RTP/SAVP 0\r\nm=audio 5006 RTP/AVP 0\r\n";
    let (negotiated, _, answer) = answer_with(both, &all()).unwrap();
    assert_eq!(answer.media[0].port, 0);
    assert_eq!(answer.media[1].port, OUR_PORT);
    assert_eq!(
        negotiated.remote_rtp,
        Some("10.0.0.9:5006".parse().unwrap())
    );

    let host = "v=0\r\nc=IN IP4 pbx.example.com\r\nm=audio 5004 RTP/AVP 0\r\n";
    assert_eq!(
        answer_with(host, &all()).unwrap_err(),
        OfferAnswerError::HostConnection("pbx.example.com".into())
    );

    let no_c = "v=0\r\nm=audio 5004 RTP/AVP 0\r\n";
    let err = answer_with(no_c, &all()).unwrap_err();
    assert!(matches!(err, OfferAnswerError::Malformed(_)), "{err:?}");
    assert_eq!((err.status_code(), err.warning_code()), (400, 399));
}

#[test]
fn hold_and_resume() {
    let mut local = session();
    let (first, text) = local.answer(&sdp(YEALINK), &all(), OUR_PORT).unwrap();
    assert!(first.may_send());
    assert!(text.contains(" 1 IN IP4"));

    // RFC 3264 §8.4 hold: sendonly -> we answer recvonly and must not send.
    let hold = YEALINK.replace("a=sendrecv", "a=sendonly");
    let (held, text) = local.answer(&sdp(&hold), &all(), OUR_PORT).unwrap();
    assert_eq!(held.remote_direction, Direction::SendOnly);
    assert_eq!(held.direction, Direction::RecvOnly);
    assert!(!held.may_send());
    assert!(held.expects_media());
    assert!(text.contains("a=recvonly\r\n"), "{text}");
    assert!(text.contains("o=starcode 4242 2 IN IP4"), "{text}");

    // The same hold offer again (e.g. a session refresh): same answer, same version.
    let (_, again) = local.answer(&sdp(&hold), &all(), OUR_PORT).unwrap();
    assert_eq!(again, text);

    // inactive -> inactive.
    let inactive = YEALINK.replace("a=sendrecv", "a=inactive");
    let (n, text) = local.answer(&sdp(&inactive), &all(), OUR_PORT).unwrap();
    assert_eq!(n.direction, Direction::Inactive);
    assert!(!n.may_send() && !n.expects_media());
    assert!(
        text.contains("a=inactive\r\n") && text.contains(" 3 IN IP4"),
        "{text}"
    );

    // recvonly -> sendonly: we send, expect nothing.
    let recvonly = YEALINK.replace("a=sendrecv", "a=recvonly");
    let (n, text) = local.answer(&sdp(&recvonly), &all(), OUR_PORT).unwrap();
    assert_eq!(n.direction, Direction::SendOnly);
    assert!(n.may_send() && !n.expects_media());
    assert!(
        text.contains("a=sendonly\r\n") && text.contains(" 4 IN IP4"),
        "{text}"
    );

    // Old-style hold: c=0.0.0.0 with sendrecv. Nowhere to send; our answer is sendrecv
    // again, which differs from the previous (sendonly) answer, so the version moves on.
    let null = YEALINK.replace("c=IN IP4 192.168.1.50", "c=IN IP4 0.0.0.0");
    let (n, text) = local.answer(&sdp(&null), &all(), OUR_PORT).unwrap();
    assert_eq!(n.remote_rtp, None);
    assert!(!n.may_send());
    assert!(text.contains("o=starcode 4242 5 IN IP4"), "{text}");

    // Resume: media flows again; our SDP is the same as for the null-address hold, so the
    // version stays.
    let (resumed, text) = local.answer(&sdp(YEALINK), &all(), OUR_PORT).unwrap();
    assert_eq!(resumed, first);
    assert!(text.contains("o=starcode 4242 5 IN IP4"), "{text}");
    assert_eq!(local.session_id(), 4242);
}

#[test]
fn version_moves_only_when_our_sdp_changes() {
    let mut local = session();
    let (_, v1) = local.answer(&sdp(YEALINK), &all(), OUR_PORT).unwrap();
    assert_eq!(local.version(), 1);
    // The peer bumped its own version but offers the same media: our answer is identical.
    let refreshed = YEALINK.replace("20014 20014", "20014 20015");
    let (_, again) = local.answer(&sdp(&refreshed), &all(), OUR_PORT).unwrap();
    assert_eq!(again, v1);
    assert_eq!(local.version(), 1);
    // A different codec order changes our answer.
    let (_, v2) = local.answer(&sdp(GRANDSTREAM), &all(), OUR_PORT).unwrap();
    assert_ne!(v2, v1);
    assert_eq!(local.version(), 2);
    // So does a new local port.
    let (_, v3) = local
        .answer(&sdp(GRANDSTREAM), &all(), OUR_PORT + 2)
        .unwrap();
    assert!(v3.contains("o=starcode 4242 3 "), "{v3}");
    // The session id never changes.
    for text in [&v1, &v2, &v3] {
        let origin = parse(text).unwrap().origin.unwrap();
        assert_eq!(origin.session_id, "4242");
        assert_eq!(origin.username, "starcode");
    }
}

#[test]
fn session_ids_stay_in_signed_64_bit_range_and_usernames_are_safe() {
    let local = LocalSession::new(u64::MAX, US_V4).with_username("bad name");
    assert_eq!(local.session_id(), i64::MAX as u64);
    let mut local = local;
    let text = local.offer(&all(), OUR_PORT).unwrap();
    assert!(
        text.contains(&format!("o=- {} 1 IN IP4", i64::MAX)),
        "{text}"
    );
}

#[test]
fn ipv6_offers_get_ipv6_answers() {
    let offer = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 8\r\n";
    let ours: IpAddr = "::1".parse().unwrap();
    let mut local = LocalSession::new(9, ours);
    let (negotiated, text) = local.answer(&sdp(offer), &all(), OUR_PORT).unwrap();
    assert!(text.contains("o=starcode 9 1 IN IP6 ::1\r\n"), "{text}");
    assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
    assert_eq!(
        negotiated.remote_rtp,
        Some(SocketAddr::new("::1".parse().unwrap(), 6000))
    );
    let parsed = parse(&text).unwrap();
    assert_eq!(parsed.connection, Some(Connection::Ip(ours)));

    // IPv6 hold address.
    let held = offer.replace("c=IN IP6 ::1", "c=IN IP6 ::");
    let (n, _) = local.answer(&sdp(&held), &all(), OUR_PORT).unwrap();
    assert_eq!(n.remote_rtp, None);

    // An IPv4 session cannot reach an IPv6 peer.
    let err = session().answer(&sdp(offer), &all(), OUR_PORT).unwrap_err();
    assert_eq!(
        err,
        OfferAnswerError::AddressFamily {
            offered: "::1".parse().unwrap(),
            ours: "IP4"
        }
    );
    assert_eq!((err.status_code(), err.warning_code()), (488, 301));
}

#[test]
fn our_offer_lists_policy_codecs_and_one_event_format_per_clock() {
    let mut local = session();
    let text = local
        .offer(
            &policy(&[Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::Pcmu]),
            OUR_PORT,
        )
        .unwrap();
    assert_eq!(
        text,
        "v=0\r\n\
o=starcode 4242 1 IN IP4 198.51.100.7\r\n\
s=starcode\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 96 0 8 102 101\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:102 telephone-event/48000\r\n\
a=fmtp:102 0-15\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
    );
    assert!(local.offer_pending());
    // Offering the same again (e.g. a retransmitted 200 OK body) keeps the version.
    let again = local
        .offer(&policy(&[Codec::Opus, Codec::Pcmu, Codec::Pcma]), OUR_PORT)
        .unwrap();
    assert_eq!(again, text);

    let empty = policy(&[]);
    let err = session().offer(&empty, OUR_PORT).unwrap_err();
    assert_eq!(err, OfferAnswerError::EmptyPolicy);
    assert_eq!(err.status_code(), 500);

    // A ptime not every offered codec supports is not offered.
    let odd = MediaPolicy {
        ptime_ms: 30,
        ..all()
    };
    let text = session().offer(&odd, OUR_PORT).unwrap();
    assert!(text.contains("a=ptime:20\r\n"), "{text}");
}

#[test]
fn offer_and_phone_answer_round_trip() {
    let ours = policy(&[Codec::Opus, Codec::Pcmu, Codec::Pcma]);
    let mut local = session();
    let offer = local.offer(&ours, OUR_PORT).unwrap();

    // The "phone" is another LocalSession that only does G.711 and prefers PCMA.
    let phone_policy = policy(&[Codec::Pcma, Codec::Pcmu]);
    let mut phone = LocalSession::new(77, "192.0.2.44".parse().unwrap());
    let (phone_side, answer) = phone.answer(&sdp(&offer), &phone_policy, 11_800).unwrap();
    // The phone keeps our order: PCMU is first among what it allows.
    assert_eq!(phone_side.codec, Codec::Pcmu);
    assert_eq!(
        phone_side.remote_rtp,
        Some(SocketAddr::new(US_V4, OUR_PORT))
    );
    assert_eq!(
        phone_side.telephone_event.map(|t| t.payload_type),
        Some(101)
    );

    let negotiated = local.accept_answer(&sdp(&answer), &ours).unwrap();
    assert!(!local.offer_pending());
    assert_eq!(
        negotiated,
        Negotiated {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(TelephoneEventFormat {
                payload_type: 101,
                clock_rate: 8000
            }),
            ptime_ms: 20,
            remote_rtp: Some("192.0.2.44:11800".parse().unwrap()),
            direction: Direction::SendRecv,
            remote_direction: Direction::SendRecv,
        }
    );

    // A real phone's hand-written answer with its own ptime and a hold direction.
    let mut local = session();
    local.offer(&ours, OUR_PORT).unwrap();
    let phone_answer = "v=0\r\no=- 5 5 IN IP4 192.168.1.50\r\ns=SDP data\r\n\
c=IN IP4 192.168.1.50\r\nt=0 0\r\nm=audio 11800 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:40\r\na=recvonly\r\n";
    let n = local.accept_answer(&sdp(phone_answer), &ours).unwrap();
    assert_eq!((n.codec, n.payload_type, n.ptime_ms), (Codec::Pcma, 8, 40));
    assert_eq!(n.direction, Direction::SendOnly);
    assert!(n.may_send() && !n.expects_media());
}

#[test]
fn answers_to_our_offer_that_cannot_be_used() {
    let ours = all();
    let mut local = session();
    assert_eq!(
        local.accept_answer(&sdp(YEALINK), &ours).unwrap_err(),
        OfferAnswerError::NoOfferPending
    );

    local.offer(&ours, OUR_PORT).unwrap();
    let rejected = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 0 RTP/AVP 0\r\n";
    assert_eq!(
        local.accept_answer(&sdp(rejected), &ours).unwrap_err(),
        OfferAnswerError::AudioRejected
    );
    // The offer was answered (badly); a second answer is not expected.
    assert_eq!(
        local.accept_answer(&sdp(YEALINK), &ours).unwrap_err(),
        OfferAnswerError::NoOfferPending
    );

    local.offer(&ours, OUR_PORT).unwrap();
    let video = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=video 5000 RTP/AVP 96\r\n";
    assert!(matches!(
        local.accept_answer(&sdp(video), &ours),
        Err(OfferAnswerError::Malformed(_))
    ));

    local.offer(&ours, OUR_PORT).unwrap();
    let g729 = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 5000 RTP/AVP 18\r\n";
    assert!(matches!(
        local.accept_answer(&sdp(g729), &ours),
        Err(OfferAnswerError::NoCommonCodec { .. })
    ));
}

#[test]
fn our_reoffer_keeps_m_line_places_and_payload_numbers() {
    // First the peer offered video + Opus on 109; we answered.
    let offer = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=video 5006 RTP/AVP 96\r\n\
m=audio 5004 RTP/AVP 109 0 101\r\na=rtpmap:109 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/48000\r\n";
    let mut local = session();
    local.answer(&sdp(offer), &all(), OUR_PORT).unwrap();
    // Then we re-offer (re-INVITE without SDP from the peer).
    let text = local.offer(&all(), OUR_PORT).unwrap();
    let reoffer = parse(&text).unwrap();
    assert_eq!(reoffer.media.len(), 2);
    assert_eq!(
        (reoffer.media[0].media.as_str(), reoffer.media[0].port),
        ("video", 0)
    );
    let audio = &reoffer.media[1];
    assert_eq!(audio.port, OUR_PORT);
    // Opus keeps 109 and the 48 kHz events keep 101; the new 8 kHz events take a number
    // that meant nothing before (not 101, which would change its meaning mid-dialog).
    assert_eq!(audio.formats, ["0", "8", "109", "96", "101"]);
    assert_eq!(audio.rtpmap(109).unwrap().encoding, "opus");
    assert_eq!(audio.rtpmap(101).unwrap().clock_rate, 48_000);
    assert_eq!(audio.rtpmap(96).unwrap().clock_rate, 8000);
    assert_eq!(local.version(), 2);

    // The answer must come at the same index.
    let answer = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=video 0 RTP/AVP 96\r\n\
m=audio 5004 RTP/AVP 109 101\r\na=rtpmap:109 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/48000\r\n";
    let n = local.accept_answer(&sdp(answer), &all()).unwrap();
    assert_eq!((n.codec, n.payload_type), (Codec::Opus, 109));
    assert_eq!(n.telephone_event.map(|t| t.payload_type), Some(101));
}

#[test]
fn our_answer_parses_back_and_answers_itself_identically() {
    for offer in [YEALINK, POLYCOM, GRANDSTREAM, WEBRTC_ISH, ASTERISK] {
        let (negotiated, text, parsed) = answer_with(offer, &all()).unwrap();
        assert!(text.ends_with("\r\n"));
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "bare LF in {text:?}"
        );
        let audio = audio(&parsed);
        let pt = negotiated.payload_type;
        assert_eq!(audio.formats.first(), Some(&pt.to_string()));
        // Every listed payload type has an explicit rtpmap.
        for pt in audio.payload_types() {
            assert!(audio.rtpmaps.contains_key(&pt), "{pt} in {text}");
        }
        // Answering our own answer as an offer yields the same media.
        let (again, _, reparsed) = answer_with(&text, &all()).unwrap();
        assert_eq!(again.codec, negotiated.codec);
        assert_eq!(again.payload_type, negotiated.payload_type);
        assert_eq!(again.telephone_event, negotiated.telephone_event);
        assert_eq!(again.ptime_ms, negotiated.ptime_ms);
        assert_eq!(reparsed.media[0].formats, audio.formats);
        assert_eq!(reparsed.media[0].rtpmaps, audio.rtpmaps);
    }
}

#[test]
fn event_lists() {
    let set = |text: Option<&str>| render_events(&parse_events(text));
    assert_eq!(set(None), "0-15");
    assert_eq!(set(Some("0-16")), "0-16");
    assert_eq!(set(Some("0-11, 16,32-35")), "0-11,16,32-35");
    assert_eq!(set(Some("events=0-15")), "0-15");
    assert_eq!(set(Some("15-0")), "0-15");
    assert_eq!(set(Some("garbage")), "0-15");
    assert_eq!(set(Some("0-255")), "0-255");
    // Only tones offered: no DTMF format usable, so none is answered.
    let offer = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 32-40\r\n";
    let (n, _, answer) = answer_with(offer, &all()).unwrap();
    assert_eq!(n.telephone_event, None);
    assert_eq!(answer.media[0].formats, ["0"]);
    // A partial keypad is answered as offered.
    let partial = offer.replace("32-40", "0-11");
    let (_, text, _) = answer_with(&partial, &all()).unwrap();
    assert!(text.contains("a=fmtp:101 0-11\r\n"), "{text}");
}

// ------------------------------------------------------------------------------------------
// Never panic on anything a peer can send.
// ------------------------------------------------------------------------------------------

fn sdp_line() -> impl Strategy<Value = String> {
    let pt = prop_oneof![
        3 => Just(0u8),
        3 => Just(8u8),
        1 => Just(18u8),
        4 => 96u8..=127,
        1 => any::<u8>(),
    ];
    let enc = prop_oneof![
        Just("PCMU"),
        Just("pcma"),
        Just("opus"),
        Just("OPUS"),
        Just("telephone-event"),
        Just("G729"),
        Just("x")
    ];
    let clock = prop_oneof![
        3 => Just(8000u32),
        1 => Just(16_000u32),
        3 => Just(48_000u32),
        1 => any::<u32>(),
    ];
    prop_oneof![
        (
            prop_oneof![Just("audio"), Just("video"), Just("AUDIO"), Just("image")],
            prop_oneof![Just(0u16), any::<u16>()],
            prop_oneof![
                Just("RTP/AVP"),
                Just("RTP/SAVP"),
                Just("RTP/AVPF"),
                Just("udptl")
            ],
            proptest::collection::vec(pt.clone(), 1..6)
        )
            .prop_map(|(m, port, proto, pts)| {
                let pts: Vec<String> = pts.iter().map(u8::to_string).collect();
                format!("m={m} {port} {proto} {}", pts.join(" "))
            }),
        (pt.clone(), enc, clock, proptest::option::of(1u16..3)).prop_map(|(pt, e, c, ch)| {
            match ch {
                Some(ch) => format!("a=rtpmap:{pt} {e}/{c}/{ch}"),
                None => format!("a=rtpmap:{pt} {e}/{c}"),
            }
        }),
        (pt, "[0-9, -]{0,12}").prop_map(|(pt, f)| format!("a=fmtp:{pt} {f}")),
        any::<u32>().prop_map(|p| format!("a=ptime:{}", p % 200)),
        any::<u32>().prop_map(|p| format!("a=maxptime:{p}")),
        prop_oneof![
            Just("a=sendonly"),
            Just("a=recvonly"),
            Just("a=inactive"),
            Just("a=sendrecv"),
            Just("c=IN IP4 10.0.0.1"),
            Just("c=IN IP4 0.0.0.0"),
            Just("c=IN IP6 ::1"),
            Just("c=IN IP4 host.example"),
            Just("o=- 1 1 IN IP4 10.0.0.1"),
        ]
        .prop_map(str::to_string),
    ]
}

fn connection() -> impl Strategy<Value = Option<Connection>> {
    proptest::option::of(prop_oneof![
        any::<Ipv4Addr>().prop_map(|ip| Connection::Ip(IpAddr::V4(ip))),
        any::<std::net::Ipv6Addr>().prop_map(|ip| Connection::Ip(IpAddr::V6(ip))),
        "[a-z]{1,8}".prop_map(Connection::Host),
    ])
}

fn direction() -> impl Strategy<Value = Option<Direction>> {
    proptest::option::of(prop_oneof![
        Just(Direction::SendRecv),
        Just(Direction::SendOnly),
        Just(Direction::RecvOnly),
        Just(Direction::Inactive),
    ])
}

prop_compose! {
    fn media_description()(
        media in prop_oneof![Just("audio".to_string()), "[a-zA-Z]{0,6}"],
        port in any::<u16>(),
        protocol in prop_oneof![Just("RTP/AVP".to_string()), "[A-Z/]{0,8}"],
        formats in proptest::collection::vec(
            prop_oneof![any::<u8>().prop_map(|p| p.to_string()), "[ -~]{0,4}"], 0..6),
        connection in connection(),
        rtpmaps in proptest::collection::btree_map(any::<u8>(),
            ("[a-zA-Z-]{0,16}", any::<u32>(), any::<u16>()).prop_map(|(encoding, clock_rate, channels)| {
                RtpMap { encoding, clock_rate, channels }
            }), 0..6),
        fmtps in proptest::collection::btree_map(any::<u8>(), "[ -~]{0,16}", 0..4),
        ptime in proptest::option::of(any::<u32>()),
        maxptime in proptest::option::of(any::<u32>()),
        direction in direction(),
    ) -> MediaDescription {
        let mut m = MediaDescription::new(media, port, protocol, formats);
        m.connection = connection;
        m.rtpmaps = rtpmaps;
        m.fmtps = fmtps;
        m.ptime = ptime;
        m.maxptime = maxptime;
        m.direction = direction;
        m.attributes.push(Attribute { name: "x".into(), value: None });
        m
    }
}

prop_compose! {
    fn session_description()(
        connection in connection(),
        direction in direction(),
        media in proptest::collection::vec(media_description(), 0..4),
    ) -> SessionDescription {
        SessionDescription { connection, direction, media, ..SessionDescription::default() }
    }
}

fn random_policy() -> impl Strategy<Value = MediaPolicy> {
    (
        proptest::sample::subsequence(Codec::ALL.to_vec(), 0..=3),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(codecs, ptime_ms, telephone_event)| MediaPolicy {
            codecs,
            ptime_ms: ptime_ms % 100,
            telephone_event,
        })
}

/// What must hold of any successful answer, whatever the offer.
fn check_answer(offer: &SessionDescription, n: &Negotiated, text: &str) {
    let answer = parse(text).unwrap();
    assert_eq!(answer.media.len(), offer.media.len());
    let ours: Vec<&MediaDescription> = answer.media.iter().filter(|m| m.port != 0).collect();
    assert_eq!(ours.len(), 1);
    let audio = ours[0];
    assert_eq!(audio.formats.first(), Some(&n.payload_type.to_string()));
    assert!(matches!(n.ptime_ms, 10 | 20 | 30 | 40 | 60));
    assert!(n.codec != Codec::Opus || n.ptime_ms != 30);
}

proptest! {
    #[test]
    fn sdp_shaped_offers_never_panic(
        before in proptest::collection::vec(sdp_line(), 0..4),
        audio_port in 1u16..,
        audio_pts in proptest::collection::vec(
            prop_oneof![Just(0u8), Just(8u8), Just(18u8), 96u8..=127], 1..6),
        lines in proptest::collection::vec(sdp_line(), 0..16),
        policy in random_policy(),
        v6 in any::<bool>(),
    ) {
        // A usable audio m-line among random ones, so most cases reach a full answer.
        let pts: Vec<String> = audio_pts.iter().map(u8::to_string).collect();
        let text = format!(
            "v=0\r\nc=IN IP4 10.0.0.2\r\n{}\r\nm=audio {audio_port} RTP/AVP {}\r\n{}",
            before.join("\r\n"),
            pts.join(" "),
            lines.join("\r\n")
        );
        if let Ok(offer) = parse(&text) {
            let ip: IpAddr = if v6 { "::1".parse().unwrap() } else { US_V4 };
            let mut local = LocalSession::new(1, ip);
            if let Ok((n, answer)) = local.answer(&offer, &policy, OUR_PORT) {
                check_answer(&offer, &n, &answer);
            }
            let _ = local.offer(&policy, OUR_PORT);
            let _ = local.accept_answer(&offer, &policy);
        }
    }

    #[test]
    fn random_descriptions_never_panic(
        offer in session_description(),
        policy in random_policy(),
        port in any::<u16>(),
    ) {
        let mut local = session();
        let _ = local.answer(&offer, &policy, port);
        let _ = local.offer(&policy, port);
        let _ = local.accept_answer(&offer, &policy);
        let _ = local.answer(&offer, &policy, port);
    }
}

/// Found by the property test: an offer that lists telephone-event before the codec.
#[test]
fn telephone_event_listed_first_still_answers_with_the_codec_first() {
    let offer = parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 101 0\r\na=rtpmap:101 telephone-event/8000\r\n",
    )
    .unwrap();
    let policy = MediaPolicy {
        codecs: vec![Codec::Pcmu],
        ptime_ms: 20,
        telephone_event: true,
    };
    let mut session = LocalSession::new(1, "127.0.0.1".parse().unwrap());
    let (n, text) = session.answer(&offer, &policy, 5000).unwrap();
    assert_eq!(n.payload_type, 0);
    assert!(text.contains("m=audio 5000 RTP/AVP 0 101\r\n"), "{text}");
}
