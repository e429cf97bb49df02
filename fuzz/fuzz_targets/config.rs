//! Config text as `starcode run`, `check-config` and a reload read it: parsed and validated;
//! a config that loads must print (`check-config`) as TOML that loads again to the same config.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use starcode::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let config = match Config::from_toml(text, path) {
        Ok(config) => config,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = config.menu.status_for(starcode::dtmf::Key::D1);
    let _ = config.media.inband.detector_config();
    let _ = config.prompt_language_dir();
    let printed = config.to_toml();
    let again = Config::from_toml(&printed, path).expect("printed config loads");
    assert_eq!(again.to_toml(), printed, "printing is stable");
});
