//! The tokio shell: loads what the engine needs once, owns the sockets and the store, and runs
//! until told to stop. Protocol logic lives in the sans-IO core (`sip::ua::UserAgent`,
//! `call::Call`); this module only moves bytes, fires timers and awaits the store.

mod media;
pub mod stats;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::call::{Call, CallSetup};
use crate::config::{Config, ListenTransport};
use crate::ivr::IvrSettings;
use crate::media::{PlayoutConfig, PromptCatalog};
use crate::presence::server::{SubscribePolicy, SubscriptionRecord, WatcherPolicy};
use crate::presence::sqlite::SqliteStore;
use crate::presence::{
    Change, ChangeSource, Presence, PresenceStore, StatusUpdate, StoredSubscription,
};
use crate::sip::offer_answer::{MediaPolicy, Negotiated};
use crate::sip::policy::Policy;
use crate::sip::transaction::TimerConfig;
use crate::sip::ua::{CallHandle, UaEvent, UaSettings, UserAgent};
use media::{CallCommand, CallReport, MediaSettings};
use transport::{Inbound, Outbound};

/// Loads and encodes every prompt for every configured codec; a missing or broken prompt file
/// stops start-up with an error naming it.
pub fn load_catalog(config: &Config) -> anyhow::Result<Arc<PromptCatalog>> {
    let catalog = PromptCatalog::load(
        &config.prompts.dir,
        &config.prompts.language,
        &config.media.codecs,
        config.media.ptime,
    )
    .context("loading prompts")?;
    Ok(Arc::new(catalog))
}

/// Every packet time a caller may ask for (RFC 3551 multiples of 10 ms that phones use).
pub const OFFERED_PTIMES: [u32; 5] = [10, 20, 30, 40, 60];

/// Like [`load_catalog`], with prompts also encoded for every ptime in [`OFFERED_PTIMES`], so
/// live calls send at the packet time their offer asked for.
pub fn load_catalog_for_calls(config: &Config) -> anyhow::Result<Arc<PromptCatalog>> {
    let catalog = PromptCatalog::load_with_ptimes(
        &config.prompts.dir,
        &config.prompts.language,
        &config.media.codecs,
        config.media.ptime,
        &OFFERED_PTIMES,
    )
    .context("loading prompts")?;
    Ok(Arc::new(catalog))
}

/// Runs the engine until SIGINT or SIGTERM.
///
/// Start-up loads the prompts, opens (or creates) the store, binds the SIP sockets and serves
/// feature-code calls. On SIGTERM every call gets its BYE before the engine exits; a status is
/// only ever saved whole (the store write is one transaction).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let loaded = config.clone();
    let catalog = tokio::task::spawn_blocking(move || load_catalog_for_calls(&loaded))
        .await
        .context("prompt loading task failed")??;
    let store: Arc<dyn PresenceStore> =
        Arc::new(SqliteStore::open(&config.store.path).with_context(|| {
            format!("opening the presence store {}", config.store.path.display())
        })?);
    let extensions = store.list().context("reading the presence store")?.len();

    let (inbound_tx, inbound) = mpsc::channel::<Inbound>(4096);
    let limits = config.limits.settings();
    let connections = Arc::new(std::sync::Mutex::new(
        crate::sip::limits::connections::ConnectionTable::new(limits.tcp.clone()),
    ));
    let mut outbound = Outbound::new(inbound_tx.clone());
    for listen in &config.sip.listen {
        match listen.transport {
            ListenTransport::Udp => {
                let socket = Arc::new(
                    transport::bind_udp(listen.addr)
                        .with_context(|| format!("binding SIP {listen}"))?,
                );
                outbound.add_udp(socket.clone());
                tokio::spawn(transport::udp_loop(socket, inbound_tx.clone()));
            }
            ListenTransport::Tcp => {
                let listener = TcpListener::bind(listen.addr)
                    .await
                    .with_context(|| format!("binding SIP {listen}"))?;
                tokio::spawn(transport::tcp_accept_loop(
                    listener,
                    inbound_tx.clone(),
                    connections.clone(),
                ));
            }
        }
    }
    drop(inbound_tx);
    let mut ua =
        UserAgent::new(ua_settings(&config), rand::random()).context("SIP timers are not valid")?;
    ua.set_limits(limits, Instant::now());
    let stored = store
        .load_subscriptions()
        .context("loading presence subscriptions")?;
    let records: Vec<SubscriptionRecord> = stored
        .iter()
        .filter_map(|s| match serde_json::from_str(&s.record) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!(id = %s.id, %error, "unreadable stored subscription dropped");
                None
            }
        })
        .collect();
    let restored = records.len();
    let dropped = ua.restore_subscriptions(records, SystemTime::now(), Instant::now());
    for id in &dropped {
        store
            .delete_subscription(&id.to_string())
            .context("deleting an expired subscription")?;
    }
    if restored > 0 {
        tracing::info!(
            restored,
            expired = dropped.len(),
            "presence subscriptions resumed"
        );
    }
    tracing::info!(
        listen = ?config.sip.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        feature_codes = ?config.feature_codes,
        store = %config.store.path.display(),
        extensions,
        prompts = crate::media::PromptId::all().len(),
        codecs = ?catalog.codecs(),
        "starcode ready"
    );
    let engine = Engine {
        config,
        catalog,
        store: store.clone(),
        ua,
        outbound,
        pending: HashMap::new(),
        calls: HashMap::new(),
        reports: mpsc::channel(1024),
        next_rtp_port: 0,
        ringing: Vec::new(),
        lateness: Arc::new(stats::Lateness::default()),
        calls_started: 0,
        publish_started: HashMap::new(),
        change_timer: None,
        fan_out_chunk: FAN_OUT_CHUNK,
        change_latency: stats::Lateness::default(),
        presence: mpsc::channel(1024),
        subscription_writes: spawn_subscription_writer(store.clone()),
        published: mpsc::channel(1024),
    };
    // Changes other processes commit (`starcode status set`) are announced like ours.
    let watched = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXTERNAL_POLL);
        loop {
            tick.tick().await;
            let store = watched.clone();
            match tokio::task::spawn_blocking(move || store.poll_external_changes()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(changes = n, "changes from another process"),
                Ok(Err(error)) => tracing::warn!(%error, "cannot read other processes' changes"),
                Err(_) => break,
            }
        }
    });
    let changes = store.subscribe();
    engine.serve(inbound, changes).await
}

/// The SIP task's state: the user agent and the calls it started.
struct Engine {
    config: Config,
    catalog: Arc<PromptCatalog>,
    store: Arc<dyn PresenceStore>,
    ua: UserAgent,
    outbound: Outbound,
    /// Answered calls whose media is not negotiated yet (late offer): their RTP sockets.
    pending: HashMap<CallHandle, PendingCall>,
    /// Running call tasks.
    calls: HashMap<CallHandle, mpsc::Sender<CallCommand>>,
    reports: (mpsc::Sender<CallReport>, mpsc::Receiver<CallReport>),
    next_rtp_port: u16,
    /// Calls ringing until their answer time (`sip.answer_delay`).
    ringing: Vec<(Instant, CallHandle)>,
    lateness: Arc<stats::Lateness>,
    calls_started: u64,
    /// When each extension's PUBLISHed status went to the store, to time it to its NOTIFY.
    publish_started: HashMap<String, Instant>,
    /// A change written here whose first NOTIFY is not sent yet: the watchers' wait.
    change_timer: Option<ChangeTimer>,
    /// NOTIFYs built in the next fan-out turn: small right after a change, then growing.
    fan_out_chunk: usize,
    /// Write started -> first NOTIFY handed to the socket, for every change timed.
    change_latency: stats::Lateness,
    /// Presence read for new watchers, answered back into the SIP task.
    presence: (mpsc::Sender<Presence>, mpsc::Receiver<Presence>),
    /// Subscription records to write, in order.
    subscription_writes: mpsc::UnboundedSender<SubscriptionWrite>,
    /// Store results of PUBLISHed statuses, answered back into the SIP task.
    published: (mpsc::Sender<PublishResult>, mpsc::Receiver<PublishResult>),
}

/// The store's answer to one PUBLISHed status: the user agent's token and the outcome.
type PublishResult = (u64, Result<(), String>);

/// A change written by this engine, from the start of its durable write until its first
/// NOTIFY leaves.
struct ChangeTimer {
    extension: String,
    version: u64,
    started: Instant,
}

/// One write to the stored subscriptions; applied in order by one task.
enum SubscriptionWrite {
    Save(Box<SubscriptionRecord>),
    Delete(String),
}

/// A call between its answer and its media.
struct PendingCall {
    socket: UdpSocket,
    call_id: String,
    caller: String,
    feature_code: String,
}

impl Engine {
    async fn serve(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut changes: tokio::sync::broadcast::Receiver<Change>,
    ) -> anyhow::Result<()> {
        let mut shutdown = std::pin::pin!(shutdown_signal());
        let mut stopping: Option<Instant> = None;
        loop {
            let deadline = self
                .ua
                .poll_timeout()
                .into_iter()
                .chain(self.ringing.iter().map(|(at, _)| *at))
                .min();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            ));
            tokio::select! {
                message = inbound.recv() => match message {
                    Some(Inbound::Message { peer, local, bytes }) => {
                        self.ua.handle_message(peer, local, &bytes, Instant::now());
                    }
                    Some(other) => self.outbound.connection(&other),
                    None => break,
                },
                change = changes.recv() => match change {
                    Ok(change) => {
                        log_change(&change);
                        let extension = &change.current.extension;
                        if let Some(started) = self.publish_started.remove(extension) {
                            if self.change_timer.is_none() && self.ua.watcher_count(extension) > 0 {
                                self.change_timer = Some(ChangeTimer {
                                    extension: extension.clone(),
                                    version: change.current.version,
                                    started,
                                });
                            }
                        }
                        let now = Instant::now();
                        self.ua.presence_announced(&change.current, now);
                        // The first NOTIFY leaves in this turn; the chunks then grow to the
                        // full size, so the first watchers do not wait for a whole chunk.
                        self.ua.fan_out(1, now);
                        self.fan_out_chunk = 2;
                    }
                    Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "change feed lagged"),
                    Err(RecvError::Closed) => {}
                },
                published = self.published.1.recv() => {
                    if let Some((token, result)) = published {
                        self.ua.publish_done(token, result, Instant::now());
                    }
                }
                presence = self.presence.1.recv() => {
                    if let Some(presence) = presence {
                        self.ua.presence_announced(&presence, Instant::now());
                    }
                }
                // NOTIFYs of a change go out a chunk at a time, answers read in between.
                _ = std::future::ready(()), if self.ua.fan_out_pending() > 0 => {
                    self.ua.fan_out(self.fan_out_chunk, Instant::now());
                    self.fan_out_chunk = (self.fan_out_chunk * 2).min(FAN_OUT_CHUNK);
                }
                report = self.reports.1.recv() => match report {
                    Some(CallReport::Hangup(id)) => self.ua.hangup(id, Instant::now()),
                    Some(CallReport::Finished(id)) => {
                        self.calls.remove(&id);
                    }
                    None => {}
                },
                _ = sleep, if deadline.is_some() => {
                    let now = Instant::now();
                    self.ua.handle_timeout(now);
                    self.answer_due(now);
                }
                signal = &mut shutdown, if stopping.is_none() => {
                    signal?;
                    tracing::info!(calls = self.ua.active_calls(), "shutting down: ending every call");
                    for commands in self.calls.values() {
                        let _ = commands.send(CallCommand::Hangup).await;
                    }
                    self.ua.hangup_all(Instant::now());
                    stopping = Some(Instant::now() + SHUTDOWN_GRACE);
                }
            }
            self.carry_out().await;
            if let Some(limit) = stopping {
                let idle = self.ua.active_calls() == 0 && self.calls.is_empty();
                if idle || Instant::now() >= limit {
                    break;
                }
            }
        }
        let l = self.lateness.summary();
        tracing::info!(
            calls = self.calls_started,
            rtp_packets = l.packets,
            lateness_p50_us = l.p50.as_micros() as u64,
            lateness_p99_us = l.p99.as_micros() as u64,
            lateness_p999_us = l.p999.as_micros() as u64,
            lateness_max_us = l.max.as_micros() as u64,
            "stopped; RTP send lateness"
        );
        let limited = self.ua.limit_counters();
        tracing::info!(
            refused_503 = limited.refused,
            dropped = limited.dropped,
            garbage = limited.garbage,
            sources_evicted = limited.evicted,
            "stopped; abuse limits"
        );
        let c = self.change_latency.summary();
        tracing::info!(
            changes = c.packets,
            write_to_first_notify_p50_us = c.p50.as_micros() as u64,
            write_to_first_notify_p99_us = c.p99.as_micros() as u64,
            write_to_first_notify_max_us = c.max.as_micros() as u64,
            "stopped; PUBLISHed changes, from the start of the durable write to the first NOTIFY"
        );
        Ok(())
    }

    /// Carries out everything the user agent asked for.
    async fn carry_out(&mut self) {
        while let Some(event) = self.ua.poll_event() {
            match event {
                UaEvent::Transmit { peer, bytes } => {
                    let notify = bytes.starts_with(b"NOTIFY ");
                    self.outbound.send(peer, bytes).await;
                    if notify {
                        self.first_notify_sent();
                    }
                }
                UaEvent::IncomingCall {
                    id,
                    call_id,
                    caller,
                    feature_code,
                    media_ip,
                    ..
                } => {
                    let ports = self.config.media.rtp_ports;
                    let hint = ports.first.wrapping_add(self.next_rtp_port);
                    self.next_rtp_port =
                        self.next_rtp_port.wrapping_add(2) % (ports.len() as u16).max(2);
                    match media::bind_rtp(media_ip, ports.first, ports.last, hint).await {
                        Ok(socket) => {
                            let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
                            self.pending.insert(
                                id,
                                PendingCall {
                                    socket,
                                    call_id,
                                    caller,
                                    feature_code,
                                },
                            );
                            let delay = self.config.sip.answer_delay.0;
                            if delay.is_zero() {
                                self.ua.accept(id, port, Instant::now());
                            } else {
                                self.ua.ring(id, Instant::now());
                                self.ringing.push((Instant::now() + delay, id));
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "no media port; refusing the call");
                            self.ua.reject(id, 503, Instant::now());
                        }
                    }
                }
                UaEvent::CallMedia { id, negotiated } => {
                    let remote = negotiated.remote_rtp.filter(|_| negotiated.may_send());
                    if let Some(commands) = self.calls.get(&id) {
                        let _ = commands.send(CallCommand::RemoteMedia(remote)).await;
                    } else if let Some(pending) = self.pending.remove(&id) {
                        self.start_call(id, pending, &negotiated, remote);
                    }
                }
                UaEvent::Key { id, key } => {
                    if let Some(commands) = self.calls.get(&id) {
                        let _ = commands.send(CallCommand::Key(key)).await;
                    }
                }
                UaEvent::PresenceNeeded { extension } => {
                    let store = self.store.clone();
                    let reply = self.presence.0.clone();
                    tokio::spawn(async move {
                        let read = tokio::task::spawn_blocking(move || store.get(&extension)).await;
                        match read {
                            Ok(Ok(presence)) => {
                                let _ = reply.send(presence).await;
                            }
                            Ok(Err(error)) => {
                                tracing::warn!(%error, "cannot read presence for a watcher")
                            }
                            Err(_) => {}
                        }
                    });
                }
                UaEvent::SaveSubscription { record } => {
                    // Serialized by the writer, and only the latest record of each.
                    let _ = self
                        .subscription_writes
                        .send(SubscriptionWrite::Save(record));
                }
                UaEvent::Publish {
                    token,
                    extension,
                    status,
                    custom_text,
                } => {
                    if self.publish_started.len() >= MAX_TIMED_WRITES {
                        self.publish_started.clear();
                    }
                    self.publish_started
                        .insert(extension.clone(), Instant::now());
                    let store = self.store.clone();
                    let reply = self.published.0.clone();
                    let update = StatusUpdate {
                        extension,
                        status,
                        custom_text,
                        source: ChangeSource::Publish,
                        at: SystemTime::now(),
                    };
                    tokio::spawn(async move {
                        let result = tokio::task::spawn_blocking(move || store.set(&update))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()));
                        let _ = reply.send((token, result)).await;
                    });
                }
                UaEvent::DeleteSubscription { id } => {
                    let _ = self.subscription_writes.send(SubscriptionWrite::Delete(id));
                }
                UaEvent::CallEnded { id, reason } => {
                    tracing::debug!(call = id, ?reason, "signalling over");
                    self.pending.remove(&id);
                    self.ringing.retain(|(_, r)| *r != id);
                    if let Some(commands) = self.calls.get(&id) {
                        let _ = commands.send(CallCommand::Hangup).await;
                    }
                }
            }
        }
    }

    /// Times the change waiting for its first NOTIFY, now that one has left.
    fn first_notify_sent(&mut self) {
        let Some(timer) = self.change_timer.take() else {
            return;
        };
        let waited = timer.started.elapsed();
        self.change_latency.record(waited);
        tracing::info!(
            extension = %timer.extension,
            version = timer.version,
            write_to_first_notify_us = waited.as_micros() as u64,
            "first NOTIFY of a change sent"
        );
    }

    /// Answers the ringing calls whose time has come (unless cancelled meanwhile).
    fn answer_due(&mut self, now: Instant) {
        let (due, waiting): (Vec<_>, Vec<_>) =
            self.ringing.drain(..).partition(|(at, _)| *at <= now);
        self.ringing = waiting;
        for (_, id) in due {
            if let Some(port) = self
                .pending
                .get(&id)
                .and_then(|p| p.socket.local_addr().ok())
                .map(|a| a.port())
            {
                self.ua.accept(id, port, now);
            }
        }
    }

    fn start_call(
        &mut self,
        id: CallHandle,
        pending: PendingCall,
        negotiated: &Negotiated,
        remote: Option<SocketAddr>,
    ) {
        let setup = CallSetup {
            call_id: pending.call_id,
            caller: pending.caller,
            feature_code: pending.feature_code,
            codec: negotiated.codec,
            audio_payload_type: negotiated.payload_type,
            telephone_event: negotiated.telephone_event,
            // The caller's packet time when we have prompts for it, else ours.
            ptime_ms: if self
                .catalog
                .has_layout(negotiated.codec, negotiated.ptime_ms)
            {
                negotiated.ptime_ms
            } else {
                self.config.media.ptime
            },
            dtmf_end_timeout: self.config.media.dtmf_end_timeout.0,
            inband: self.config.media.inband.detector_config(),
        };
        let playout =
            PlayoutConfig::random(negotiated.codec, negotiated.payload_type, setup.ptime_ms);
        let (tx, rx) = mpsc::channel(64);
        self.calls.insert(id, tx);
        let store = self.store.clone();
        let catalog = self.catalog.clone();
        let settings = IvrSettings::from(&self.config.menu);
        let media = MediaSettings {
            symmetric_rtp: self.config.media.symmetric_rtp,
            rtp_timeout: self.config.media.rtp_timeout.0,
        };
        let reports = self.reports.0.clone();
        let lateness = self.lateness.clone();
        self.calls_started += 1;
        tokio::spawn(async move {
            let caller = setup.caller.clone();
            let reader = store.clone();
            let presence = tokio::task::spawn_blocking(move || reader.get(&caller)).await;
            let presence = match presence {
                Ok(Ok(p)) => p,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot read the caller's status; ending the call");
                    let _ = reports.send(CallReport::Hangup(id)).await;
                    let _ = reports.send(CallReport::Finished(id)).await;
                    return;
                }
                Err(_) => return,
            };
            match Call::answer(setup, &presence, settings, catalog, playout, Instant::now()) {
                Ok(call) => {
                    media::run_call(
                        id,
                        call,
                        pending.socket,
                        remote,
                        store,
                        media,
                        rx,
                        reports,
                        lateness,
                    )
                    .await
                }
                Err(error) => {
                    tracing::error!(%error, "cannot start the call's media");
                    let _ = reports.send(CallReport::Hangup(id)).await;
                    let _ = reports.send(CallReport::Finished(id)).await;
                }
            }
        });
    }
}

/// Applies subscription writes in batches: whatever queued up while the previous batch was
/// being written goes into the next one, as one store transaction (one disk sync), keeping only
/// the latest write of each subscription. A change to 1,000 watchers thus costs a few syncs
/// instead of 1,000, and the end state is the same as applying every write in order (so a
/// delete never loses to the save before it).
fn spawn_subscription_writer(
    store: Arc<dyn PresenceStore>,
) -> mpsc::UnboundedSender<SubscriptionWrite> {
    let (tx, mut rx) = mpsc::unbounded_channel::<SubscriptionWrite>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_SUBSCRIPTION_BATCH {
                match rx.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            let store = store.clone();
            let done = tokio::task::spawn_blocking(move || {
                let (records, deletes) = latest_writes(batch);
                let mut saves = Vec::with_capacity(records.len());
                for record in records {
                    match stored(&record) {
                        Ok(save) => saves.push(save),
                        Err(error) => {
                            tracing::warn!(%error, id = %record.id, "cannot serialize a subscription")
                        }
                    }
                }
                let started = Instant::now();
                let written = store.write_subscriptions(&saves, &deletes);
                tracing::debug!(
                    saves = saves.len(),
                    deletes = deletes.len(),
                    took_us = started.elapsed().as_micros() as u64,
                    "subscriptions written"
                );
                written
            })
            .await;
            if let Ok(Err(error)) = done {
                tracing::warn!(%error, "subscriptions not stored");
            }
        }
    });
    tx
}

/// Most subscription writes in one store transaction (bounds its time holding the store).
const MAX_SUBSCRIPTION_BATCH: usize = 4096;

/// The outcome of applying `writes` in order, as the records to save and the ids to delete
/// (no id in both): only the latest write of each subscription counts.
fn latest_writes(
    writes: impl IntoIterator<Item = SubscriptionWrite>,
) -> (Vec<SubscriptionRecord>, Vec<String>) {
    let mut latest: HashMap<String, Option<Box<SubscriptionRecord>>> = HashMap::new();
    for write in writes {
        match write {
            SubscriptionWrite::Save(record) => latest.insert(record.id.to_string(), Some(record)),
            SubscriptionWrite::Delete(id) => latest.insert(id, None),
        };
    }
    let mut saves = Vec::new();
    let mut deletes = Vec::new();
    for (id, write) in latest {
        match write {
            Some(record) => saves.push(*record),
            None => deletes.push(id),
        }
    }
    (saves, deletes)
}

/// A subscription record as the store keeps it.
fn stored(record: &SubscriptionRecord) -> serde_json::Result<StoredSubscription> {
    Ok(StoredSubscription {
        id: record.id.to_string(),
        extension: record.extension.clone(),
        expires_at: record.expires_at,
        record: serde_json::to_string(record)?,
    })
}

/// NOTIFYs built per turn of the SIP task while a change fans out: small enough that the
/// first ones leave within about a millisecond and answers are read in between.
const FAN_OUT_CHUNK: usize = 32;

/// Bound on PUBLISH writes awaiting their change (failed writes never come back).
const MAX_TIMED_WRITES: usize = 10_000;

/// How often the engine looks for changes other processes made to the store.
const EXTERNAL_POLL: Duration = Duration::from_millis(250);

/// How long SIGTERM waits for BYEs to be answered before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn ua_settings(config: &Config) -> UaSettings {
    UaSettings {
        policy: Policy {
            feature_codes: config.feature_codes.clone(),
            trusted_peers: config.sip.trusted_peers.clone(),
        },
        timers: TimerConfig {
            t1: config.sip.t1.0,
            t2: config.sip.t2.0,
            t4: config.sip.t4.0,
        },
        media: MediaPolicy {
            codecs: config.media.codecs.clone(),
            ptime_ms: config.media.ptime,
            telephone_event: true,
        },
        advertised: config.sip.advertised_address,
        product: format!("starcode/{}", env!("CARGO_PKG_VERSION")),
        subscribe: SubscribePolicy {
            min_expires: config.presence.min_expires,
            max_expires: config.presence.max_expires,
            default_expires: config.presence.max_expires,
            allow_xpidf: config.presence.xpidf,
            watchers: if config.presence.watchers.is_empty() {
                WatcherPolicy::Any
            } else {
                WatcherPolicy::AllowList(
                    config
                        .presence
                        .watchers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            },
        },
        pidf: config.presence.mapping.clone(),
        max_notify_failures: config.presence.max_notify_failures,
    }
}

fn log_change(change: &Change) {
    tracing::info!(
        extension = %change.current.extension,
        from = %change.previous.full_status(),
        to = %change.current.full_status(),
        version = change.current.version,
        source = ?change.current.source,
        "presence changed"
    );
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (service managers).
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::server::{BodyFormat, SubscriptionId};

    fn record(id: u64, cseq: u32) -> Box<SubscriptionRecord> {
        Box::new(SubscriptionRecord {
            id: SubscriptionId(id),
            call_id: format!("c{id}"),
            local_tag: "l".into(),
            remote_tag: "r".into(),
            local_uri: "<sip:1001@127.0.0.1>".into(),
            remote_uri: "<sip:2001@127.0.0.1>".into(),
            remote_target: "sip:2001@127.0.0.1:5062".into(),
            route_set: Vec::new(),
            local_cseq: cseq,
            remote_cseq: 1,
            event_id: None,
            extension: "1001".into(),
            watcher: "2001".into(),
            format: BodyFormat::Pidf,
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        })
    }

    #[test]
    fn a_batch_keeps_the_latest_write_of_each_subscription() {
        let (mut saves, mut deletes) = latest_writes([
            SubscriptionWrite::Save(record(1, 1)),
            SubscriptionWrite::Save(record(2, 1)),
            SubscriptionWrite::Save(record(1, 2)),
            SubscriptionWrite::Delete(SubscriptionId(2).to_string()),
            SubscriptionWrite::Delete(SubscriptionId(3).to_string()),
            SubscriptionWrite::Save(record(3, 7)),
            SubscriptionWrite::Save(record(1, 3)),
        ]);
        saves.sort_by_key(|r| r.id);
        deletes.sort();
        assert_eq!(saves, vec![*record(1, 3), *record(3, 7)]);
        assert_eq!(deletes, vec![SubscriptionId(2).to_string()]);
        let json = stored(&saves[0]).unwrap();
        assert_eq!(json.id, SubscriptionId(1).to_string());
        let back: SubscriptionRecord = serde_json::from_str(&json.record).unwrap();
        assert_eq!(back, *record(1, 3));
    }
}
