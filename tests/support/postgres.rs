//! A throwaway PostgreSQL for the integration tests: the very server the store's unit tests
//! use (`src/presence/postgres/test_server.rs`: `initdb` + `pg_ctl` in a temp dir on a free
//! loopback port, as the `postgres` user when root, stopped when the test process exits),
//! compiled into the test crate rather than copied, since an integration test cannot reach
//! the library's `#[cfg(test)]` modules. One fresh database per call of
//! [`fresh_database`]; without PostgreSQL it returns `None` (and says so), except in CI
//! (`CI` set), where that fails the test.

// Only part of the server's helpers is used by each test crate.
#[allow(dead_code)]
#[path = "../../src/presence/postgres/test_server.rs"]
mod test_server;

// Each crate uses some of them (the fan-out bench: durable_database only).
#[allow(unused_imports)]
pub(crate) use test_server::{durable_database, fresh_database, stoppable_database};
