//! One task per call: the call's RTP socket, its sans-IO [`Call`], and its store writes.
//!
//! The task sleeps until the call's next deadline or the next datagram, feeds the core, and
//! sends what the core hands back. The SIP task talks to it through `CallCommand`s; it
//! answers with [`CallReport`]s (the engine wants to hang up, or the call is over).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::call::{Call, CallCommand, CallDriver, DriverOutput, DriverSettings};
use crate::metrics::Metrics;
use crate::presence::{PresenceStore, StatusUpdate};
use crate::transcript::{Entry, Line};

/// How early a call task wakes for its next packet, to absorb the timer grid.
const SEND_AHEAD: Duration = Duration::from_millis(1);

/// How the shell runs one call's media (`[media]`).
#[derive(Debug, Clone)]
pub struct MediaRules {
    pub symmetric_rtp: bool,
    pub rtp_timeout: Duration,
}

/// What a call tells the SIP task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallReport {
    /// The engine ends the call: send BYE.
    Hangup(u64),
    /// The call's task is over; its resources are free.
    Finished(u64),
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
/// logged on the call's span and ends the call cleanly. The decisions (what to send and where,
/// the commit, when the caller's silence ends the call) are the sans-IO [`CallDriver`]'s, the
/// same loop replay runs; this task moves packets, waits for the store and keeps the metrics.
#[allow(clippy::too_many_arguments)]
pub async fn run_call(
    id: u64,
    call: Call,
    socket: UdpSocket,
    remote: Option<SocketAddr>,
    store: Arc<dyn PresenceStore>,
    rules: MediaRules,
    mut commands: mpsc::Receiver<CallCommand>,
    reports: mpsc::Sender<CallReport>,
    metrics: Arc<Metrics>,
) {
    let lateness = metrics.rtp_lateness();
    let mut buf = vec![0u8; 2048];
    let settings = DriverSettings {
        symmetric_rtp: rules.symmetric_rtp,
        rtp_timeout: rules.rtp_timeout,
        send_ahead: SEND_AHEAD,
    };
    let mut driver = CallDriver::new(call, remote, settings, super::now(), SystemTime::now());
    // Taken from the call as it goes, so keys are counted when pressed; logged at the end.
    let mut transcript: Vec<Line> = Vec::new();
    loop {
        // Everything due now: timers, packets, decisions.
        if let Some(late) = driver.step(super::now()) {
            lateness.record(late);
        }
        while let Some(output) = driver.poll_output() {
            match output {
                DriverOutput::Transmit { packet, to } => {
                    if let Err(error) = socket.send_to(&packet, to).await {
                        tracing::debug!(%error, dst = %to, "RTP send failed");
                    }
                }
                DriverOutput::Commit(update) => {
                    let result = commit(&store, update).await;
                    driver.handle_store_result(result, super::now());
                }
                DriverOutput::Hangup => {
                    let _ = reports.send(CallReport::Hangup(id)).await;
                }
            }
        }
        for line in driver.take_transcript() {
            if let Entry::Key { source, .. } = line.entry {
                metrics.key_pressed(source);
            }
            transcript.push(line);
        }
        if driver.is_done() {
            break;
        }
        let deadline = driver
            .poll_timeout()
            .unwrap_or(super::now() + Duration::from_secs(1));
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => {
                    if let Some(datagram) = buf.get(..len) {
                        driver.handle_rtp(from, datagram, super::now());
                    }
                }
                Err(error) => tracing::debug!(%error, "RTP receive error"),
            },
            command = commands.recv() => {
                let command = command.unwrap_or(CallCommand::Hangup);
                driver.handle_command(command, super::now());
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
        }
    }
    metrics.call_finished(driver.call().outcome());
    transcript.extend(driver.take_transcript());
    for line in transcript {
        tracing::debug!(transcript = %line.to_json(), "call transcript");
    }
    let _ = reports.send(CallReport::Finished(id)).await;
}

/// Writes the confirmed status; the durable write runs on the blocking pool.
async fn commit(store: &Arc<dyn PresenceStore>, update: StatusUpdate) -> Result<(), String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.set(&update))
        .await
        .context("store task failed")
        .map_err(|e| format!("{e:#}"))?
        .map(|_| ())
        .map_err(|e| e.to_string())
}
