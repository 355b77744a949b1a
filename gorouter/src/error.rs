//! Errors: [`RouterError`] for starting the router, and [`ProxyError`], the one place where a
//! failed request is classified by origin (client, backend, router) and retry safety — which
//! decides the status code, the `X-Cf-RouterError` header, the retry and the log line.

use hyper::StatusCode;

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The configuration is invalid; the message says which field and why.
    #[error("invalid router configuration: {0}")]
    Config(String),
    /// The listener could not be used.
    #[error("router listener: {0}")]
    Listener(#[source] std::io::Error),
    /// Subscribing to a NATS subject failed.
    #[error("subscribing to NATS subject {subject}: {source}")]
    Subscribe {
        subject: &'static str,
        #[source]
        source: async_nats::SubscribeError,
    },
    /// Publishing `router.start` (or flushing the subscriptions) failed.
    #[error("announcing the router on NATS: {0}")]
    Announce(String),
    /// The UDP socket for app log envelopes could not be opened.
    #[error("router app log emitter: {0}")]
    LogEmitter(#[source] protocol::logs::EmitterError),
}

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The client sent something we cannot route, or went away.
    Client,
    /// The backend refused, timed out or broke the exchange.
    Backend,
    /// The route table has nothing for the request.
    Router,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::Client => "client",
            Origin::Backend => "backend",
            Origin::Router => "router",
        }
    }
}

/// A request the router could not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// Neither a `Host` header nor an absolute request URI.
    #[error("request has no host")]
    MissingHost,
    /// No route matches the host and path.
    #[error("unknown route")]
    UnknownRoute,
    /// The route exists but its pool is empty.
    #[error("route has no endpoints")]
    NoEndpoints,
    /// TCP connect to the backend failed or timed out; nothing was sent, so another endpoint
    /// may be tried.
    #[error("connecting to backend {address}: {reason}")]
    BackendConnect { address: String, reason: String },
    /// Every endpoint tried failed to connect.
    #[error("all {attempts} endpoint(s) tried failed to connect; last: {last}")]
    BackendsExhausted {
        attempts: usize,
        last: Box<ProxyError>,
    },
    /// The request was (at least partly) sent and the backend failed before a response; it is
    /// never retried, as the backend may have acted on it.
    #[error("backend {address} failed after the request was sent: {source}")]
    BackendExchange {
        address: String,
        #[source]
        source: hyper::Error,
    },
    /// Reading the client's request body failed (the client went away or sent a bad body).
    #[error("reading the client's request body: {source}")]
    ClientBody {
        #[source]
        source: hyper::Error,
    },
}

impl ProxyError {
    /// Classifies an error of the backend exchange: body-stream errors are the client's.
    pub(crate) fn from_exchange(address: &str, source: hyper::Error) -> ProxyError {
        if source.is_user() {
            ProxyError::ClientBody { source }
        } else {
            ProxyError::BackendExchange {
                address: address.to_owned(),
                source,
            }
        }
    }

    pub(crate) fn origin(&self) -> Origin {
        match self {
            ProxyError::MissingHost | ProxyError::ClientBody { .. } => Origin::Client,
            ProxyError::UnknownRoute | ProxyError::NoEndpoints => Origin::Router,
            ProxyError::BackendConnect { .. }
            | ProxyError::BackendsExhausted { .. }
            | ProxyError::BackendExchange { .. } => Origin::Backend,
        }
    }

    /// Whether the same request may be sent to another endpoint: only when nothing reached
    /// the backend.
    pub(crate) fn retry_on_another_endpoint(&self) -> bool {
        matches!(self, ProxyError::BackendConnect { .. })
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingHost | ProxyError::ClientBody { .. } => StatusCode::BAD_REQUEST,
            ProxyError::UnknownRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoints => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BackendConnect { .. }
            | ProxyError::BackendsExhausted { .. }
            | ProxyError::BackendExchange { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// gorouter's `X-Cf-RouterError` value.
    pub(crate) fn router_error(&self) -> &'static str {
        match self {
            ProxyError::MissingHost => "empty_host",
            ProxyError::UnknownRoute => "unknown_route",
            ProxyError::NoEndpoints => "no_endpoints",
            ProxyError::ClientBody { .. } => "client_failure",
            ProxyError::BackendConnect { .. }
            | ProxyError::BackendsExhausted { .. }
            | ProxyError::BackendExchange { .. } => "endpoint_failure",
        }
    }

    /// The short plain-text body, in gorouter's `"<code> <reason>: <detail>"` shape.
    pub(crate) fn body(&self, host: &str) -> String {
        let detail = match self {
            ProxyError::MissingHost => "Request had no Host header.".to_owned(),
            ProxyError::UnknownRoute => format!("Requested route ('{host}') does not exist."),
            ProxyError::NoEndpoints => {
                format!("Requested route ('{host}') has no available endpoints.")
            }
            ProxyError::ClientBody { .. } => "Failed to read the request body.".to_owned(),
            ProxyError::BackendConnect { .. }
            | ProxyError::BackendsExhausted { .. }
            | ProxyError::BackendExchange { .. } => {
                "Registered endpoint failed to handle the request.".to_owned()
            }
        };
        let status = self.status();
        format!(
            "{} {}: {detail}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_origin_with_gorouter_bodies() {
        let connect = ProxyError::BackendConnect {
            address: "10.0.0.1:8080".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(connect.origin(), Origin::Backend);
        assert!(connect.retry_on_another_endpoint());
        assert_eq!(connect.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(connect.router_error(), "endpoint_failure");

        let unknown = ProxyError::UnknownRoute;
        assert_eq!(unknown.origin(), Origin::Router);
        assert!(!unknown.retry_on_another_endpoint());
        assert_eq!(
            unknown.body("app.example.com"),
            "404 Not Found: Requested route ('app.example.com') does not exist.\n"
        );
        assert_eq!(
            ProxyError::NoEndpoints.body("a"),
            "503 Service Unavailable: Requested route ('a') has no available endpoints.\n"
        );
        assert_eq!(ProxyError::MissingHost.origin(), Origin::Client);
    }
}
