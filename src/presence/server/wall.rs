//! Wall-clock times in records: Unix milliseconds, so a stored expiry means the same moment
//! after a restart (an `Instant` does not survive the process).

use std::time::SystemTime;

use crate::presence::{from_unix_millis, to_unix_millis};

/// serde `with` module for a `SystemTime` stored as Unix milliseconds.
pub(super) mod unix_millis {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(to_unix_millis(*t))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = <i64 as serde::Deserialize>::deserialize(d)?;
        Ok(from_unix_millis(ms))
    }
}
