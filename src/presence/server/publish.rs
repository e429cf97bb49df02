//! Phones' own publications (RFC 3903): the event state compositor's bookkeeping of entity
//! tags and expiries. Which status a PIDF body means, and writing it to the store, is the
//! shell's job; this table decides whether a PUBLISH is an initial publication, a refresh, a
//! modification or a removal, and when a publication runs out.
//!
//! When a publication expires or is removed, we recommend keeping the extension's last
//! published status rather than falling back to Available: the store holds one status per
//! extension (also set by feature codes and the API), phones re-publish well before expiry,
//! and a phone that stopped publishing is better shown as it last said than as suddenly free.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::subscriptions::{check_intervals, PolicyError};

/// The facts of one PUBLISH (whose `Event` already passed [`super::is_supported_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The presentity: the Request-URI user.
    pub extension: String,
    /// The `SIP-If-Match` value.
    pub if_match: Option<String>,
    /// The Expires header; `None` when absent.
    pub expires: Option<u32>,
    /// Whether the request carries a body (a presence document).
    pub has_body: bool,
}

/// Publication intervals, from config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishPolicy {
    /// Shorter requested intervals (other than 0) get `423` with `Min-Expires`.
    pub min_expires: u32,
    /// Longer requested intervals are shortened to this.
    pub max_expires: u32,
    /// Granted when the PUBLISH has no Expires (RFC 3903 §5: the package's default, one hour
    /// for presence).
    pub default_expires: u32,
}

impl Default for PublishPolicy {
    fn default() -> Self {
        PublishPolicy {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
        }
    }
}

impl PublishPolicy {
    /// Checks the intervals, so config loading can refuse nonsense.
    pub fn validate(&self) -> Result<(), PolicyError> {
        check_intervals(self.min_expires, self.max_expires, self.default_expires)
    }
}

/// A PUBLISH the user agent must refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishReject {
    /// `400`: an initial PUBLISH without a body, or with `Expires: 0`; the text is the reason.
    BadRequest(&'static str),
    /// `412 Conditional Request Failed`: the `SIP-If-Match` names no live publication of this
    /// extension (RFC 3903 §6 step 3); the phone starts over with an initial PUBLISH.
    ConditionalRequestFailed,
    /// `423 Interval Too Brief`.
    IntervalTooBrief { min_expires: u32 },
}

impl PublishReject {
    /// The response status code.
    pub fn code(&self) -> u16 {
        match self {
            PublishReject::BadRequest(_) => 400,
            PublishReject::ConditionalRequestFailed => 412,
            PublishReject::IntervalTooBrief { .. } => 423,
        }
    }

    /// Headers the response must carry (`Min-Expires` on 423).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            PublishReject::IntervalTooBrief { min_expires } => {
                vec![("Min-Expires", min_expires.to_string())]
            }
            _ => Vec::new(),
        }
    }
}

/// What to answer a PUBLISH. Every accepted one is a `200 OK` with `SIP-ETag: etag` and
/// `Expires: expires`; a fresh entity tag each time, so an old one can never be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishDecision {
    Reject(PublishReject),
    /// A new publication: apply the body to the store.
    Initial {
        etag: String,
        expires: u32,
    },
    /// Only the lifetime was extended: the state is unchanged.
    Refresh {
        etag: String,
        expires: u32,
    },
    /// The publication's state changed: apply the body to the store.
    Modify {
        etag: String,
        expires: u32,
    },
    /// The publication was withdrawn: `200 OK` with `Expires: 0` (the old `etag` may be echoed).
    Remove {
        etag: String,
        extension: String,
    },
}

/// One live publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub extension: String,
    pub etag: String,
    pub expires_at: Instant,
}

/// A publication whose time ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredPublication {
    pub extension: String,
    pub etag: String,
}

/// Every live publication, by entity tag and expiry.
#[derive(Debug, Clone, Default)]
pub struct PublicationTable {
    by_etag: HashMap<String, Publication>,
    expiries: BTreeSet<(Instant, String)>,
    /// Disambiguates an entity tag the generator repeated.
    serial: u64,
}

impl PublicationTable {
    /// An empty table.
    pub fn new() -> PublicationTable {
        PublicationTable::default()
    }

    /// Decides a PUBLISH (RFC 3903 §6). `new_etag` makes entity tags (random in the shell,
    /// a counter in tests); it is called once per accepted non-removing PUBLISH.
    pub fn publish(
        &mut self,
        req: PublishRequest,
        policy: &PublishPolicy,
        now: Instant,
        mut new_etag: impl FnMut() -> String,
    ) -> PublishDecision {
        let Some(old) = req.if_match else {
            if !req.has_body {
                return PublishDecision::Reject(PublishReject::BadRequest(
                    "Initial PUBLISH without a body",
                ));
            }
            if req.expires == Some(0) {
                return PublishDecision::Reject(PublishReject::BadRequest(
                    "Expires 0 without SIP-If-Match",
                ));
            }
            let expires = match grant(req.expires, policy) {
                Ok(expires) => expires,
                Err(reject) => return PublishDecision::Reject(reject),
            };
            let etag = self.insert(&req.extension, expires, now, &mut new_etag);
            tracing::debug!(extension = %req.extension, %etag, expires, "publication created");
            return PublishDecision::Initial { etag, expires };
        };
        let live = self
            .by_etag
            .get(&old)
            .is_some_and(|p| p.extension == req.extension && p.expires_at > now);
        if !live {
            return PublishDecision::Reject(PublishReject::ConditionalRequestFailed);
        }
        if req.expires == Some(0) {
            self.remove(&old);
            tracing::debug!(extension = %req.extension, etag = %old, "publication removed");
            return PublishDecision::Remove {
                etag: old,
                extension: req.extension,
            };
        }
        let expires = match grant(req.expires, policy) {
            Ok(expires) => expires,
            Err(reject) => return PublishDecision::Reject(reject),
        };
        self.remove(&old);
        let etag = self.insert(&req.extension, expires, now, &mut new_etag);
        if req.has_body {
            PublishDecision::Modify { etag, expires }
        } else {
            PublishDecision::Refresh { etag, expires }
        }
    }

    /// The next publication expiry, for the shell's timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Drops every publication whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<ExpiredPublication> {
        let mut out = Vec::new();
        while let Some((at, etag)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.expiries.remove(&(at, etag.clone()));
            if let Some(p) = self.remove(&etag) {
                tracing::debug!(extension = %p.extension, etag = %p.etag, "publication expired");
                out.push(ExpiredPublication {
                    extension: p.extension,
                    etag: p.etag,
                });
            }
        }
        out
    }

    /// The live publication with this entity tag.
    pub fn get(&self, etag: &str) -> Option<&Publication> {
        self.by_etag.get(etag)
    }

    /// The live publications of one extension (a user may publish from several phones).
    pub fn publications_of(&self, extension: &str) -> Vec<&Publication> {
        let mut out: Vec<_> = self
            .by_etag
            .values()
            .filter(|p| p.extension == extension)
            .collect();
        out.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.etag.cmp(&b.etag)));
        out
    }

    /// How many publications are live.
    pub fn len(&self) -> usize {
        self.by_etag.len()
    }

    /// True when nothing is published.
    pub fn is_empty(&self) -> bool {
        self.by_etag.is_empty()
    }

    fn insert(
        &mut self,
        extension: &str,
        expires: u32,
        now: Instant,
        new_etag: &mut impl FnMut() -> String,
    ) -> String {
        let mut etag = new_etag();
        while etag.is_empty() || self.by_etag.contains_key(&etag) {
            self.serial += 1;
            etag = format!("{etag}.{}", self.serial);
        }
        let expires_at = now + Duration::from_secs(u64::from(expires));
        self.expiries.insert((expires_at, etag.clone()));
        self.by_etag.insert(
            etag.clone(),
            Publication {
                extension: extension.to_string(),
                etag: etag.clone(),
                expires_at,
            },
        );
        etag
    }

    fn remove(&mut self, etag: &str) -> Option<Publication> {
        let p = self.by_etag.remove(etag)?;
        self.expiries.remove(&(p.expires_at, p.etag.clone()));
        Some(p)
    }
}

/// The interval to grant for a non-zero request, or the 423.
fn grant(requested: Option<u32>, policy: &PublishPolicy) -> Result<u32, PublishReject> {
    match requested {
        None => Ok(policy.default_expires.min(policy.max_expires)),
        Some(secs) if secs < policy.min_expires => Err(PublishReject::IntervalTooBrief {
            min_expires: policy.min_expires,
        }),
        Some(secs) => Ok(secs.min(policy.max_expires)),
    }
}

#[cfg(test)]
mod tests;
