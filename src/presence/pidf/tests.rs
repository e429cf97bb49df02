//! Round trips, bodies in the shapes real phones PUBLISH, and garbage.

use proptest::prelude::*;

use super::*;
use crate::presence::{Presence, StatusKind};

const CT: &str = "application/pidf+xml";

fn presence(status: StatusKind, text: Option<&str>) -> Presence {
    let mut p = Presence::default_for("1001");
    p.status = status;
    p.custom_text = text.map(str::to_string);
    p
}

fn read(body: &str) -> Result<PublishedStatus, PidfError> {
    read_pidf(body.as_bytes(), CT)
}

fn is(status: StatusKind) -> PublishedStatus {
    PublishedStatus {
        status,
        custom_text: None,
    }
}

fn custom(text: &str) -> PublishedStatus {
    PublishedStatus {
        status: StatusKind::Custom,
        custom_text: Some(text.to_string()),
    }
}

#[test]
fn every_status_round_trips() {
    let m = PidfMapping::default();
    for kind in StatusKind::ALL {
        if kind == StatusKind::Custom {
            continue;
        }
        let body = render_pidf("sip:1001@pbx.example.com", &presence(kind, None), &m);
        assert_eq!(read(&body), Ok(is(kind)), "{body}");
    }
    for text in [
        "Lunch until 2",
        "In a meeting <&\"'> with Zoë",
        "Dans l'avion ✈",
        "Chatty",
    ] {
        let body = render_pidf("sip:1001@h", &presence(StatusKind::Custom, Some(text)), &m);
        assert_eq!(read(&body), Ok(custom(text)), "{body}");
    }
}

#[test]
fn round_trip_holds_for_a_configured_mapping() {
    let mut m = PidfMapping::default();
    m.dnd.basic = Basic::Closed;
    m.dnd.note = "Busy".into();
    m.away.activity = Activity::OnThePhone;
    m.chat.activity = Activity::None;
    m.chat.note = "Ready to chat".into();
    for kind in StatusKind::ALL {
        if kind == StatusKind::Custom {
            continue;
        }
        let body = render_pidf("sip:1001@h", &presence(kind, None), &m);
        assert_eq!(
            read_pidf_with(body.as_bytes(), CT, &m),
            Ok(is(kind)),
            "{body}"
        );
    }
}

#[test]
fn xpidf_round_trips_what_it_can_carry() {
    let m = PidfMapping::default();
    for (kind, back) in [
        (StatusKind::Available, StatusKind::Available),
        (StatusKind::Away, StatusKind::Away),
        (StatusKind::DoNotDisturb, StatusKind::DoNotDisturb),
        (StatusKind::Unavailable, StatusKind::Unavailable),
        (StatusKind::Chat, StatusKind::Available),
    ] {
        let body = render_xpidf("sip:1001@h", &presence(kind, None), &m);
        assert_eq!(
            read_pidf(body.as_bytes(), "application/xpidf+xml"),
            Ok(is(back)),
            "{body}"
        );
    }
}

/// Polycom VVX: tuple-only PIDF, single quotes, note in the tuple, no RPID.
#[test]
fn polycom_single_quotes_and_tuple_note() {
    let body = "<?xml version='1.0' encoding='UTF-8'?>\n\
        <presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:1001@10.0.0.1'>\n\
        <tuple id='1001'><status><basic>open</basic></status>\n\
        <contact priority='0.8'>sip:1001@10.0.0.20</contact><note>Away</note></tuple>\n\
        </presence>";
    assert_eq!(read(body), Ok(is(StatusKind::Away)));
    let dnd = body.replace(">Away<", ">Do Not Disturb<");
    assert_eq!(read(&dnd), Ok(is(StatusKind::DoNotDisturb)));
    let busy = body.replace(">Away<", ">Busy<");
    assert_eq!(read(&busy), Ok(is(StatusKind::DoNotDisturb)));
    let online = body.replace(">Away<", ">Online<");
    assert_eq!(read(&online), Ok(is(StatusKind::Available)));
}

/// Yealink: ISO-8859-1 declared in the prolog, `é` as one byte, other prefixes (`pp`, `es`).
#[test]
fn yealink_latin1_prolog_and_foreign_prefixes() {
    let mut body: Vec<u8> = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n\
        <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
        xmlns:pp=\"urn:ietf:params:xml:ns:pidf:person\" \
        xmlns:es=\"urn:ietf:params:xml:ns:pidf:rpid:status:rpid-status\" \
        xmlns:ep=\"urn:ietf:params:xml:ns:pidf:rpid:rpid-person\" entity=\"sip:1002@pbx\">\r\n\
        <pp:person><status><ep:activities><ep:other>"
        .to_vec();
    body.extend_from_slice(b"R\xE9union d\xE9partement");
    body.extend_from_slice(
        b"</ep:other></ep:activities></status></pp:person>\r\n\
        <tuple id=\"t1\"><status><basic>open</basic></status></tuple>\r\n</presence>\r\n",
    );
    assert_eq!(
        read_pidf(&body, "application/pidf+xml"),
        Ok(custom("Réunion département"))
    );
}

/// Grandstream: no XML declaration, charset only in Content-Type, tuple note with `é`.
#[test]
fn grandstream_latin1_from_content_type() {
    let body = b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:1003@pbx\">\
        <tuple id=\"gs1\"><status><basic>open</basic></status><note>En cong\xE9</note></tuple>\
        </presence>";
    assert_eq!(
        read_pidf(body, "application/pidf+xml; charset=ISO-8859-1"),
        Ok(custom("En congé"))
    );
    assert_eq!(
        read_pidf(body, "application/pidf+xml;charset=\"utf-8\""),
        Ok(custom("En congé")),
        "mislabelled Latin-1 is still read"
    );
}

/// Linphone: data model with `dm:note` in the person and `rpid:on-the-phone`.
#[test]
fn linphone_dm_note_and_on_the_phone() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@sip.example.org">
  <tuple id="qmdd4e"><status><basic>open</basic></status><contact>sip:alice@sip.example.org</contact><timestamp>2024-05-01T10:00:00Z</timestamp></tuple>
  <dm:person id="s6m9ah"><rpid:activities><rpid:on-the-phone/></rpid:activities><dm:note xml:lang="en">Talking to Bob</dm:note></dm:person>
</presence>"#;
    assert_eq!(read(body), Ok(is(StatusKind::DoNotDisturb)));
    let away = body.replace("<rpid:on-the-phone/>", "<rpid:vacation/>");
    assert_eq!(read(&away), Ok(is(StatusKind::Away)));
    let note_only = body.replace(
        "<rpid:activities><rpid:on-the-phone/></rpid:activities>",
        "",
    );
    assert_eq!(read(&note_only), Ok(custom("Talking to Bob")));
}

/// Bria: different prefixes for the same namespaces, an undeclared prefix, `other` naming
/// one of our statuses.
#[test]
fn bria_other_prefixes_and_other_activity() {
    let body = r#"<?xml version="1.0" encoding="utf-8"?>
<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" xmlns:d="urn:ietf:params:xml:ns:pidf:data-model" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" xmlns:c="urn:ietf:params:xml:ns:pidf:cipid" entity="sip:1005@pbx">
 <p:tuple id="bria1"><p:status><p:basic>open</p:basic></p:status></p:tuple>
 <d:person id="p1"><r:activities><r:other>chat</r:other></r:activities><c:display-name>Eve</c:display-name></d:person>
</p:presence>"#;
    assert_eq!(read(body), Ok(is(StatusKind::Chat)));
    let undeclared = r#"<presence entity="sip:1005@pbx"><tuple id="a"><status><basic>open</basic></status></tuple>
<dm:person id="p"><rpid:activities><rpid:away/></rpid:activities></dm:person></presence>"#;
    assert_eq!(read(undeclared), Ok(is(StatusKind::Away)));
}

/// A softphone that only sets a note "Away" on an open tuple, no activities.
#[test]
fn open_with_note_away_and_closed_bodies() {
    let body = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:1006@pbx"><tuple id="x"><status><basic>open</basic></status></tuple><note>Away</note></presence>"#;
    assert_eq!(read(body), Ok(is(StatusKind::Away)));
    let plain = body.replace("<note>Away</note>", "");
    assert_eq!(read(&plain), Ok(is(StatusKind::Available)));
    let closed = plain.replace(">open<", ">closed<");
    assert_eq!(read(&closed), Ok(is(StatusKind::Unavailable)));
    let closed_busy = closed.replace(
        "</presence>",
        "<dm:person xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" id=\"p\"><rpid:activities xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"><rpid:busy/></rpid:activities></dm:person></presence>",
    );
    assert_eq!(read(&closed_busy), Ok(is(StatusKind::DoNotDisturb)));
}

#[test]
fn free_text_is_cleaned_and_cut_to_64_chars() {
    let long = "é".repeat(70);
    let body = format!(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:1@h'><tuple id='t'><status><basic>open</basic></status><note>  {long}\n&amp;more </note></tuple></presence>"
    );
    let got = read(&body).unwrap();
    assert_eq!(got.status, StatusKind::Custom);
    assert_eq!(got.custom_text, Some("é".repeat(64)));
    let body = "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:1@h'><tuple id='t'><status><basic>open</basic></status><note>Out\t&#10;&lt;back&gt; &#233;</note></tuple></presence>";
    assert_eq!(read(body), Ok(custom("Out <back> é")));
}

#[test]
fn unreadable_bodies_are_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", CT),
        (b"   \r\n", CT),
        (b"hello", CT),
        (b"<presence", CT),
        (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple>", CT),
        (b"<presence><tuple></presence>", CT),
        (b"<html><body>hi</body></html>", CT),
        (
            b"<x:presence xmlns:x='urn:example:other'><tuple><status><basic>open</basic></status></tuple></x:presence>",
            CT,
        ),
        (b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'/>", CT),
        (
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple id='t'><status><basic>maybe</basic></status></tuple></presence>",
            CT,
        ),
        (b"<presence><tuple id='t'><status><basic>open</basic></status></tuple></presence>", "text/plain"),
        (b"<presence><tuple id='t'><status><basic>open</basic></status></tuple></presence>", "application/pidf+xml; charset=utf-16"),
        (b"<?xml version='1.0' encoding='Shift_JIS'?><presence/>", CT),
        (b"<presence><note>&bogus;</note><tuple id='t'><status><basic>open</basic></status></tuple></presence>x<p/>", CT),
    ];
    for (body, ct) in cases {
        let got = read_pidf(body, ct);
        assert!(
            got.is_err(),
            "{:?} ({ct}) read as {got:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(matches!(
        read_pidf(b"<presence><tuple/></presence>", "text/plain"),
        Err(PidfError::UnsupportedContentType(_))
    ));
    assert!(matches!(
        read_pidf(b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>", CT),
        Err(PidfError::NoStatus)
    ));
    assert!(matches!(
        read_pidf(b"<html/>", CT),
        Err(PidfError::NotPresence(_))
    ));
}

#[test]
fn size_and_depth_are_bounded() {
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        read_pidf(&big, CT),
        Err(PidfError::TooLarge {
            len: MAX_BODY_BYTES + 1,
            max: MAX_BODY_BYTES
        })
    );
    let deep = format!(
        "<presence>{}{}</presence>",
        "<a>".repeat(100),
        "</a>".repeat(100)
    );
    assert_eq!(read(&deep), Err(PidfError::TooDeep));
}

#[test]
fn error_messages_say_what_is_wrong() {
    let e = read_pidf(b"<a/>", "text/html").unwrap_err();
    assert!(e.to_string().contains("text/html"), "{e}");
    let e = read("<foo/>").unwrap_err();
    assert!(e.to_string().contains("'foo'"), "{e}");
}

proptest! {
    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_pidf(&body, CT);
        let _ = read_pidf(&body, "application/pidf+xml; charset=iso-8859-1");
    }

    #[test]
    fn mangled_real_bodies_never_panic(cut in 0usize..700, byte in any::<u8>(), at in 0usize..700) {
        let m = PidfMapping::default();
        let mut body = render_pidf("sip:1001@h", &presence(StatusKind::Chat, None), &m).into_bytes();
        if let Some(b) = body.get_mut(at) {
            *b = byte;
        }
        body.truncate(cut);
        let _ = read_pidf(&body, CT);
    }

    #[test]
    fn any_custom_text_round_trips_cleaned(text in "\\PC{1,64}") {
        let m = PidfMapping::default();
        let body = render_pidf("sip:1001@h", &presence(StatusKind::Custom, Some(&text)), &m);
        let got = read_pidf(body.as_bytes(), CT).unwrap();
        let cleaned = clean_text(&text);
        prop_assume!(!cleaned.is_empty());
        match got.status {
            StatusKind::Custom => prop_assert_eq!(got.custom_text, Some(cleaned)),
            // The text happens to name a status ("away", "DND", "online"...).
            _ => prop_assert_eq!(got.custom_text, None),
        }
    }
}
