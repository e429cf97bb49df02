//! NOTIFY bodies: PIDF with RPID in a data-model person (RFC 3863/4479/4480), and the older
//! XPIDF some phones still ask for. Built as strings: the shapes are fixed and small, and every
//! piece of outside text goes through [`escape`].

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::mapping::{clean_text, Activity, Basic, PidfMapping};
use super::{NS_DM, NS_PIDF, NS_RPID};
use crate::presence::Presence;

/// The `application/pidf+xml` body for one presentity.
///
/// Order follows the schema and DESIGN.md: the tuple (basic status, note, timestamp), the
/// presence-level note, then `dm:person` with `rpid:activities` (unless the activity is none)
/// and a `dm:note`. The note is repeated in all three places because phones read different ones.
pub fn render_pidf(entity: &str, presence: &Presence, mapping: &PidfMapping) -> String {
    let shown = mapping.shown(presence);
    let note = escape(&shown.note);
    let mut out = String::with_capacity(640);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<presence xmlns=\"{NS_PIDF}\" xmlns:dm=\"{NS_DM}\" xmlns:rpid=\"{NS_RPID}\" entity=\"{}\">",
        escape(entity)
    );
    let _ = writeln!(
        out,
        "  <tuple id=\"{}\">",
        xml_id("t-", &presence.extension)
    );
    let _ = writeln!(
        out,
        "    <status>\n      <basic>{}</basic>\n    </status>",
        shown.basic.as_str()
    );
    let _ = writeln!(out, "    <note>{note}</note>");
    if let Some(stamp) = presence.updated_at.and_then(timestamp) {
        let _ = writeln!(out, "    <timestamp>{stamp}</timestamp>");
    }
    out.push_str("  </tuple>\n");
    let _ = writeln!(out, "  <note>{note}</note>");
    let _ = writeln!(
        out,
        "  <dm:person id=\"{}\">",
        xml_id("p-", &presence.extension)
    );
    match shown.activity {
        Activity::None => {}
        Activity::Other => {
            let _ = writeln!(
                out,
                "    <rpid:activities><rpid:other>{note}</rpid:other></rpid:activities>"
            );
        }
        named => {
            let _ = writeln!(
                out,
                "    <rpid:activities><rpid:{}/></rpid:activities>",
                named.as_str()
            );
        }
    }
    let _ = writeln!(out, "    <dm:note>{note}</dm:note>");
    out.push_str("  </dm:person>\n</presence>\n");
    out
}

/// The `application/xpidf+xml` body (the pre-PIDF Microsoft/Polycom format): only open/closed
/// and an MSN substatus survive; there is no note.
pub fn render_xpidf(entity: &str, presence: &Presence, mapping: &PidfMapping) -> String {
    let shown = mapping.shown(presence);
    let entity = escape(entity);
    let (status, substatus) = match (shown.basic, shown.activity) {
        (Basic::Closed, _) => ("closed", "offline"),
        (Basic::Open, Activity::Away) => ("open", "away"),
        (Basic::Open, Activity::Busy | Activity::Meeting) => ("open", "busy"),
        (Basic::Open, Activity::OnThePhone) => ("open", "onthephone"),
        (Basic::Open, Activity::None | Activity::Other) => ("open", "online"),
    };
    let mut out = String::with_capacity(400);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(
        "<!DOCTYPE presence PUBLIC \"-//IETF//DTD RFCxxxx XPIDF 1.0//EN\" \"xpidf.dtd\">\n",
    );
    out.push_str("<presence>\n");
    let _ = writeln!(out, "<presentity uri=\"{entity};method=SUBSCRIBE\"/>");
    let _ = writeln!(out, "<atom id=\"{}\">", escape(&presence.extension));
    let _ = writeln!(
        out,
        "<address uri=\"{entity};user=ip\" priority=\"0.800000\">"
    );
    let _ = writeln!(out, "<status status=\"{status}\"/>");
    let _ = writeln!(out, "<msnsubstatus substatus=\"{substatus}\"/>");
    out.push_str("</address>\n</atom>\n</presence>\n");
    out
}

/// XML-escapes text for element content and (double- or single-quoted) attribute values,
/// after [`clean_text`] has removed what XML 1.0 cannot carry.
pub fn escape(text: &str) -> String {
    let clean = if text
        .chars()
        .any(|c| c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
    {
        clean_text(text)
    } else {
        text.to_string()
    };
    let mut out = String::with_capacity(clean.len() + 8);
    for c in clean.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A valid `xs:ID` (an NCName) from a prefix and an extension: the prefix supplies the leading
/// letter, and every character outside `[A-Za-z0-9._-]` becomes `_`.
pub fn xml_id(prefix: &str, extension: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + extension.len());
    id.push_str(prefix);
    id.extend(extension.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '_'
        }
    }));
    id
}

/// An `xs:dateTime` for the tuple's timestamp; `None` outside years 1970..=9999, which
/// humantime (and xs:dateTime's four-digit years) cannot write.
fn timestamp(at: SystemTime) -> Option<String> {
    const YEAR_10000: Duration = Duration::from_secs(253_402_300_800);
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    (since < YEAR_10000).then(|| humantime::format_rfc3339_seconds(at).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::StatusKind;

    fn presence(ext: &str, status: StatusKind, text: Option<&str>) -> Presence {
        let mut p = Presence::default_for(ext);
        p.status = status;
        p.custom_text = text.map(str::to_string);
        p
    }

    #[test]
    fn pidf_has_tuple_then_note_then_person() {
        let body = render_pidf(
            "sip:1001@pbx.example.com",
            &presence("1001", StatusKind::Away, None),
            &PidfMapping::default(),
        );
        let tuple = body.find("<tuple id=\"t-1001\">").unwrap();
        let note = body.find("\n  <note>Away</note>").unwrap();
        let person = body.find("<dm:person id=\"p-1001\">").unwrap();
        assert!(tuple < note && note < person, "{body}");
        assert!(body.contains("<basic>open</basic>"), "{body}");
        assert!(
            body.contains("<rpid:activities><rpid:away/></rpid:activities>"),
            "{body}"
        );
        assert!(body.contains("<dm:note>Away</dm:note>"), "{body}");
        assert!(
            body.contains("entity=\"sip:1001@pbx.example.com\""),
            "{body}"
        );
        assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    }

    #[test]
    fn no_activity_means_no_activities_element() {
        let m = PidfMapping::default();
        for kind in [StatusKind::Available, StatusKind::Unavailable] {
            let body = render_pidf("sip:1@h", &presence("1", kind, None), &m);
            assert!(!body.contains("rpid:activities"), "{body}");
            assert!(body.contains(&format!("<dm:note>{}</dm:note>", kind.label())));
        }
        let closed = render_pidf("sip:1@h", &presence("1", StatusKind::Unavailable, None), &m);
        assert!(closed.contains("<basic>closed</basic>"));
        let dnd = render_pidf(
            "sip:1@h",
            &presence("1", StatusKind::DoNotDisturb, None),
            &m,
        );
        assert!(dnd.contains("<rpid:busy/>") && dnd.contains("Do Not Disturb"));
        let chat = render_pidf("sip:1@h", &presence("1", StatusKind::Chat, None), &m);
        assert!(chat.contains("<rpid:other>Chat</rpid:other>"), "{chat}");
    }

    #[test]
    fn custom_text_is_escaped_everywhere() {
        let p = presence("1001", StatusKind::Custom, Some("a<b & \"c\" 'd'\u{1}é"));
        let body = render_pidf("sip:1001@h?x=\"1\"&y", &p, &PidfMapping::default());
        let esc = "a&lt;b &amp; &quot;c&quot; &apos;d&apos;é";
        assert!(
            body.contains(&format!("<rpid:other>{esc}</rpid:other>")),
            "{body}"
        );
        assert!(
            body.contains(&format!("<dm:note>{esc}</dm:note>")),
            "{body}"
        );
        assert!(body.contains("entity=\"sip:1001@h?x=&quot;1&quot;&amp;y\""));
        assert!(!body.contains('\u{1}'));
    }

    #[test]
    fn ids_are_ncnames_whatever_the_extension() {
        assert_eq!(xml_id("t-", "1001"), "t-1001");
        assert_eq!(xml_id("p-", "+49.30_x-1"), "p-_49.30_x-1");
        assert_eq!(xml_id("t-", "a b:c/é"), "t-a_b_c__");
        let body = render_pidf(
            "sip:+4930@h",
            &presence("+4930", StatusKind::Available, None),
            &PidfMapping::default(),
        );
        assert!(body.contains("<tuple id=\"t-_4930\">"), "{body}");
        assert!(body.contains("<dm:person id=\"p-_4930\">"), "{body}");
    }

    #[test]
    fn timestamp_is_written_when_known_and_in_range() {
        let mut p = presence("7", StatusKind::Away, None);
        p.updated_at = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let body = render_pidf("sip:7@h", &p, &PidfMapping::default());
        assert!(
            body.contains("<timestamp>2023-11-14T22:13:20Z</timestamp>"),
            "{body}"
        );
        p.updated_at = UNIX_EPOCH.checked_sub(Duration::from_secs(5));
        let body = render_pidf("sip:7@h", &p, &PidfMapping::default());
        assert!(!body.contains("<timestamp>"), "{body}");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            None
        );
    }

    #[test]
    fn configured_mapping_changes_the_body() {
        let mut m = PidfMapping::default();
        m.dnd.basic = Basic::Closed;
        m.dnd.note = "Busy".into();
        let body = render_pidf(
            "sip:1@h",
            &presence("1", StatusKind::DoNotDisturb, None),
            &m,
        );
        assert!(body.contains("<basic>closed</basic>") && body.contains("<note>Busy</note>"));
    }

    #[test]
    fn xpidf_has_the_classic_shape() {
        let m = PidfMapping::default();
        let body = render_xpidf(
            "sip:1001@h",
            &presence("1001", StatusKind::DoNotDisturb, None),
            &m,
        );
        assert!(body.contains("<presentity uri=\"sip:1001@h;method=SUBSCRIBE\"/>"));
        assert!(body.contains("<atom id=\"1001\">"));
        assert!(body.contains("<address uri=\"sip:1001@h;user=ip\" priority=\"0.800000\">"));
        assert!(body.contains("<status status=\"open\"/>"));
        assert!(body.contains("<msnsubstatus substatus=\"busy\"/>"));
        let off = render_xpidf("sip:1@h", &presence("1", StatusKind::Unavailable, None), &m);
        assert!(off.contains("status=\"closed\"") && off.contains("substatus=\"offline\""));
        let away = render_xpidf("sip:1@h", &presence("1", StatusKind::Away, None), &m);
        assert!(away.contains("substatus=\"away\""));
        let chat = render_xpidf("sip:1@h", &presence("1", StatusKind::Chat, None), &m);
        assert!(chat.contains("substatus=\"online\""));
    }
}
