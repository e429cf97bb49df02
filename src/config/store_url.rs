//! Checking `store.url`, the PostgreSQL store: a URL the driver understands, and not given
//! together with `store.path`, so a node never quietly uses a different store than meant.

use std::path::Path;

/// What is wrong with `url` as `store.url`, or `None`. Never repeats the password.
pub(super) fn store_url_problem(url: &str, path: &Path) -> Option<String> {
    let shown = crate::presence::postgres::redact_url(url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Some(format!(
            "\"{shown}\" is not a PostgreSQL URL; use postgres://user@host:port/database"
        ));
    }
    if let Err(e) = url.parse::<postgres::Config>() {
        return Some(format!("\"{shown}\" is not a PostgreSQL URL: {e}"));
    }
    // `path` has a default, so only a path other than it can be told apart from "unset".
    if path != super::StoreConfig::default().path {
        return Some(format!(
            "store.url and store.path ({}) are mutually exclusive: keep store.url for the \
             shared PostgreSQL store, or store.path for the SQLite file",
            path.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(toml: &str) -> Vec<String> {
        let config: Config = toml::from_str(toml).unwrap();
        config.problems().iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_postgres_url_alone_is_fine() {
        assert!(
            problems("[store]\nurl = \"postgres://starcode@127.0.0.1:5432/presence\"\n").is_empty()
        );
    }

    #[test]
    fn url_and_path_together_name_both_keys() {
        let found = problems("[store]\npath = \"x.db\"\nurl = \"postgres://a@db/presence\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("store.url"), "{found:?}");
        assert!(found[0].contains("store.path (x.db)"), "{found:?}");
    }

    #[test]
    fn a_bad_url_is_a_problem_that_hides_the_password() {
        for url in [
            "mysql://a:hunter2@db/x",
            "postgres://a:hunter2@db:notaport/x",
        ] {
            let found = problems(&format!("[store]\nurl = \"{url}\"\n"));
            assert_eq!(found.len(), 1, "{url}: {found:?}");
            assert!(found[0].contains("store.url"), "{found:?}");
            assert!(!found[0].contains("hunter2"), "{found:?}");
        }
    }
}
