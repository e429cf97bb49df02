//! Live reload: the feature codes remapped in the running engine's config file (with
//! `config::edit`, as the web layer does, and by hand), SIGHUP to its PID, and sipp calls to
//! the old and new codes; a broken file on SIGHUP changes nothing.

use super::*;
use starcode::config::edit::write_feature_codes;
use starcode::config::FeatureCode;

impl Engine {
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("starcode.toml")
    }

    /// Sends SIGHUP and returns the engine's log line about the reload (`config reloaded` or
    /// `config not reloaded`).
    pub(crate) fn sighup(&mut self) -> String {
        self.lines.clear();
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_for_log("reloaded", Duration::from_secs(10))
    }

    /// One sipp call from `ext` to `code` picking `choice` and confirming; the status after it.
    pub(crate) fn set_by_call(
        &mut self,
        ext: &'static str,
        code: &'static str,
        choice: &str,
    ) -> String {
        self.lines.clear();
        let out = self.call(
            "caller_rfc2833.xml",
            &[("CHOICE", choice), ("CONFIRM", "1")],
            &caller(ext, code, "0", "PCMU"),
            "u1",
        );
        assert!(out.status.success(), "the call to {code} did not complete");
        self.wait_for_log("call finished", Duration::from_secs(10));
        self.status(ext)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A call to `code` that must be refused with 404.
    pub(crate) fn refused(&self, code: &'static str) {
        let out = self.call(
            "caller_rejected.xml",
            &[("EXPECTED", "404")],
            &caller("1019", code, "0", "PCMU"),
            "u1",
        );
        assert!(out.status.success(), "{code} was not refused with 404");
    }
}

#[test]
fn sighup_remaps_the_feature_codes_and_a_broken_file_keeps_the_old_ones() {
    let mut engine = Engine::start("t1 = \"500ms\"");
    let path = engine.config_path();
    // The file has no feature_codes key (the defaults, *46 and *48, are served): the edit
    // adds one. *46 is kept but switched off, *47 is new.
    let before = std::fs::read_to_string(&path).unwrap();
    assert!(!before.contains("feature_codes"));
    write_feature_codes(
        &path,
        &[
            FeatureCode::enabled("*47"),
            FeatureCode::disabled("*46"),
            FeatureCode::enabled("*48"),
        ],
    )
    .unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(
        after.ends_with(&before),
        "the rest of the file is untouched"
    );
    // A change that needs a restart, by hand: reported, not applied.
    std::fs::write(&path, after.replace("t1 = \"500ms\"", "t1 = \"400ms\"")).unwrap();

    let reloaded = engine.sighup();
    assert!(reloaded.contains("config reloaded"), "{reloaded}");
    assert!(
        reloaded.contains("*47") && reloaded.contains("*48"),
        "{reloaded}"
    );
    let restart = engine.wait_for_log("only after a restart", Duration::from_secs(1));
    assert!(restart.contains("sip.t1"), "{restart}");

    assert_eq!(engine.set_by_call("1011", "*47", "3"), "away");
    engine.refused("*46");
    assert_eq!(engine.set_by_call("1012", "*48", "5"), "dnd");

    // A broken file: two problems, both named; the engine keeps *47 and *48, and the
    // broken file's *49 is not served.
    let good = std::fs::read_to_string(&path).unwrap();
    let broken = good
        .replace("\"*47\"", "\"*49\", \"*4A\"")
        .replace("rtp_timeout = \"20s\"", "rtp_timeout = \"1s\"");
    assert_ne!(broken, good);
    std::fs::write(&path, &broken).unwrap();
    let refused = engine.sighup();
    assert!(refused.contains("config not reloaded"), "{refused}");
    assert!(refused.contains("WARN"), "{refused}");
    assert!(
        refused.contains("feature_codes[1]") && refused.contains("media.rtp_timeout"),
        "every problem is named: {refused}"
    );
    assert_eq!(engine.set_by_call("1013", "*47", "4"), "chat");
    engine.refused("*49");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        broken,
        "a reload never writes"
    );
}
