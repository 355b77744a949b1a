//! The response body type of the proxy: either a backend's body streamed through frame by frame
//! (its connection returned to the pool when the body ends), or a short router-generated text.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

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
pub(crate) enum ProxyBody {
    Backend {
        body: Incoming,
        /// Dropped (closing the connection) if the body fails or the client goes away early.
        connection: Option<PooledConnection>,
    },
    Router(Full<Bytes>),
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
        ProxyBody::Backend { body, connection }
    }

    pub(crate) fn text(text: String) -> ProxyBody {
        ProxyBody::Router(Full::new(Bytes::from(text)))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Backend { body, connection } => {
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
            ProxyBody::Router(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Backend { body, .. } => body.is_end_stream(),
            ProxyBody::Router(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Backend { body, .. } => body.size_hint(),
            ProxyBody::Router(full) => full.size_hint(),
        }
    }
}
