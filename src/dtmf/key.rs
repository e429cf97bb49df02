//! The sixteen DTMF keys, shared by every key source (RFC 4733, in-band, SIP INFO) and the IVR.

use std::fmt;
use std::str::FromStr;

/// One key of a phone's keypad (plus the rarely seen A-D column), the unit the IVR reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    D0,
    D1,
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
    D8,
    D9,
    Star,
    Pound,
    A,
    B,
    C,
    D,
}

/// A character that is not a DTMF key, kept so errors can say which one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a DTMF key (0-9, *, #, A-D)")]
pub struct NotAKey(pub char);

impl Key {
    /// All keys in RFC 4733 event-code order (0-9, *, #, A-D).
    pub const ALL: [Key; 16] = [
        Key::D0,
        Key::D1,
        Key::D2,
        Key::D3,
        Key::D4,
        Key::D5,
        Key::D6,
        Key::D7,
        Key::D8,
        Key::D9,
        Key::Star,
        Key::Pound,
        Key::A,
        Key::B,
        Key::C,
        Key::D,
    ];

    /// Maps an RFC 4733 §3.2 event code (0-15) to a key; other events (flash, tones) are not keys.
    pub fn from_event_code(code: u8) -> Option<Key> {
        Key::ALL.get(usize::from(code)).copied()
    }

    /// The RFC 4733 event code, so fixture writers and tests can encode a key.
    pub fn event_code(self) -> u8 {
        // The enum is declared in event-code order.
        self as u8
    }

    /// The character a user sees on the keypad; also the form used in config and transcripts.
    pub fn as_char(self) -> char {
        match self {
            Key::D0 => '0',
            Key::D1 => '1',
            Key::D2 => '2',
            Key::D3 => '3',
            Key::D4 => '4',
            Key::D5 => '5',
            Key::D6 => '6',
            Key::D7 => '7',
            Key::D8 => '8',
            Key::D9 => '9',
            Key::Star => '*',
            Key::Pound => '#',
            Key::A => 'A',
            Key::B => 'B',
            Key::C => 'C',
            Key::D => 'D',
        }
    }

    /// Parses a keypad character; `a-d` are accepted as well as `A-D` (SIP INFO senders vary).
    pub fn from_char(c: char) -> Result<Key, NotAKey> {
        Ok(match c {
            '0'..='9' => Key::ALL[(c as u8 - b'0') as usize],
            '*' => Key::Star,
            '#' => Key::Pound,
            'A' | 'a' => Key::A,
            'B' | 'b' => Key::B,
            'C' | 'c' => Key::C,
            'D' | 'd' => Key::D,
            other => return Err(NotAKey(other)),
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

impl FromStr for Key {
    type Err = NotAKey;
    fn from_str(s: &str) -> Result<Key, NotAKey> {
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Key::from_char(c),
            (Some(c), Some(_)) => Err(NotAKey(c)),
            (None, _) => Err(NotAKey(' ')),
        }
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_char().encode_utf8(&mut [0; 4]))
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes_round_trip() {
        for code in 0..16u8 {
            let key = Key::from_event_code(code).expect("0-15 are keys");
            assert_eq!(key.event_code(), code);
        }
        assert_eq!(Key::from_event_code(16), None);
        assert_eq!(Key::from_event_code(10), Some(Key::Star));
        assert_eq!(Key::from_event_code(11), Some(Key::Pound));
    }

    #[test]
    fn chars_round_trip() {
        for key in Key::ALL {
            assert_eq!(Key::from_char(key.as_char()), Ok(key));
        }
        assert_eq!(Key::from_char('x'), Err(NotAKey('x')));
        assert_eq!("d".parse::<Key>(), Ok(Key::D));
        assert!("12".parse::<Key>().is_err());
        assert!("".parse::<Key>().is_err());
    }
}
