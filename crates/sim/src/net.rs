//! What the emulators' servers share on the socket: binding a port, a listener whose
//! connections a handler can cut (commit-drop), HTTP Basic credentials, and a 2xx answer
//! spoiled by a body fault.

use crate::state::BodyFault;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header, response::Parts};
use axum::response::Response;
use base64::Engine as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------
// A listener whose connections a handler can cut (commit-then-drop).

/// One accepted connection as handlers see it (`ConnectInfo<Conn>`): the peer, and a switch
/// that makes every further read or write on the socket fail, so the server drops the
/// connection without sending what the handler returned.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    pub peer: SocketAddr,
    killed: Arc<AtomicBool>,
}

impl Conn {
    /// Cuts the connection: what the handler answers is never sent.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

/// A listening socket handing out [`KillStream`]s, for `axum::serve` with
/// `into_make_service_with_connect_info::<Conn>()`.
pub(crate) struct KillListener {
    inner: TcpListener,
    /// The emulator's name, for the log.
    name: &'static str,
}

impl KillListener {
    pub(crate) fn new(inner: TcpListener, name: &'static str) -> Self {
        KillListener { inner, name }
    }
}

impl axum::serve::Listener for KillListener {
    type Io = KillStream<tokio::net::TcpStream>;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Conn) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let killed = Arc::new(AtomicBool::new(false));
                    return (
                        KillStream::new(stream, killed.clone()),
                        Conn { peer, killed },
                    );
                }
                // Out of descriptors and the like: wait a little instead of spinning.
                Err(e) => {
                    tracing::warn!("sim: {} accept failed: {e}", self.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Conn> {
        Ok(Conn {
            peer: self.inner.local_addr()?,
            killed: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, KillListener>>
    for Conn
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, KillListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Binds a port for an emulator whose answers may be cut: the listener and the address it took.
pub(crate) async fn bind_killable(
    addr: SocketAddr,
    name: &'static str,
) -> io::Result<(KillListener, SocketAddr)> {
    let (inner, local) = bind(addr).await?;
    Ok((KillListener::new(inner, name), local))
}

/// Binds a port: the listener and the address it took.
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let local = l.local_addr()?;
    Ok((l, local))
}

/// (user, password) of `Basic` credentials: the scheme (any case) and the base64 of
/// `user:password`.
pub(crate) fn basic(scheme: &str, cred: &str) -> Option<(String, String)> {
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(cred.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// (user, password) from an `Authorization: Basic ...` header.
pub(crate) fn basic_header(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, cred) = value.trim().split_once(' ')?;
    basic(scheme, cred)
}

/// A stream (TCP or TLS) that fails once its switch is set: every further read, write or
/// flush errs, so the server drops the connection without sending what the handler returned.
pub(crate) struct KillStream<S> {
    inner: S,
    killed: Arc<AtomicBool>,
}

impl<S> KillStream<S> {
    pub(crate) fn new(inner: S, killed: Arc<AtomicBool>) -> Self {
        KillStream { inner, killed }
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

fn cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by fault injection (commit-drop)",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for KillStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_killed() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for KillStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_killed() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_killed() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A successful answer (its head and whole body) spoiled by a body fault. Truncate: half the
/// body, with a Content-Length that matches it. Drop: the head and half the body go out,
/// then the stream fails and the server aborts the connection, so the client sees a 2xx
/// whose body breaks off; the short pause lets the first half reach the socket first.
pub(crate) fn spoiled(mut parts: Parts, bytes: Bytes, fault: BodyFault) -> Response {
    let half = bytes.slice(..bytes.len() / 2);
    match fault {
        BodyFault::Truncate => {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(half.len()));
            Response::from_parts(parts, Body::from(half))
        }
        BodyFault::Drop => {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            let first = futures::stream::iter([Ok::<Bytes, io::Error>(half)]);
            let broken = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(io::Error::other("connection dropped by fault injection"))
            });
            Response::from_parts(
                parts,
                Body::from_stream(futures::StreamExt::chain(first, broken)),
            )
        }
    }
}
