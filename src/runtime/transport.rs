//! SIP sockets: UDP receive loops and TCP connections framed by Content-Length. They only move
//! bytes between the network and the SIP task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::sip::framing::StreamFramer;
use crate::sip::ua::{ConnId, Peer, Transport};

/// Largest UDP datagram we read (a SIP message over UDP must fit one).
const MAX_DATAGRAM: usize = 65_535;

/// A message for the SIP task, or news about a TCP connection.
#[derive(Debug)]
pub enum Inbound {
    Message {
        peer: Peer,
        local: SocketAddr,
        bytes: Vec<u8>,
    },
    Opened {
        conn: ConnId,
        writer: mpsc::Sender<Arc<[u8]>>,
    },
    Closed {
        conn: ConnId,
    },
}

/// Where the SIP task sends what the user agent wants sent.
#[derive(Default)]
pub struct Outbound {
    udp: Vec<Arc<UdpSocket>>,
    tcp: HashMap<ConnId, mpsc::Sender<Arc<[u8]>>>,
}

impl Outbound {
    /// Adds a UDP socket we can send from.
    pub fn add_udp(&mut self, socket: Arc<UdpSocket>) {
        self.udp.push(socket);
    }

    /// Tracks TCP connections as they open and close.
    pub fn connection(&mut self, inbound: &Inbound) {
        match inbound {
            Inbound::Opened { conn, writer } => {
                self.tcp.insert(*conn, writer.clone());
            }
            Inbound::Closed { conn } => {
                self.tcp.remove(conn);
            }
            Inbound::Message { .. } => {}
        }
    }

    /// Sends one message; failures are logged (the transaction layer retries over UDP).
    pub async fn send(&self, peer: Peer, bytes: Arc<[u8]>) {
        match peer.transport {
            Transport::Udp => {
                let socket = self
                    .udp
                    .iter()
                    .find(|s| {
                        s.local_addr()
                            .is_ok_and(|a| a.is_ipv4() == peer.addr.is_ipv4())
                    })
                    .or_else(|| self.udp.first());
                let Some(socket) = socket else {
                    tracing::warn!(to = %peer.addr, "no UDP socket to send from");
                    return;
                };
                if let Err(error) = socket.send_to(&bytes, peer.addr).await {
                    tracing::info!(%error, to = %peer.addr, "UDP send failed");
                }
            }
            Transport::Tcp(conn) => match self.tcp.get(&conn) {
                Some(writer) => {
                    if writer.send(bytes).await.is_err() {
                        tracing::info!(conn, "TCP connection closed before sending");
                    }
                }
                None => {
                    tracing::info!(conn, to = %peer.addr, "TCP connection gone; message dropped")
                }
            },
        }
    }
}

/// Reads datagrams forever and hands them to the SIP task.
pub async fn udp_loop(socket: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(error) => {
            tracing::error!(%error, "UDP socket without an address");
            return;
        }
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, addr)) => {
                let bytes = buf.get(..len).unwrap_or_default().to_vec();
                let peer = Peer {
                    transport: Transport::Udp,
                    addr,
                };
                if inbound
                    .send(Inbound::Message { peer, local, bytes })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // ICMP port unreachable and the like surface here on some systems; keep serving.
            Err(error) => tracing::debug!(%error, "UDP receive error"),
        }
    }
}

/// Accepts TCP connections forever; each gets a reader and a writer task.
pub async fn tcp_accept_loop(listener: TcpListener, inbound: mpsc::Sender<Inbound>) {
    static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(tcp_connection(conn, stream, addr, inbound.clone()));
            }
            Err(error) => {
                tracing::warn!(%error, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn tcp_connection(
    conn: ConnId,
    stream: TcpStream,
    addr: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Arc<[u8]>>(64);
    if inbound
        .send(Inbound::Opened { conn, writer: tx })
        .await
        .is_err()
    {
        return;
    }
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let peer = Peer {
        transport: Transport::Tcp(conn),
        addr,
    };
    'read: loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(buf.get(..n).unwrap_or_default());
        loop {
            match framer.next_message() {
                Ok(Some(bytes)) => {
                    if inbound
                        .send(Inbound::Message { peer, local, bytes })
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::info!(%error, from = %addr, "closing a TCP connection that cannot be framed");
                    break 'read;
                }
            }
        }
    }
    write_task.abort();
    let _ = inbound.send(Inbound::Closed { conn }).await;
}
