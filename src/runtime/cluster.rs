//! This node among the nodes sharing a PostgreSQL store: it renews its lease every third of
//! the lease, and takes over the subscriptions of nodes that stopped renewing theirs. What to
//! do with them is the user agent's (`UserAgent::adopt_subscriptions`); this task only talks
//! to the store and hands the results to the SIP task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::{FeatureCode, ListenAddr, ListenTransport};
use crate::presence::cluster::{ClusterStore, Joined, Renewal, FEATURE_CODES};
use crate::presence::server::{Flow, SubscriptionRecord};
use crate::presence::StoredSubscription;

/// What the lease keeper tells the SIP task.
#[derive(Debug)]
pub(super) enum ClusterEvent {
    /// Subscriptions of dead nodes, ours now: notify them from here on.
    TookOver(Vec<StoredSubscription>),
    /// Our lease had run out: serve only these (stored ids) from now on.
    LeaseLost { still_owned: Vec<String> },
    /// The feature codes as a node last changed them (through its API or config reload):
    /// this node writes them into its own config file and applies them.
    FeatureCodes(Vec<FeatureCode>),
}

/// Starts the task that keeps the lease and takes over dead nodes' subscriptions every
/// [`keeper_tick`], and hands on the
/// shared feature codes each time their version moves (the first time too, so a node that
/// was down when they changed catches up). A store error is logged once per outage; the task
/// goes on and recovers with the store.
pub(super) fn spawn_lease_keeper(
    cluster: Arc<dyn ClusterStore>,
    lease: Duration,
    to_sip: mpsc::Sender<ClusterEvent>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(keeper_tick(lease));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut codes_seen = 0;
        loop {
            tick.tick().await;
            let store = cluster.clone();
            let round = tokio::task::spawn_blocking(move || {
                let renewal = store.renew()?;
                let taken = store.take_over()?;
                let codes = store.shared_setting(FEATURE_CODES)?;
                Ok::<_, crate::presence::StoreError>((renewal, taken, codes))
            })
            .await;
            let (renewal, taken, codes) = match round {
                Ok(Ok(done)) => done,
                Ok(Err(error)) => {
                    if !failing {
                        tracing::warn!(%error, "cannot renew this node's lease; retrying");
                        failing = true;
                    }
                    continue;
                }
                Err(_) => break,
            };
            if std::mem::take(&mut failing) {
                tracing::info!("node lease renewed again");
            }
            if let Renewal::Lost { still_owned } = renewal {
                if to_sip
                    .send(ClusterEvent::LeaseLost { still_owned })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            if !taken.is_empty() && to_sip.send(ClusterEvent::TookOver(taken)).await.is_err() {
                break;
            }
            let Some((version, json)) = codes.filter(|(version, _)| *version > codes_seen) else {
                continue;
            };
            codes_seen = version;
            match serde_json::from_str::<Vec<FeatureCode>>(&json) {
                Ok(codes) => {
                    if to_sip
                        .send(ClusterEvent::FeatureCodes(codes))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(version, %error, "shared feature codes unreadable; ignored")
                }
            }
        }
    });
}

/// Joins the nodes sharing the store under `[cluster]`'s name and lease (on the blocking
/// pool: the store's driver blocks).
pub(super) async fn join(
    cluster: Arc<dyn ClusterStore>,
    config: &crate::config::Config,
) -> anyhow::Result<Joined> {
    let port = config.sip.listen.first().map_or(5060, |l| l.addr.port());
    let node = config.cluster.node_name(port);
    let lease = config.cluster.lease.0;
    let name = node.clone();
    let joined = tokio::task::spawn_blocking(move || cluster.join(&name, lease))
        .await
        .context("the joining task failed")?
        .with_context(|| format!("joining the nodes as {node}"))?;
    if joined.lease_was_running {
        tracing::warn!(
            %node,
            "the node's lease was still running: a quick restart, or another process runs as \
             this node (give every node its own cluster.node)"
        );
    }
    Ok(joined)
}

/// How often the keeper renews and looks for dead nodes: every third of the lease (two
/// renewals may fail before it runs out), and at least every second, so a dead node's
/// watchers wait at most the lease plus one second (each round is two small statements).
pub(super) fn keeper_tick(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// The next event of the lease keeper; never, on a store only this node uses.
pub(super) async fn next(
    events: &mut Option<mpsc::Receiver<ClusterEvent>>,
) -> Option<ClusterEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Stored subscriptions another node served, made ours: each record with its flow moved to
/// our own socket of the same transport and IP family, so our NOTIFYs carry our Via and
/// Contact. Unreadable records are returned by id, to be deleted.
pub(super) fn our_records(
    taken: Vec<StoredSubscription>,
    listen: &[ListenAddr],
) -> (Vec<SubscriptionRecord>, Vec<String>) {
    let mut records = Vec::with_capacity(taken.len());
    let mut unreadable = Vec::new();
    for stored in taken {
        match serde_json::from_str::<SubscriptionRecord>(&stored.record) {
            Ok(mut record) => {
                record.flow.local = our_address(&record.flow, listen);
                records.push(record);
            }
            Err(error) => {
                tracing::warn!(id = %stored.id, %error, "unreadable subscription taken over; dropped");
                unreadable.push(stored.id);
            }
        }
    }
    (records, unreadable)
}

/// Our listening address for a flow another node had: the same transport and IP family
/// where we listen on one, else any of ours of that transport.
fn our_address(flow: &Flow, listen: &[ListenAddr]) -> Option<SocketAddr> {
    let transport = if flow.tcp {
        ListenTransport::Tcp
    } else {
        ListenTransport::Udp
    };
    let ipv4 = flow.local.is_none_or(|l| l.is_ipv4());
    let same_transport = || listen.iter().filter(|l| l.transport == transport);
    same_transport()
        .find(|l| l.addr.is_ipv4() == ipv4)
        .or_else(|| same_transport().next())
        .map(|l| l.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(s: &str) -> ListenAddr {
        s.parse().unwrap()
    }

    #[test]
    fn taken_over_flows_move_to_our_sockets() {
        let ours = [
            listen("udp:127.0.0.2:5060"),
            listen("tcp:127.0.0.2:5060"),
            listen("udp:[::1]:5060"),
        ];
        let flow = |local: &str, tcp| Flow {
            local: Some(local.parse().unwrap()),
            tcp,
        };
        let at = |l: &str| Some(l.parse().unwrap());
        assert_eq!(
            our_address(&flow("127.0.0.9:5070", false), &ours),
            at("127.0.0.2:5060")
        );
        assert_eq!(
            our_address(&flow("[::9]:5070", false), &ours),
            at("[::1]:5060")
        );
        assert_eq!(
            our_address(&flow("[::9]:5070", true), &ours),
            at("127.0.0.2:5060")
        );
        assert_eq!(our_address(&Flow::default(), &ours), at("127.0.0.2:5060"));
        let udp_only = [listen("udp:127.0.0.2:5060")];
        assert_eq!(our_address(&flow("127.0.0.9:5070", true), &udp_only), None);
    }

    #[test]
    fn the_keeper_looks_every_third_of_the_lease_and_at_least_every_second() {
        assert_eq!(
            keeper_tick(Duration::from_secs(2)),
            Duration::from_secs(2) / 3
        );
        assert_eq!(keeper_tick(Duration::from_secs(10)), Duration::from_secs(1));
    }

    #[test]
    fn unreadable_records_are_returned_for_deletion() {
        let taken = vec![StoredSubscription {
            id: "sub-1".into(),
            extension: "1001".into(),
            expires_at: std::time::SystemTime::UNIX_EPOCH,
            record: "not json".into(),
        }];
        let (records, unreadable) = our_records(taken, &[listen("udp:127.0.0.2:5060")]);
        assert!(records.is_empty());
        assert_eq!(unreadable, ["sub-1"]);
    }
}

#[cfg(test)]
mod shared_codes_tests {
    use crate::config::FeatureCode;

    #[test]
    fn feature_codes_travel_as_json_and_come_back_the_same() {
        let codes = vec![
            FeatureCode::enabled("*47"),
            FeatureCode {
                enabled: false,
                ..FeatureCode::enabled("*48")
            },
        ];
        let json = serde_json::to_string(&codes).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<FeatureCode>>(&json).unwrap(),
            codes
        );
    }
}
