//! One task per call: the call's RTP socket, its sans-IO [`Call`], and its store writes.
//!
//! The task sleeps until the call's next deadline or the next datagram, feeds the core, and
//! sends what the core hands back. The SIP task talks to it through [`CallCommand`]s; it
//! answers with [`CallReport`]s (the engine wants to hang up, or the call is over).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::call::{Call, CallOutput, MediaPath};
use crate::dtmf::{Key, KeySource};
use crate::metrics::Metrics;
use crate::presence::{ChangeSource, PresenceStore, Status, StatusUpdate};
use crate::transcript::{Entry, Line};

/// How early a call task wakes for its next packet, to absorb the timer grid.
const SEND_AHEAD: Duration = Duration::from_millis(1);

/// What the SIP task tells a call.
#[derive(Debug)]
pub enum CallCommand {
    /// The remote media address changed (re-INVITE, hold/resume); `None` means do not send.
    RemoteMedia(Option<SocketAddr>),
    /// A key from SIP INFO, with when the phone first sent it (see `UaEvent::Key`).
    Key { key: Key, sent: Instant },
    /// The caller hung up (BYE, CANCEL) or the dialog died.
    Hangup,
}

/// What a call tells the SIP task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallReport {
    /// The engine ends the call: send BYE.
    Hangup(u64),
    /// The call's task is over; its resources are free.
    Finished(u64),
}

/// How the shell runs one call's media.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub symmetric_rtp: bool,
    pub rtp_timeout: Duration,
}

/// Binds an RTP socket on `ip` in `first..=last`, starting at `hint` and wrapping once, so
/// concurrent calls spread over the range. Ports are even (RFC 3550 §11 convention).
pub async fn bind_rtp(ip: IpAddr, first: u16, last: u16, hint: u16) -> anyhow::Result<UdpSocket> {
    let span = u32::from(last.saturating_sub(first)) + 1;
    let start = u32::from(hint.saturating_sub(first)) % span;
    for step in (0..span).step_by(2) {
        let offset = (start + step) % span;
        let port = u32::from(first) + offset;
        let Ok(port) = u16::try_from(port & !1) else {
            continue;
        };
        if port < first {
            continue;
        }
        if let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
            return Ok(socket);
        }
    }
    anyhow::bail!("no free RTP port in {first}-{last} on {ip}")
}

/// Runs one call until it is over. Never panics on what the network sends; every problem is
/// logged on the call's span and ends the call cleanly. The rules (where to send, when the
/// caller's silence ends the call) are the sans-IO [`MediaPath`]'s; this task moves packets.
#[allow(clippy::too_many_arguments)]
pub async fn run_call(
    id: u64,
    mut call: Call,
    socket: UdpSocket,
    remote: Option<SocketAddr>,
    store: Arc<dyn PresenceStore>,
    settings: MediaSettings,
    mut commands: mpsc::Receiver<CallCommand>,
    reports: mpsc::Sender<CallReport>,
    metrics: Arc<Metrics>,
) {
    let lateness = metrics.rtp_lateness();
    let caller = call.setup().caller.clone();
    let mut buf = vec![0u8; 2048];
    let mut path = MediaPath::new(
        remote,
        settings.symmetric_rtp,
        settings.rtp_timeout,
        super::now(),
    );
    let mut hangup_sent = false;
    // Taken from the call as it goes, so keys are counted when pressed; logged at the end.
    let mut transcript: Vec<Line> = Vec::new();
    loop {
        let now = super::now();
        // Everything due now: timers, packets, decisions.
        let due = call.poll_timeout();
        // tokio's timers fire on a 1 ms grid, up to 1 ms after the deadline: wake a little
        // early instead and run what is due within SEND_AHEAD (a packet or a timer 1 ms early
        // is nothing to a phone; 1 ms late on every packet is lateness).
        let send_until = now + SEND_AHEAD;
        call.handle_timeout(send_until);
        let mut first = true;
        while let Some(packet) = call.poll_transmit(send_until) {
            if first {
                if let Some(due) = due.filter(|d| *d <= now) {
                    lateness.record(now - due);
                } else if due.is_some_and(|d| d <= send_until) {
                    lateness.record(Duration::ZERO);
                }
                first = false;
            }
            if let Some(dst) = path.remote() {
                if let Err(error) = socket.send_to(&packet, dst).await {
                    tracing::debug!(%error, %dst, "RTP send failed");
                }
            }
        }
        while let Some(output) = call.poll_output() {
            match output {
                CallOutput::Commit(status) => {
                    let result = commit(&store, &caller, status).await;
                    call.handle_store_result(result, super::now());
                }
                CallOutput::Hangup => {
                    if !hangup_sent {
                        hangup_sent = true;
                        let _ = reports.send(CallReport::Hangup(id)).await;
                    }
                }
            }
        }
        for line in call.take_transcript() {
            if let Entry::Key { source, .. } = line.entry {
                metrics.key_pressed(source);
            }
            transcript.push(line);
        }
        if call.is_done() {
            break;
        }
        if path.handle_timeout(now) && !hangup_sent {
            tracing::warn!(timeout = ?settings.rtp_timeout, "no RTP from the caller; ending the call");
            call.handle_hangup(now);
            hangup_sent = true;
            let _ = reports.send(CallReport::Hangup(id)).await;
            continue;
        }
        let deadline = call
            .poll_timeout()
            .map(|d| d.checked_sub(SEND_AHEAD).unwrap_or(d))
            .into_iter()
            .chain(path.poll_timeout())
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => {
                    let now = super::now();
                    path.on_received(from, now);
                    if let Some(datagram) = buf.get(..len) {
                        call.handle_rtp(datagram, now);
                    }
                }
                Err(error) => tracing::debug!(%error, "RTP receive error"),
            },
            command = commands.recv() => match command {
                Some(CallCommand::RemoteMedia(addr)) => path.set_signalled(addr),
                Some(CallCommand::Key { key, sent }) => {
                    call.handle_key_pressed_at(key, KeySource::SipInfo, sent, super::now())
                }
                Some(CallCommand::Hangup) | None => {
                    hangup_sent = true;
                    call.handle_hangup(super::now());
                }
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
        }
    }
    metrics.call_finished(call.outcome());
    transcript.extend(call.take_transcript());
    for line in transcript {
        tracing::debug!(transcript = %line.to_json(), "call transcript");
    }
    let _ = reports.send(CallReport::Finished(id)).await;
}

/// Writes the confirmed status; the durable write runs on the blocking pool.
async fn commit(
    store: &Arc<dyn PresenceStore>,
    caller: &str,
    status: Status,
) -> Result<(), String> {
    let custom_text = match &status {
        Status::Custom(text) => Some(text.clone()),
        _ => None,
    };
    let update = StatusUpdate {
        extension: caller.to_string(),
        status: status.kind(),
        custom_text,
        source: ChangeSource::FeatureCode,
        at: std::time::SystemTime::now(),
        actor: None,
        expected_version: None,
    };
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.set(&update))
        .await
        .context("store task failed")
        .map_err(|e| format!("{e:#}"))?
        .map(|_| ())
        .map_err(|e| e.to_string())
}
