//! SIP sockets: UDP receive loops and TCP connections framed by Content-Length. They only move
//! bytes between the network and the SIP task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::sip::framing::StreamFramer;
use crate::sip::limits::connections::{ConnBudget, ConnectionTable};
use crate::sip::ua::{ConnId, Peer, Transport, OUTBOUND_CONN_BASE};

/// Largest UDP datagram we read (a SIP message over UDP must fit one).
const MAX_DATAGRAM: usize = 65_535;

/// Receive and send buffer asked for the SIP UDP sockets. A presence change to 1,000 watchers
/// brings 1,000 `200 OK`s back within a few milliseconds; the Linux default (208 KiB, about 300
/// small datagrams) drops the rest, and every lost answer holds that watcher's next NOTIFY for
/// a retransmission (500 ms and up). The kernel caps it at `net.core.rmem_max`/`wmem_max`.
const SIP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Binds a SIP UDP socket with room for bursts of answers (see [`SIP_SOCKET_BUFFER`]).
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Smaller buffers only cost more drops under load: serve anyway.
    if let Err(error) = socket.set_recv_buffer_size(SIP_SOCKET_BUFFER) {
        tracing::warn!(%error, "cannot enlarge the SIP receive buffer");
    }
    if let Err(error) = socket.set_send_buffer_size(SIP_SOCKET_BUFFER) {
        tracing::warn!(%error, "cannot enlarge the SIP send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < SIP_SOCKET_BUFFER {
        tracing::info!(
            granted,
            wanted = SIP_SOCKET_BUFFER,
            "SIP receive buffer capped by net.core.rmem_max; bursts of answers may be dropped"
        );
    }
    UdpSocket::from_std(socket.into())
}

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
pub struct Outbound {
    udp: Vec<Arc<UdpSocket>>,
    tcp: HashMap<ConnId, mpsc::Sender<Arc<[u8]>>>,
    /// For connections we open ourselves (their reader reports here like accepted ones).
    inbound: mpsc::Sender<Inbound>,
}

impl Outbound {
    /// An outbound side with no sockets yet.
    pub fn new(inbound: mpsc::Sender<Inbound>) -> Outbound {
        Outbound {
            udp: Vec::new(),
            tcp: HashMap::new(),
            inbound,
        }
    }

    fn udp_for(&self, addr: SocketAddr) -> Option<&Arc<UdpSocket>> {
        self.udp
            .iter()
            .find(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == addr.is_ipv4()))
            .or_else(|| self.udp.first())
    }

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
                let Some(socket) = self.udp_for(peer.addr) else {
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
                None if conn >= OUTBOUND_CONN_BASE => {
                    // A request too large for UDP: open the connection in the background so
                    // the SIP task never waits on a connect.
                    let fallback = self.udp_for(peer.addr).cloned();
                    tokio::spawn(connect_and_send(
                        conn,
                        peer.addr,
                        bytes,
                        self.inbound.clone(),
                        fallback,
                    ));
                }
                None => {
                    tracing::info!(conn, to = %peer.addr, "TCP connection gone; message dropped")
                }
            },
        }
    }
}

/// Opens a TCP connection to `addr`, sends `first`, then serves the connection like an
/// accepted one. When the peer takes no TCP, the message goes over UDP after all.
async fn connect_and_send(
    conn: ConnId,
    addr: SocketAddr,
    first: Arc<[u8]>,
    inbound: mpsc::Sender<Inbound>,
    fallback: Option<Arc<UdpSocket>>,
) {
    let connect =
        tokio::time::timeout(std::time::Duration::from_secs(3), TcpStream::connect(addr)).await;
    let why = match connect {
        Ok(Ok(stream)) => {
            return tcp_connection(conn, stream, addr, inbound, Some(first), None).await
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => "connect timed out".to_string(),
    };
    tracing::info!(to = %addr, %why, "peer takes no TCP; sending the large request over UDP");
    if let Some(socket) = fallback {
        if let Err(error) = socket.send_to(&first, addr).await {
            tracing::info!(%error, to = %addr, "UDP send failed");
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

/// One accepted connection's place in the [`ConnectionTable`], given back when it ends.
struct Admitted {
    table: Arc<Mutex<ConnectionTable>>,
    addr: SocketAddr,
    budget: ConnBudget,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut table) = self.table.lock() {
            table.release(self.addr.ip());
        }
    }
}

/// Accepts TCP connections forever; each the limits admit gets a reader and a writer task,
/// the others are closed at once.
pub async fn tcp_accept_loop(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    connections: Arc<Mutex<ConnectionTable>>,
) {
    static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
    let mut last_log: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let now = Instant::now();
                let admitted = match connections.lock() {
                    Ok(mut table) => table.admit(addr.ip()).map(|()| table.budget(now)),
                    Err(_) => return tracing::error!("TCP connection table poisoned"),
                };
                let budget = match admitted {
                    Ok(budget) => budget,
                    Err(why) => {
                        // One line per interval, however many are refused.
                        if last_log.is_none_or(|at| now - at >= LOG_INTERVAL) {
                            last_log = Some(now);
                            tracing::warn!(from = %addr, %why, "TCP connection refused");
                        }
                        drop(stream);
                        continue;
                    }
                };
                let admitted = Admitted {
                    table: connections.clone(),
                    addr,
                    budget,
                };
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(tcp_connection(
                    conn,
                    stream,
                    addr,
                    inbound.clone(),
                    None,
                    Some(admitted),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// At most one log line per interval about refused connections.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves one connection. `admitted` (accepted connections) carries the read budget the
/// limits set; the connection closes when the budget says so.
async fn tcp_connection(
    conn: ConnId,
    stream: TcpStream,
    addr: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    first: Option<Arc<[u8]>>,
    mut admitted: Option<Admitted>,
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
        if let Some(bytes) = first {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
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
        let deadline = admitted.as_ref().and_then(|a| a.budget.deadline());
        let read = match deadline {
            Some(at) => match tokio::time::timeout_at(at.into(), reader.read(&mut buf)).await {
                Ok(read) => read,
                Err(_) => {
                    tracing::info!(from = %addr, "closing a TCP connection that left a message unfinished");
                    break;
                }
            },
            None => reader.read(&mut buf).await,
        };
        let n = match read {
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
        if let Some(admitted) = admitted.as_mut() {
            if let Err(why) = admitted
                .budget
                .on_read(n, framer.has_partial(), Instant::now())
            {
                tracing::info!(from = %addr, %why, "closing a TCP connection over its limits");
                break;
            }
        }
    }
    write_task.abort();
    let _ = inbound.send(Inbound::Closed { conn }).await;
}
