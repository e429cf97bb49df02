//! The user agent's presence side: SUBSCRIBE in, NOTIFY out (RFC 6665, RFC 3856). Decisions
//! come from `presence::server` (the subscription table and the notifier); bodies from
//! `presence::pidf`; this file turns them into SIP.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ezk_sip_types::Name;

use super::{Peer, Transport, UaEvent, UserAgent};
use crate::presence::pidf::{read_pidf_with, render_pidf, render_xpidf, PidfError, PidfMapping};
use crate::presence::server::{
    is_supported_event, parse_event, BodyFormat, DialogKey, DialogTarget, Ended, Flow, Notifier,
    NotifierConfig, NotifyOutcome, PublicationTable, PublishDecision, PublishPolicy,
    PublishRequest, RefreshUndo, SubscribeDecision, SubscribePolicy, SubscribeRequest,
    SubscriptionId, SubscriptionRecord, SubscriptionTable, ALLOW_EVENTS,
};
use crate::presence::Presence;
use crate::sip::dialog::{uri_of, Dialog};
use crate::sip::message::SipMessage;
use crate::sip::request::RequestInfo;
use crate::sip::response::Response;
use crate::sip::transaction::{ClientKey, ServerKey};

/// What the presence side keeps.
pub(super) struct PresenceSide {
    pub(super) table: SubscriptionTable,
    pub(super) notifier: Notifier,
    pub(super) policy: SubscribePolicy,
    pub(super) mapping: PidfMapping,
    /// The latest presence of each watched extension we know of.
    known: HashMap<String, Presence>,
    /// Subscriptions waiting for their extension's state before the first NOTIFY.
    awaiting: HashSet<SubscriptionId>,
    /// Where each subscription's NOTIFYs go (the SUBSCRIBE's flow).
    peers: HashMap<SubscriptionId, Peer>,
    /// Accepted SUBSCRIBEs whose `200` waits for their record to be durable, oldest first.
    held: HashMap<SubscriptionId, Vec<HeldAnswer>>,
    /// NOTIFYs in flight: client transaction -> (subscription, CSeq).
    in_flight: HashMap<ClientKey, (SubscriptionId, u32)>,
    pub(super) publications: PublicationTable,
    publish_policy: PublishPolicy,
    pending_publishes: HashMap<u64, PendingPublish>,
    /// Watchers owed a NOTIFY by a change, not built yet (see [`UserAgent::fan_out`]).
    fan_out: VecDeque<SubscriptionId>,
    /// The ids in `fan_out`, so a second change before the first is out queues nobody twice.
    queued: HashSet<SubscriptionId>,
    /// The last body rendered: every watcher of a change gets the same one.
    last_body: Option<RenderedBody>,
    /// NOTIFYs the next [`UserAgent::fan_out_step`] builds.
    fan_out_chunk: usize,
    /// NOTIFYs sent and how they ended, for the shell's metrics.
    counters: NotifyCounters,
}

/// NOTIFYs since start-up, for metrics: totals only move up (the shell exports the deltas).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyCounters {
    /// NOTIFYs handed to a new client transaction (first sends, not retransmissions).
    pub sent: u64,
    /// Answered with a `2xx`.
    pub delivered: u64,
    /// Answered with an error (a `481` included: the watcher forgot the subscription).
    pub rejected: u64,
    /// No final answer: Timer F, or the message could not be sent at all.
    pub timed_out: u64,
}

/// PUBLISHed statuses waiting for the store, at most: past this the store is not keeping up,
/// and a new one gets `503` with Retry-After rather than a place in an unbounded queue.
pub const MAX_PENDING_PUBLISHES: usize = 256;

/// Most NOTIFYs one [`UserAgent::fan_out_step`] builds: small enough that the first ones leave
/// within about a millisecond and the watchers' answers are read in between.
pub const FAN_OUT_CHUNK: usize = 32;

/// How long a watcher whose SUBSCRIBE could not be stored is asked to wait before trying
/// again (`Retry-After` on the `500`): long enough for a full or failing disk to be seen to.
pub const STORE_RETRY_AFTER_SECS: u32 = 5;

/// An accepted SUBSCRIBE's answer, held until its record is durable: a watcher told `200` must
/// still be subscribed after a crash. Answered by [`UserAgent::subscriptions_stored`] or
/// [`UserAgent::subscriptions_not_stored`]; retransmissions meanwhile are absorbed by the
/// server transaction (it stays in Trying).
struct HeldAnswer {
    key: ServerKey,
    info: RequestInfo,
    source: SocketAddr,
    /// The `200 OK`, built when the SUBSCRIBE was accepted.
    ok: Vec<u8>,
    /// A stored report for the subscription with at least this CSeq covers this answer's
    /// record: every earlier write carries a lower one.
    cseq: u32,
    /// For a refresh, the state to go back to if the store fails; None for a new subscription.
    undo: Option<RefreshUndo>,
}

/// What one NOTIFY needs of its subscription, taken from the record without copying the rest.
struct NotifyTo {
    id: SubscriptionId,
    cseq: u32,
    dialog: Dialog,
    extension: String,
    format: BodyFormat,
    event: String,
}

impl NotifyTo {
    fn of(record: &SubscriptionRecord, cseq: u32) -> NotifyTo {
        NotifyTo {
            id: record.id,
            cseq,
            dialog: Dialog {
                call_id: record.call_id.clone(),
                local_tag: record.local_tag.clone(),
                remote_tag: record.remote_tag.clone(),
                local_uri: record.local_uri.clone(),
                remote_uri: record.remote_uri.clone(),
                remote_target: record.remote_target.clone(),
                route_set: record.route_set.clone(),
                // `Dialog::request` counts up to `cseq`.
                local_cseq: cseq.saturating_sub(1),
                remote_cseq: record.remote_cseq,
            },
            extension: record.extension.clone(),
            format: record.format,
            event: match &record.event_id {
                Some(id) => format!("presence;id={id}"),
                None => "presence".to_string(),
            },
        }
    }
}

/// A NOTIFY body and everything it was rendered from.
struct RenderedBody {
    presence: Presence,
    entity: String,
    format: BodyFormat,
    content_type: &'static str,
    body: Arc<str>,
}

impl PresenceSide {
    /// Whether this client transaction is one of our NOTIFYs.
    pub(super) fn is_notify(&self, key: &ClientKey) -> bool {
        self.in_flight.contains_key(key)
    }

    pub(super) fn new(
        policy: SubscribePolicy,
        mapping: PidfMapping,
        max_notify_failures: u32,
        now: Instant,
    ) -> PresenceSide {
        let publish_policy = PublishPolicy {
            min_expires: policy.min_expires,
            max_expires: policy.max_expires,
            default_expires: policy.max_expires,
        };
        PresenceSide {
            table: SubscriptionTable::new(std::time::SystemTime::now(), now),
            notifier: Notifier::new(NotifierConfig {
                max_failures: max_notify_failures.max(1),
            }),
            policy,
            mapping,
            known: HashMap::new(),
            awaiting: HashSet::new(),
            held: HashMap::new(),
            peers: HashMap::new(),
            in_flight: HashMap::new(),
            publications: PublicationTable::new(),
            publish_policy,
            pending_publishes: HashMap::new(),
            fan_out: VecDeque::new(),
            queued: HashSet::new(),
            last_body: None,
            fan_out_chunk: 1,
            counters: NotifyCounters::default(),
        }
    }
}

/// What a restart hands back to the shell: the store writes that must be durable before the
/// first NOTIFY leaves.
#[derive(Debug, Default)]
pub struct Restored {
    /// Every restored record, its CSeq already moved on by the restore gap. Stored before any
    /// NOTIFY, so a second crash restores from here: were the old records kept, a crash after
    /// fewer than a checkpoint's NOTIFYs would restore the old CSeq again and reuse those.
    pub save: Vec<SubscriptionRecord>,
    /// Ids whose stored records are expired or unusable: delete them.
    pub delete: Vec<SubscriptionId>,
}

impl UserAgent {
    /// Replaces who may watch whom (`[presence.watchers]`, on a config reload). New
    /// SUBSCRIBEs are judged by it at once; a subscription it no longer allows is ended at its
    /// next refresh (a final NOTIFY), like one revoked any other way.
    pub fn set_watchers(&mut self, watchers: crate::presence::server::WatcherPolicy) {
        self.presence.policy.watchers = watchers;
    }

    /// The watchers of each extension right now (for logs and `status list`).
    pub fn watcher_count(&self, extension: &str) -> usize {
        self.presence.table.watcher_count(extension)
    }

    /// Active subscriptions of every extension (for the subscriptions gauge).
    pub fn subscription_count(&self) -> usize {
        self.presence.table.len()
    }

    /// NOTIFYs sent, delivered and failed since start-up (for metrics).
    pub fn notify_counters(&self) -> NotifyCounters {
        self.presence.counters
    }

    /// Takes back subscriptions saved before a restart; returns the records to store again
    /// (with their moved-on CSeqs) and the ids to delete, all to be written durably before the
    /// next call into the user agent. NOTIFYs resume with a higher CSeq on the next change.
    pub fn restore_subscriptions(
        &mut self,
        records: Vec<SubscriptionRecord>,
        now_wall: std::time::SystemTime,
        now: Instant,
    ) -> Restored {
        let block = self.presence.table.id_block();
        let (mut table, dropped) = SubscriptionTable::restore(records, now_wall, now);
        if let Some(block) = block {
            table.use_id_block(block);
        }
        self.presence.table = table;
        for record in self.presence.table.records() {
            self.resume_flow(&record);
        }
        Restored {
            save: self.presence.table.records(),
            delete: dropped,
        }
    }

    /// New subscriptions take their ids from `block` (see
    /// [`SubscriptionTable::use_id_block`]): set once by a node that shares its store, so
    /// its ids never meet another node's.
    pub fn use_subscription_id_block(&mut self, block: u32) {
        self.presence.table.use_id_block(block);
    }

    /// Takes over subscriptions another node accepted, after that node stopped renewing its
    /// lease in the shared store. The records' `flow.local` must already name one of our own
    /// addresses. Each watcher gets a NOTIFY with the current state, with a CSeq above any the
    /// other node can have sent, through the dialog's route set, once the moved-on records
    /// are durable: store `save` and report it with [`UserAgent::subscriptions_stored`] (or
    /// [`UserAgent::subscriptions_not_stored`]); delete `delete`.
    pub fn adopt_subscriptions(
        &mut self,
        records: Vec<SubscriptionRecord>,
        now_wall: std::time::SystemTime,
        now: Instant,
    ) -> Restored {
        let (kept, dropped) = self.presence.table.adopt(records, now_wall, now);
        let mut save = Vec::with_capacity(kept.len());
        // One read per extension: a take-over can bring thousands of watchers of a few
        // extensions, so the queue is scanned once, not once per record.
        let mut asked: std::collections::HashSet<String> = self
            .events
            .iter()
            .filter_map(|e| match e {
                UaEvent::PresenceNeeded { extension } => Some(extension.clone()),
                _ => None,
            })
            .collect();
        for id in kept {
            let Some(record) = self.presence.table.record(id) else {
                continue;
            };
            self.resume_flow(&record);
            // The watcher may have missed changes while nobody served it.
            self.presence.awaiting.insert(id);
            let extension = record.extension.clone();
            save.push(record);
            if asked.insert(extension.clone()) {
                self.events.push_back(UaEvent::PresenceNeeded { extension });
            }
        }
        Restored {
            save,
            delete: dropped,
        }
    }

    /// Stops serving every subscription not in `still_owned` (ids as stored), without a NOTIFY
    /// or a store write: after this node's lease ran out, another node took them over and
    /// notifies them now. Returns how many were let go.
    pub fn release_subscriptions(
        &mut self,
        still_owned: &std::collections::HashSet<String>,
        now: Instant,
    ) -> usize {
        let gone: Vec<SubscriptionId> = self
            .presence
            .table
            .records()
            .into_iter()
            .map(|r| r.id)
            .filter(|id| !still_owned.contains(&id.to_string()))
            .collect();
        for &id in &gone {
            self.answer_held_of_ended(id, now);
            self.presence.table.remove(id);
            self.presence.notifier.forget(id);
            self.presence.awaiting.remove(&id);
            self.presence.peers.remove(&id);
        }
        gone.len()
    }

    /// Where a subscription that comes back from the store (a restart, a take-over) sends its
    /// NOTIFYs: to the dialog's next hop, over a new connection if it ran over TCP (the old
    /// one died with the old process).
    fn resume_flow(&mut self, record: &SubscriptionRecord) {
        let Some(addr) = next_hop(record) else {
            tracing::warn!(subscription = %record.id, target = %record.remote_target, "no address to notify");
            return;
        };
        let transport = if record.flow.tcp {
            self.new_outbound_conn()
        } else {
            Transport::Udp
        };
        let peer = Peer {
            transport,
            addr,
            local: record.flow.local,
        };
        self.presence.peers.insert(record.id, peer);
    }

    /// The current presence of an extension (after a change, or when a new watcher needs it):
    /// every watcher of it gets a NOTIFY (coalesced when one is still in flight).
    pub fn presence_changed(&mut self, presence: &Presence, now: Instant) {
        self.presence_announced(presence, now);
        self.fan_out(usize::MAX, now);
    }

    /// [`UserAgent::presence_changed`] in steps: watchers waiting for their first NOTIFY get it
    /// now; every other watcher owed one is queued for [`UserAgent::fan_out`]. A change to
    /// 1,000 watchers takes milliseconds to build; in chunks, the first NOTIFYs are on the wire
    /// while the rest are built, and the watchers' answers are read in between.
    pub fn presence_announced(&mut self, presence: &Presence, now: Instant) {
        let extension = presence.extension.clone();
        self.presence
            .known
            .insert(extension.clone(), presence.clone());
        let waiting: Vec<SubscriptionId> = self
            .presence
            .awaiting
            .iter()
            .copied()
            .filter(|id| {
                self.presence
                    .table
                    .get(*id)
                    .is_some_and(|s| s.record.extension == extension)
            })
            .collect();
        for id in &waiting {
            self.presence.awaiting.remove(id);
            self.presence.notifier.force(*id, presence.version);
        }
        for id in waiting {
            self.send_next_notify(id, now);
        }
        let changed = self.presence.notifier.changed_extension(
            &self.presence.table,
            &extension,
            presence.version,
        );
        let mut queued = false;
        for id in changed {
            if self.presence.queued.insert(id) {
                self.presence.fan_out.push_back(id);
                queued = true;
            }
        }
        if queued {
            // A new change: its first watcher waits for no chunk.
            self.presence.fan_out_chunk = 1;
        }
        self.drain_transactions(now);
    }

    /// Builds the next chunk of queued NOTIFYs, paced by the user agent: 1 right after a
    /// change, then 2, 4, ... up to [`FAN_OUT_CHUNK`]. The shell calls it while
    /// [`UserAgent::fan_out_pending`] says work is left, sending each chunk and reading
    /// answers in between. Returns how many are still queued.
    pub fn fan_out_step(&mut self, now: Instant) -> usize {
        let chunk = self.presence.fan_out_chunk.max(1);
        self.presence.fan_out_chunk = (chunk * 2).min(FAN_OUT_CHUNK);
        self.fan_out(chunk, now)
    }

    /// Builds up to `max` of the NOTIFYs [`UserAgent::presence_announced`] queued (each with
    /// the latest state known then); returns how many are still queued.
    pub fn fan_out(&mut self, max: usize, now: Instant) -> usize {
        for _ in 0..max {
            let Some(id) = self.presence.fan_out.pop_front() else {
                break;
            };
            self.presence.queued.remove(&id);
            self.send_next_notify(id, now);
        }
        self.drain_transactions(now);
        self.presence.fan_out.len()
    }

    /// How many NOTIFYs wait in the fan-out queue: the shell calls [`UserAgent::fan_out`]
    /// until none do.
    pub fn fan_out_pending(&self) -> usize {
        self.presence.fan_out.len()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_subscribe(
        &mut self,
        info: &RequestInfo,
        msg: &SipMessage<'_>,
        key: ServerKey,
        reply_peer: Peer,
        source: SocketAddr,
        identity: Option<&str>,
        now: Instant,
    ) {
        let event = event_header(msg);
        if !is_supported_event(&event) {
            let bytes = Response::to(info, source, 489)
                .to_tag(&self.new_tag())
                .header("Allow-Events", ALLOW_EVENTS)
                .to_bytes();
            return self.send_final(&key, bytes, 489, now);
        }
        // In a dialog (To-tag) the Request-URI is the remote target we gave, our Contact,
        // whatever user it carries (often none): the subscription found by Call-ID and tags
        // names the presentity, and an unknown dialog gets 481 from the table, never 404.
        let extension = if info.to_tag.is_some() {
            String::new()
        } else {
            match info
                .target_user
                .clone()
                .filter(|e| crate::presence::validate_extension(e).is_ok())
            {
                Some(extension) => extension,
                None => {
                    let bytes = Response::to(info, source, 404)
                        .to_tag(&self.new_tag())
                        .to_bytes();
                    return self.send_final(&key, bytes, 404, now);
                }
            }
        };
        let accept = msg
            .headers
            .get_raw(&Name::ACCEPT)
            .flat_map(|v| {
                v.split(',')
                    .map(|t| {
                        t.split(';')
                            .next()
                            .unwrap_or_default()
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
            })
            .collect();
        let expires = msg
            .headers
            .get_raw(&Name::EXPIRES)
            .next()
            .and_then(|v| v.trim().parse().ok());
        // Where NOTIFYs go (RFC 6665 §4.1.1 wants a Contact); without a URI we can send to,
        // every NOTIFY would be unreadable, so refuse the SUBSCRIBE instead.
        let Some(remote_target) = info
            .contact
            .as_deref()
            .and_then(uri_of)
            .or_else(|| uri_of(&info.from))
        else {
            let bytes = Response::with_reason(info, source, 400, "Bad Contact")
                .to_tag(&self.new_tag())
                .to_bytes();
            return self.send_final(&key, bytes, 400, now);
        };
        let request = SubscribeRequest {
            dialog: DialogKey {
                call_id: info.call_id.clone(),
                remote_tag: info.from_tag.clone().unwrap_or_default(),
                local_tag: info.to_tag.clone(),
            },
            cseq: info.cseq,
            event_id: parse_event(&event).and_then(|e| e.id),
            extension,
            // An authenticated watcher is who it proved to be (the user agent has checked that
            // From and P-Asserted-Identity do not name anyone else).
            watcher: match identity {
                Some(user) => user.to_string(),
                None => info
                    .asserted_user
                    .clone()
                    .or_else(|| info.from_user.clone())
                    .unwrap_or_default(),
            },
            accept,
            expires,
            target: DialogTarget {
                local_uri: name_addr(&info.to),
                remote_uri: name_addr(&info.from),
                remote_target,
                route_set: info.record_route.clone(),
            },
        };
        if request.dialog.local_tag.is_none() && request.expires != Some(0) {
            let limits = self.limits.settings();
            let (total, per_watcher) = (
                limits.max_subscriptions as usize,
                limits.max_subscriptions_per_watcher as usize,
            );
            if self.presence.table.len() >= total
                || self.presence.table.watcher_len(&request.watcher) >= per_watcher
            {
                let retry_after = self.limits.refuse_subscription(source.ip(), now);
                let bytes = super::over_limit(info, source, retry_after, self.new_tag());
                return self.send_final(&key, bytes, 503, now);
            }
        }
        let undo = self.presence.table.undo_point(&request.dialog);
        if let (Some(user), Some(undo)) = (identity, undo.as_ref()) {
            // A refresh or unsubscribe belongs to the watcher that made the subscription.
            let owner = self
                .presence
                .table
                .get(undo.id)
                .map(|s| s.record.watcher.as_str());
            if owner.is_some_and(|owner| owner != user) {
                tracing::warn!(subscription = %undo.id, extension = user, "refresh by another extension than the watcher; refused");
                let bytes = Response::with_reason(info, source, 403, "Not your extension")
                    .to_tag(info.to_tag.as_deref().unwrap_or_default())
                    .to_bytes();
                return self.send_final(&key, bytes, 403, now);
            }
        }
        let tag = self.new_tag();
        let decision = self
            .presence
            .table
            .subscribe(request, &self.presence.policy, now, || tag);
        match decision {
            SubscribeDecision::Reject(reject) => {
                let mut response =
                    Response::to(info, source, reject.code()).to_tag(&self.new_tag());
                for (name, value) in reject.headers() {
                    response = response.header(name, value);
                }
                self.send_final(&key, response.to_bytes(), reject.code(), now);
            }
            SubscribeDecision::Accept {
                id,
                local_tag,
                granted_expires,
                new,
                ..
            } => {
                let extension = self
                    .presence
                    .table
                    .get(id)
                    .map(|s| s.record.extension.clone())
                    .unwrap_or_default();
                let ok = Response::to(info, source, 200)
                    .to_tag(&local_tag)
                    .header("Expires", granted_expires.to_string())
                    .header("Contact", self.presence_contact(&extension, reply_peer))
                    .to_bytes();
                // The latest SUBSCRIBE's flow: a watcher that reconnected is heard on the new
                // connection.
                self.presence.peers.insert(id, reply_peer);
                self.presence.table.set_flow(id, flow_of(reply_peer));
                tracing::info!(subscription = %id, new, expires = granted_expires, "presence subscription");
                // A refresh takes a CSeq no earlier write of the record carries, so only the
                // report of this write (or a later one) answers it. A new subscription has no
                // earlier write.
                let cseq = if new {
                    0
                } else {
                    self.presence.table.next_cseq(id).unwrap_or(0)
                };
                self.presence.held.entry(id).or_default().push(HeldAnswer {
                    key,
                    info: info.clone(),
                    source,
                    ok,
                    cseq,
                    undo: undo.filter(|u| !new && u.id == id),
                });
                self.save_subscription(id);
                // Asks for the state now, in parallel with the write; the NOTIFY itself waits
                // for the 200.
                self.first_notify(id, now);
            }
            SubscribeDecision::Terminated(ended) | SubscribeDecision::Revoked(ended) => {
                let code = if ended.reason == crate::presence::server::EndReason::Rejected {
                    403
                } else {
                    200
                };
                let bytes = Response::to(info, source, code)
                    .to_tag(&ended.record.local_tag)
                    .header("Expires", "0")
                    .to_bytes();
                self.send_final(&key, bytes, code, now);
                // The final NOTIFY follows the unsubscribe's flow, like a refresh's.
                self.presence.peers.insert(ended.id, reply_peer);
                self.final_notify(ended, now);
            }
        }
    }

    /// The NOTIFY that must follow every accepted SUBSCRIBE: now if the state is known, else
    /// after the shell answers [`UaEvent::PresenceNeeded`].
    fn first_notify(&mut self, id: SubscriptionId, now: Instant) {
        let Some(extension) = self
            .presence
            .table
            .get(id)
            .map(|s| s.record.extension.clone())
        else {
            return;
        };
        match self.presence.known.get(&extension).map(|p| p.version) {
            Some(version) => {
                self.presence.notifier.force(id, version);
                self.send_next_notify(id, now);
            }
            None => {
                self.presence.awaiting.insert(id);
                self.events.push_back(UaEvent::PresenceNeeded { extension });
            }
        }
    }

    fn send_next_notify(&mut self, id: SubscriptionId, now: Instant) {
        if self.presence.held.contains_key(&id) {
            // No NOTIFY before the SUBSCRIBE's 200: it stays owed until the record is stored.
            return;
        }
        let Some(job) = self
            .presence
            .notifier
            .next_to_send(&mut self.presence.table, id)
        else {
            // Held for a durable record whose last write failed: ask again.
            if let Some(record) = self.presence.table.save_to_unblock(id) {
                self.events.push_back(UaEvent::SaveSubscription {
                    record: Box::new(record),
                });
            }
            return;
        };
        let Some(sub) = self.presence.table.get(id) else {
            return;
        };
        let state = sub.active_state(now);
        let to = NotifyTo::of(&sub.record, job.cseq);
        self.send_notify(to, &state, now);
        if let Some(record) = self.presence.table.cseq_checkpoint(id) {
            self.events.push_back(UaEvent::SaveSubscription {
                record: Box::new(record),
            });
        }
    }

    fn final_notify(&mut self, ended: Ended, now: Instant) {
        self.answer_held_of_ended(ended.id, now);
        self.presence.notifier.forget(ended.id);
        self.presence.awaiting.remove(&ended.id);
        self.send_notify(
            NotifyTo::of(&ended.record, ended.cseq),
            ended.reason.subscription_state(),
            now,
        );
        self.presence.peers.remove(&ended.id);
        self.events.push_back(UaEvent::DeleteSubscription {
            id: ended.id.to_string(),
        });
    }

    fn send_notify(&mut self, to: NotifyTo, state: &str, now: Instant) {
        let NotifyTo {
            id,
            cseq,
            mut dialog,
            extension,
            format,
            event,
        } = to;
        let Some(peer) = self.presence.peers.get(&id).copied() else {
            tracing::info!(subscription = %id, "no address for the watcher; NOTIFY not sent");
            return;
        };
        let local = self.presence_local(peer);
        let entity = format!("sip:{extension}@{local}");
        let (content_type, body, version) = self.render_body(&extension, entity, format);
        let branch = format!("z9hG4bK{:016x}", rand::Rng::random::<u64>(&mut self.rng));
        let contact = self.presence_contact(&extension, peer);
        let request = dialog.request(
            "NOTIFY",
            &local.to_string(),
            peer.transport.via_name(),
            &branch,
            &[
                ("Event", event),
                ("Subscription-State", state.to_string()),
                ("Contact", contact),
                ("User-Agent", self.settings.product.clone()),
            ],
            Some((content_type, body.as_bytes())),
        );
        let Ok(key) = ClientKey::new(branch, "NOTIFY") else {
            return;
        };
        tracing::debug!(subscription = %id, cseq, version, state, "NOTIFY");
        match self.txns.send_request(
            key.clone(),
            peer,
            request.bytes,
            peer.transport.is_reliable(),
            now,
        ) {
            Ok(()) => {
                self.presence.counters.sent += 1;
                self.presence.in_flight.insert(key, (id, cseq));
            }
            Err(error) => tracing::warn!(%error, "NOTIFY not sent"),
        }
    }

    /// The body for a watcher of `extension` now: rendered once per change, entity and format
    /// (a fan-out to 1,000 watchers renders it once, not 1,000 times).
    fn render_body(
        &mut self,
        extension: &str,
        entity: String,
        format: BodyFormat,
    ) -> (&'static str, Arc<str>, u64) {
        let side = &mut self.presence;
        let default;
        let presence = match side.known.get(extension) {
            Some(known) => known,
            None => {
                default = Presence::default_for(extension);
                &default
            }
        };
        let fresh = side.last_body.as_ref().is_some_and(|last| {
            last.format == format && last.entity == entity && last.presence == *presence
        });
        let rendered = match &mut side.last_body {
            Some(last) if fresh => last,
            slot => {
                let (content_type, body) = match format {
                    BodyFormat::Pidf => (
                        "application/pidf+xml",
                        render_pidf(&entity, presence, &side.mapping),
                    ),
                    BodyFormat::Xpidf => (
                        "application/xpidf+xml",
                        render_xpidf(&entity, presence, &side.mapping),
                    ),
                };
                slot.insert(RenderedBody {
                    presence: presence.clone(),
                    entity,
                    format,
                    content_type,
                    body: body.into(),
                })
            }
        };
        (
            rendered.content_type,
            rendered.body.clone(),
            rendered.presence.version,
        )
    }

    /// A final response (or time-out, `status` None) to one of our NOTIFYs.
    pub(super) fn on_notify_result(
        &mut self,
        key: &ClientKey,
        status: Option<u16>,
        now: Instant,
    ) -> bool {
        let Some((id, cseq)) = self.presence.in_flight.remove(key) else {
            return false;
        };
        let counters = &mut self.presence.counters;
        match status {
            Some(200..=299) => counters.delivered += 1,
            Some(_) => counters.rejected += 1,
            None => counters.timed_out += 1,
        }
        let outcome = match status {
            Some(status) => self.presence.notifier.on_response(id, cseq, status),
            None => self.presence.notifier.on_timeout(id, cseq),
        };
        match outcome {
            NotifyOutcome::Ignored => {}
            NotifyOutcome::Delivered { more } | NotifyOutcome::Failed { more, .. } => {
                if more {
                    self.send_next_notify(id, now);
                }
            }
            NotifyOutcome::Remove(reason) => {
                tracing::info!(subscription = %id, ?reason, "watcher gone; subscription removed");
                self.answer_held_of_ended(id, now);
                self.presence.table.remove(id);
                self.presence.notifier.forget(id);
                self.presence.peers.remove(&id);
                self.events
                    .push_back(UaEvent::DeleteSubscription { id: id.to_string() });
            }
        }
        true
    }

    /// Subscriptions that ran out: their final NOTIFY.
    pub(super) fn expire_subscriptions(&mut self, now: Instant) {
        if self.presence.table.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        for ended in self.presence.table.handle_timeout(now) {
            tracing::info!(subscription = %ended.id, "presence subscription expired");
            self.final_notify(ended, now);
        }
    }

    /// The shell's word that these records, `(id, local_cseq)`, are durable (answers
    /// [`UaEvent::SaveSubscription`]): NOTIFYs that waited for them go now.
    /// A SUBSCRIBE held for its record gets its `200` here, then its first NOTIFY.
    pub fn subscriptions_stored(&mut self, stored: &[(SubscriptionId, u32)], now: Instant) {
        for &(id, cseq) in stored {
            self.presence.table.stored(id, cseq);
            if let Some(mut held) = self.presence.held.remove(&id) {
                let waiting = held.split_off(held.partition_point(|h| h.cseq <= cseq));
                for answer in held {
                    tracing::debug!(subscription = %id, "subscription stored; 200 sent");
                    self.send_final(&answer.key, answer.ok, 200, now);
                }
                if !waiting.is_empty() {
                    self.presence.held.insert(id, waiting);
                }
            }
            self.send_next_notify(id, now);
        }
        self.drain_transactions(now);
    }

    /// The shell's word that these records could not be stored; a NOTIFY that needs one asks
    /// for it again. A SUBSCRIBE held for its record gets `500` with Retry-After: a new
    /// subscription is dropped (the watcher was never told it exists), a refresh is undone
    /// (the watcher keeps its old expiry, RFC 6665 §4.1.2.2, as the store does). A failure
    /// may be an earlier write's while this one is still queued; failing early is the safe
    /// side (the watcher retries; the store at worst keeps a record a little longer).
    pub fn subscriptions_not_stored(&mut self, ids: &[SubscriptionId], now: Instant) {
        for &id in ids {
            self.presence.table.not_stored(id);
            let Some(held) = self.presence.held.remove(&id) else {
                continue;
            };
            let mut undo = None;
            let mut new = false;
            for answer in held {
                new |= answer.undo.is_none();
                undo = undo.or(answer.undo);
                tracing::warn!(subscription = %id, "subscription not stored; 500 sent");
                let bytes = Response::with_reason(
                    &answer.info,
                    answer.source,
                    500,
                    "Subscription not stored",
                )
                .to_tag(&self.new_tag())
                .header("Retry-After", STORE_RETRY_AFTER_SECS.to_string())
                .to_bytes();
                self.send_final(&answer.key, bytes, 500, now);
            }
            if new {
                self.presence.table.remove(id);
                self.presence.notifier.forget(id);
                self.presence.awaiting.remove(&id);
                self.presence.peers.remove(&id);
                // In case the failed write reached the disk after all.
                self.events
                    .push_back(UaEvent::DeleteSubscription { id: id.to_string() });
            } else if let Some(undo) = undo {
                self.presence.table.undo_refresh(undo);
            }
            // A NOTIFY the refresh left owed goes with the old state.
            self.send_next_notify(id, now);
        }
        self.drain_transactions(now);
    }

    /// A subscription ends (unsubscribed, expired, watcher gone) while a SUBSCRIBE of it waits
    /// for the store: its `200` goes now, as accepted, ahead of the final NOTIFY; no server
    /// transaction is left unanswered.
    fn answer_held_of_ended(&mut self, id: SubscriptionId, now: Instant) {
        for answer in self.presence.held.remove(&id).unwrap_or_default() {
            self.send_final(&answer.key, answer.ok, 200, now);
        }
    }

    fn save_subscription(&mut self, id: SubscriptionId) {
        if let Some(record) = self.presence.table.record_to_store(id) {
            self.events.push_back(UaEvent::SaveSubscription {
                record: Box::new(record.clone()),
            });
        }
    }

    /// Our address on a watcher's flow, for Via, Contact and the PIDF entity: the address its
    /// SUBSCRIBE reached (see [`UserAgent::reachable`]). A flow that does not know it (a
    /// record stored before flows were kept) falls back to the last message's, else
    /// 127.0.0.1:5060.
    fn presence_local(&self, peer: Peer) -> SocketAddr {
        let local = peer
            .local
            .or(self.last_local)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        self.reachable(local)
    }

    /// Our Contact for a watcher of `extension`. The watcher sends its refreshes there; they
    /// are routed by their dialog, not by this URI, but the presentity's name in it helps
    /// proxies and phones that show or route by the user part.
    fn presence_contact(&self, extension: &str, peer: Peer) -> String {
        let local = self.presence_local(peer);
        let user = if crate::presence::validate_extension(extension).is_ok() {
            format!("{extension}@")
        } else {
            String::new()
        };
        match peer.transport {
            Transport::Udp => format!("<sip:{user}{local}>"),
            Transport::Tcp(_) => format!("<sip:{user}{local};transport=tcp>"),
        }
    }

    /// TCP connection `closed` is gone: each watcher notified over it gets its next NOTIFY
    /// over a new connection to its Contact (one per subscription, so no two NOTIFYs wait on
    /// one connect). Returns how many watchers it moved.
    pub(super) fn presence_connection_closed(
        &mut self,
        closed: Transport,
        reopened: &mut super::Reopened,
    ) -> usize {
        let mut ids: Vec<SubscriptionId> = self
            .presence
            .peers
            .iter()
            .filter(|(_, peer)| peer.transport == closed)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let moved = ids.len();
        for id in ids {
            let target = self
                .presence
                .table
                .get(id)
                .and_then(|s| next_hop(&s.record));
            let Some(mut peer) = self.presence.peers.get(&id).copied() else {
                continue;
            };
            if let Some(addr) = target {
                peer.addr = addr;
            }
            peer.transport = reopened.transport_for(&peer, &mut self.next_outbound_conn);
            self.presence.peers.insert(id, peer);
            tracing::debug!(subscription = %id, to = %peer.addr, "watcher's connection closed; the next NOTIFY opens one");
        }
        moved
    }
}

/// The flow to store for a subscription whose SUBSCRIBE came from `peer`.
fn flow_of(peer: Peer) -> Flow {
    Flow {
        local: peer.local,
        tcp: peer.transport.is_reliable(),
    }
}

/// The Event header (compact form `o` included), empty when absent.
fn event_header(msg: &SipMessage<'_>) -> String {
    msg.headers
        .get_raw(&Name::from("Event".to_string()))
        .next()
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// `"A" <sip:a@b>;tag=x` -> `"A" <sip:a@b>` (the dialog's URIs without the tag).
fn name_addr(value: &str) -> String {
    let value = value.trim();
    match value.rfind('>') {
        Some(close) => value.get(..=close).unwrap_or(value).to_string(),
        None => value.split(';').next().unwrap_or(value).trim().to_string(),
    }
}

/// Where a request in this subscription's dialog goes (RFC 3261 §12.2.1.1, §8.1.2): the
/// first route when the route set has one (a loose router, `;lr`: the proxy that
/// record-routed the SUBSCRIBE), else the watcher's Contact.
fn next_hop(record: &SubscriptionRecord) -> Option<SocketAddr> {
    match record.route_set.first() {
        Some(route) => addr_of_uri(&uri_of(route)?),
        None => addr_of_uri(&record.remote_target),
    }
}

/// The socket address of a `sip:user@1.2.3.4:5060` URI with an IP literal host.
pub(super) fn addr_of_uri(uri: &str) -> Option<SocketAddr> {
    let rest = uri.split_once(':')?.1;
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host_port = host_port.split(';').next()?;
    if let Ok(addr) = host_port.parse::<SocketAddr>() {
        return Some(addr);
    }
    host_port
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 5060))
}

/// A PUBLISH whose status is being written to the store; answered by
/// [`UserAgent::publish_done`].
pub(super) struct PendingPublish {
    info: RequestInfo,
    key: ServerKey,
    source: SocketAddr,
    etag: String,
    expires: u32,
}

impl UserAgent {
    pub(super) fn on_publish(
        &mut self,
        info: &RequestInfo,
        msg: &SipMessage<'_>,
        key: ServerKey,
        source: SocketAddr,
        now: Instant,
    ) {
        let reply =
            |ua: &mut UserAgent, code: u16, reason: Option<&str>, headers: Vec<(&str, String)>| {
                let mut response = match reason {
                    Some(reason) => Response::with_reason(info, source, code, reason),
                    None => Response::to(info, source, code),
                }
                .to_tag(&ua.new_tag());
                for (name, value) in headers {
                    response = response.header(name, value);
                }
                ua.send_final(&key, response.to_bytes(), code, now);
            };
        let event = event_header(msg);
        if !is_supported_event(&event) {
            return reply(
                self,
                489,
                None,
                vec![("Allow-Events", ALLOW_EVENTS.to_string())],
            );
        }
        let Some(extension) = info
            .target_user
            .clone()
            .filter(|e| crate::presence::validate_extension(e).is_ok())
        else {
            return reply(self, 404, None, vec![]);
        };
        let has_body = !msg.body.iter().all(u8::is_ascii_whitespace);
        let published = if has_body {
            let content_type = msg.content_type().unwrap_or_default();
            match read_pidf_with(msg.body, &content_type, &self.presence.mapping) {
                Ok(published) => Some(published),
                Err(PidfError::UnsupportedContentType(_)) => {
                    return reply(
                        self,
                        415,
                        None,
                        vec![("Accept", "application/pidf+xml".to_string())],
                    );
                }
                Err(error) => {
                    tracing::info!(%error, %extension, "unreadable PUBLISH body; store untouched");
                    return reply(self, 400, Some(&error.to_string()), vec![]);
                }
            }
        } else {
            None
        };
        if has_body && self.presence.pending_publishes.len() >= MAX_PENDING_PUBLISHES {
            // The store is not keeping up: refuse rather than queue without bound.
            tracing::warn!(%extension, "store busy; PUBLISH refused");
            return reply(
                self,
                503,
                Some("Store busy"),
                vec![("Retry-After", "1".to_string())],
            );
        }
        let request = PublishRequest {
            extension: extension.clone(),
            if_match: msg
                .headers
                .get_raw(&Name::from("SIP-If-Match".to_string()))
                .next()
                .map(|v| v.trim().to_string()),
            expires: msg
                .headers
                .get_raw(&Name::EXPIRES)
                .next()
                .and_then(|v| v.trim().parse().ok()),
            has_body,
        };
        let rng = &mut self.rng;
        let decision =
            self.presence
                .publications
                .publish(request, &self.presence.publish_policy, now, || {
                    format!("{:016x}", rand::Rng::random::<u64>(rng))
                });
        match decision {
            PublishDecision::Reject(reject) => reply(self, reject.code(), None, reject.headers()),
            PublishDecision::Refresh { etag, expires } => reply(
                self,
                200,
                None,
                vec![("SIP-ETag", etag), ("Expires", expires.to_string())],
            ),
            PublishDecision::Remove { etag, .. } => reply(
                self,
                200,
                None,
                vec![("SIP-ETag", etag), ("Expires", "0".to_string())],
            ),
            PublishDecision::Initial { etag, expires }
            | PublishDecision::Modify { etag, expires } => {
                let Some(published) = published else {
                    return reply(self, 400, Some("PUBLISH without a body"), vec![]);
                };
                let token = self.next_publish;
                self.next_publish += 1;
                self.presence.pending_publishes.insert(
                    token,
                    PendingPublish {
                        info: info.clone(),
                        key,
                        source,
                        etag,
                        expires,
                    },
                );
                self.events.push_back(UaEvent::Publish {
                    token,
                    extension,
                    status: published.status,
                    custom_text: published.custom_text,
                });
            }
        }
    }

    /// The store's answer to a [`UaEvent::Publish`]: `200` with SIP-ETag and Expires, or `500`
    /// with the old status intact.
    pub fn publish_done(&mut self, token: u64, result: Result<(), String>, now: Instant) {
        let Some(pending) = self.presence.pending_publishes.remove(&token) else {
            return;
        };
        let response = match result {
            Ok(()) => Response::to(&pending.info, pending.source, 200)
                .to_tag(&self.new_tag())
                .header("SIP-ETag", pending.etag)
                .header("Expires", pending.expires.to_string()),
            Err(error) => {
                tracing::warn!(%error, "published status not stored");
                Response::with_reason(&pending.info, pending.source, 500, "Status not stored")
                    .to_tag(&self.new_tag())
            }
        };
        let code = response.code();
        self.send_final(&pending.key, response.to_bytes(), code, now);
    }

    /// Publications that ran out keep their last status (phones re-publish); only the ETag goes.
    pub(super) fn expire_publications(&mut self, now: Instant) {
        if self
            .presence
            .publications
            .poll_timeout()
            .is_some_and(|t| t <= now)
        {
            for expired in self.presence.publications.handle_timeout(now) {
                tracing::debug!(extension = %expired.extension, "publication expired");
            }
        }
    }
}
