//! The router's NATS side: subscriptions to `router.register` / `router.unregister` /
//! `router.greet`, the `router.start` announcement (at start and after every reconnect), and
//! the prune sweep — one loop over one [`Event`] enum, so everything that changes the route
//! table is listed in one place.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, Message, Subscriber};
use futures_util::StreamExt;
use hyper::body::Bytes;
use protocol::router::{RegistryMessage, RouterStart};
use protocol::subjects::{ROUTER_GREET, ROUTER_REGISTER, ROUTER_START, ROUTER_UNREGISTER};
use tokio::sync::watch;

use crate::backend::Backends;
use crate::error::RouterError;
use crate::metrics::{increment, Metrics};
use crate::registry::RouteTable;

/// How often the loop checks whether the NATS client has reconnected.
const RECONNECT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The router's three subscriptions.
pub(crate) struct Subscriptions {
    register: Subscriber,
    unregister: Subscriber,
    greet: Subscriber,
}

/// Subscribes and flushes, so that registrations sent after `router.start` are not missed.
pub(crate) async fn subscribe(client: &Client) -> Result<Subscriptions, RouterError> {
    let subscribe = |subject: &'static str| async move {
        client
            .subscribe(subject)
            .await
            .map_err(|source| RouterError::Subscribe { subject, source })
    };
    let subscriptions = Subscriptions {
        register: subscribe(ROUTER_REGISTER).await?,
        unregister: subscribe(ROUTER_UNREGISTER).await?,
        greet: subscribe(ROUTER_GREET).await?,
    };
    client
        .flush()
        .await
        .map_err(|error| RouterError::Announce(error.to_string()))?;
    Ok(subscriptions)
}

/// The `router.start` / `router.greet` body.
pub(crate) fn start_message(start: &RouterStart) -> Bytes {
    Bytes::from(serde_json::to_vec(start).expect("RouterStart serialises"))
}

/// Publishes `router.start`.
pub(crate) async fn announce(
    client: &Client,
    start_message: &Bytes,
    metrics: &Metrics,
) -> Result<(), RouterError> {
    client
        .publish(ROUTER_START, start_message.clone())
        .await
        .map_err(|error| RouterError::Announce(error.to_string()))?;
    client
        .flush()
        .await
        .map_err(|error| RouterError::Announce(error.to_string()))?;
    increment(&metrics.router_start_published);
    Ok(())
}

/// What wakes the loop.
enum Event {
    Register(Message),
    Unregister(Message),
    Greet(Message),
    /// A subscription stream ended (the client was closed).
    SubscriptionClosed(&'static str),
    PruneTick,
    ReconnectCheck,
    Shutdown,
}

/// State of the NATS loop.
pub(crate) struct NatsLoop {
    pub(crate) client: Client,
    pub(crate) subscriptions: Subscriptions,
    pub(crate) table: Arc<RouteTable>,
    pub(crate) backends: Arc<Backends>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) start_message: Bytes,
    pub(crate) prune_interval: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl NatsLoop {
    /// Runs until shutdown (or until the NATS client is closed for good).
    pub(crate) async fn run(mut self) {
        let mut prune = tokio::time::interval_at(
            tokio::time::Instant::now() + self.prune_interval,
            self.prune_interval,
        );
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconnect_check = tokio::time::interval(RECONNECT_CHECK_INTERVAL);
        reconnect_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connects_seen = self.client.statistics().connects.load(Ordering::Relaxed);
        loop {
            let event = tokio::select! {
                message = self.subscriptions.register.next() => {
                    message.map_or(Event::SubscriptionClosed(ROUTER_REGISTER), Event::Register)
                }
                message = self.subscriptions.unregister.next() => {
                    message.map_or(Event::SubscriptionClosed(ROUTER_UNREGISTER), Event::Unregister)
                }
                message = self.subscriptions.greet.next() => {
                    message.map_or(Event::SubscriptionClosed(ROUTER_GREET), Event::Greet)
                }
                _ = prune.tick() => Event::PruneTick,
                _ = reconnect_check.tick() => Event::ReconnectCheck,
                _ = crate::tasks::stopped(&mut self.shutdown) => Event::Shutdown,
            };
            match event {
                Event::Register(message) => self.on_registry_message(&message, true),
                Event::Unregister(message) => self.on_registry_message(&message, false),
                Event::Greet(message) => self.on_greet(message).await,
                Event::PruneTick => {
                    let pruned = self.table.prune(Instant::now());
                    self.metrics
                        .endpoints_pruned
                        .fetch_add(pruned as u64, Ordering::Relaxed);
                    self.backends.evict_expired();
                }
                Event::ReconnectCheck => {
                    let connects = self.client.statistics().connects.load(Ordering::Relaxed);
                    if connects > connects_seen {
                        connects_seen = connects;
                        tracing::info!("NATS reconnected; announcing router.start");
                        if let Err(error) =
                            announce(&self.client, &self.start_message, &self.metrics).await
                        {
                            tracing::warn!(%error, "could not publish router.start after reconnect");
                        }
                    }
                }
                Event::SubscriptionClosed(subject) => {
                    tracing::warn!(
                        subject,
                        "NATS subscription closed; router stops listening to NATS"
                    );
                    return;
                }
                Event::Shutdown => return,
            }
        }
    }

    fn on_registry_message(&self, message: &Message, register: bool) {
        let subject = message.subject.as_str();
        let registry: RegistryMessage = match serde_json::from_slice(&message.payload) {
            Ok(registry) => registry,
            Err(error) => {
                increment(&self.metrics.malformed_messages);
                tracing::warn!(%error, subject, "ignoring malformed registry message");
                return;
            }
        };
        let span = tracing::debug_span!(
            "nats_message",
            subject,
            app_guid = registry.app.as_deref().unwrap_or_default(),
            instance_guid = registry.private_instance_id.as_deref().unwrap_or_default(),
        );
        let _entered = span.enter();
        if registry.port == 0 {
            increment(&self.metrics.malformed_messages);
            tracing::warn!(host = %registry.host, "ignoring registry message without a plain-HTTP port");
            return;
        }
        let now = Instant::now();
        if register {
            increment(&self.metrics.register_messages);
            self.table.register(&registry, now);
            tracing::debug!(uris = ?registry.uris, backend = %registry.host, port = registry.port, "registered");
        } else {
            increment(&self.metrics.unregister_messages);
            self.table.unregister(&registry, now);
            tracing::debug!(uris = ?registry.uris, backend = %registry.host, port = registry.port, "unregistered");
        }
    }

    async fn on_greet(&self, message: Message) {
        let Some(reply) = message.reply else {
            tracing::debug!("router.greet without a reply subject ignored");
            return;
        };
        if let Err(error) = self.client.publish(reply, self.start_message.clone()).await {
            tracing::warn!(%error, "could not answer router.greet");
        }
    }
}
