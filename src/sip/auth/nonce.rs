//! Nonces we can check without remembering them: the issue time, a serial number and an
//! HMAC-SHA256 over both and the source IP, under a key drawn when the process starts. The
//! serial makes every challenge's nonce its own, even two in the same millisecond to the same
//! phone (each starts its nonce count at 1). A nonce tells us when
//! it was issued and to whom; one for another source, or forged, fails its MAC; one older
//! than the lifetime is stale. Nothing is stored per challenge, so a flood of unanswered
//! requests costs no memory.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex digits of the issue time (milliseconds since the issuer's epoch).
const TIME_DIGITS: usize = 16;
/// Hex digits of the serial number.
const SERIAL_DIGITS: usize = 8;
/// Bytes of the MAC kept in a nonce (128 bits).
const MAC_BYTES: usize = 16;
/// The length of every nonce we issue.
pub const NONCE_LEN: usize = TIME_DIGITS + SERIAL_DIGITS + 2 * MAC_BYTES;

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, for this source, within its lifetime; `issued` in the issuer's milliseconds.
    Valid { issued: u64 },
    /// Ours and for this source, but older than the lifetime.
    Stale { issued: u64 },
    /// Not one we issued to this source (another source's, another process's, forged).
    Foreign,
}

/// Issues and checks nonces.
pub struct NonceIssuer {
    key: [u8; 32],
    /// What issue time 0 means.
    epoch: Instant,
    lifetime: Duration,
    /// The next nonce's serial number.
    serial: u32,
}

impl NonceIssuer {
    /// An issuer with this key (random per process in the engine; fixed in tests) whose
    /// times count from `epoch`.
    pub fn new(key: [u8; 32], epoch: Instant, lifetime: Duration) -> NonceIssuer {
        NonceIssuer {
            key,
            epoch,
            lifetime,
            serial: 0,
        }
    }

    /// Changes how long nonces stay good (a config reload); issued ones keep working.
    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    /// The issuer's clock at `now`, in milliseconds.
    pub fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// A fresh nonce for `source`.
    pub fn issue(&mut self, source: IpAddr, now: Instant) -> String {
        let issued = self.millis(now);
        let serial = self.serial;
        self.serial = self.serial.wrapping_add(1);
        let mac = self.mac(issued, serial, source);
        let mut out = format!(
            "{issued:0tw$x}{serial:0sw$x}",
            tw = TIME_DIGITS,
            sw = SERIAL_DIGITS
        );
        push_hex(&mut out, &mac);
        out
    }

    /// Checks a nonce a phone sent back from `source`.
    pub fn check(&self, nonce: &str, source: IpAddr, now: Instant) -> NonceCheck {
        if nonce.len() != NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return NonceCheck::Foreign;
        }
        let serial_end = TIME_DIGITS + SERIAL_DIGITS;
        let (Some(time), Some(serial), Some(mac)) = (
            nonce.get(..TIME_DIGITS),
            nonce.get(TIME_DIGITS..serial_end),
            nonce.get(serial_end..),
        ) else {
            return NonceCheck::Foreign;
        };
        let (Ok(issued), Ok(serial)) = (
            u64::from_str_radix(time, 16),
            u32::from_str_radix(serial, 16),
        ) else {
            return NonceCheck::Foreign;
        };
        let mut expected = String::with_capacity(2 * MAC_BYTES);
        push_hex(&mut expected, &self.mac(issued, serial, source));
        if !super::constant_time_eq(expected.as_bytes(), mac.to_ascii_lowercase().as_bytes()) {
            return NonceCheck::Foreign;
        }
        let now_ms = self.millis(now);
        if issued > now_ms {
            // Issued "in the future": not by this clock.
            return NonceCheck::Foreign;
        }
        let lifetime = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
        if now_ms - issued > lifetime {
            NonceCheck::Stale { issued }
        } else {
            NonceCheck::Valid { issued }
        }
    }

    /// The lifetime in the issuer's milliseconds.
    pub fn lifetime_ms(&self) -> u64 {
        u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX)
    }

    fn mac(&self, issued: u64, serial: u32, source: IpAddr) -> [u8; MAC_BYTES] {
        // An IPv4 address and its IPv4-mapped IPv6 form are one source.
        let ip = match source {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this arm is never taken.
            Err(_) => return [0; MAC_BYTES],
        };
        mac.update(b"starcode nonce v1");
        mac.update(&issued.to_be_bytes());
        mac.update(&serial.to_be_bytes());
        mac.update(&ip.octets());
        let full = mac.finalize().into_bytes();
        let mut out = [0; MAC_BYTES];
        for (o, b) in out.iter_mut().zip(full.iter()) {
            *o = *b;
        }
        out
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    use std::fmt::Write;
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_nonces_in_the_same_millisecond_differ() {
        let t0 = Instant::now();
        let mut i = issuer(t0);
        let phone: IpAddr = "192.0.2.10".parse().unwrap();
        let (a, b) = (i.issue(phone, t0), i.issue(phone, t0));
        assert_ne!(a, b);
        assert!(matches!(i.check(&a, phone, t0), NonceCheck::Valid { .. }));
        assert!(matches!(i.check(&b, phone, t0), NonceCheck::Valid { .. }));
    }

    fn issuer(epoch: Instant) -> NonceIssuer {
        NonceIssuer::new([7; 32], epoch, Duration::from_secs(300))
    }

    #[test]
    fn a_nonce_is_good_for_its_source_until_it_is_stale() {
        let t0 = Instant::now();
        let mut i = issuer(t0);
        let phone: IpAddr = "192.0.2.10".parse().unwrap();
        let now = t0 + Duration::from_secs(5);
        let nonce = i.issue(phone, now);
        assert_eq!(nonce.len(), NONCE_LEN);
        assert_eq!(
            i.check(&nonce, phone, now),
            NonceCheck::Valid { issued: 5000 }
        );
        // The IPv4-mapped form of the same address is the same source.
        let mapped: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
        assert!(matches!(
            i.check(&nonce, mapped, now),
            NonceCheck::Valid { .. }
        ));
        assert!(matches!(
            i.check(&nonce, phone, now + Duration::from_secs(300)),
            NonceCheck::Valid { .. }
        ));
        assert_eq!(
            i.check(&nonce, phone, now + Duration::from_secs(301)),
            NonceCheck::Stale { issued: 5000 }
        );
    }

    #[test]
    fn another_source_another_key_or_a_forgery_is_foreign() {
        let t0 = Instant::now();
        let mut i = issuer(t0);
        let phone: IpAddr = "192.0.2.10".parse().unwrap();
        let nonce = i.issue(phone, t0);
        assert_eq!(
            i.check(&nonce, "192.0.2.11".parse().unwrap(), t0),
            NonceCheck::Foreign
        );
        let mut other = NonceIssuer::new([8; 32], t0, Duration::from_secs(300));
        assert_eq!(other.check(&nonce, phone, t0), NonceCheck::Foreign);
        // A later issue time with the old MAC.
        let forged = format!("{:016x}{}", 1u64 << 40, &nonce[16..]);
        let reserial = format!("{}00000009{}", &nonce[..16], &nonce[24..]);
        assert_eq!(i.check(&reserial, phone, t0), NonceCheck::Foreign);
        assert_eq!(i.check(&forged, phone, t0), NonceCheck::Foreign);
        other.issue(phone, t0);
        for junk in ["", "xyz", &nonce[1..], "é".repeat(28).as_str()] {
            assert_eq!(i.check(junk, phone, t0), NonceCheck::Foreign);
        }
    }

    #[test]
    fn a_nonce_from_the_future_is_foreign() {
        let t0 = Instant::now();
        let mut i = issuer(t0);
        let phone: IpAddr = "192.0.2.10".parse().unwrap();
        let later = i.issue(phone, t0 + Duration::from_secs(10));
        assert_eq!(i.check(&later, phone, t0), NonceCheck::Foreign);
    }
}
