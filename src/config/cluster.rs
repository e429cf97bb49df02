//! `[cluster]`: how a node presents itself to the others sharing its PostgreSQL store
//! (`store.url`). Ignored on the SQLite file, which one node uses alone.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HumanDuration, Problem};

/// `[cluster]`: the node's name and lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The node's name among the nodes: stable across restarts (a restarted node takes its
    /// own subscriptions back) and different on every node. Default: the host name and the
    /// first SIP port (`pbx1-5060`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How long the other nodes wait after this node last renewed its lease (it renews every
    /// third of it, at least every second) before they take its subscriptions over; they look
    /// every second, so a watcher of a dead node waits at most this plus one second.
    pub lease: HumanDuration,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            node: None,
            lease: HumanDuration(Duration::from_secs(10)),
        }
    }
}

impl ClusterConfig {
    /// The node's name: `node`, else the host name and `sip_port`.
    pub fn node_name(&self, sip_port: u16) -> String {
        match &self.node {
            Some(node) => node.clone(),
            None => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "starcode".to_string());
                format!("{host}-{sip_port}")
            }
        }
    }

    /// Rules the types cannot express, naming `cluster.*` keys.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(node) = &self.node {
            if node.is_empty() || node.len() > 128 || node.chars().any(char::is_control) {
                out.push(Problem {
                    key: "cluster.node".into(),
                    message: "use 1-128 printable characters".into(),
                });
            }
        }
        let lease = self.lease.0;
        if lease < Duration::from_secs(1) || lease > Duration::from_secs(600) {
            out.push(Problem {
                key: "cluster.lease".into(),
                message: format!("{} is out of range; use 1s to 10m", self.lease),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        let config = ClusterConfig::default();
        assert!(config.problems().is_empty());
        assert!(config.node_name(5060).ends_with("-5060"));
        let bad = ClusterConfig {
            node: Some(String::new()),
            lease: HumanDuration(Duration::from_millis(500)),
        };
        let keys: Vec<_> = bad.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["cluster.node", "cluster.lease"]);
        let named = ClusterConfig {
            node: Some("pbx-a".into()),
            ..ClusterConfig::default()
        };
        assert_eq!(named.node_name(5060), "pbx-a");
    }
}
