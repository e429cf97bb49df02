//! Presence bodies, sans-IO: what NOTIFY sends (PIDF + RPID, or XPIDF) and what a PUBLISH
//! asks for. `mapping` is the configurable table between our statuses and what phones show.

mod mapping;
mod read;
mod render;
#[cfg(test)]
mod tests;

pub use mapping::{clean_text, Activity, Basic, MappingError, PidfMapping, Shown, StatusLook};
pub use read::{read_pidf, read_pidf_with, PidfError, PublishedStatus, MAX_BODY_BYTES};
pub use render::{escape, render_pidf, render_xpidf, xml_id};

/// PIDF (RFC 3863), the default namespace of every body we render.
pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
/// The presence data model (RFC 4479), prefix `dm`: `dm:person`, `dm:note`.
pub const NS_DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// Rich presence (RFC 4480), prefix `rpid`: `rpid:activities`.
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";

/// The media type of [`render_pidf`] bodies.
pub const PIDF_CONTENT_TYPE: &str = "application/pidf+xml";
/// The media type of [`render_xpidf`] bodies.
pub const XPIDF_CONTENT_TYPE: &str = "application/xpidf+xml";
