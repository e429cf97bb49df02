//! The tokio shell: loads what the engine needs once, owns the sockets and the store, and runs
//! until told to stop. Protocol logic lives in the sans-IO core (`sip::ua::UserAgent`,
//! `call::Call`); this module only moves bytes, fires timers and awaits the store.

mod accounts;
mod cluster;
mod media;
mod reload;
pub mod stats;
mod transport;
mod web;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::accounts::AccountDirectory;
use crate::call::events::answer_delay;
use crate::call::{build_setup, call_event, Call, CallCommand, CallEvent, CallIdentity};
use crate::config::{Config, ListenTransport};
use crate::ivr::IvrSettings;
use crate::media::{PlayoutConfig, PromptCatalog};
use crate::metrics::{Metrics, NotStarted, TimedStore, UaExport, UaTotals};
use crate::presence::server::{SubscribePolicy, SubscriptionId, SubscriptionRecord, WatcherPolicy};
use crate::presence::{
    Change, ChangeSource, Presence, PresenceStore, StatusUpdate, StoredSubscription,
};
use crate::sip::offer_answer::{MediaPolicy, Negotiated};
use crate::sip::policy::Policy;
use crate::sip::transaction::TimerConfig;
use crate::sip::ua::{CallHandle, Purpose, UaEvent, UaSettings, UserAgent};
use crate::stores::Stores;
use media::{CallReport, MediaRules};
use transport::{Inbound, Outbound};

pub use reload::{plan as reload_plan, ReloadError, ReloadHandle, ReloadPlan, ReloadReport};

/// The shell's clock. tokio's, not `Instant::now()`: under `tokio::time::pause` it is the
/// virtual clock, so the whole engine runs on virtual time in tests.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

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
/// only ever saved whole (the store write is one transaction). On SIGHUP the engine re-reads
/// `config_path` (the file `config` came from) and applies what can change live
/// (`runtime::reload`); `run` builds the [`ReloadHandle`] that does the same on request.
pub async fn run(config: Config, config_path: std::path::PathBuf) -> anyhow::Result<()> {
    let loaded = config.clone();
    let catalog = tokio::task::spawn_blocking(move || load_catalog_for_calls(&loaded))
        .await
        .context("prompt loading task failed")??;
    // The store is opened and read on the blocking pool: PostgreSQL's driver blocks on a
    // runtime of its own, which may not run on the async threads.
    let store_config = config.store.clone();
    let stores = blocking(move || {
        let stores = Stores::open(&store_config)?;
        let extensions = stores.presence.list()?.len();
        Ok((stores, extensions))
    })
    .await
    .context("opening the store")?;
    let (stores, extensions) = stores;
    let store_name = stores.describe().to_string();
    // The one registry of the engine's metrics; every store call is timed into it.
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn PresenceStore> =
        Arc::new(TimedStore::new(stores.presence.clone(), metrics.clone()));
    let account_store = stores.accounts.clone();
    let web_auth_store = stores.web_auth.clone();

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
    ua.set_limits(limits, now());
    let (accounts_version, directory) = {
        let (store, realm) = (account_store.clone(), config.sip.realm.clone());
        blocking(move || Ok(accounts::load_directory(&*store, &realm)?))
            .await
            .context("reading the accounts")?
    };
    ua.set_accounts(directory);
    ua.set_auth(
        crate::sip::auth::AuthSettings::from_config(&config),
        rand::random(),
        now(),
    );
    // On a store several nodes share, this node joins them and serves only its own
    // subscriptions, with ids from its own block; alone, every stored one is ours.
    let on_disk = match &stores.cluster {
        Some(cluster) => {
            let joined = cluster::join(cluster.clone(), &config).await?;
            ua.use_subscription_id_block(joined.id_block);
            joined.subscriptions
        }
        None => {
            let store = store.clone();
            blocking(move || Ok(store.load_subscriptions()?))
                .await
                .context("loading presence subscriptions")?
        }
    };
    let records: Vec<SubscriptionRecord> = on_disk
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
    let writes = ua.restore_subscriptions(records, SystemTime::now(), now());
    // One durable transaction before any NOTIFY can leave: the moved-on CSeqs, and the
    // expired records gone.
    let saves = writes
        .save
        .iter()
        .map(stored)
        .collect::<serde_json::Result<Vec<_>>>()
        .context("serializing the restored subscriptions")?;
    let deletes: Vec<String> = writes.delete.iter().map(ToString::to_string).collect();
    let expired = deletes.len();
    if !saves.is_empty() || !deletes.is_empty() {
        let store = store.clone();
        blocking(move || Ok(store.write_subscriptions(&saves, &deletes)?))
            .await
            .context("storing the restored subscriptions")?;
    }
    if restored > 0 {
        tracing::info!(restored, expired, "presence subscriptions resumed");
    }
    // Reloads come from SIGHUP and, through clones of this handle, the web layer.
    let (reloader, reloads) = reload::channel(config_path.clone());
    #[cfg(unix)]
    reload::spawn_sighup_listener(reloader.clone())?;
    let web_side = web::start(
        &config,
        web::WebParts {
            store: store.clone(),
            accounts: account_store.clone(),
            web_auth: web_auth_store,
            metrics: metrics.clone(),
            reload: reloader,
            config_path,
        },
    )
    .await?;
    let web_url = web_side.as_ref().map(|web| web.url.clone());
    if let Some(url) = &web_url {
        tracing::info!(%url, "web interface and API ready");
    }
    tracing::info!(
        listen = ?config.sip.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        feature_codes = ?config.enabled_feature_codes(),
        store = %store_name,
        extensions,
        prompts = crate::media::PromptId::all().len(),
        codecs = ?catalog.codecs(),
        web = web_url.as_deref().unwrap_or("off"),
        "starcode ready"
    );
    let realm = config.sip.realm.clone();
    let mut engine = Engine::new(config, catalog, store.clone(), ua, outbound, metrics);
    engine.reloads = Some(reloads);
    engine.web_auth = web_side.map(|web| web.auth);
    // Accounts changed by another process (`starcode ext ...`) reach the user agent.
    accounts::spawn_account_watcher(
        account_store,
        realm,
        accounts_version,
        accounts::ACCOUNTS_POLL,
        engine.accounts.0.clone(),
    );
    // Changes other processes commit (`starcode status set`, another node) are announced
    // like ours. On PostgreSQL the store's listener announces another node's commit within
    // milliseconds of its NOTIFY; this poll stays as the safety net: SQLite has no notices,
    // and a notice can be lost (the listener reconnecting, a resync poll that failed) or
    // never sent (a writer that is not starcode), while the history read finds every change.
    let watched = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXTERNAL_POLL);
        // A store that is down fails every poll: say so once, and once when it is back.
        let mut failing = false;
        loop {
            tick.tick().await;
            let store = watched.clone();
            let polled =
                match tokio::task::spawn_blocking(move || store.poll_external_changes()).await {
                    Ok(polled) => polled,
                    Err(_) => break,
                };
            match polled {
                Ok(n) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("reading other processes' changes again");
                    }
                    if n > 0 {
                        tracing::debug!(changes = n, "changes from another process");
                    }
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot read other processes' changes; retrying");
                }
                Err(error) => tracing::debug!(%error, "still cannot read other processes' changes"),
            }
        }
    });
    if let Some(cluster_store) = &stores.cluster {
        let (events, from_keeper) = mpsc::channel(16);
        cluster::spawn_lease_keeper(cluster_store.clone(), engine.config.cluster.lease.0, events);
        engine.cluster = Some(from_keeper);
        engine.cluster_store = Some(cluster_store.clone());
    }
    let changes = store.subscribe();
    // After subscribing, so its first poll (the resync) reaches the engine.
    stores
        .listen_for_other_nodes(&store)
        .context("listening for other nodes' changes")?;
    let served = engine.serve(inbound, changes, shutdown_signal()).await;
    if let Some(cluster_store) = stores.cluster {
        // Our watchers go to another node at once rather than after the lease.
        if let Err(error) = blocking(move || Ok(cluster_store.leave()?)).await {
            tracing::warn!("{error:#}");
        }
    }
    served
}

/// Runs blocking store work (files, PostgreSQL's driver) on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a store task failed")?
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
    /// The engine's metrics (RTP send lateness included), shared with the call tasks.
    metrics: Arc<Metrics>,
    /// The user agent's totals last handed to `metrics`.
    ua_export: UaExport,
    calls_started: u64,
    /// When each extension's PUBLISHed status went to the store, to time it to its NOTIFY.
    publish_started: HashMap<String, Instant>,
    /// A change written here whose first NOTIFY is not sent yet: the watchers' wait.
    change_timer: Option<ChangeTimer>,
    /// Write started -> first NOTIFY handed to the socket, for every change timed.
    change_latency: stats::Lateness,
    /// Presence read for new watchers, answered back into the SIP task.
    presence: (mpsc::Sender<Presence>, mpsc::Receiver<Presence>),
    /// Subscription records to write (the latest of each), drained by one writer task.
    subscription_writes: SubscriptionWrites,
    /// The writer's outcomes, answered back into the user agent (NOTIFYs may wait for them).
    subscriptions_stored: mpsc::UnboundedReceiver<StoredBatch>,
    /// Messages that could not be sent (full or stuck connection, socket error).
    send_failures: u64,
    /// Store results of PUBLISHed statuses, answered back into the SIP task.
    published: (mpsc::Sender<PublishResult>, mpsc::Receiver<PublishResult>),
    /// Fresh account snapshots from the account watcher, for the user agent.
    accounts: (
        mpsc::Sender<AccountDirectory>,
        mpsc::Receiver<AccountDirectory>,
    ),
    /// Requests to re-read the config file (SIGHUP, the web layer); `None`: none come.
    reloads: Option<reload::Reloads>,
    /// The web side's sign-in service, which a reload hands new session settings.
    web_auth: Option<Arc<crate::web_auth::service::WebAuth>>,
    /// Take-overs, lease losses and shared feature codes, on a store several nodes share;
    /// `None`: none come.
    cluster: Option<mpsc::Receiver<cluster::ClusterEvent>>,
    /// The shared store's membership side, where this node shares the feature codes it
    /// changed; `None` on a store only this node uses.
    cluster_store: Option<Arc<dyn crate::presence::cluster::ClusterStore>>,
}

/// The store's answer to one PUBLISHed status: the user agent's token and the outcome.
type PublishResult = (u64, Result<(), String>);

/// A change written by this engine, from the start of its durable write until its first
/// NOTIFY leaves.
struct ChangeTimer {
    extension: String,
    version: u64,
    source: ChangeSource,
    started: Instant,
}

impl ChangeTimer {
    /// Times `changed` from when its write began here (`published`: a PUBLISH this engine
    /// wrote), else from the time the writer stamped on it: the API and feature-code calls of
    /// this process, or the CLI and other nodes, whose wait includes noticing the change.
    fn start(changed: &Presence, published: Option<Instant>) -> Option<ChangeTimer> {
        let source = changed.source?;
        let started = match published {
            Some(started) => started,
            None => {
                let made = changed.updated_at?;
                let ago = SystemTime::now().duration_since(made).unwrap_or_default();
                now().checked_sub(ago)?
            }
        };
        Some(ChangeTimer {
            extension: changed.extension.clone(),
            version: changed.version,
            source,
            started,
        })
    }
}

/// What one batch of subscription writes did: the records now durable, `(id, local_cseq)`,
/// or the ids whose records were not stored.
type StoredBatch = Result<Vec<(SubscriptionId, u32)>, Vec<SubscriptionId>>;

/// One write to the stored subscriptions; applied in order by one task.
enum SubscriptionWrite {
    Save(Box<SubscriptionRecord>),
    Delete(String),
}

/// Subscription writes waiting for the writer task, only the latest of each subscription: the
/// memory is bounded by the number of subscriptions however slow the store is, and the SIP task
/// never waits to hand one over.
#[derive(Clone, Default)]
struct SubscriptionWrites {
    latest: Arc<Mutex<HashMap<String, SubscriptionWrite>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl SubscriptionWrites {
    /// Queues `write`, replacing any earlier write of the same subscription.
    fn push(&self, write: SubscriptionWrite) {
        let id = match &write {
            SubscriptionWrite::Save(record) => record.id.to_string(),
            SubscriptionWrite::Delete(id) => id.clone(),
        };
        self.latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id, write);
        self.wake.notify_one();
    }

    /// Everything queued so far.
    fn take(&self) -> HashMap<String, SubscriptionWrite> {
        std::mem::take(
            &mut *self
                .latest
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// A call between its answer and its media.
struct PendingCall {
    socket: UdpSocket,
    /// Who called which code, as the user agent decided.
    identity: CallIdentity,
}

impl Engine {
    /// The SIP task's state around a user agent; its subscription writer starts here.
    fn new(
        config: Config,
        catalog: Arc<PromptCatalog>,
        store: Arc<dyn PresenceStore>,
        ua: UserAgent,
        outbound: Outbound,
        metrics: Arc<Metrics>,
    ) -> Engine {
        let (stored_tx, stored_rx) = mpsc::unbounded_channel();
        Engine {
            config,
            catalog,
            store: store.clone(),
            ua,
            outbound,
            pending: HashMap::new(),
            calls: HashMap::new(),
            reports: mpsc::channel(1024),
            next_rtp_port: 0,
            metrics,
            ua_export: UaExport::default(),
            calls_started: 0,
            publish_started: HashMap::new(),
            change_timer: None,
            change_latency: stats::Lateness::default(),
            presence: mpsc::channel(1024),
            subscription_writes: spawn_subscription_writer(store, stored_tx),
            subscriptions_stored: stored_rx,
            published: mpsc::channel(1024),
            send_failures: 0,
            accounts: mpsc::channel(4),
            reloads: None,
            web_auth: None,
            cluster: None,
            cluster_store: None,
        }
    }

    /// Another node's subscriptions are ours now, our lease ran out, or another node changed
    /// the feature codes (see `runtime::cluster`).
    async fn cluster_event(&mut self, event: cluster::ClusterEvent) {
        match event {
            cluster::ClusterEvent::TookOver(taken) => {
                let (records, unreadable) = cluster::our_records(taken, &self.config.sip.listen);
                let writes = self
                    .ua
                    .adopt_subscriptions(records, SystemTime::now(), now());
                tracing::info!(
                    adopted = writes.save.len(),
                    dropped = writes.delete.len() + unreadable.len(),
                    "notifying the watchers of a dead node"
                );
                // Their NOTIFYs wait for these writes (CSeqs moved past the dead node's).
                for record in writes.save {
                    self.subscription_writes
                        .push(SubscriptionWrite::Save(Box::new(record)));
                }
                let deletes = writes.delete.iter().map(ToString::to_string);
                for id in deletes.chain(unreadable) {
                    self.subscription_writes.push(SubscriptionWrite::Delete(id));
                }
            }
            cluster::ClusterEvent::LeaseLost { still_owned } => {
                let keep = still_owned.into_iter().collect();
                let released = self.ua.release_subscriptions(&keep, now());
                tracing::warn!(
                    released,
                    "lease ran out: subscriptions other nodes took over let go"
                );
            }
            cluster::ClusterEvent::FeatureCodes(codes) => self.apply_shared_codes(codes).await,
        }
    }

    /// Serves until `shutdown` resolves (then every call gets its BYE) or `inbound` closes.
    async fn serve(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut changes: tokio::sync::broadcast::Receiver<Change>,
        shutdown: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stopping: Option<Instant> = None;
        loop {
            let deadline = self.ua.poll_timeout();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline.unwrap_or_else(|| now() + Duration::from_secs(3600)),
            ));
            tokio::select! {
                message = inbound.recv() => match message {
                    Some(Inbound::Message { peer, local, bytes }) => {
                        self.ua.handle_message(peer, local, &bytes, now());
                    }
                    Some(other) => {
                        if let Inbound::Closed { conn } = other {
                            // Dialogs on it reach their peer over a new connection next time.
                            self.ua.connection_closed(conn);
                        }
                        self.outbound.connection(&other);
                    }
                    None => break,
                },
                change = changes.recv() => match change {
                    Ok(change) => {
                        log_change(&change);
                        if let Some(source) = change.current.source {
                            self.metrics.status_changed(source);
                        }
                        let extension = &change.current.extension;
                        let published = self.publish_started.remove(extension);
                        if self.change_timer.is_none() && self.ua.watcher_count(extension) > 0 {
                            self.change_timer = ChangeTimer::start(&change.current, published);
                        }
                        let now = now();
                        self.ua.presence_announced(&change.current, now);
                        // The first NOTIFY leaves in this turn (the user agent paces the rest).
                        self.ua.fan_out_step(now);
                    }
                    Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "change feed lagged"),
                    Err(RecvError::Closed) => {}
                },
                batch = self.subscriptions_stored.recv() => match batch {
                    Some(Ok(stored)) => self.ua.subscriptions_stored(&stored, now()),
                    Some(Err(failed)) => self.ua.subscriptions_not_stored(&failed, now()),
                    None => {}
                },
                published = self.published.1.recv() => {
                    if let Some((token, result)) = published {
                        self.ua.publish_done(token, result, now());
                    }
                }
                Some(reply) = reload::next(&mut self.reloads) => self.reload(reply).await,
                Some(event) = cluster::next(&mut self.cluster) => self.cluster_event(event).await,
                directory = self.accounts.1.recv() => {
                    if let Some(directory) = directory {
                        self.ua.set_accounts(directory);
                    }
                }
                presence = self.presence.1.recv() => {
                    if let Some(presence) = presence {
                        self.ua.presence_announced(&presence, now());
                    }
                }
                // NOTIFYs of a change go out a chunk at a time, answers read in between.
                _ = std::future::ready(()), if self.ua.fan_out_pending() > 0 => {
                    self.ua.fan_out_step(now());
                }
                report = self.reports.1.recv() => match report {
                    Some(CallReport::Hangup(id)) => self.ua.hangup(id, now()),
                    Some(CallReport::Finished(id)) => {
                        self.calls.remove(&id);
                    }
                    None => {}
                },
                _ = sleep, if deadline.is_some() => {
                    self.ua.handle_timeout(now());
                }
                signal = &mut shutdown, if stopping.is_none() => {
                    signal?;
                    tracing::info!(calls = self.ua.active_calls(), "shutting down: ending every call");
                    let calls: Vec<CallHandle> = self.calls.keys().copied().collect();
                    for id in calls {
                        self.tell_call(id, CallCommand::Hangup);
                    }
                    self.ua.hangup_all(now());
                    stopping = Some(now() + SHUTDOWN_GRACE);
                }
            }
            self.carry_out().await;
            self.export_metrics();
            if let Some(limit) = stopping {
                let idle = self.ua.active_calls() == 0 && self.calls.is_empty();
                if idle || now() >= limit {
                    break;
                }
            }
        }
        let l = self.metrics.rtp_lateness().summary();
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
        let a = self.ua.auth_counters();
        tracing::info!(
            challenges = a.challenges,
            stale = a.stale,
            successes = a.successes,
            wrong_response = a.wrong_response,
            unknown_or_disabled = a.unknown_or_disabled,
            replayed = a.replayed,
            unsupported = a.unsupported,
            malformed = a.malformed,
            lockouts = a.lockouts,
            locked_out = a.locked_out,
            "stopped; SIP authentication"
        );
        let c = self.change_latency.summary();
        tracing::info!(
            changes = c.packets,
            write_to_first_notify_p50_us = c.p50.as_micros() as u64,
            write_to_first_notify_p99_us = c.p99.as_micros() as u64,
            write_to_first_notify_max_us = c.max.as_micros() as u64,
            "stopped; PUBLISHed changes, from the start of the durable write to the first NOTIFY"
        );
        tracing::info!(
            send_failures = self.send_failures,
            "stopped; messages not sent"
        );
        Ok(())
    }

    /// Carries out everything the user agent asked for.
    async fn carry_out(&mut self) {
        while let Some(event) = self.ua.poll_event() {
            match call_event(event) {
                CallEvent::NotACall(event) => self.other_event(event),
                call => self.call_event(call).await,
            }
        }
    }

    /// A user-agent event about a call, read as replay reads it (`call::events`).
    async fn call_event(&mut self, event: CallEvent) {
        match event {
            CallEvent::Incoming {
                id,
                identity,
                media_ip,
            } => {
                let ports = self.config.media.rtp_ports;
                let hint = ports.first.wrapping_add(self.next_rtp_port);
                self.next_rtp_port =
                    self.next_rtp_port.wrapping_add(2) % (ports.len() as u16).max(2);
                match media::bind_rtp(media_ip, ports.first, ports.last, hint).await {
                    Ok(socket) => {
                        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
                        self.pending.insert(id, PendingCall { socket, identity });
                        // Rings first when `sip.answer_delay` says so; the UA keeps the time.
                        self.ua
                            .accept_after(id, port, answer_delay(&self.config), now());
                    }
                    Err(error) => {
                        tracing::warn!(%error, "no media port; refusing the call");
                        self.ua.reject(id, 503, now());
                    }
                }
            }
            CallEvent::Media {
                id,
                negotiated,
                remote,
            } => {
                if self.calls.contains_key(&id) {
                    self.tell_call(id, CallCommand::RemoteMedia(remote));
                } else if let Some(pending) = self.pending.remove(&id) {
                    self.start_call(id, pending, &negotiated, remote);
                }
            }
            CallEvent::Command { id, command } => self.tell_call(id, command),
            CallEvent::Ended { id, reason } => {
                tracing::debug!(call = id, ?reason, "signalling over");
                if self.pending.remove(&id).is_some() {
                    self.metrics.call_not_started(NotStarted::CallerHungUp);
                }
                self.tell_call(id, CallCommand::Hangup);
            }
            CallEvent::NotACall(event) => self.other_event(event),
        }
    }

    /// A user-agent event that is not about a call.
    fn other_event(&mut self, event: UaEvent) {
        match event {
            UaEvent::Transmit {
                peer,
                bytes,
                purpose,
            } => match self.outbound.send(peer, bytes) {
                Ok(()) => {
                    if matches!(purpose, Purpose::Notify(_)) {
                        self.first_notify_sent();
                    }
                }
                Err(error) => {
                    // Never wait for a peer: this message fails, everyone else goes on.
                    tracing::debug!(%error, to = %peer.addr, "message not sent");
                    self.send_failures += 1;
                    self.metrics.send_failed();
                    self.ua.send_failed(&purpose, now());
                }
            },
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
                self.subscription_writes
                    .push(SubscriptionWrite::Save(record));
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
                self.publish_started.insert(extension.clone(), now());
                let store = self.store.clone();
                let reply = self.published.0.clone();
                let update = StatusUpdate {
                    extension,
                    status,
                    custom_text,
                    source: ChangeSource::Publish,
                    at: SystemTime::now(),
                    actor: None,
                    expected_version: None,
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
                self.subscription_writes.push(SubscriptionWrite::Delete(id));
            }
            // `call::events` reads these for `call_event`.
            UaEvent::IncomingCall { .. }
            | UaEvent::CallMedia { .. }
            | UaEvent::Key { .. }
            | UaEvent::CallEnded { .. } => {}
        }
    }

    /// Hands a command to a call's task without waiting for it. A task whose queue is full is
    /// busy (a slow store write): a key pressed into it is dropped (a phone does not send 64
    /// keys in a burst); media changes and hang-ups are delivered by a helper task instead.
    fn tell_call(&self, id: CallHandle, command: CallCommand) {
        let Some(commands) = self.calls.get(&id) else {
            return;
        };
        match commands.try_send(command) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(CallCommand::Key { key, .. })) => {
                tracing::warn!(call = id, ?key, "call busy; INFO key dropped");
            }
            Err(TrySendError::Full(command)) => {
                let commands = commands.clone();
                tokio::spawn(async move {
                    let _ = commands.send(command).await;
                });
            }
        }
    }

    /// Hands the user agent's totals and the running calls to the metrics (cheap: a few
    /// integers compared when nothing moved).
    fn export_metrics(&mut self) {
        let totals = UaTotals {
            auth: self.ua.auth_counters(),
            limits: self.ua.limit_counters(),
            notify: self.ua.notify_counters(),
            subscriptions: self.ua.subscription_count(),
        };
        self.ua_export.export(totals, &self.metrics);
        self.metrics.set_calls_active(self.calls.len());
    }

    /// Times the change waiting for its first NOTIFY, now that one has left.
    fn first_notify_sent(&mut self) {
        let Some(timer) = self.change_timer.take() else {
            return;
        };
        let waited = now().saturating_duration_since(timer.started);
        self.change_latency.record(waited);
        self.metrics.change_notified(timer.source, waited);
        tracing::info!(
            extension = %timer.extension,
            version = timer.version,
            source = timer.source.as_str(),
            write_to_first_notify_us = waited.as_micros() as u64,
            "first NOTIFY of a change sent"
        );
    }

    fn start_call(
        &mut self,
        id: CallHandle,
        pending: PendingCall,
        negotiated: &Negotiated,
        remote: Option<SocketAddr>,
    ) {
        let setup = build_setup(
            pending.identity,
            negotiated,
            &self.config.media,
            &self.catalog,
        );
        let playout =
            PlayoutConfig::random(negotiated.codec, negotiated.payload_type, setup.ptime_ms);
        let (tx, rx) = mpsc::channel(64);
        self.calls.insert(id, tx);
        let store = self.store.clone();
        let catalog = self.catalog.clone();
        let settings = IvrSettings::from(&self.config.menu);
        let media = MediaRules {
            symmetric_rtp: self.config.media.symmetric_rtp,
            rtp_timeout: self.config.media.rtp_timeout.0,
        };
        let reports = self.reports.0.clone();
        let metrics = self.metrics.clone();
        self.calls_started += 1;
        tokio::spawn(async move {
            let caller = setup.caller.clone();
            let reader = store.clone();
            let presence = tokio::task::spawn_blocking(move || reader.get(&caller)).await;
            // A store that cannot be read (a database outage) does not silence the call: it is
            // answered without its current status, and the choice's write reports the failure.
            let presence = match presence {
                Ok(Ok(p)) => Some(p),
                Ok(Err(error)) => {
                    tracing::warn!(
                        call_id = %setup.call_id,
                        caller = %setup.caller,
                        %error,
                        "cannot read the caller's status; answering without it"
                    );
                    None
                }
                Err(_) => return,
            };
            match Call::answer(setup, presence.as_ref(), settings, catalog, playout, now()) {
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
                        metrics,
                    )
                    .await
                }
                Err(error) => {
                    tracing::error!(%error, "cannot start the call's media");
                    metrics.call_not_started(NotStarted::MediaSetup);
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
/// delete never loses to the save before it). Each batch's outcome goes to `done`.
fn spawn_subscription_writer(
    store: Arc<dyn PresenceStore>,
    done: mpsc::UnboundedSender<StoredBatch>,
) -> SubscriptionWrites {
    let writes = SubscriptionWrites::default();
    let queue = writes.clone();
    tokio::spawn(async move {
        loop {
            queue.wake.notified().await;
            let batch = queue.take();
            if batch.is_empty() {
                continue;
            }
            let store = store.clone();
            let written = tokio::task::spawn_blocking(move || {
                let (records, deletes) = latest_writes(batch.into_values());
                let mut saves = Vec::with_capacity(records.len());
                let mut saved = Vec::with_capacity(records.len());
                let mut failed = Vec::new();
                for record in records {
                    match stored(&record) {
                        Ok(save) => {
                            saves.push(save);
                            saved.push((record.id, record.local_cseq));
                        }
                        Err(error) => {
                            tracing::warn!(%error, id = %record.id, "cannot serialize a subscription");
                            failed.push(record.id);
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
                match written {
                    Ok(()) => (saved, failed),
                    Err(error) => {
                        tracing::warn!(%error, "subscriptions not stored");
                        failed.extend(saved.drain(..).map(|(id, _)| id));
                        (saved, failed)
                    }
                }
            })
            .await;
            match written {
                Ok((saved, failed)) => {
                    if !failed.is_empty() {
                        let _ = done.send(Err(failed));
                    }
                    if !saved.is_empty() {
                        let _ = done.send(Ok(saved));
                    }
                }
                Err(_) => break,
            }
        }
    });
    writes
}

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

/// Bound on PUBLISH writes awaiting their change (failed writes never come back).
const MAX_TIMED_WRITES: usize = 10_000;

/// How often the engine looks for changes other processes made to the store (the bound on
/// their delay when no notice wakes it sooner).
const EXTERNAL_POLL: Duration = Duration::from_millis(250);

/// How long SIGTERM waits for BYEs to be answered before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The user agent's admission rules from config (at start-up and on a reload).
fn policy(config: &Config) -> Policy {
    Policy {
        feature_codes: config.enabled_feature_codes(),
        trusted_peers: config.sip.trusted_peers.clone(),
    }
}

/// `[presence.watchers]` as the subscription table's rule (at start-up and on a reload).
fn watcher_policy(config: &Config) -> WatcherPolicy {
    if config.presence.watchers.is_empty() {
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
    }
}

/// The user agent's settings from config; replay builds its user agent from the same.
pub(crate) fn ua_settings(config: &Config) -> UaSettings {
    UaSettings {
        policy: policy(config),
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
            watchers: watcher_policy(config),
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
            flow: Default::default(),
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

    #[test]
    fn pending_subscription_writes_hold_one_per_subscription_however_many_queue() {
        let writes = SubscriptionWrites::default();
        for cseq in 1..=1000 {
            writes.push(SubscriptionWrite::Save(record(1, cseq)));
        }
        writes.push(SubscriptionWrite::Save(record(2, 1)));
        writes.push(SubscriptionWrite::Delete(SubscriptionId(2).to_string()));
        let batch = writes.take();
        assert_eq!(
            batch.len(),
            2,
            "a slow store holds one write per subscription"
        );
        let (saves, deletes) = latest_writes(batch.into_values());
        assert_eq!(saves, vec![*record(1, 1000)]);
        assert_eq!(deletes, vec![SubscriptionId(2).to_string()]);
        assert!(writes.take().is_empty());
    }
}

#[cfg(test)]
mod shell_tests;
