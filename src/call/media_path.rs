//! Where a call's RTP goes and whether the caller is still there: the symmetric-RTP and
//! RTP-inactivity rules as a sans-IO object, so they run on a virtual clock in tests and the
//! call task only moves packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One call's media path: the address signalling gave (SDP), the address the caller's RTP
/// really comes from, and when it was last heard.
///
/// Symmetric RTP (RFC 4961's practice): behind NAT the SDP address is a private one, so once
/// the caller's packets arrive we send to where they come from. Inactivity: a caller whose
/// phone vanished without a BYE sends no RTP; after `timeout` of silence the call ends.
#[derive(Debug, Clone)]
pub struct MediaPath {
    /// From the SDP; `None` when the negotiated direction forbids sending (hold).
    signalled: Option<SocketAddr>,
    /// Where the caller's RTP came from last (symmetric RTP only).
    latched: Option<SocketAddr>,
    symmetric: bool,
    timeout: Duration,
    last_heard: Instant,
    /// The silence was reported; reported once.
    silent: bool,
}

impl MediaPath {
    /// A path to `signalled` (`None`: do not send), its silence measured from `now`.
    pub fn new(
        signalled: Option<SocketAddr>,
        symmetric: bool,
        timeout: Duration,
        now: Instant,
    ) -> MediaPath {
        MediaPath {
            signalled,
            latched: None,
            symmetric,
            timeout,
            last_heard: now,
            silent: false,
        }
    }

    /// Where to send RTP now; `None` means do not send.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.signalled?;
        self.latched.or(self.signalled)
    }

    /// Signalling changed the media (re-INVITE, hold, resume). A latched address stays: a
    /// phone behind NAT keeps sending from it, and a phone that really moved re-latches with
    /// its next packet.
    pub fn set_signalled(&mut self, signalled: Option<SocketAddr>) {
        self.signalled = signalled;
    }

    /// An RTP datagram from `from` arrived at `now`.
    pub fn on_received(&mut self, from: SocketAddr, now: Instant) {
        self.last_heard = self.last_heard.max(now);
        if self.symmetric && self.latched != Some(from) {
            tracing::debug!(%from, "symmetric RTP: sending to where the caller's media comes from");
            self.latched = Some(from);
        }
    }

    /// When the caller's silence ends the call, unless RTP arrives first; `None` once
    /// reported.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.silent).then(|| self.last_heard + self.timeout)
    }

    /// True (once) when the caller has sent no RTP for the whole timeout: end the call.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            self.silent = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "192.0.2.10:4000";
    const NAT: &str = "198.51.100.7:61000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn symmetric_rtp_sends_where_the_media_comes_from() {
        let t0 = Instant::now();
        let mut path = MediaPath::new(Some(addr(SDP)), true, Duration::from_secs(30), t0);
        assert_eq!(
            path.remote(),
            Some(addr(SDP)),
            "before any packet: the SDP address"
        );
        path.on_received(addr(NAT), t0 + Duration::from_millis(20));
        assert_eq!(path.remote(), Some(addr(NAT)));
        // A re-INVITE with the same private address keeps the latched one.
        path.set_signalled(Some(addr(SDP)));
        assert_eq!(path.remote(), Some(addr(NAT)));
    }

    #[test]
    fn without_symmetric_rtp_the_sdp_address_wins() {
        let t0 = Instant::now();
        let mut path = MediaPath::new(Some(addr(SDP)), false, Duration::from_secs(30), t0);
        path.on_received(addr(NAT), t0);
        assert_eq!(path.remote(), Some(addr(SDP)));
    }

    #[test]
    fn hold_stops_sending_even_when_media_arrives() {
        let t0 = Instant::now();
        let mut path = MediaPath::new(Some(addr(SDP)), true, Duration::from_secs(30), t0);
        path.set_signalled(None);
        path.on_received(addr(NAT), t0);
        assert_eq!(path.remote(), None);
        path.set_signalled(Some(addr(SDP)));
        assert_eq!(
            path.remote(),
            Some(addr(NAT)),
            "resume: back to the latched address"
        );
    }

    #[test]
    fn silence_ends_the_call_after_the_timeout_once() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut path = MediaPath::new(Some(addr(SDP)), true, timeout, t0);
        // Packets every 20 ms for ten virtual seconds keep it alive.
        let mut now = t0;
        for _ in 0..500 {
            now += Duration::from_millis(20);
            path.on_received(addr(NAT), now);
            assert!(!path.handle_timeout(now));
        }
        assert_eq!(path.poll_timeout(), Some(now + timeout));
        assert!(!path.handle_timeout(now + timeout - Duration::from_millis(1)));
        assert!(path.handle_timeout(now + timeout));
        assert_eq!(path.poll_timeout(), None);
        assert!(!path.handle_timeout(now + timeout * 2), "reported once");
    }

    #[test]
    fn a_late_packet_does_not_move_the_clock_back() {
        let t0 = Instant::now();
        let mut path = MediaPath::new(None, false, Duration::from_secs(5), t0);
        path.on_received(addr(NAT), t0 + Duration::from_secs(3));
        path.on_received(addr(NAT), t0 + Duration::from_secs(1));
        assert_eq!(path.poll_timeout(), Some(t0 + Duration::from_secs(8)));
    }
}
