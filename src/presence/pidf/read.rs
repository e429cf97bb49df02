//! PUBLISH bodies: what status a phone asked for, from the PIDF/RPID (or XPIDF) it sent.
//!
//! Phones are sloppy, so the reader is tolerant: any prefixes (matched by namespace URI, or by
//! local name when unprefixed or the prefix is undeclared), single or double quotes, UTF-8 or
//! ISO-8859-1 (from the Content-Type charset or the XML declaration), and the note wherever
//! the phone put it. It is strict only where guessing would be wrong: a body that is not XML,
//! has no `presence` root, or says nothing about status is an error (the UA answers 400).
//!
//! How a body becomes a status, first match wins:
//! 1. It looks exactly like one of our own mapping rows (basic, activity, note) -> that status.
//! 2. `basic` closed -> Unavailable (DoNotDisturb when the activity is busy).
//! 3. RPID activity: busy, on-the-phone, meeting, presentation, performance -> DoNotDisturb
//!    (the user must not be disturbed, whether the phone says why or not); away, vacation,
//!    holiday, sleeping, travel, in-transit, meal, breakfast, dinner, appointment,
//!    permanent-absence -> Away; `other` with text -> the status that text names, else
//!    Custom(text).
//! 4. Open with no telling activity: a note naming a status ("Chat", "Do Not Disturb", "DND",
//!    "Away", a configured note...) -> that status; no note or a generic one ("Online",
//!    "Available", "Open") -> Available; other free text -> Custom(text).
//!
//! Custom text is cleaned of control characters and cut to 64 characters.

use std::borrow::Cow;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::mapping::{clean_text, Activity, Basic, PidfMapping};
use crate::presence::{StatusKind, MAX_CUSTOM_TEXT_CHARS};

/// The largest body read; real PUBLISH bodies are well under 4 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Deepest element nesting accepted (real bodies nest 5 deep).
const MAX_DEPTH: usize = 32;

/// What a PUBLISH asks the store to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedStatus {
    pub status: StatusKind,
    /// Set only for Custom: cleaned, 1 to 64 characters.
    pub custom_text: Option<String>,
}

/// Why a PUBLISH body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidfError {
    #[error("body is {len} bytes; at most {max} are accepted")]
    TooLarge { len: usize, max: usize },
    #[error("body is empty")]
    Empty,
    #[error("content type '{0}' is not a presence document (expected application/pidf+xml)")]
    UnsupportedContentType(String),
    #[error("character set '{0}' is not supported (use UTF-8 or ISO-8859-1)")]
    UnsupportedCharset(String),
    #[error("body is not well-formed XML: {0}")]
    NotXml(String),
    #[error("elements nest deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("root element is '{0}', not 'presence'")]
    NotPresence(String),
    #[error("presence document has no basic status and no activity")]
    NoStatus,
}

/// Reads a PUBLISH body against the default mapping.
pub fn read_pidf(body: &[u8], content_type: &str) -> Result<PublishedStatus, PidfError> {
    read_pidf_with(body, content_type, &PidfMapping::default())
}

/// Reads a PUBLISH body; `mapping` (the configured table) lets our own renderings of each
/// status, and the configured notes, read back as the status they stand for.
pub fn read_pidf_with(
    body: &[u8],
    content_type: &str,
    mapping: &PidfMapping,
) -> Result<PublishedStatus, PidfError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(PidfError::TooLarge {
            len: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let charset = media_charset(content_type)?;
    let text = decode(body, charset.as_deref())?;
    if text.trim().is_empty() {
        return Err(PidfError::Empty);
    }
    let facts = scan(&text)?;
    decide(&facts, mapping)
}

/// Checks the media type and returns its charset parameter, if any.
fn media_charset(content_type: &str) -> Result<Option<String>, PidfError> {
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let known = matches!(
        media.as_str(),
        "application/pidf+xml"
            | "application/cpim-pidf+xml"
            | "application/xpidf+xml"
            | "application/xml"
            | "text/xml"
    );
    if !known {
        return Err(PidfError::UnsupportedContentType(content_type.to_string()));
    }
    Ok(parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    }))
}

/// Decodes the body to text. The Content-Type charset wins over the XML declaration; UTF-8 is
/// the default; a body that claims UTF-8 but is not is read as ISO-8859-1, which is what
/// phones that get this wrong actually send.
fn decode(body: &[u8], charset: Option<&str>) -> Result<String, PidfError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let declared = charset
        .map(str::to_string)
        .or_else(|| declared_encoding(body));
    let latin1 = match declared.as_deref() {
        None | Some("utf-8" | "utf8" | "us-ascii" | "ascii") => false,
        Some(
            "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1"
            | "windows-1252" | "cp1252",
        ) => true,
        Some(other) => return Err(PidfError::UnsupportedCharset(other.to_string())),
    };
    if !latin1 {
        if let Ok(text) = std::str::from_utf8(body) {
            return Ok(text.to_string());
        }
        tracing::debug!("PIDF body is not valid UTF-8; reading it as ISO-8859-1");
    }
    Ok(body.iter().map(|&b| char::from(b)).collect())
}

/// The `encoding` of the XML declaration, lower-cased, read from the raw bytes.
fn declared_encoding(body: &[u8]) -> Option<String> {
    let head = body.get(..body.len().min(256))?;
    let head: String = head.iter().map(|&b| char::from(b)).collect();
    let decl = head.trim_start().strip_prefix("<?xml")?;
    let decl = &decl[..decl.find("?>")?];
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| matches!(c, '"' | '\''))?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].trim().to_ascii_lowercase())
}

/// What the body says, gathered in one pass.
#[derive(Debug, Default)]
struct Facts {
    basic: Option<Basic>,
    /// RPID activity element names in document order, with `other`'s text.
    activities: Vec<(String, Option<String>)>,
    person_note: Option<String>,
    presence_note: Option<String>,
    tuple_note: Option<String>,
}

/// The elements the reader cares about, by meaning rather than spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tag {
    Presence,
    Tuple,
    Status,
    Basic,
    Note,
    Person,
    Activities,
    Activity(String),
    /// XPIDF `<status status="..."/>` and `<msnsubstatus substatus="..."/>` are read from
    /// their attributes; their other elements (atom, address) are just containers.
    Other,
}

/// Text being collected for the element on top of the stack.
#[derive(Debug)]
struct Open {
    tag: Tag,
    text: String,
}

fn scan(text: &str) -> Result<Facts, PidfError> {
    let mut reader = NsReader::from_str(text);
    let mut facts = Facts::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut seen_root = false;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| PidfError::NotXml(e.to_string()))?;
        let known_ns = namespace_ok(&ns);
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let empty = matches!(event, Event::Empty(_));
                let local = start.local_name().as_ref().to_string();
                if seen_root && stack.is_empty() {
                    return Err(PidfError::NotXml("a second root element".into()));
                }
                if !seen_root {
                    seen_root = true;
                    if local != "presence" || !known_ns {
                        return Err(PidfError::NotPresence(start.name().as_ref().to_string()));
                    }
                }
                let parent = stack.last().map(|o| &o.tag);
                let tag = if known_ns {
                    classify(&local, parent, stack.is_empty())
                } else {
                    Tag::Other
                };
                if known_ns {
                    read_xpidf_attributes(&local, start, &mut facts);
                }
                if empty {
                    finish(&tag, String::new(), &stack, &mut facts);
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Err(PidfError::TooDeep);
                    }
                    stack.push(Open {
                        tag,
                        text: String::new(),
                    });
                }
            }
            Event::End(_) => {
                if let Some(open) = stack.pop() {
                    finish(&open.tag, open.text, &stack, &mut facts);
                }
            }
            Event::Text(t) => match stack.last_mut() {
                Some(open) => open.text.push_str(&t.xml10_content()),
                None if !t.xml10_content().trim().is_empty() => {
                    return Err(PidfError::NotXml("text outside the root element".into()))
                }
                None => {}
            },
            Event::CData(t) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(open) = stack.last_mut() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => open.text.push(c),
                        Ok(None) => {
                            let name = r.xml10_content();
                            if let Some(s) = resolve_predefined_entity(&name) {
                                open.text.push_str(s);
                            }
                        }
                        Err(e) => return Err(PidfError::NotXml(e.to_string())),
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(PidfError::NotXml("no root element".into()));
    }
    if !stack.is_empty() {
        return Err(PidfError::NotXml("document ends inside an element".into()));
    }
    Ok(facts)
}

/// PIDF-family namespaces (pidf, data-model, rpid and their early drafts), no namespace
/// (XPIDF, or phones that forget it), or an undeclared prefix all count; any other namespace
/// (cipid, OMA, geopriv...) is someone else's vocabulary.
fn namespace_ok(ns: &ResolveResult<'_>) -> bool {
    match ns {
        ResolveResult::Bound(ns) => {
            let uri: &str = ns.as_ref();
            uri.starts_with("urn:ietf:params:xml:ns:pidf")
        }
        ResolveResult::Unbound | ResolveResult::Unknown(_) => true,
    }
}

fn classify(local: &str, parent: Option<&Tag>, is_root: bool) -> Tag {
    match (local, parent) {
        ("presence", _) if is_root => Tag::Presence,
        ("tuple", Some(Tag::Presence)) => Tag::Tuple,
        ("status", Some(Tag::Tuple)) => Tag::Status,
        ("basic", Some(Tag::Status)) => Tag::Basic,
        ("note", _) => Tag::Note,
        ("person", Some(Tag::Presence)) => Tag::Person,
        ("activities", _) => Tag::Activities,
        (name, Some(Tag::Activities)) => Tag::Activity(name.to_string()),
        _ => Tag::Other,
    }
}

/// XPIDF carries its status in attributes: `status="open|closed|inuse"` and
/// `substatus="online|away|busy|onthephone|berightback|outtolunch|idle|offline"`.
fn read_xpidf_attributes(local: &str, start: &BytesStart<'_>, facts: &mut Facts) {
    let wanted = match local {
        "status" => "status",
        "msnsubstatus" => "substatus",
        _ => return,
    };
    let value = start.attributes().flatten().find_map(|a| {
        (a.key.local_name().as_ref() == wanted)
            .then(|| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(Cow::into_owned)
            })
            .flatten()
    });
    let Some(value) = value else { return };
    let value = value.trim().to_ascii_lowercase();
    let activity = match (wanted, value.as_str()) {
        ("status", "open") => return set_basic(facts, Basic::Open),
        ("status", "closed") | ("substatus", "offline") => return set_basic(facts, Basic::Closed),
        ("status", "inuse") | ("substatus", "onthephone") => "on-the-phone",
        ("substatus", "away" | "berightback" | "outtolunch" | "idle") => "away",
        ("substatus", "busy") => "busy",
        _ => return,
    };
    facts.activities.push((activity.to_string(), None));
}

fn set_basic(facts: &mut Facts, basic: Basic) {
    if facts.basic.is_none() || basic == Basic::Closed {
        facts.basic = Some(basic);
    }
}

/// Records a closed element's meaning. The first tuple's basic wins (XPIDF `closed` too);
/// the first note of each kind wins.
fn finish(tag: &Tag, text: String, stack: &[Open], facts: &mut Facts) {
    let parent = stack.last().map(|o| &o.tag);
    match tag {
        Tag::Basic => {
            let basic = match text.trim().to_ascii_lowercase().as_str() {
                "open" => Some(Basic::Open),
                "closed" => Some(Basic::Closed),
                _ => None,
            };
            if facts.basic.is_none() {
                facts.basic = basic;
            }
        }
        Tag::Note => {
            let note = clean_text(&text);
            if note.is_empty() {
                return;
            }
            let slot = match parent {
                Some(Tag::Person) => &mut facts.person_note,
                Some(Tag::Presence) => &mut facts.presence_note,
                Some(Tag::Tuple | Tag::Status | Tag::Other) => &mut facts.tuple_note,
                _ => return,
            };
            if slot.is_none() {
                *slot = Some(note);
            }
        }
        Tag::Activity(name) => {
            let text = Some(clean_text(&text)).filter(|t| !t.is_empty());
            facts.activities.push((name.clone(), text));
        }
        _ => {}
    }
}

/// Turns the gathered facts into a status (see the module docs for the rules).
fn decide(facts: &Facts, mapping: &PidfMapping) -> Result<PublishedStatus, PidfError> {
    let activity = facts
        .activities
        .iter()
        .find(|(name, _)| name != "unknown" && name != "note");
    if facts.basic.is_none() && activity.is_none() {
        return Err(PidfError::NoStatus);
    }
    let basic = facts.basic.unwrap_or(Basic::Open);
    let note = facts
        .person_note
        .as_deref()
        .or(facts.presence_note.as_deref())
        .or(facts.tuple_note.as_deref());
    let fixed = |status| {
        Ok(PublishedStatus {
            status,
            custom_text: None,
        })
    };

    // 1. One of our own rows, exactly.
    let our_activity = match activity.map(|(n, _)| n.as_str()) {
        None => Some(Activity::None),
        Some("away") => Some(Activity::Away),
        Some("busy") => Some(Activity::Busy),
        Some("on-the-phone") => Some(Activity::OnThePhone),
        Some("meeting") => Some(Activity::Meeting),
        Some("other") => Some(Activity::Other),
        Some(_) => None,
    };
    let activity_text = activity.and_then(|(_, t)| t.as_deref());
    for kind in StatusKind::ALL {
        if kind == StatusKind::Custom {
            continue;
        }
        let look = mapping.look(kind);
        let note_matches = |n: &str| n.eq_ignore_ascii_case(clean_text(&look.note).as_str());
        let other_matches =
            look.activity != Activity::Other || activity_text.is_none_or(note_matches);
        if look.basic == basic
            && Some(look.activity) == our_activity
            && note.is_some_and(note_matches)
            && other_matches
        {
            return fixed(kind);
        }
    }

    // 2. Closed.
    if basic == Basic::Closed {
        let busy = activity.is_some_and(|(n, _)| n == "busy");
        return fixed(if busy {
            StatusKind::DoNotDisturb
        } else {
            StatusKind::Unavailable
        });
    }

    // 3. A telling activity.
    if let Some((name, text)) = activity {
        match name.as_str() {
            "busy" | "on-the-phone" | "meeting" | "presentation" | "performance" => {
                return fixed(StatusKind::DoNotDisturb)
            }
            "away" | "vacation" | "holiday" | "sleeping" | "travel" | "in-transit" | "meal"
            | "breakfast" | "dinner" | "appointment" | "permanent-absence" => {
                return fixed(StatusKind::Away)
            }
            "other" => {
                if let Some(text) = text.as_deref().or(note) {
                    return Ok(from_text(text, mapping));
                }
            }
            _ => {}
        }
    }

    // 4. Open: the note decides.
    Ok(match note {
        Some(text) => from_text(text, mapping),
        None => PublishedStatus {
            status: StatusKind::Available,
            custom_text: None,
        },
    })
}

/// A free text: the status it names, Available for a generic "online", else Custom(text).
fn from_text(text: &str, mapping: &PidfMapping) -> PublishedStatus {
    let fixed = |status| PublishedStatus {
        status,
        custom_text: None,
    };
    if let Some(kind) = names_status(text, mapping) {
        return fixed(kind);
    }
    let norm = text.trim().to_ascii_lowercase();
    if matches!(norm.as_str(), "open" | "online" | "available" | "idle") {
        return fixed(StatusKind::Available);
    }
    let cut: String = clean_text(text)
        .chars()
        .take(MAX_CUSTOM_TEXT_CHARS)
        .collect();
    let cut = cut.trim_end().to_string();
    if cut.is_empty() {
        return fixed(StatusKind::Available);
    }
    PublishedStatus {
        status: StatusKind::Custom,
        custom_text: Some(cut),
    }
}

/// The non-Custom status a note names: a configured note, a label, or a common spelling.
fn names_status(text: &str, mapping: &PidfMapping) -> Option<StatusKind> {
    let text = text.trim();
    StatusKind::ALL
        .into_iter()
        .filter(|&k| k != StatusKind::Custom)
        .find(|&k| {
            text.eq_ignore_ascii_case(clean_text(&mapping.look(k).note).as_str())
                || text.eq_ignore_ascii_case(k.label())
        })
        .or_else(|| {
            text.parse::<StatusKind>()
                .ok()
                .filter(|&k| k != StatusKind::Custom)
        })
}
