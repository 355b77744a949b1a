//! The body types of the proxy. Responses: [`ProxyBody`], either a backend's body streamed
//! through frame by frame (its connection returned to the pool when the body ends) or a short
//! router-generated text, which counts the bytes it hands to the client and owns the pending
//! app access-log line (emitted when the body ends or is dropped because the client went away).
//! Requests: [`RequestBody`], the client's body streamed to the backend, counting bytes read.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

use crate::access_log::PendingLog;
use crate::backend::{Backends, Sender};

/// A backend connection to return to the pool once its response has been fully read.
#[derive(Debug)]
pub(crate) struct PooledConnection {
    pub(crate) backends: Arc<Backends>,
    pub(crate) address: String,
    pub(crate) sender: Sender,
}

impl PooledConnection {
    fn release(self) {
        self.backends.checkin(&self.address, self.sender);
    }
}

#[derive(Debug)]
enum Source {
    Backend {
        body: Incoming,
        /// Dropped (closing the connection) if the body fails or the client goes away early.
        connection: Option<PooledConnection>,
    },
    Router(Full<Bytes>),
}

/// The response body sent to the client.
#[derive(Debug)]
pub(crate) struct ProxyBody {
    source: Source,
    /// The app access-log line, when emission is enabled and the request reached an app's
    /// endpoint. Dropping it emits it.
    log: Option<Box<PendingLog>>,
}

impl ProxyBody {
    pub(crate) fn backend(body: Incoming, connection: Option<PooledConnection>) -> ProxyBody {
        // Bodiless responses (HEAD, 204, 304) are never polled: release at once.
        let connection = match connection {
            Some(connection) if body.is_end_stream() => {
                connection.release();
                None
            }
            other => other,
        };
        ProxyBody {
            source: Source::Backend { body, connection },
            log: None,
        }
    }

    pub(crate) fn text(text: String) -> ProxyBody {
        ProxyBody {
            source: Source::Router(Full::new(Bytes::from(text))),
            log: None,
        }
    }

    /// Attaches the access-log line to emit once this body has been sent.
    pub(crate) fn set_log(&mut self, log: PendingLog) {
        self.log = Some(Box::new(log));
    }

    fn source_ended(&self) -> bool {
        match &self.source {
            Source::Backend { body, .. } => body.is_end_stream(),
            Source::Router(full) => full.is_end_stream(),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.source {
            Source::Backend { body, connection } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(connection) = connection.take() {
                            connection.release();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => *connection = None,
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => {
                        if let Some(connection) = connection.take() {
                            connection.release();
                        }
                    }
                    _ => {}
                }
                polled
            }
            Source::Router(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        };
        if this.log.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(log), Some(data)) = (this.log.as_mut(), frame.data_ref()) {
                        log.count_sent(data.len());
                    }
                    if this.source_ended() {
                        // The last frame: emit now rather than when hyper drops the body.
                        this.log = None;
                    }
                }
                Poll::Ready(_) => this.log = None,
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.source_ended()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Backend { body, .. } => body.size_hint(),
            Source::Router(full) => full.size_hint(),
        }
    }
}

/// The client's request body on its way to the backend, counting the bytes read when the
/// access line needs them.
#[derive(Debug)]
pub(crate) struct RequestBody {
    body: Incoming,
    received: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    pub(crate) fn new(body: Incoming, received: Option<Arc<AtomicU64>>) -> RequestBody {
        RequestBody { body, received }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let (Some(received), Poll::Ready(Some(Ok(frame)))) = (&this.received, &polled) {
            if let Some(data) = frame.data_ref() {
                received.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
