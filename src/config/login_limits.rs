//! `[limits.http_login]`: how failed web logins are slowed down (the same lockout shape as
//! `[limits.auth]`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::HumanDuration;
use super::Problem;

/// `[limits.http_login]`: failed web logins per source address and per user (an admin name
/// or an extension). Over either limit the source (or the user, for sources that never
/// logged in as it) is refused without a password check for `lockout`, doubled at each
/// repeat up to `max_lockout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginLimitsConfig {
    /// Failures one source address may make within `failure_window`.
    pub failures_per_source: u32,
    /// Failures against one user (from any source) within `failure_window`.
    pub failures_per_user: u32,
    pub failure_window: HumanDuration,
    /// The first lockout; each further one doubles, up to `max_lockout`.
    pub lockout: HumanDuration,
    pub max_lockout: HumanDuration,
}

impl Default for LoginLimitsConfig {
    fn default() -> LoginLimitsConfig {
        LoginLimitsConfig {
            failures_per_source: 10,
            failures_per_user: 5,
            failure_window: HumanDuration(Duration::from_secs(900)),
            lockout: HumanDuration(Duration::from_secs(60)),
            max_lockout: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

impl LoginLimitsConfig {
    /// Rules the types cannot express, naming `limits.http_login.*` keys.
    pub fn problems(&self) -> Vec<Problem> {
        super::auth::lockout_problems(
            "limits.http_login",
            &[
                ("failures_per_source", self.failures_per_source),
                ("failures_per_user", self.failures_per_user),
            ],
            self.failure_window,
            self.lockout,
            self.max_lockout,
        )
    }
}
