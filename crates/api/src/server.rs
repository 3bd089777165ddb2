//! The HTTP listener: our own accept loop around hyper, because
//! `axum::serve` bounds neither the number of connections nor the time a
//! client may take to send its request head.
//!
//! - At most [`HttpConfig::max_connections`](crate::HttpConfig) connections
//!   are open. Beyond it the loop stops accepting: new connections wait in
//!   the kernel's listen backlog and cost the process no file descriptor
//!   (the MQTT listeners share the process's descriptors).
//! - A connection must send a whole request head within
//!   [`HttpConfig::header_read_timeout`](crate::HttpConfig) after it opens
//!   or after its previous response (hyper's `header_read_timeout`), else
//!   hyper closes it: idle sockets and slow-loris heads hold a connection
//!   slot for that long at most. A response being streamed (export, live
//!   feed) is not subject to it.
//! - A request's body must arrive within the same time after its head
//!   ([`DeadlineBody`]): a client cannot hold a slot by sending a body a
//!   byte at a time either. The handler then answers 400 and the
//!   connection closes.
//! - Each request carries the peer's address (`ConnectInfo<SocketAddr>`)
//!   and the listener's ([`LocalAddr`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::{router, ApiState};

/// The address of the listener a request came in on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// Pause after a failed `accept` (out of file descriptors, usually) before
/// trying again, rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the API on `listener` until `shutdown` resolves, then ends the
/// live feeds of `state` and lets other requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let config = state.inner.config.clone();
    tracing::info!(address = %local, max_connections = config.max_connections, "HTTP API listening");
    if !state.signup().is_open_on(Some(local)) {
        tracing::info!("sign-up through the HTTP API is off on {local} ([http] signup)");
    }
    let closing_feeds = state.inner.closing.clone();
    let app = router(state);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut at_bound_logged = false;
    tokio::pin!(shutdown);
    loop {
        // A free slot first, then accept: at the bound, connections wait in
        // the backlog, not in our file table.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        if slots.available_permits() == 0 {
            if !at_bound_logged {
                tracing::warn!(
                    max_connections = config.max_connections,
                    "HTTP connections at the bound; new ones wait until one closes"
                );
                at_bound_logged = true;
            }
        } else {
            at_bound_logged = false;
        }
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "HTTP accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small writes (live events) go out at once.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let body_time = config.header_read_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| DeadlineBody::new(body, body_time));
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(LocalAddr(local));
            app.clone().oneshot(request)
        });
        let connection = http1.serve_connection(TokioIo::new(stream), service);
        let closing = closing.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                // Timeouts and clients that went away: not the server's fault.
                tracing::debug!(%error, %peer, "HTTP connection ended");
            }
        });
    }
    closing_feeds.cancel();
    closing.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A request body that must be complete within a time from when the
/// request head arrived; after it, reading it fails (the extractor answers
/// 400, and hyper closes a connection whose body was not read to its end).
/// tower-http's `TimeoutBody` restarts its clock at each frame, which a
/// client sending a byte at a time never lets run out.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    within: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, within: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(within)),
            within,
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "request body not complete within {} ms",
                    this.within.as_millis()
                ),
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
