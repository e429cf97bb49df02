//! Presence subscriptions (RFC 6665 §4.2, RFC 3856): which SUBSCRIBE gets which answer, how
//! long each subscription lives, and what a restart needs to keep notifying the same dialogs.
//!
//! One subscription per dialog: RFC 6665 §4.5.2 deprecates creating more subscriptions inside
//! an existing dialog (RFC 5057 explains why), so an in-dialog SUBSCRIBE must match the
//! dialog's subscription, `id` included, or it gets `481`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::wall::unix_millis;

/// Our handle for one subscription; stable across restarts (it is in the stored record) and
/// never reused by a later run (see [`SubscriptionTable::new`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SubscriptionId(pub u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub-{}", self.0)
    }
}

/// The NOTIFY body a watcher asked for: PIDF (RFC 3863) for every modern phone, XPIDF for old
/// ones that cannot read PIDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    Pidf,
    Xpidf,
}

impl BodyFormat {
    /// The Content-Type of NOTIFY bodies in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            BodyFormat::Pidf => "application/pidf+xml",
            BodyFormat::Xpidf => "application/xpidf+xml",
        }
    }
}

/// The largest CSeq we send: RFC 3261 §8.1.1.5 keeps CSeq below 2^31.
pub const MAX_CSEQ: u32 = (1 << 31) - 1;

/// How many NOTIFY CSeqs may be allocated before the record must be stored again. Storing every
/// NOTIFY's CSeq would cost one durable write per watcher per change (a thousand for a busy
/// extension); a checkpoint every few NOTIFYs costs almost nothing and is enough, because
/// [`SubscriptionTable::restore`] skips [`RESTORE_CSEQ_GAP`] CSeqs anyway.
pub const CSEQ_CHECKPOINT: u32 = 32;

/// How far [`SubscriptionTable::restore`] moves each stored CSeq on. The stored CSeq lags the
/// last one sent by less than [`CSEQ_CHECKPOINT`], plus the NOTIFYs sent while the
/// checkpoint's write was still queued; twice the checkpoint leaves room for a write's delay,
/// and [`SubscriptionTable::may_notify`] holds any NOTIFY that would go further, so no CSeq is
/// ever sent twice in a dialog.
pub const RESTORE_CSEQ_GAP: u32 = 2 * CSEQ_CHECKPOINT;

/// What identifies a SUBSCRIBE's dialog (RFC 3261 §12): the To tag is ours and is absent on
/// the initial SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogKey {
    pub call_id: String,
    /// The From tag.
    pub remote_tag: String,
    /// The To tag; `None` for a dialog-creating SUBSCRIBE.
    pub local_tag: Option<String>,
}

/// Where our NOTIFYs go and how they are addressed, taken from the SUBSCRIBE (RFC 3261
/// §12.1.1). SUBSCRIBE is a target-refresh request, so a refresh updates `remote_target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogTarget {
    /// The SUBSCRIBE's To (without tag): our From in NOTIFY.
    pub local_uri: String,
    /// The SUBSCRIBE's From (without tag): our To in NOTIFY.
    pub remote_uri: String,
    /// The SUBSCRIBE's Contact URI: the NOTIFY Request-URI.
    pub remote_target: String,
    /// The SUBSCRIBE's Record-Route values, in order.
    pub route_set: Vec<String>,
}

/// The facts of one SUBSCRIBE (whose `Event` already passed [`super::is_supported_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub dialog: DialogKey,
    /// The SUBSCRIBE's CSeq number: in-dialog ones must grow (RFC 3261 §12.2.2).
    pub cseq: u32,
    /// The `id` parameter of `Event`.
    pub event_id: Option<String>,
    /// The presentity: the Request-URI user of an initial SUBSCRIBE.
    pub extension: String,
    /// Who is watching (the From user, or the asserted identity).
    pub watcher: String,
    /// Accepted media types, lower-case; empty when there is no Accept header.
    pub accept: Vec<String>,
    /// The Expires header; `None` when absent.
    pub expires: Option<u32>,
    pub target: DialogTarget,
}

/// Who may watch whom.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WatcherPolicy {
    /// Any watcher may watch any extension (the default: a closed PBX network).
    #[default]
    Any,
    /// Only the listed watchers may watch an extension; an extension that is not listed cannot
    /// be watched at all (fail closed).
    AllowList(HashMap<String, Vec<String>>),
}

/// The notifier's rules for SUBSCRIBE, from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribePolicy {
    /// Shorter requested intervals (other than 0) get `423` with `Min-Expires`.
    pub min_expires: u32,
    /// Longer requested intervals are shortened to this.
    pub max_expires: u32,
    /// The interval granted when the SUBSCRIBE has no Expires (RFC 3856 §6.4 suggests 3600).
    pub default_expires: u32,
    /// Offer XPIDF to watchers that do not accept PIDF.
    pub allow_xpidf: bool,
    pub watchers: WatcherPolicy,
}

impl Default for SubscribePolicy {
    fn default() -> Self {
        SubscribePolicy {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            allow_xpidf: false,
            watchers: WatcherPolicy::Any,
        }
    }
}

/// Why a [`SubscribePolicy`] or [`super::PublishPolicy`] cannot be used; named for config
/// errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("min_expires must be at least 1 second")]
    ZeroMinimum,
    #[error("min_expires ({min}) is above max_expires ({max})")]
    MinAboveMax { min: u32, max: u32 },
    #[error("default_expires ({default}) is outside min_expires..=max_expires ({min}..={max})")]
    DefaultOutOfRange { default: u32, min: u32, max: u32 },
}

/// Checks `0 < min <= default <= max`; shared by SUBSCRIBE and PUBLISH policies.
pub(super) fn check_intervals(min: u32, max: u32, default: u32) -> Result<(), PolicyError> {
    if min == 0 {
        return Err(PolicyError::ZeroMinimum);
    }
    if min > max {
        return Err(PolicyError::MinAboveMax { min, max });
    }
    if !(min..=max).contains(&default) {
        return Err(PolicyError::DefaultOutOfRange { default, min, max });
    }
    Ok(())
}

impl SubscribePolicy {
    /// Checks the intervals, so config loading can refuse a policy that would grant nonsense.
    pub fn validate(&self) -> Result<(), PolicyError> {
        check_intervals(self.min_expires, self.max_expires, self.default_expires)
    }

    /// True when `watcher` may see `extension`'s presence.
    pub fn allows(&self, extension: &str, watcher: &str) -> bool {
        match &self.watchers {
            WatcherPolicy::Any => true,
            WatcherPolicy::AllowList(lists) => lists
                .get(extension)
                .is_some_and(|list| list.iter().any(|w| w == watcher)),
        }
    }

    /// The body format for an Accept list, or `None` for `406` (RFC 3856 §6.7: PIDF is the
    /// default when Accept is absent).
    pub fn negotiate(&self, accept: &[String]) -> Option<BodyFormat> {
        if accept.is_empty() {
            return Some(BodyFormat::Pidf);
        }
        let types: Vec<&str> = accept
            .iter()
            .map(|a| a.split(';').next().unwrap_or("").trim())
            .collect();
        let listed = |wanted: &str| {
            types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(wanted) || *t == "*/*" || *t == "application/*")
        };
        if listed(BodyFormat::Pidf.media_type()) {
            Some(BodyFormat::Pidf)
        } else if self.allow_xpidf && listed(BodyFormat::Xpidf.media_type()) {
            Some(BodyFormat::Xpidf)
        } else {
            None
        }
    }

    /// The `Accept` value for a 406: what we can send.
    fn accept_value(&self) -> String {
        if self.allow_xpidf {
            format!(
                "{}, {}",
                BodyFormat::Pidf.media_type(),
                BodyFormat::Xpidf.media_type()
            )
        } else {
            BodyFormat::Pidf.media_type().to_string()
        }
    }
}

/// A SUBSCRIBE the user agent must refuse, with what the response must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeReject {
    /// `489 Bad Event` (from the user agent's [`super::is_supported_event`] check).
    BadEvent,
    /// `403 Forbidden`: the watcher may not see this extension.
    Forbidden,
    /// `406 Not Acceptable`: no body format we can produce; `accept` lists ours.
    NotAcceptable { accept: String },
    /// `423 Interval Too Brief`.
    IntervalTooBrief { min_expires: u32 },
    /// `481`: an in-dialog SUBSCRIBE for no subscription of ours.
    NoSuchSubscription,
    /// `500`: an in-dialog SUBSCRIBE whose CSeq did not grow (RFC 3261 §12.2.2).
    OutOfOrder,
}

impl SubscribeReject {
    /// The response status code.
    pub fn code(&self) -> u16 {
        match self {
            SubscribeReject::BadEvent => 489,
            SubscribeReject::Forbidden => 403,
            SubscribeReject::NotAcceptable { .. } => 406,
            SubscribeReject::IntervalTooBrief { .. } => 423,
            SubscribeReject::NoSuchSubscription => 481,
            SubscribeReject::OutOfOrder => 500,
        }
    }

    /// Headers the response must carry (RFC 6665 §4.2.1.1 Allow-Events on 489; RFC 3261
    /// §21.4.17 Min-Expires on 423).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            SubscribeReject::BadEvent => vec![("Allow-Events", super::ALLOW_EVENTS.to_string())],
            SubscribeReject::NotAcceptable { accept } => vec![("Accept", accept.clone())],
            SubscribeReject::IntervalTooBrief { min_expires } => {
                vec![("Min-Expires", min_expires.to_string())]
            }
            _ => Vec::new(),
        }
    }
}

/// Why a subscription ended, which decides the final NOTIFY's `Subscription-State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The watcher sent `Expires: 0` (RFC 6665 §4.2.1.4 still wants a final NOTIFY).
    Unsubscribed,
    /// An initial SUBSCRIBE with `Expires: 0`: a one-time fetch of the state.
    Fetched,
    /// Not refreshed in time.
    Timeout,
    /// A refresh from a watcher who is no longer allowed.
    Rejected,
}

impl EndReason {
    /// The `Subscription-State` value of the final NOTIFY (RFC 6665 §4.1.3, §8.2.3).
    pub fn subscription_state(self) -> &'static str {
        match self {
            EndReason::Unsubscribed | EndReason::Fetched => "terminated",
            EndReason::Timeout => "terminated;reason=timeout",
            EndReason::Rejected => "terminated;reason=rejected",
        }
    }
}

/// A subscription that is over: the shell sends one last NOTIFY (with `cseq`, already
/// allocated) carrying the current state and [`EndReason::subscription_state`], then forgets
/// the subscription: [`super::Notifier::forget`], and deletes its stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: SubscriptionId,
    pub reason: EndReason,
    /// Everything needed to address the final NOTIFY.
    pub record: SubscriptionRecord,
    /// The CSeq of the final NOTIFY (already recorded in `record.local_cseq`).
    pub cseq: u32,
}

/// What to answer a SUBSCRIBE, and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeDecision {
    /// Answer with [`SubscribeReject::code`]; nothing changes.
    Reject(SubscribeReject),
    /// `200 OK` with our `local_tag` in To and `Expires: granted_expires`, then a NOTIFY at
    /// once (RFC 6665 §4.2.1.2, also after a refresh). `new` is false for a refresh.
    Accept {
        id: SubscriptionId,
        local_tag: String,
        granted_expires: u32,
        format: BodyFormat,
        new: bool,
    },
    /// `200 OK` with `Expires: 0`, then the final NOTIFY in [`Ended`].
    Terminated(Ended),
    /// `403` to a refresh, and the subscription ends with a final NOTIFY (`reason=rejected`).
    Revoked(Ended),
}

/// The flow a subscription's SUBSCRIBE came on: which of our addresses it reached and over
/// which transport. Its NOTIFYs leave the same way (and name that address in Via, Contact and
/// the PIDF entity), also after a restart, so a watcher that subscribed to one of several
/// listen addresses always hears from the one it knows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Flow {
    /// Our SIP address the SUBSCRIBE reached; `None` when unknown (records stored before
    /// flows were kept).
    #[serde(default)]
    pub local: Option<SocketAddr>,
    /// Over TCP: NOTIFYs use the watcher's connection while it lives, then a new one to its
    /// Contact. Over UDP (and in older records) they are datagrams to the Contact.
    #[serde(default)]
    pub tcp: bool,
}

/// What a restart needs to go on notifying a watcher: store it (e.g. as JSON) after every
/// change the table reports and after every CSeq allocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscriptionRecord {
    pub id: SubscriptionId,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub local_uri: String,
    pub remote_uri: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    /// The CSeq of our last NOTIFY in this dialog (0: none yet).
    pub local_cseq: u32,
    /// The highest SUBSCRIBE CSeq seen.
    pub remote_cseq: u32,
    pub event_id: Option<String>,
    /// The presentity.
    pub extension: String,
    pub watcher: String,
    pub format: BodyFormat,
    /// When the subscription runs out, on the wall clock so it means the same after a restart.
    #[serde(with = "unix_millis")]
    pub expires_at: SystemTime,
    /// The flow of the latest SUBSCRIBE in the dialog (absent in records from older versions).
    #[serde(default)]
    pub flow: Flow,
}

/// One live subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub record: SubscriptionRecord,
    /// `record.expires_at` on the monotonic clock; the one the table acts on.
    pub expires_at: Instant,
    /// `record.local_cseq` when the record was last handed out to be stored.
    stored_cseq: u32,
    /// `record.local_cseq` of the latest record the shell reported durable (for a new
    /// subscription, its first record's: no restore can start below it). NOTIFY CSeqs stay
    /// within [`RESTORE_CSEQ_GAP`] of it, whatever the writes' lag.
    durable_cseq: u32,
}

impl Subscription {
    /// The `Subscription-State` of a NOTIFY sent at `now` (`active;expires=N`, RFC 6665
    /// §4.1.3), rounding the remaining time up so a watcher never refreshes late.
    pub fn active_state(&self, now: Instant) -> String {
        let left = self.expires_at.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        format!("active;expires={secs}")
    }
}

/// A subscription's state before a refresh, to undo it (see [`SubscriptionTable::undo_point`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshUndo {
    pub id: SubscriptionId,
    expires_at: Instant,
    format: BodyFormat,
    remote_target: String,
}

type DialogIndex = (String, String, String);

/// Every live subscription, indexed by id, dialog, presentity and expiry.
#[derive(Debug, Clone)]
pub struct SubscriptionTable {
    /// Maps the monotonic clock to the wall clock: `(instant, wall)` observed together.
    anchor: (Instant, SystemTime),
    subs: HashMap<SubscriptionId, Subscription>,
    by_dialog: HashMap<DialogIndex, SubscriptionId>,
    by_extension: HashMap<String, BTreeSet<SubscriptionId>>,
    /// Live subscriptions per watcher, for the per-watcher limit.
    by_watcher: HashMap<String, usize>,
    expiries: BTreeSet<(Instant, SubscriptionId)>,
    next_id: u64,
    /// The ids this node allocates from, when it shares its store with other nodes.
    id_block: Option<std::ops::Range<u64>>,
}

/// Whether stored records come back after our own restart or from another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intake {
    Restart,
    TakeOver,
}

/// The low bits of a subscription id that count within a node's id block (see
/// [`SubscriptionTable::use_id_block`]): about a trillion ids per block, 16 million blocks.
pub const ID_BLOCK_BITS: u32 = 40;

impl SubscriptionTable {
    /// An empty table. `now_wall` and `now` are read together once, so stored expiries can be
    /// written as wall-clock times without the core reading a clock. New ids start at
    /// `now_wall` in Unix milliseconds times 1000, so a later run never reuses an id.
    pub fn new(now_wall: SystemTime, now: Instant) -> SubscriptionTable {
        SubscriptionTable {
            anchor: (now, now_wall),
            subs: HashMap::new(),
            by_dialog: HashMap::new(),
            by_extension: HashMap::new(),
            by_watcher: HashMap::new(),
            expiries: BTreeSet::new(),
            next_id: first_id(now_wall),
            id_block: None,
        }
    }

    /// Decides a SUBSCRIBE. `new_tag` is called only when a dialog is created, for our To tag.
    pub fn subscribe(
        &mut self,
        req: SubscribeRequest,
        policy: &SubscribePolicy,
        now: Instant,
        new_tag: impl FnOnce() -> String,
    ) -> SubscribeDecision {
        match req.dialog.local_tag.clone() {
            Some(local_tag) => self.refresh(req, local_tag, policy, now),
            None => self.create(req, policy, now, new_tag),
        }
    }

    fn create(
        &mut self,
        req: SubscribeRequest,
        policy: &SubscribePolicy,
        now: Instant,
        new_tag: impl FnOnce() -> String,
    ) -> SubscribeDecision {
        let Some(format) = policy.negotiate(&req.accept) else {
            return SubscribeDecision::Reject(SubscribeReject::NotAcceptable {
                accept: policy.accept_value(),
            });
        };
        if !policy.allows(&req.extension, &req.watcher) {
            tracing::info!(extension = %req.extension, watcher = %req.watcher, "subscription refused: watcher not allowed");
            return SubscribeDecision::Reject(SubscribeReject::Forbidden);
        }
        let granted = match grant(req.expires, policy) {
            Ok(granted) => granted,
            Err(reject) => return SubscribeDecision::Reject(reject),
        };
        let id = SubscriptionId(self.next_id);
        self.next_id += 1;
        if self
            .id_block
            .as_ref()
            .is_some_and(|b| self.next_id >= b.end)
        {
            // A trillion subscriptions in one block: wrap rather than enter the next node's.
            self.next_id = self.id_block.as_ref().map_or(1, |b| b.start);
        }
        let local_tag = new_tag();
        let expires_at = now + Duration::from_secs(u64::from(granted));
        let record = SubscriptionRecord {
            id,
            call_id: req.dialog.call_id,
            local_tag: local_tag.clone(),
            remote_tag: req.dialog.remote_tag,
            local_uri: req.target.local_uri,
            remote_uri: req.target.remote_uri,
            remote_target: req.target.remote_target,
            route_set: req.target.route_set,
            local_cseq: 0,
            remote_cseq: req.cseq,
            event_id: req.event_id,
            extension: req.extension,
            watcher: req.watcher,
            format,
            expires_at: self.wall(expires_at),
            flow: Flow::default(),
        };
        if granted == 0 {
            tracing::debug!(%id, extension = %record.extension, "presence fetch (Expires: 0)");
            return SubscribeDecision::Terminated(Ended {
                id,
                reason: EndReason::Fetched,
                record: SubscriptionRecord {
                    local_cseq: 1,
                    ..record
                },
                cseq: 1,
            });
        }
        tracing::info!(%id, extension = %record.extension, watcher = %record.watcher, granted, "subscription created");
        self.insert(Subscription {
            stored_cseq: record.local_cseq,
            durable_cseq: record.local_cseq,
            record,
            expires_at,
        });
        SubscribeDecision::Accept {
            id,
            local_tag,
            granted_expires: granted,
            format,
            new: true,
        }
    }

    fn refresh(
        &mut self,
        req: SubscribeRequest,
        local_tag: String,
        policy: &SubscribePolicy,
        now: Instant,
    ) -> SubscribeDecision {
        let key = (req.dialog.call_id, req.dialog.remote_tag, local_tag.clone());
        let Some(&id) = self.by_dialog.get(&key) else {
            return SubscribeDecision::Reject(SubscribeReject::NoSuchSubscription);
        };
        let Some(sub) = self.subs.get_mut(&id) else {
            return SubscribeDecision::Reject(SubscribeReject::NoSuchSubscription);
        };
        // Past its expiry the subscription is gone even if the timer has not fired yet.
        if sub.record.event_id != req.event_id || sub.expires_at <= now {
            return SubscribeDecision::Reject(SubscribeReject::NoSuchSubscription);
        }
        if req.cseq <= sub.record.remote_cseq {
            return SubscribeDecision::Reject(SubscribeReject::OutOfOrder);
        }
        sub.record.remote_cseq = req.cseq;
        if !req.target.remote_target.is_empty() {
            sub.record.remote_target = req.target.remote_target;
        }
        let negotiated = policy.negotiate(&req.accept);
        if req.expires == Some(0) {
            if let Some(format) = negotiated {
                sub.record.format = format;
            }
            tracing::info!(%id, "unsubscribed");
            return match self.end(id, EndReason::Unsubscribed) {
                Some(ended) => SubscribeDecision::Terminated(ended),
                None => SubscribeDecision::Reject(SubscribeReject::NoSuchSubscription),
            };
        }
        let Some(format) = negotiated else {
            return SubscribeDecision::Reject(SubscribeReject::NotAcceptable {
                accept: policy.accept_value(),
            });
        };
        if !policy.allows(&sub.record.extension, &sub.record.watcher) {
            tracing::info!(%id, "subscription revoked: watcher no longer allowed");
            return match self.end(id, EndReason::Rejected) {
                Some(ended) => SubscribeDecision::Revoked(ended),
                None => SubscribeDecision::Reject(SubscribeReject::Forbidden),
            };
        }
        let granted = match grant(req.expires, policy) {
            Ok(granted) => granted,
            Err(reject) => return SubscribeDecision::Reject(reject),
        };
        let expires_at = now + Duration::from_secs(u64::from(granted));
        let wall = self.wall(expires_at);
        let Some(sub) = self.subs.get_mut(&id) else {
            return SubscribeDecision::Reject(SubscribeReject::NoSuchSubscription);
        };
        self.expiries.remove(&(sub.expires_at, id));
        sub.expires_at = expires_at;
        sub.record.expires_at = wall;
        sub.record.format = format;
        self.expiries.insert((expires_at, id));
        tracing::debug!(%id, granted, "subscription refreshed");
        SubscribeDecision::Accept {
            id,
            local_tag,
            granted_expires: granted,
            format,
            new: false,
        }
    }

    /// What a refresh of `dialog`'s subscription would change, taken before it: a refresh
    /// whose record cannot be stored is undone with [`SubscriptionTable::undo_refresh`], so the
    /// table agrees with the store and with the watcher, who after a non-481 error keeps the
    /// expiry it last had (RFC 6665 §4.1.2.2). None for a dialog we do not have.
    pub fn undo_point(&self, dialog: &DialogKey) -> Option<RefreshUndo> {
        let local_tag = dialog.local_tag.clone()?;
        let key = (dialog.call_id.clone(), dialog.remote_tag.clone(), local_tag);
        let id = *self.by_dialog.get(&key)?;
        let sub = self.subs.get(&id)?;
        Some(RefreshUndo {
            id,
            expires_at: sub.expires_at,
            format: sub.record.format,
            remote_target: sub.record.remote_target.clone(),
        })
    }

    /// Puts back what a refresh changed (see [`SubscriptionTable::undo_point`]); the remote
    /// CSeq stays, so the failed request is not taken again. False when the subscription is
    /// gone.
    pub fn undo_refresh(&mut self, undo: RefreshUndo) -> bool {
        let wall = self.wall(undo.expires_at);
        let Some(sub) = self.subs.get_mut(&undo.id) else {
            return false;
        };
        self.expiries.remove(&(sub.expires_at, undo.id));
        sub.expires_at = undo.expires_at;
        sub.record.expires_at = wall;
        sub.record.format = undo.format;
        sub.record.remote_target = undo.remote_target;
        self.expiries.insert((undo.expires_at, undo.id));
        true
    }

    /// Records the flow `id`'s latest SUBSCRIBE came on (see [`Flow`]); store the record
    /// afterwards. False when the subscription is gone.
    pub fn set_flow(&mut self, id: SubscriptionId, flow: Flow) -> bool {
        match self.subs.get_mut(&id) {
            Some(sub) => {
                sub.record.flow = flow;
                true
            }
            None => false,
        }
    }

    /// The next subscription expiry, for the shell's timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Ends every subscription whose time is up; each needs a final NOTIFY
    /// (`terminated;reason=timeout`).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Ended> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.remove(&(at, id));
            tracing::info!(%id, "subscription expired");
            if let Some(ended) = self.end(id, EndReason::Timeout) {
                out.push(ended);
            }
        }
        out
    }

    /// Allocates the CSeq of the next NOTIFY in `id`'s dialog; `None` when the subscription is
    /// gone or its CSeq space is used up. Persist [`SubscriptionTable::record`] afterwards.
    pub fn next_cseq(&mut self, id: SubscriptionId) -> Option<u32> {
        // MAX_CSEQ itself is kept for the final NOTIFY.
        self.allocate_cseq(id, MAX_CSEQ - 1)
    }

    fn allocate_cseq(&mut self, id: SubscriptionId, limit: u32) -> Option<u32> {
        let sub = self.subs.get_mut(&id)?;
        let next = sub.record.local_cseq.checked_add(1).filter(|c| *c <= limit);
        if next.is_none() {
            tracing::warn!(%id, "NOTIFY CSeq space exhausted");
        }
        sub.record.local_cseq = next?;
        next
    }

    /// The subscriptions to notify when `extension`'s status changes.
    pub fn watchers_of(&self, extension: &str) -> Vec<SubscriptionId> {
        self.by_extension
            .get(extension)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// How many watchers `extension` has (status pages, metrics).
    pub fn watcher_count(&self, extension: &str) -> usize {
        self.by_extension.get(extension).map_or(0, BTreeSet::len)
    }

    /// One subscription, to build its NOTIFY.
    pub fn get(&self, id: SubscriptionId) -> Option<&Subscription> {
        self.subs.get(&id)
    }

    /// The record to persist for `id`.
    pub fn record(&self, id: SubscriptionId) -> Option<SubscriptionRecord> {
        self.subs.get(&id).map(|s| s.record.clone())
    }

    /// The record to store now, because the subscription was created or refreshed; counts as
    /// a CSeq checkpoint.
    pub fn record_to_store(&mut self, id: SubscriptionId) -> Option<SubscriptionRecord> {
        let sub = self.subs.get_mut(&id)?;
        sub.stored_cseq = sub.record.local_cseq;
        Some(sub.record.clone())
    }

    /// The record to store after a NOTIFY, only when [`CSEQ_CHECKPOINT`] CSeqs were allocated
    /// since it was last stored.
    pub fn cseq_checkpoint(&mut self, id: SubscriptionId) -> Option<SubscriptionRecord> {
        let sub = self.subs.get(&id)?;
        if sub.record.local_cseq.saturating_sub(sub.stored_cseq) < CSEQ_CHECKPOINT {
            return None;
        }
        self.record_to_store(id)
    }

    /// True when `id`'s next NOTIFY may go: its CSeq stays within [`RESTORE_CSEQ_GAP`] of the
    /// latest durable record, so a crash now could not make a restart reuse it. False means
    /// the NOTIFY waits for [`SubscriptionTable::stored`] (a burst of changes can outrun the
    /// checkpoint writes: the store is busy with the changes themselves).
    pub fn may_notify(&self, id: SubscriptionId) -> bool {
        self.subs
            .get(&id)
            .is_some_and(|s| s.record.local_cseq < s.durable_cseq.saturating_add(RESTORE_CSEQ_GAP))
    }

    /// The shell's word that `id`'s record with `local_cseq` is durable.
    pub fn stored(&mut self, id: SubscriptionId, local_cseq: u32) {
        if let Some(sub) = self.subs.get_mut(&id) {
            sub.durable_cseq = sub.durable_cseq.max(local_cseq);
        }
    }

    /// The shell's word that `id`'s latest record could not be stored: the next
    /// [`SubscriptionTable::save_to_unblock`] asks for it again.
    pub fn not_stored(&mut self, id: SubscriptionId) {
        if let Some(sub) = self.subs.get_mut(&id) {
            sub.stored_cseq = sub.durable_cseq;
        }
    }

    /// The record to store when `id`'s NOTIFYs wait for a durable record
    /// ([`SubscriptionTable::may_notify`] is false) and no write of it is pending (the last
    /// one failed).
    pub fn save_to_unblock(&mut self, id: SubscriptionId) -> Option<SubscriptionRecord> {
        let sub = self.subs.get(&id)?;
        if self.may_notify(id) || sub.stored_cseq > sub.durable_cseq {
            return None;
        }
        self.record_to_store(id)
    }

    /// Every record, e.g. to write them all at shutdown.
    pub fn records(&self) -> Vec<SubscriptionRecord> {
        let mut out: Vec<_> = self.subs.values().map(|s| s.record.clone()).collect();
        out.sort_by_key(|r| r.id);
        out
    }

    /// Drops a subscription without a final NOTIFY (a NOTIFY got 481, or failed for good;
    /// the notifier has already forgotten it then).
    pub fn remove(&mut self, id: SubscriptionId) -> Option<Subscription> {
        let sub = self.subs.remove(&id)?;
        self.expiries.remove(&(sub.expires_at, id));
        self.by_dialog.remove(&(
            sub.record.call_id.clone(),
            sub.record.remote_tag.clone(),
            sub.record.local_tag.clone(),
        ));
        if let Some(ids) = self.by_extension.get_mut(&sub.record.extension) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_extension.remove(&sub.record.extension);
            }
        }
        match self.by_watcher.get_mut(&sub.record.watcher) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.by_watcher.remove(&sub.record.watcher);
            }
            None => {}
        }
        Some(sub)
    }

    /// How many live subscriptions `watcher` holds (for the per-watcher limit).
    pub fn watcher_len(&self, watcher: &str) -> usize {
        self.by_watcher.get(watcher).copied().unwrap_or(0)
    }

    /// How many subscriptions are live.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// True when nobody watches anything.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Rebuilds the table after a restart from stored records. Records whose expiry has passed
    /// on the wall clock are dropped (their ids are returned so the shell deletes them; no
    /// NOTIFY: the watcher has already given up or will re-subscribe). Each kept CSeq moves on
    /// by [`RESTORE_CSEQ_GAP`] so no CSeq is ever sent twice in a dialog. A record for a dialog
    /// already restored, or with no CSeq left, is dropped too; a repeated id is ignored.
    ///
    /// The moved-on records ([`SubscriptionTable::records`]) count as stored: the shell must
    /// write them durably before the first NOTIFY. Otherwise a second crash, after fewer than
    /// [`CSEQ_CHECKPOINT`] NOTIFYs, would restore the same old CSeq and reuse those NOTIFYs'.
    pub fn restore(
        records: Vec<SubscriptionRecord>,
        now_wall: SystemTime,
        now: Instant,
    ) -> (SubscriptionTable, Vec<SubscriptionId>) {
        let mut table = SubscriptionTable::new(now_wall, now);
        let (kept, dropped) = table.take_in(records, now_wall, now, Intake::Restart);
        tracing::info!(
            restored = kept.len(),
            dropped = dropped.len(),
            "subscriptions restored"
        );
        (table, dropped)
    }

    /// Takes over subscriptions another node accepted and can no longer serve (its lease in
    /// the shared store ran out), beside this table's own. The same rules as
    /// [`SubscriptionTable::restore`] apply (expired, duplicate and exhausted records are
    /// dropped; each CSeq moves on by [`RESTORE_CSEQ_GAP`]), but the moved-on records are not
    /// durable yet: their NOTIFYs wait until the shell reports them stored
    /// ([`SubscriptionTable::stored`]), so a crash of this node too cannot reuse a CSeq.
    /// Returns the ids taken in and the ids dropped.
    pub fn adopt(
        &mut self,
        records: Vec<SubscriptionRecord>,
        now_wall: SystemTime,
        now: Instant,
    ) -> (Vec<SubscriptionId>, Vec<SubscriptionId>) {
        let (kept, dropped) = self.take_in(records, now_wall, now, Intake::TakeOver);
        tracing::info!(
            adopted = kept.len(),
            dropped = dropped.len(),
            "subscriptions taken over"
        );
        (kept, dropped)
    }

    /// New ids come from `block` (its ids are `block << ID_BLOCK_BITS` and up), after any id
    /// of the block already in the table. Nodes sharing one store each get a block of their
    /// own, so two nodes never give two subscriptions one id, and ids taken over from another
    /// node never move this node's counter into that node's block.
    pub fn use_id_block(&mut self, block: u32) {
        let start = (u64::from(block) << ID_BLOCK_BITS).max(1);
        let end = (u64::from(block) + 1) << ID_BLOCK_BITS;
        let used = self
            .subs
            .keys()
            .map(|id| id.0)
            .filter(|id| (start..end).contains(id))
            .max();
        self.next_id = used.map_or(start, |id| id + 1);
        self.id_block = Some(start..end);
    }

    /// The id block set by [`SubscriptionTable::use_id_block`], if any.
    pub fn id_block(&self) -> Option<u32> {
        let block = self.id_block.as_ref()?.end >> ID_BLOCK_BITS;
        u32::try_from(block.checked_sub(1)?).ok()
    }

    /// Adds stored records to the table (see [`SubscriptionTable::restore`] and
    /// [`SubscriptionTable::adopt`]); returns the ids kept and the ids dropped.
    fn take_in(
        &mut self,
        records: Vec<SubscriptionRecord>,
        now_wall: SystemTime,
        now: Instant,
        intake: Intake,
    ) -> (Vec<SubscriptionId>, Vec<SubscriptionId>) {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for mut record in records {
            let counts = self
                .id_block
                .as_ref()
                .is_none_or(|block| block.contains(&record.id.0));
            if counts {
                self.next_id = self.next_id.max(record.id.0.saturating_add(1));
            }
            let left = match record.expires_at.duration_since(now_wall) {
                Ok(left) if !left.is_zero() => left,
                _ => {
                    dropped.push(record.id);
                    continue;
                }
            };
            let dialog = (
                record.call_id.clone(),
                record.remote_tag.clone(),
                record.local_tag.clone(),
            );
            if self.subs.contains_key(&record.id) {
                // Not reported: deleting this id would delete the record that was kept.
                tracing::warn!(id = %record.id, "second record with the same id ignored");
                continue;
            }
            if self.by_dialog.contains_key(&dialog) {
                tracing::warn!(id = %record.id, "second subscription in one dialog dropped");
                dropped.push(record.id);
                continue;
            }
            let stored = record.local_cseq;
            match stored
                .checked_add(RESTORE_CSEQ_GAP)
                .filter(|c| *c < MAX_CSEQ)
            {
                Some(cseq) => record.local_cseq = cseq,
                None => {
                    tracing::warn!(id = %record.id, "subscription record with no CSeq left dropped");
                    dropped.push(record.id);
                    continue;
                }
            }
            let durable_cseq = match intake {
                // The shell writes the restored records before the first NOTIFY.
                Intake::Restart => record.local_cseq,
                // Only the old record is durable: NOTIFYs wait for the moved-on one.
                Intake::TakeOver => stored,
            };
            kept.push(record.id);
            self.insert(Subscription {
                stored_cseq: record.local_cseq,
                durable_cseq,
                record,
                expires_at: now + left,
            });
        }
        (kept, dropped)
    }

    fn insert(&mut self, sub: Subscription) {
        let id = sub.record.id;
        self.by_dialog.insert(
            (
                sub.record.call_id.clone(),
                sub.record.remote_tag.clone(),
                sub.record.local_tag.clone(),
            ),
            id,
        );
        self.by_extension
            .entry(sub.record.extension.clone())
            .or_default()
            .insert(id);
        *self
            .by_watcher
            .entry(sub.record.watcher.clone())
            .or_default() += 1;
        self.expiries.insert((sub.expires_at, id));
        self.subs.insert(id, sub);
    }

    /// Removes `id` and allocates its final NOTIFY's CSeq.
    fn end(&mut self, id: SubscriptionId, reason: EndReason) -> Option<Ended> {
        // Live subscriptions stay below MAX_CSEQ (see next_cseq and restore), so there is
        // always one CSeq left for the final NOTIFY.
        let cseq = self.allocate_cseq(id, MAX_CSEQ);
        let sub = self.remove(id)?;
        Some(Ended {
            id,
            reason,
            cseq: cseq?,
            record: sub.record,
        })
    }

    /// The wall-clock time of a monotonic instant, through the anchor.
    fn wall(&self, at: Instant) -> SystemTime {
        let (anchor, anchor_wall) = self.anchor;
        match at.checked_duration_since(anchor) {
            Some(ahead) => anchor_wall + ahead,
            None => anchor_wall - anchor.duration_since(at),
        }
    }
}

/// Ids start at the start-up time in Unix milliseconds times 1000, so they stay unique across
/// restarts even when the records of ended subscriptions are gone (unless a run creates more
/// than 1000 subscriptions per millisecond it lasted).
fn first_id(now_wall: SystemTime) -> u64 {
    let ms = u64::try_from(crate::presence::to_unix_millis(now_wall)).unwrap_or(0);
    ms.saturating_mul(1000).max(1)
}

/// The interval to grant, or the 423.
fn grant(requested: Option<u32>, policy: &SubscribePolicy) -> Result<u32, SubscribeReject> {
    match requested {
        None => Ok(policy.default_expires.min(policy.max_expires)),
        Some(0) => Ok(0),
        Some(secs) if secs < policy.min_expires => Err(SubscribeReject::IntervalTooBrief {
            min_expires: policy.min_expires,
        }),
        Some(secs) => Ok(secs.min(policy.max_expires)),
    }
}

#[cfg(test)]
mod tests;
