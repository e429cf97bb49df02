//! `starcode status get|set|list`: lets an admin or a script read and change presence without
//! a phone, through the same store (and so the same rules, versions and history) as the
//! feature code. Kept apart from `main.rs` so it can be tested against a [`MemoryStore`]
//! with its output captured.
//!
//! [`MemoryStore`]: crate::presence::memory::MemoryStore

use std::io::Write;
use std::str::FromStr;
use std::time::SystemTime;

use anyhow::Context;

use crate::presence::{
    to_unix_millis, ChangeSource, HistoryEntry, Presence, PresenceStore, StatusKind, StatusUpdate,
};

/// The `status` subcommands, parsed by clap in `main.rs`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum StatusCommand {
    /// Show every extension that has a status.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one extension's status (Available, version 0 if it was never set).
    Get {
        /// The extension, e.g. 1001.
        extension: String,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also show this many of the newest history rows.
        #[arg(long, value_name = "N", default_value_t = 0)]
        history: usize,
    },
    /// Change one extension's status, as if dialled from its phone.
    Set {
        /// The extension, e.g. 1001.
        extension: String,
        /// available, away, chat, dnd, unavailable or custom.
        #[arg(value_parser = StatusKind::from_str)]
        status: StatusKind,
        /// Custom text (at most 64 characters); Custom reuses the stored text without it.
        #[arg(long, value_name = "TEXT")]
        text: Option<String>,
    },
}

/// Runs one `status` command against `store`, writing what a person or script reads to `out`.
///
/// `now` is the time recorded for a `set`, passed in so tests are deterministic.
pub fn run(
    store: &dyn PresenceStore,
    cmd: StatusCommand,
    now: SystemTime,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        StatusCommand::List { json } => {
            let all = store.list().context("listing extensions")?;
            let watchers = store
                .watcher_counts(now)
                .context("counting presence watchers")?;
            if json {
                for presence in &all {
                    let mut row = serde_json::to_value(presence)?;
                    if let Some(obj) = row.as_object_mut() {
                        let count = watchers.get(&presence.extension).copied().unwrap_or(0);
                        obj.insert("watchers".into(), count.into());
                    }
                    serde_json::to_writer(&mut *out, &row)?;
                    writeln!(out)?;
                }
            } else {
                write_presence_table(out, &all, &watchers)?;
            }
        }
        StatusCommand::Get {
            extension,
            json,
            history,
        } => {
            let presence = store
                .get(&extension)
                .with_context(|| format!("reading {extension}"))?;
            let history = if history > 0 {
                Some(
                    store
                        .history(&extension, history)
                        .with_context(|| format!("reading the history of {extension}"))?,
                )
            } else {
                None
            };
            if json {
                let shown = GetJson {
                    presence: &presence,
                    history: history.as_deref(),
                };
                serde_json::to_writer(&mut *out, &shown)?;
                writeln!(out)?;
            } else {
                write_presence_lines(out, &presence)?;
                if let Some(history) = history {
                    writeln!(out)?;
                    writeln!(out, "history (newest first):")?;
                    write_history_table(out, &history)?;
                }
            }
        }
        StatusCommand::Set {
            extension,
            status,
            text,
        } => {
            let update = StatusUpdate {
                extension: extension.clone(),
                status,
                custom_text: text,
                source: ChangeSource::Cli,
                at: now,
                actor: None,
                expected_version: None,
            };
            let change = store
                .set(&update)
                .with_context(|| format!("setting {extension} to {status}"))?;
            writeln!(
                out,
                "{}: {} -> {}, version {}",
                change.current.extension,
                change.previous.full_status(),
                change.current.full_status(),
                change.current.version
            )?;
        }
    }
    Ok(())
}

/// `get --json`: the presence fields, plus `history` when asked for.
#[derive(serde::Serialize)]
struct GetJson<'a> {
    #[serde(flatten)]
    presence: &'a Presence,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a [HistoryEntry]>,
}

/// Shown for a value that does not exist (the time of a never-set extension).
const NONE: &str = "-";

fn write_presence_table(
    out: &mut dyn Write,
    all: &[Presence],
    watchers: &std::collections::BTreeMap<String, usize>,
) -> std::io::Result<()> {
    let rows = all.iter().map(|p| {
        [
            p.extension.clone(),
            p.status.as_str().to_string(),
            p.custom_text.clone().unwrap_or_else(|| NONE.to_string()),
            watchers.get(&p.extension).copied().unwrap_or(0).to_string(),
            p.version.to_string(),
            p.updated_at.map_or_else(|| NONE.to_string(), format_time),
            p.source.map_or(NONE, ChangeSource::as_str).to_string(),
        ]
    });
    write_table(
        out,
        [
            "EXTENSION",
            "STATUS",
            "TEXT",
            "WATCHERS",
            "VERSION",
            "UPDATED",
            "SOURCE",
        ],
        rows,
    )
}

fn write_history_table(out: &mut dyn Write, history: &[HistoryEntry]) -> std::io::Result<()> {
    let rows = history.iter().map(|h| {
        [
            h.version.to_string(),
            h.status.as_str().to_string(),
            h.custom_text.clone().unwrap_or_else(|| NONE.to_string()),
            format_time(h.at),
            h.source.as_str().to_string(),
        ]
    });
    write_table(out, ["VERSION", "STATUS", "TEXT", "AT", "SOURCE"], rows)
}

fn write_presence_lines(out: &mut dyn Write, p: &Presence) -> std::io::Result<()> {
    writeln!(out, "extension: {}", p.extension)?;
    writeln!(out, "status:    {}", p.status.as_str())?;
    writeln!(
        out,
        "text:      {}",
        p.custom_text.as_deref().unwrap_or(NONE)
    )?;
    writeln!(out, "version:   {}", p.version)?;
    match p.updated_at {
        Some(t) => writeln!(out, "updated:   {}", format_time(t))?,
        None => writeln!(out, "updated:   never")?,
    }
    writeln!(
        out,
        "source:    {}",
        p.source.map_or(NONE, ChangeSource::as_str)
    )
}

/// Left-aligned columns two spaces apart; the last column is not padded, so lines carry no
/// trailing blanks.
pub(crate) fn write_table<const N: usize>(
    out: &mut dyn Write,
    header: [&str; N],
    rows: impl Iterator<Item = [String; N]>,
) -> std::io::Result<()> {
    let rows: Vec<[String; N]> = rows.collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; N]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(header)?;
    for row in &rows {
        line(row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

/// A time as `list` commands show it: RFC 3339 UTC with milliseconds.
pub(crate) fn format_time(t: SystemTime) -> String {
    format_rfc3339_millis(to_unix_millis(t))
}

/// RFC 3339 in UTC with milliseconds (`2025-11-24T16:00:00.123Z`) for any instant, including
/// ones before 1970 or after 9999 that a damaged database might hold, where
/// `humantime::format_rfc3339_millis` would panic.
fn format_rfc3339_millis(unix_ms: i64) -> String {
    const MS_PER_DAY: i64 = 86_400_000;
    let (year, month, day) = civil_from_days(unix_ms.div_euclid(MS_PER_DAY));
    let ms_of_day = unix_ms.rem_euclid(MS_PER_DAY);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`). Exact for every day an `i64` of milliseconds can name.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;
    use proptest::prelude::*;

    use super::*;
    use crate::presence::memory::MemoryStore;
    use crate::presence::{from_unix_millis, StoreError};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: StatusCommand,
    }

    fn parse(args: &[&str]) -> StatusCommand {
        Cli::try_parse_from(std::iter::once("status").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    /// 2025-11-24T16:00:00.123Z
    const T0_MS: i64 = 1_764_000_000_123;

    fn at(offset_ms: i64) -> SystemTime {
        from_unix_millis(T0_MS + offset_ms)
    }

    fn run_to_string(store: &dyn PresenceStore, args: &[&str], now: SystemTime) -> String {
        let mut out = Vec::new();
        run(store, parse(args), now, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn commands_parse_with_their_options() {
        assert_eq!(
            parse(&["set", "1001", "do-not-disturb"]),
            StatusCommand::Set {
                extension: "1001".into(),
                status: StatusKind::DoNotDisturb,
                text: None
            }
        );
        assert_eq!(
            parse(&["set", "1001", "Custom", "--text", "At lunch"]),
            StatusCommand::Set {
                extension: "1001".into(),
                status: StatusKind::Custom,
                text: Some("At lunch".into())
            }
        );
        assert_eq!(
            parse(&["get", "1001"]),
            StatusCommand::Get {
                extension: "1001".into(),
                json: false,
                history: 0
            }
        );
        assert_eq!(
            parse(&["get", "1001", "--json", "--history", "5"]),
            StatusCommand::Get {
                extension: "1001".into(),
                json: true,
                history: 5
            }
        );
        assert_eq!(
            parse(&["list", "--json"]),
            StatusCommand::List { json: true }
        );
        let err = Cli::try_parse_from(["status", "set", "1001", "sleeping"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown status 'sleeping'"), "{err}");
    }

    #[test]
    fn set_records_the_cli_as_source_at_the_given_time() {
        let store = MemoryStore::new();
        let out = run_to_string(&store, &["set", "1001", "away"], at(0));
        assert_eq!(out, "1001: available -> away, version 1\n");
        let out = run_to_string(
            &store,
            &["set", "1001", "custom", "--text", "At lunch"],
            at(5),
        );
        assert_eq!(out, "1001: away -> custom (At lunch), version 2\n");
        let p = store.get("1001").unwrap();
        assert_eq!(p.source, Some(ChangeSource::Cli));
        assert_eq!(p.updated_at, Some(at(5)));
    }

    #[test]
    fn set_errors_say_what_was_being_done() {
        let store = MemoryStore::new();
        let err = run(
            &store,
            parse(&["set", "1001", "custom"]),
            at(0),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "setting 1001 to custom");
        assert!(matches!(
            err.downcast_ref::<StoreError>(),
            Some(StoreError::NoCustomText(_))
        ));
        assert!(format!("{err:#}").contains("no custom status text"));

        store.fail_next_set("database is locked");
        let err = run(
            &store,
            parse(&["set", "1001", "dnd"]),
            at(0),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "setting 1001 to dnd: database error: database is locked"
        );
        assert_eq!(store.get("1001").unwrap().version, 0);

        let err = run(&store, parse(&["get", "10 01"]), at(0), &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").starts_with("reading 10 01: invalid extension"));
    }

    #[test]
    fn list_prints_an_aligned_table() {
        let store = MemoryStore::new();
        run_to_string(
            &store,
            &["set", "1001", "custom", "--text", "Out to lunch"],
            at(0),
        );
        run_to_string(&store, &["set", "1001", "away"], at(1000));
        run_to_string(&store, &["set", "alice.smith", "dnd"], at(60_000));
        for id in ["w1", "w2"] {
            store
                .save_subscription(&crate::presence::StoredSubscription {
                    id: id.into(),
                    extension: "1001".into(),
                    expires_at: at(3_600_000),
                    record: "{}".into(),
                })
                .unwrap();
        }
        let out = run_to_string(&store, &["list"], at(0));
        assert_eq!(
            out,
            "\
EXTENSION    STATUS  TEXT          WATCHERS  VERSION  UPDATED                   SOURCE
1001         away    Out to lunch  2         2        2025-11-24T16:00:01.123Z  cli
alice.smith  dnd     -             0         1        2025-11-24T16:01:00.123Z  cli
"
        );
    }

    #[test]
    fn list_of_an_empty_store_is_just_the_header() {
        let store = MemoryStore::new();
        assert_eq!(
            run_to_string(&store, &["list"], at(0)),
            "EXTENSION  STATUS  TEXT  WATCHERS  VERSION  UPDATED  SOURCE\n"
        );
        assert_eq!(run_to_string(&store, &["list", "--json"], at(0)), "");
    }

    #[test]
    fn list_json_is_one_object_per_line() {
        let store = MemoryStore::new();
        run_to_string(&store, &["set", "2002", "chat"], at(0));
        run_to_string(&store, &["set", "1001", "custom", "--text", "Gym"], at(7));
        let out = run_to_string(&store, &["list", "--json"], at(0));
        let rows: Vec<serde_json::Value> = out
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            rows,
            [
                serde_json::json!({"extension": "1001", "status": "custom", "custom_text": "Gym",
                    "version": 1, "updated_at": T0_MS + 7, "source": "cli", "watchers": 0}),
                serde_json::json!({"extension": "2002", "status": "chat", "custom_text": null,
                    "version": 1, "updated_at": T0_MS, "source": "cli", "watchers": 0}),
            ]
        );
    }

    #[test]
    fn get_prints_one_line_per_value() {
        let store = MemoryStore::new();
        assert_eq!(
            run_to_string(&store, &["get", "1001"], at(0)),
            "\
extension: 1001
status:    available
text:      -
version:   0
updated:   never
source:    -
"
        );
        run_to_string(
            &store,
            &["set", "1001", "custom", "--text", "Back at 3"],
            at(0),
        );
        run_to_string(&store, &["set", "1001", "unavailable"], at(2000));
        run_to_string(&store, &["set", "1001", "away"], at(4000));
        assert_eq!(
            run_to_string(&store, &["get", "1001", "--history", "2"], at(0)),
            "\
extension: 1001
status:    away
text:      Back at 3
version:   3
updated:   2025-11-24T16:00:04.123Z
source:    cli

history (newest first):
VERSION  STATUS       TEXT       AT                        SOURCE
3        away         Back at 3  2025-11-24T16:00:04.123Z  cli
2        unavailable  Back at 3  2025-11-24T16:00:02.123Z  cli
"
        );
    }

    #[test]
    fn get_json_is_one_object_with_optional_history() {
        let store = MemoryStore::new();
        let out = run_to_string(&store, &["get", "1001", "--json"], at(0));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out).unwrap(),
            serde_json::json!({"extension": "1001", "status": "available", "custom_text": null,
                "version": 0, "updated_at": null, "source": null})
        );
        run_to_string(&store, &["set", "1001", "dnd"], at(0));
        let out = run_to_string(&store, &["get", "1001", "--json", "--history", "9"], at(0));
        assert_eq!(out.lines().count(), 1);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out).unwrap(),
            serde_json::json!({"extension": "1001", "status": "dnd", "custom_text": null,
                "version": 1, "updated_at": T0_MS, "source": "cli",
                "history": [{"id": 1, "extension": "1001", "version": 1, "status": "dnd",
                    "custom_text": null, "source": "cli", "at": T0_MS, "actor": null}]})
        );
    }

    #[test]
    fn times_format_as_rfc3339_utc() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(T0_MS), "2025-11-24T16:00:00.123Z");
        assert_eq!(
            format_rfc3339_millis(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        // Nonsense from a damaged row still formats instead of panicking.
        for ms in [i64::MIN, i64::MAX, 253_402_300_800_000] {
            assert!(format_rfc3339_millis(ms).ends_with('Z'));
        }
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH + Duration::from_millis(1)),
            "1970-01-01T00:00:00.001Z"
        );
    }

    proptest! {
        #[test]
        fn time_format_agrees_with_humantime(ms in 0i64..253_402_300_800_000) {
            let ours = format_rfc3339_millis(ms);
            let theirs = humantime::format_rfc3339_millis(from_unix_millis(ms)).to_string();
            prop_assert_eq!(ours, theirs);
        }
    }
}
