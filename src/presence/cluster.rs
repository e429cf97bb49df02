//! Several nodes on one shared store (PostgreSQL): which node serves which subscription, and
//! what happens when a node dies. The store is the only thing the nodes share; there is no
//! node-to-node protocol.
//!
//! Each node *joins* under a stable name and holds a *lease* it renews well before it runs
//! out. A subscription belongs to the node that accepted it (only that node sends its
//! NOTIFYs, so their CSeqs stay monotonic). When a node stops renewing (killed, cut off), a
//! live node *takes over* its subscriptions once the lease has run out, and goes on notifying
//! them with CSeqs moved past any the dead node can have sent
//! ([`crate::presence::server::SubscriptionTable::adopt`]). Lease times are the database
//! server's clock, so the nodes' own clocks need not agree.

use std::time::Duration;

use super::store::{StoreError, StoredSubscription};

/// What joining gives a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The node's block of subscription ids (see
    /// [`crate::presence::server::SubscriptionTable::use_id_block`]), kept across restarts
    /// under the same name.
    pub id_block: u32,
    /// The subscriptions the node owns: its own from before a restart, and any stored with no
    /// owner (written before the store was shared).
    pub subscriptions: Vec<StoredSubscription>,
    /// The lease the name had when this process took it still ran (a quick restart, or, if
    /// misconfigured, another live process with the same name).
    pub lease_was_running: bool,
}

/// How a lease renewal went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours; the lease runs another full term from now.
    Held,
    /// Ours had run out and another node may have taken our subscriptions over: the lease is
    /// taken again, and these are the ids we still own. The node must stop serving any other.
    Lost { still_owned: Vec<String> },
}

/// The store side of a node's membership. Only stores several processes share implement it.
pub trait ClusterStore: Send + Sync {
    /// Joins as `node` with a lease of `lease`. From here on, subscription writes through this
    /// store are this node's.
    fn join(&self, node: &str, lease: Duration) -> Result<Joined, StoreError>;

    /// Renews the lease for another `lease` from now (see [`ClusterStore::join`]).
    fn renew(&self) -> Result<Renewal, StoreError>;

    /// Claims the subscriptions of every node whose lease has run out (and forgets those
    /// nodes). Two nodes asking at once never claim the same subscription.
    fn take_over(&self) -> Result<Vec<StoredSubscription>, StoreError>;

    /// Ends the lease now (a clean shutdown), so another node takes over at once.
    fn leave(&self) -> Result<(), StoreError>;

    /// Shares a setting this node changed (the feature codes) with every node; returns the
    /// new version, or `None` when the shared value was this one already (so a node that
    /// applies another's change and reloads does not share it back).
    fn share_setting(&self, name: &str, value: &str) -> Result<Option<u64>, StoreError>;

    /// The shared value of a setting and its version, if any node shared one.
    fn shared_setting(&self, name: &str) -> Result<Option<(u64, String)>, StoreError>;
}

/// The shared setting holding the feature codes (JSON, as `[FeatureCode]` serializes).
pub const FEATURE_CODES: &str = "feature_codes";
