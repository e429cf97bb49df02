//! An `Authorization` header value (the whole input, lossy UTF-8): reading it never panics,
//! and whatever reads back renders and checks without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starcode::sip::auth::header::{is_digest, parse_credentials, realm_of, Challenge};

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let _ = is_digest(&value);
    let _ = realm_of(&value);
    if let Ok(creds) = parse_credentials(&value) {
        let _ = creds.nonce_count();
        if let Some(algorithm) = creds.algorithm() {
            // The challenge of what was read renders, and reads back as a non-credential.
            let challenge = Challenge {
                realm: &creds.realm,
                algorithm,
                nonce: &creds.nonce,
                opaque: creds.opaque.as_deref().unwrap_or_default(),
                stale: false,
            }
            .render();
            assert!(challenge.starts_with("Digest realm=\""));
        }
    }
});
