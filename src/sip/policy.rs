//! Which requests starcode serves, decided before any state is touched: an untrusted source,
//! an unknown feature code, an unsupported extension or method each get their answer here.

use std::net::IpAddr;

use ezk_sip_types::Method;
use ipnet::IpNet;

use super::request::RequestInfo;

/// Methods we implement, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, SUBSCRIBE, PUBLISH";
/// Bodies we read, for `Accept`.
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";
/// Extensions we support, for `Supported` (none yet: no 100rel, no session timers).
pub const SUPPORTED: &str = "";

/// Methods some RFC defines: those we do not serve get `405` with `Allow` (RFC 3261 §8.2.1);
/// any other method is unknown to us and gets `501` (§21.5.2; RFC 4475 §3.1.1.5).
const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "UPDATE",
    "MESSAGE",
    "REFER",
    "PUBLISH",
];

/// Request-URI schemes we route on (`tel:` for feature codes dialled as numbers); any other
/// gets `416` (RFC 3261 §8.2.2.1).
const URI_SCHEMES: [&str; 3] = ["sip", "sips", "tel"];

/// True for a method some RFC defines, whether or not we serve it.
pub fn is_known_method(method: &Method) -> bool {
    KNOWN_METHODS.contains(&method.to_string().as_str())
}

/// The admission rules from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub feature_codes: Vec<String>,
    pub trusted_peers: Vec<IpNet>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer at once with this response and do nothing else. `headers` go into the response.
    Reject {
        code: u16,
        reason: Option<String>,
        headers: Vec<(&'static str, String)>,
    },
    /// ACK from an untrusted source, or a stray: drop it silently (ACK is never answered).
    Drop,
    /// OPTIONS: answer 200 with our capabilities.
    Options,
    /// A new call to a feature code by this extension.
    NewCall {
        caller: String,
        feature_code: String,
    },
    /// A presence SUBSCRIBE (initial or refresh); the user agent's presence side decides.
    Subscribe,
    /// A presence PUBLISH (RFC 3903); the user agent's presence side decides.
    Publish,
    /// A request inside (or about) an existing dialog or transaction: re-INVITE, ACK, BYE,
    /// CANCEL, INFO. The user agent looks the dialog up by Call-ID and tags, whatever the
    /// Request-URI (a phone sends these to our Contact, often without a user): 481 if unknown.
    Dialog,
}

impl Policy {
    /// True when requests from `ip` may be served.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.trusted_peers.iter().any(|net| net.contains(&ip))
    }

    /// Decides what to do with a well-formed request from `source` when only trusted peers
    /// are served (`sip.auth = "never"`).
    pub fn classify(&self, req: &RequestInfo, source: IpAddr) -> Verdict {
        self.classify_with(req, source, false)
    }

    /// Decides what to do with a well-formed request from `source`. `open`: sources outside
    /// the trusted peers are served too, because they prove who they are (digest
    /// authentication is on); the user agent has already authenticated what it challenges.
    pub fn classify_with(&self, req: &RequestInfo, source: IpAddr, open: bool) -> Verdict {
        let served = open || self.is_trusted(source);
        if req.method == Method::ACK {
            return if served {
                Verdict::Dialog
            } else {
                Verdict::Drop
            };
        }
        if !served {
            tracing::warn!(%source, method = %req.method, call_id = %req.call_id, "request from an untrusted peer refused");
            return reject(403, None, vec![]);
        }
        // RFC 3261 §8.2: the method first, then the Request-URI, then Require.
        if !is_known_method(&req.method) {
            return reject(501, None, vec![("Allow", ALLOW.to_string())]);
        }
        let method = req.method.to_string();
        if !ALLOW.split(", ").any(|m| m == method) {
            return reject(405, None, vec![("Allow", ALLOW.to_string())]);
        }
        if !URI_SCHEMES.contains(&req.uri_scheme.as_str()) {
            return reject(416, None, vec![]);
        }
        if req.method != Method::CANCEL && !req.require.is_empty() {
            // We support no extensions: every required option is unknown to us.
            return reject(420, None, vec![("Unsupported", req.require.join(", "))]);
        }
        match req.method {
            Method::INVITE if req.to_tag.is_some() => Verdict::Dialog,
            Method::INVITE => {
                let Some(code) = req
                    .target_user
                    .as_deref()
                    .filter(|u| self.feature_codes.iter().any(|c| c == u))
                else {
                    return reject(404, None, vec![]);
                };
                let caller = req
                    .asserted_user
                    .clone()
                    .or_else(|| req.from_user.clone())
                    .filter(|c| crate::presence::validate_extension(c).is_ok());
                match caller {
                    Some(caller) => Verdict::NewCall {
                        caller,
                        feature_code: code.to_string(),
                    },
                    None => reject(403, Some("Caller extension unknown".into()), vec![]),
                }
            }
            Method::OPTIONS => Verdict::Options,
            Method::SUBSCRIBE => Verdict::Subscribe,
            Method::PUBLISH => Verdict::Publish,
            Method::BYE | Method::CANCEL | Method::INFO => Verdict::Dialog,
            _ => reject(405, None, vec![("Allow", ALLOW.to_string())]),
        }
    }
}

fn reject(code: u16, reason: Option<String>, headers: Vec<(&'static str, String)>) -> Verdict {
    Verdict::Reject {
        code,
        reason,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_sip;

    fn policy() -> Policy {
        Policy {
            feature_codes: vec!["*46".into(), "*48".into()],
            trusted_peers: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        }
    }

    fn req(method: &str, user: &str, extra: &str) -> RequestInfo {
        let text = format!(
            "{method} sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
             From: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 {method}\r\n{extra}\r\n"
        );
        RequestInfo::read(&parse_sip(text.as_bytes()).unwrap()).unwrap()
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn feature_codes_percent_encoded_or_not_start_calls() {
        for user in ["*46", "%2A46", "%2a48"] {
            match policy().classify(&req("INVITE", user, ""), LOCAL) {
                Verdict::NewCall {
                    caller,
                    feature_code,
                } => {
                    assert_eq!(caller, "1001");
                    assert!(feature_code.starts_with('*'));
                }
                other => panic!("{user}: {other:?}"),
            }
        }
        assert!(matches!(
            policy().classify(&req("INVITE", "*99", ""), LOCAL),
            Verdict::Reject { code: 404, .. }
        ));
    }

    #[test]
    fn asserted_identity_names_the_caller() {
        let r = req("INVITE", "*46", "P-Asserted-Identity: <sip:2002@pbx>\r\n");
        assert_eq!(
            policy().classify(&r, LOCAL),
            Verdict::NewCall {
                caller: "2002".into(),
                feature_code: "*46".into()
            }
        );
    }

    #[test]
    fn untrusted_sources_get_403_and_their_acks_are_dropped() {
        let outside: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(matches!(
            policy().classify(&req("INVITE", "*46", ""), outside),
            Verdict::Reject { code: 403, .. }
        ));
        assert_eq!(
            policy().classify(&req("ACK", "*46", ""), outside),
            Verdict::Drop
        );
        assert!(policy().is_trusted("::1".parse().unwrap()));
        assert!(policy().is_trusted("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn with_authentication_on_untrusted_sources_are_classified_like_trusted_ones() {
        let outside: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(matches!(
            policy().classify_with(&req("INVITE", "*46", ""), outside, true),
            Verdict::NewCall { .. }
        ));
        assert_eq!(
            policy().classify_with(&req("ACK", "*46", ""), outside, true),
            Verdict::Dialog
        );
        assert_eq!(
            policy().classify_with(&req("CANCEL", "*46", ""), outside, true),
            Verdict::Dialog
        );
        assert_eq!(
            policy().classify_with(&req("OPTIONS", "x", ""), outside, true),
            Verdict::Options
        );
        assert!(matches!(
            policy().classify_with(&req("INVITE", "*46", ""), outside, false),
            Verdict::Reject { code: 403, .. }
        ));
    }

    #[test]
    fn rfc_3261_order_unknown_method_then_unserved_method_then_scheme() {
        let reject_code = |r: &RequestInfo| match policy().classify(r, LOCAL) {
            Verdict::Reject { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(reject_code(&req("FROBNICATE", "x", "")), 501);
        assert_eq!(reject_code(&req("REGISTER", "x", "")), 405);
        let text = "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\nFrom: <sip:1@h>;tag=a\r\n\
            To: <sip:u@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let unknown_scheme = RequestInfo::read(&parse_sip(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(reject_code(&unknown_scheme), 416);
        // The method comes first: a REGISTER to an unknown scheme is still a 405.
        let register = text.replace("OPTIONS", "REGISTER");
        let register = RequestInfo::read(&parse_sip(register.as_bytes()).unwrap()).unwrap();
        assert_eq!(reject_code(&register), 405);
        assert_eq!(
            policy().classify(&req("OPTIONS", "x", ""), LOCAL),
            Verdict::Options
        );
    }

    #[test]
    fn options_unknown_methods_and_required_extensions() {
        assert_eq!(
            policy().classify(&req("OPTIONS", "x", ""), LOCAL),
            Verdict::Options
        );
        match policy().classify(&req("MESSAGE", "x", ""), LOCAL) {
            Verdict::Reject {
                code: 405, headers, ..
            } => assert_eq!(headers, [("Allow", ALLOW.to_string())]),
            other => panic!("{other:?}"),
        }
        match policy().classify(&req("INVITE", "*46", "Require: 100rel\r\n"), LOCAL) {
            Verdict::Reject {
                code: 420, headers, ..
            } => {
                assert_eq!(headers, [("Unsupported", "100rel".to_string())])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            policy().classify(&req("BYE", "x", ""), LOCAL),
            Verdict::Dialog
        );
    }
}
