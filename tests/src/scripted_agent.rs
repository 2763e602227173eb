//! A scripted agent: a TLS server on a loopback address that plays one agent of
//! the agent API (`GET /v1/node`, `POST /v1/upgrades`, `GET /v1/operations/{id}`,
//! `GET /v1/operations`, `GET /healthz`) and misbehaves in one chosen way, so the
//! coordinator can be tried against it beside real agents.
//!
//! Its server certificate is issued for the address it listens on (by the test
//! PKI's CA, or by another CA for [`Behaviour::UntrustedCertificate`]); it asks
//! for a client certificate from the test PKI's CA. It holds at most
//! [`MAX_CONNECTIONS`] connections and a bounded number of operations, and
//! everything it runs stops when the [`ScriptedAgent`] is dropped.

mod script;
mod wire;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use upkeep_common::api::{Operation, UpgradeRequest};
use upkeep_coordinator::certs::{self, CertificateAuthority, Validity};
use upkeep_net::body::{BodyLimits, BodyPresence, RequestBody, read_json};
use upkeep_net::response::Body;
use upkeep_net::tls::{read_certificates, read_private_key, server_config};

use crate::pki::Pki;

use script::Route;
pub use script::{REDIRECT_LOCATION, UNKNOWN_CODE, UNKNOWN_CODE_MESSAGE, UNREADABLE_BODY};
pub use wire::HUGE_BODY_BYTES;

/// Connections held at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 128;
/// The address [`Behaviour::CertificateForAnotherAddress`]'s certificate names
/// instead of the one listened on (TEST-NET-1: never a loopback address).
pub const ANOTHER_ADDRESS: &str = "192.0.2.1";
/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest upgrade request body read.
const BODY_LIMITS: BodyLimits =
    BodyLimits { max_bytes: 64 * 1024, read_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(5) };

/// How the scripted agent misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// A correct agent: the kubelet at the start version; `POST /v1/upgrades`
    /// answers 202 with a Pending upgrade (target and token as asked, the same
    /// operation for the same token, 409 `operation_in_progress` for another
    /// token while one runs); its first `GET` answers Running, every later one
    /// Succeeded, and from then on `GET /v1/node` reports the target for every
    /// component the request named.
    Honest,
    /// The operation answers Running to every `GET`.
    StaysRunning,
    /// Every TCP connection is closed as soon as it is accepted.
    ClosesEveryConnection,
    /// The handshake completes and the request is read; nothing is ever written.
    NeverAnswers,
    /// Honest answers, written one byte per second.
    OneBytePerSecond,
    /// `200 OK` declaring `content-length: 200000000`, then that many zeros.
    HugeBody,
    /// `200 OK` without a length, `connection: close`, then zeros for ever.
    EndlessBody,
    /// Honest answers behind a server certificate from a CA other than the test PKI's.
    UntrustedCertificate,
    /// Honest answers behind a test-PKI certificate for [`ANOTHER_ADDRESS`] only.
    CertificateForAnotherAddress,
    /// `GET /v1/operations/{id}` answers the operation under another id.
    WrongOperationId,
    /// The upgrade is recorded and answered as kind `drain` (and changes no version).
    WrongKind,
    /// The upgrade is recorded and answered with another target (the next patch),
    /// which the node then reports.
    WrongTarget,
    /// The operation answers Running to its first `GET`, Pending to every later one.
    PhaseGoesBack,
    /// The operation answers Running, then Succeeded once (with the node at the
    /// target), then Running again: the node reports it running from then on.
    RunsAgainAfterSucceeding,
    /// The operation succeeds but the node keeps the start version.
    SucceedsWithoutChange,
    /// `GET /v1/node` reports the name `impostor-<node name>`.
    WrongNodeName,
    /// The first `times` requests of any kind answer 503 `dependency_unavailable`; then honest.
    Unavailable {
        /// Requests refused.
        times: usize,
    },
    /// The first `times` `POST /v1/upgrades` answer 409 `operation_in_progress`; then honest.
    Busy {
        /// Upgrade requests refused.
        times: usize,
    },
    /// Every request answers 429 with an envelope whose code is [`UNKNOWN_CODE`].
    UnknownErrorCode,
    /// Every request answers 307 to [`REDIRECT_LOCATION`] with an empty body.
    Redirect,
    /// Every request answers 200 with the body [`UNREADABLE_BODY`].
    UnreadableBody,
}

/// What the scripted agent has seen and sent.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
    refused_handshakes: AtomicUsize,
    requests: AtomicUsize,
    upgrade_requests: AtomicUsize,
    bytes_streamed: AtomicUsize,
}

/// A running scripted agent; dropping it stops the server and every connection.
pub struct ScriptedAgent {
    /// The address it listens on.
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    script: Arc<Mutex<script::Script>>,
    accept: JoinHandle<()>,
}

impl ScriptedAgent {
    /// Listens on `listen` (such as `127.0.0.40:0`) as the node `node_name` whose
    /// kubelet runs `from_version`, misbehaving as `behaviour`. Panics on a bad
    /// name, version or address: these are the test's own.
    pub async fn start(
        pki: &Pki,
        listen: &str,
        node_name: &str,
        from_version: &str,
        behaviour: Behaviour,
    ) -> ScriptedAgent {
        let script = script::Script::new(
            behaviour,
            node_name.parse().expect("a valid node name"),
            from_version.parse().expect("a valid version"),
        );
        let listener = TcpListener::bind(listen).await.unwrap_or_else(|error| panic!("bind {listen}: {error}"));
        let addr = listener.local_addr().expect("a bound address");
        let tls = server_tls(pki, listen, addr, node_name, behaviour);
        let counters = Arc::new(Counters::default());
        let script = Arc::new(Mutex::new(script));
        let connection = Connection {
            behaviour,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            script: script.clone(),
            counters: counters.clone(),
        };
        let accept = tokio::spawn(accept_loop(listener, connection));
        ScriptedAgent { addr, counters, script, accept }
    }

    /// The address as `host:port`, as an inventory names it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed (the client refused the certificate, or sent none).
    pub fn refused_handshakes(&self) -> usize {
        self.counters.refused_handshakes.load(Ordering::Relaxed)
    }

    /// HTTP requests received, of any kind (answered or not).
    pub fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// `POST /v1/upgrades` received (answered or not).
    pub fn upgrade_requests(&self) -> usize {
        self.counters.upgrade_requests.load(Ordering::Relaxed)
    }

    /// The operations it keeps (the most recent 32), newest first, as recorded:
    /// with the request token each upgrade request carried.
    pub fn operations(&self) -> Vec<Operation> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner).operations()
    }

    /// Bytes written by the streaming behaviours: the body's zeros for
    /// [`Behaviour::HugeBody`] and [`Behaviour::EndlessBody`], every byte of the
    /// answer for [`Behaviour::OneBytePerSecond`].
    pub fn bytes_streamed(&self) -> usize {
        self.counters.bytes_streamed.load(Ordering::Relaxed)
    }
}

impl Drop for ScriptedAgent {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What every connection of one agent shares.
#[derive(Clone)]
struct Connection {
    behaviour: Behaviour,
    acceptor: TlsAcceptor,
    script: Arc<Mutex<script::Script>>,
    counters: Arc<Counters>,
}

/// Accepts connections until aborted; the connection tasks live in a set owned
/// here, so aborting this task ends them all.
async fn accept_loop(listener: TcpListener, connection: Connection) {
    let mut tasks = JoinSet::new();
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of descriptors, most likely: give the others time to close.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        connection.counters.connections.fetch_add(1, Ordering::Relaxed);
        while tasks.try_join_next().is_some() {}
        if connection.behaviour == Behaviour::ClosesEveryConnection || tasks.len() >= MAX_CONNECTIONS {
            drop(tcp);
            continue;
        }
        tasks.spawn(serve(tcp, connection.clone()));
    }
}

/// One connection: the handshake, then the behaviour's way of answering.
async fn serve(tcp: TcpStream, connection: Connection) {
    let _ = tcp.set_nodelay(true);
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connection.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) => {
            connection.counters.refused_handshakes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => return,
    };
    let counters = connection.counters.clone();
    match connection.behaviour {
        Behaviour::NeverAnswers => {
            if wire::read_head(&mut tls, &counters).await.is_some() {
                wire::discard_until_closed(&mut tls).await;
            }
        }
        Behaviour::HugeBody => {
            if wire::read_head(&mut tls, &counters).await.is_some() {
                wire::huge_body(&mut tls, &counters).await;
            }
        }
        Behaviour::EndlessBody => {
            if wire::read_head(&mut tls, &counters).await.is_some() {
                wire::endless_body(&mut tls, &counters).await;
            }
        }
        Behaviour::OneBytePerSecond => serve_http(wire::OneBytePerSecond::new(tls, counters), connection).await,
        _ => serve_http(tls, connection).await,
    }
}

/// HTTP/1.1 over `stream`, each request answered by the script.
async fn serve_http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, connection: Connection) {
    let service = service_fn(move |request: Request<Incoming>| {
        let connection = connection.clone();
        async move { Ok::<_, Infallible>(answer(request, &connection).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

/// Counts the request, reads an upgrade's body within [`BODY_LIMITS`], and asks the script.
async fn answer(request: Request<Incoming>, connection: &Connection) -> Response<Body> {
    let counters = &connection.counters;
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let route = Route::of(request.method(), request.uri().path());
    let call = if route == Route::Upgrade {
        counters.upgrade_requests.fetch_add(1, Ordering::Relaxed);
        let request = request.map(|body| RequestBody::new(body, BODY_LIMITS));
        script::Call::Upgrade(Box::new(read_json::<UpgradeRequest>(request, BodyPresence::Required).await))
    } else {
        script::Call::Read(route)
    };
    let now = chrono::Utc::now();
    let mut script = connection.script.lock().unwrap_or_else(PoisonError::into_inner);
    script.answer(call, now)
}

/// The server's TLS: the test PKI's CA for clients, and a certificate for the
/// listen address (or, as the behaviour says, one that does not verify).
fn server_tls(pki: &Pki, listen: &str, addr: SocketAddr, node_name: &str, behaviour: Behaviour) -> ServerConfig {
    static ISSUED: AtomicUsize = AtomicUsize::new(0);
    let file_name = format!("scripted-{}", ISSUED.fetch_add(1, Ordering::Relaxed));
    let names = match behaviour {
        Behaviour::CertificateForAnotherAddress => vec![ANOTHER_ADDRESS.to_owned()],
        _ => names_for(listen, addr),
    };
    if behaviour == Behaviour::UntrustedCertificate {
        let foreign = CertificateAuthority::generate("foreign CA", Validity::days_from_now(2)).expect("foreign CA");
        let issued = foreign.issue_server(node_name, &names, Validity::days_from_now(2)).expect("certificate");
        certs::write_issued(pki.dir(), &file_name, &issued, true).expect("write certificate");
    } else {
        pki.issue_server(&file_name, node_name, &names);
    }
    let file = |extension: &str| -> PathBuf { pki.file(&format!("{file_name}.{extension}")) };
    server_config(
        read_certificates(&pki.ca_cert(), "CA").expect("CA"),
        read_certificates(&file("crt"), "certificate").expect("certificate"),
        read_private_key(&file("key")).expect("key"),
    )
    .expect("server config")
}

/// The names a client may dial: the bound IP address, and the host of `listen`
/// when it is a name (such as `localhost`).
fn names_for(listen: &str, addr: SocketAddr) -> Vec<String> {
    let mut names = vec![addr.ip().to_string()];
    let host = listen.rsplit_once(':').map_or(listen, |(host, _)| host).trim_matches(['[', ']']);
    if host.parse::<IpAddr>().is_err() && !host.is_empty() {
        names.push(host.to_owned());
    }
    names
}
