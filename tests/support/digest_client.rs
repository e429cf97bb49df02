//! The client side of SIP digest (RFC 7616 with RFC 8760's SHA-256, `qop=auth`) for the
//! harnesses' own phones (`benches/auth.rs`, `tests/e2e/auth.rs`): read the challenges of a
//! 401 and answer one, as a phone does. One copy, so the bench and the tests cannot answer
//! differently, and it is checked against the RFCs' worked examples below rather than only
//! against the engine (whose hashing, `digest_hex`/`ha1`, it shares).
//! Included by `#[path]` beside `peer.rs` (it reads `super::peer::Message`).
#![allow(dead_code)]

use starcode::accounts::secrets::digest_hex;
use starcode::accounts::{ha1, DigestAlgorithm};

use super::peer::Message;

/// A challenge's parameters (`Digest k=v, k="v, with commas", ...`), names lower-cased, in
/// their order. Quoted values may hold commas (`qop="auth, auth-int"`).
pub fn challenge_params(value: &str) -> Vec<(String, String)> {
    let rest = value.trim().strip_prefix("Digest").unwrap_or(value).trim();
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim_matches([',', ' '])
            .to_ascii_lowercase();
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let v = chars.by_ref().take_while(|c| *c != '"').collect();
            // Up to the comma after the closing quote.
            for c in chars.by_ref() {
                if c == ',' {
                    break;
                }
            }
            v
        } else {
            chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_string()
        };
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

/// One challenge of a 401 (RFC 7616 §3.3), as a client answers it.
#[derive(Clone, Debug)]
pub struct Challenge {
    pub algorithm: DigestAlgorithm,
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
}

impl Challenge {
    /// Every challenge of a 401 we can answer, in its order (no `algorithm` means MD5).
    pub fn all(msg: &Message) -> Vec<Challenge> {
        msg.all("WWW-Authenticate", "WWW-Authenticate")
            .filter_map(Challenge::parse)
            .collect()
    }

    /// The first challenge of a 401 that offers `algorithm`.
    pub fn offered(msg: &Message, algorithm: DigestAlgorithm) -> Option<Challenge> {
        Challenge::all(msg)
            .into_iter()
            .find(|c| c.algorithm == algorithm)
    }

    /// One `WWW-Authenticate` value; None without a realm or nonce, or for another algorithm.
    pub fn parse(value: &str) -> Option<Challenge> {
        let params = challenge_params(value);
        let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        Some(Challenge {
            algorithm: DigestAlgorithm::parse(&get("algorithm").unwrap_or("MD5".into()))?,
            realm: get("realm")?,
            nonce: get("nonce")?,
            opaque: get("opaque"),
        })
    }

    /// The `Authorization` value answering this challenge for `user` with `secret` (qop=auth,
    /// nonce-count `nc`, the client's own nonce `cnonce`, RFC 7616 §3.4) and the `response=`
    /// in it.
    pub fn answer(
        &self,
        user: &str,
        secret: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> (String, String) {
        let alg = self.algorithm;
        let ha1 = ha1(alg, user, &self.realm, secret);
        let ha2 = digest_hex(alg, format!("{method}:{uri}").as_bytes());
        let nc = format!("{nc:08x}");
        let response = digest_hex(
            alg,
            format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce).as_bytes(),
        );
        let opaque = self
            .opaque
            .as_ref()
            .map(|o| format!(", opaque=\"{o}\""))
            .unwrap_or_default();
        (
            format!(
                "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
                 response=\"{response}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"{opaque}",
                self.realm,
                self.nonce,
                alg.as_str()
            ),
            response,
        )
    }
}

/// Worked examples from the RFCs, not from our own reading: the challenge text as printed
/// there (unfolded) and the `response` they give.
#[cfg(test)]
mod tests {
    // A bench (`harness = false`) compiles this module without its #[test]s.
    #[allow(unused_imports)]
    use super::*;

    /// A 401 carrying `challenges`, one `WWW-Authenticate` each.
    fn unauthorized(challenges: &[&str]) -> String {
        let mut text = String::from("SIP/2.0 401 Unauthorized\r\nCSeq: 1 REGISTER\r\n");
        for c in challenges {
            text.push_str(&format!("WWW-Authenticate: {c}\r\n"));
        }
        text + "Content-Length: 0\r\n\r\n"
    }

    /// RFC 7616 §3.9.1: the same credentials challenged with SHA-256 and with MD5.
    #[test]
    fn rfc7616_sha256_and_md5_examples() {
        let challenge = |alg: &str| {
            format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
                 algorithm={alg}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            )
        };
        let text = unauthorized(&[&challenge("SHA-256"), &challenge("MD5")]);
        let msg = Message::parse(text.as_bytes()).expect("a 401");
        let offered = Challenge::all(&msg);
        assert_eq!(
            offered.iter().map(|c| c.algorithm).collect::<Vec<_>>(),
            [DigestAlgorithm::Sha256, DigestAlgorithm::Md5]
        );
        for (alg, expected) in [
            (
                DigestAlgorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            (DigestAlgorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let c = Challenge::offered(&msg, alg).expect("offered");
            assert_eq!(c.realm, "http-auth@example.org");
            assert_eq!(
                c.opaque.as_deref(),
                Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
            );
            let (header, response) = c.answer(
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                1,
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            );
            assert_eq!(response, expected, "{alg}");
            assert!(
                header.contains(&format!("response=\"{expected}\"")),
                "{header}"
            );
            assert!(
                header.contains(&format!("algorithm={alg}, qop=auth, nc=00000001, ")),
                "{header}"
            );
            assert!(
                header.ends_with(", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""),
                "{header}"
            );
        }
    }

    /// RFC 2617 §3.5: MD5 without an `algorithm` parameter (the default), qop=auth.
    #[test]
    fn rfc2617_md5_example() {
        let text = unauthorized(&[
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        ]);
        let msg = Message::parse(text.as_bytes()).expect("a 401");
        let c = Challenge::offered(&msg, DigestAlgorithm::Md5).expect("MD5 by default");
        assert_eq!(c.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
        let (_, response) = c.answer(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert_eq!(response, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn an_unknown_algorithm_or_a_missing_nonce_is_not_answered() {
        assert!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256").is_none()
        );
        assert!(Challenge::parse("Digest realm=\"r\", algorithm=MD5").is_none());
    }
}
