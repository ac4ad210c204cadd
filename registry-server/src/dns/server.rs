//! The listeners: UDP worker threads (one socket each, `SO_REUSEPORT`), a TCP accept loop
//! on the runtime, and the task that bumps the catalog generation on every change.

use super::engine::{self, Outcome, Shared, Worker, WorkerStats};
use super::recursor;
use super::render::Transport;
use crate::state::{Table, WatchKey};
use crate::ServerError;
use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How often a blocked UDP worker wakes to check for shutdown.
const POLL: Duration = Duration::from_millis(200);

/// Query counters summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Packets handled (UDP and TCP).
    pub queries: u64,
    /// Answers sent straight from a cache.
    pub hits: u64,
    /// Cached answers found current after a catalog change.
    pub revalidated: u64,
    /// Answers built from the store.
    pub builds: u64,
    /// Questions forwarded to recursors.
    pub recursed: u64,
}

/// A running DNS server. Dropping it stops the listeners (the UDP threads within 200 ms);
/// [`DnsHandle::shutdown`] also waits for them.
#[derive(Debug)]
pub struct DnsHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stats: Vec<Arc<WorkerStats>>,
}

impl DnsHandle {
    /// The bound address (UDP and TCP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters summed over all workers.
    pub fn stats(&self) -> DnsStats {
        let mut s = DnsStats::default();
        for w in &self.stats {
            s.queries += w.queries.load(Ordering::Relaxed);
            s.hits += w.hits.load(Ordering::Relaxed);
            s.revalidated += w.revalidated.load(Ordering::Relaxed);
            s.builds += w.builds.load(Ordering::Relaxed);
            s.recursed += w.recursed.load(Ordering::Relaxed);
        }
        s
    }

    /// Stops the listeners and waits for the UDP threads to finish.
    pub async fn shutdown(mut self) {
        self.stop();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds and starts everything; see [`super::serve`].
pub(super) async fn start(shared: Arc<Shared>) -> Result<DnsHandle, ServerError> {
    let cfg = &shared.settings.cfg;
    let workers = match cfg.udp_workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let (udp, tcp) = bind_all(cfg.bind, workers, cfg.udp_reuse_port)
        .await
        .map_err(|e| ServerError::Internal(format!("binding DNS listener {}: {e}", cfg.bind)))?;
    let addr = tcp
        .local_addr()
        .map_err(|e| ServerError::Internal(format!("DNS listener address: {e}")))?;
    let rt = tokio::runtime::Handle::current();
    let mut handle = DnsHandle {
        addr,
        shared: shared.clone(),
        threads: Vec::new(),
        tasks: Vec::new(),
        stats: Vec::new(),
    };
    handle.tasks.push(tokio::spawn(invalidator(shared.clone())));
    for (i, sock) in udp.into_iter().enumerate() {
        let worker = Worker::new(shared.clone());
        handle.stats.push(worker.stats.clone());
        let rt = rt.clone();
        let t = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || udp_loop(Arc::new(sock), worker, rt))
            .map_err(|e| ServerError::Internal(format!("starting DNS worker: {e}")))?;
        handle.threads.push(t);
    }
    let tcp_worker = Worker::new(shared.clone());
    handle.stats.push(tcp_worker.stats.clone());
    handle.tasks.push(tokio::spawn(tcp_accept(
        tcp,
        shared.clone(),
        Arc::new(Mutex::new(tcp_worker)),
    )));
    tracing::info!(%addr, udp_workers = workers, domain = %shared.settings.domains.fqdn(false), "DNS listening");
    Ok(handle)
}

/// Bumps the generation after every change to nodes, services or checks (and after a
/// restore, which wakes every watcher).
async fn invalidator(shared: Arc<Shared>) {
    let keys = [
        WatchKey::Table(Table::Nodes),
        WatchKey::Table(Table::Services),
        WatchKey::Table(Table::Checks),
    ];
    loop {
        // Subscribe before bumping so that no change falls between the two.
        let mut ws = shared.store.watch(&keys);
        shared.gen.fetch_add(1, Ordering::AcqRel);
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        ws.changed().await;
    }
}

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    // Bursts from many clients: a larger queue loses fewer packets (capped by rmem_max).
    let _ = sock.set_recv_buffer_size(4 << 20);
    sock.bind(&addr.into())?;
    sock.set_read_timeout(Some(POLL))?;
    Ok(sock.into())
}

/// `workers` UDP sockets on one port plus the TCP listener on the same port. With port 0
/// the port is chosen by the kernel and retried until TCP gets it too.
async fn bind_all(
    addr: SocketAddr,
    workers: usize,
    reuse_port: bool,
) -> io::Result<(Vec<UdpSocket>, TcpListener)> {
    let workers = workers.max(1);
    let reuse_port = reuse_port && workers > 1;
    let mut last_err = None;
    for _ in 0..20 {
        if addr.port() != 0 {
            // SO_REUSEPORT would let a second server share the port silently: make sure
            // nobody holds it first.
            drop(udp_socket(addr, false)?);
        }
        let first = udp_socket(addr, reuse_port)?;
        let port = first.local_addr()?.port();
        let at = SocketAddr::new(addr.ip(), port);
        let tcp = match TcpListener::bind(at).await {
            Ok(t) => t,
            Err(e) if addr.port() == 0 => {
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut socks = Vec::with_capacity(workers);
        for _ in 1..workers {
            // Either a socket of its own in the SO_REUSEPORT group (the kernel spreads
            // clients over the sockets by address hash), or the same socket (every worker
            // takes the next packet of one queue).
            socks.push(if reuse_port {
                udp_socket(at, true)?
            } else {
                first.try_clone()?
            });
        }
        socks.insert(0, first);
        return Ok((socks, tcp));
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
}

fn udp_loop(sock: Arc<UdpSocket>, mut worker: Worker, rt: tokio::runtime::Handle) {
    let shared = worker.shared();
    let mut buf = vec![0u8; 65535];
    while !shared.stop.load(Ordering::Relaxed) {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::debug!(error = %e, "DNS: UDP receive failed");
                continue;
            }
        };
        match worker.handle(&buf[..n], Transport::Udp) {
            Outcome::Reply => {
                if let Err(e) = sock.send_to(&worker.out, src) {
                    tracing::debug!(error = %e, client = %src, "DNS: UDP send failed");
                }
            }
            Outcome::Recurse(req) => {
                let packet = buf[..n].to_vec();
                let shared = shared.clone();
                let sock = sock.clone();
                rt.spawn(async move {
                    let reply = match shared.recursion_slot() {
                        Some(_slot) => {
                            recursor::forward(&shared.settings.cfg, &packet, false).await
                        }
                        None => None,
                    };
                    let reply =
                        reply.unwrap_or_else(|| engine::servfail(&shared, &req, Transport::Udp));
                    let _ = sock.send_to(&reply, src);
                });
            }
            Outcome::Remote(dc, req) => {
                let packet = buf[..n].to_vec();
                let shared = shared.clone();
                let sock = sock.clone();
                rt.spawn(async move {
                    let reply = shared.answer_remote(dc, &req, packet, Transport::Udp).await;
                    let _ = sock.send_to(&reply, src);
                });
            }
            Outcome::Drop => {}
        }
    }
}

async fn tcp_accept(listener: TcpListener, shared: Arc<Shared>, worker: Arc<Mutex<Worker>>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(
        shared.settings.cfg.max_tcp_connections.max(1),
    ));
    let per_client = Arc::new(crate::edge::Counts::default());
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "DNS: TCP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(client) = per_client.acquire(
            peer.ip(),
            shared.settings.cfg.max_tcp_connections_per_client,
        ) else {
            // Over its own limit: closed at once, the slot stays free for other clients.
            metrics::counter!("registry_conn_limited", "listener" => "DNS TCP").increment(1);
            drop(stream);
            continue;
        };
        let (shared, worker) = (shared.clone(), worker.clone());
        tokio::spawn(async move {
            let _ = tcp_conn(stream, &shared, &worker).await;
            drop(client);
            drop(permit);
        });
    }
}

async fn tcp_conn(mut s: TcpStream, shared: &Shared, worker: &Mutex<Worker>) -> io::Result<()> {
    s.set_nodelay(true)?;
    let idle = shared.settings.cfg.tcp_idle_timeout;
    let mut msg = Vec::new();
    let mut reply = Vec::new();
    loop {
        // The whole message (length and body) must arrive within the idle time: a client
        // trickling bytes cannot hold the connection open.
        let read = async {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await?;
            msg.resize(usize::from(u16::from_be_bytes(len)), 0);
            s.read_exact(&mut msg).await
        };
        match tokio::time::timeout(idle, read).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let outcome = {
            let mut w = worker.lock();
            let o = w.handle(&msg, Transport::Tcp);
            if matches!(o, Outcome::Reply) {
                reply.clear();
                reply.extend_from_slice(&w.out);
            }
            o
        };
        match outcome {
            Outcome::Reply => {}
            Outcome::Recurse(req) => {
                let forwarded = match shared.recursion_slot() {
                    Some(_slot) => recursor::forward(&shared.settings.cfg, &msg, true).await,
                    None => None,
                };
                reply = forwarded.unwrap_or_else(|| engine::servfail(shared, &req, Transport::Tcp));
            }
            Outcome::Remote(dc, req) => {
                reply = shared
                    .answer_remote(dc, &req, msg.clone(), Transport::Tcp)
                    .await;
            }
            Outcome::Drop => return Ok(()),
        }
        let Ok(n) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&reply);
        s.write_all(&framed).await?;
    }
}
