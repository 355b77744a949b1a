//! The route table: route key (lower-cased host, optional path prefix) → pool of endpoints,
//! fed by `router.register` / `router.unregister` and swept for stale endpoints.
//!
//! Invariants: hosts and paths are stored lower-cased, paths without a trailing `/`; each route
//! holds an endpoint (`host:port`) at most once; the table lock is never held across an await —
//! lookups copy the pool (a vector of `Arc`s) out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use protocol::router::RegistryMessage;

use crate::access_log::LogIdentity;

/// One backend of a route: an app instance listening on `host:port`.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// `host:port`, the key of the backend connection pool.
    pub(crate) address: String,
    host: String,
    port: u16,
    pub(crate) app_id: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) instance_index: Option<String>,
    /// The app identity for access-log envelopes; `None` without an app id (no app log).
    pub(crate) log_identity: Option<Arc<LogIdentity>>,
    stale_threshold: Duration,
    /// Origin of the millisecond clocks below.
    epoch: Instant,
    last_registered_ms: AtomicU64,
    ineligible_until_ms: AtomicU64,
}

impl Endpoint {
    fn new(message: &RegistryMessage, stale_threshold: Duration, now: Instant) -> Endpoint {
        Endpoint {
            address: format_address(&message.host, message.port),
            host: message.host.clone(),
            port: message.port,
            app_id: message.app.clone(),
            instance_id: message.private_instance_id.clone(),
            instance_index: message.private_instance_index.clone(),
            log_identity: LogIdentity::from_registration(message).map(Arc::new),
            stale_threshold,
            epoch: now,
            last_registered_ms: AtomicU64::new(0),
            ineligible_until_ms: AtomicU64::new(0),
        }
    }

    fn millis_at(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn same_registration(&self, other: &Endpoint) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.app_id == other.app_id
            && self.instance_id == other.instance_id
            && self.instance_index == other.instance_index
            && self.log_identity == other.log_identity
            && self.stale_threshold == other.stale_threshold
    }

    fn touch(&self, now: Instant) {
        self.last_registered_ms
            .store(self.millis_at(now), Ordering::Relaxed);
    }

    fn is_stale(&self, now: Instant) -> bool {
        let last = self.last_registered_ms.load(Ordering::Relaxed);
        self.millis_at(now).saturating_sub(last) > millis(self.stale_threshold)
    }

    /// Passes this endpoint over in load balancing for `duration` (after a failed connect).
    pub(crate) fn mark_ineligible(&self, now: Instant, duration: Duration) {
        self.ineligible_until_ms.store(
            self.millis_at(now).saturating_add(millis(duration)),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn is_eligible(&self, now: Instant) -> bool {
        self.millis_at(now) >= self.ineligible_until_ms.load(Ordering::Relaxed)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn format_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One route key's pool.
#[derive(Debug)]
struct Route {
    /// `""` for a host-only route, else `/segment[/segment…]`.
    path: String,
    endpoints: Vec<Arc<Endpoint>>,
    /// Round-robin cursor.
    next: AtomicUsize,
    /// When the pool became empty (kept only with an empty-pool timeout).
    emptied_at: Option<Instant>,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        self.path.is_empty()
            || path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?', ';']))
    }
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    Unknown,
    NoEndpoints,
    /// The pool, and where round-robin starts for this request.
    Found {
        endpoints: Vec<Arc<Endpoint>>,
        start: usize,
    },
}

/// The route table shared by the NATS loop (writer) and the proxy (reader).
#[derive(Debug)]
pub(crate) struct RouteTable {
    by_host: RwLock<HashMap<String, Vec<Route>>>,
    prune_threshold: Duration,
    empty_pool_timeout: Duration,
}

/// Splits a registered URI (`Host[:port][/path][?query]`) into its route key.
fn route_key(uri: &str) -> Option<(String, String)> {
    let uri = uri.trim();
    let uri = uri.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = match uri.find('/') {
        Some(slash) => uri.split_at(slash),
        None => (uri, ""),
    };
    let host = host_key(host);
    if host.is_empty() {
        return None;
    }
    Some((host, path.trim_end_matches('/').to_ascii_lowercase()))
}

/// Lower-cases a request or registration host and strips a port (`[v6]:port` included).
pub(crate) fn host_key(host: &str) -> String {
    let host = host.trim();
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

impl RouteTable {
    pub(crate) fn new(prune_threshold: Duration, empty_pool_timeout: Duration) -> RouteTable {
        RouteTable {
            by_host: RwLock::new(HashMap::new()),
            prune_threshold,
            empty_pool_timeout,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Vec<Route>>> {
        self.by_host
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vec<Route>>> {
        self.by_host
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds (or refreshes) the message's endpoint on each of its URIs. Returns how many URIs
    /// were accepted.
    pub(crate) fn register(&self, message: &RegistryMessage, now: Instant) -> usize {
        // A registration may shorten the table's threshold, never lengthen it (gorouter).
        let stale_threshold = match message.stale_threshold_in_seconds {
            Some(secs) if secs > 0 && Duration::from_secs(secs) < self.prune_threshold => {
                Duration::from_secs(secs)
            }
            _ => self.prune_threshold,
        };
        let candidate = Endpoint::new(message, stale_threshold, now);
        let mut accepted = 0;
        let mut table = self.write();
        for uri in &message.uris {
            let Some((host, path)) = route_key(uri) else {
                tracing::warn!(uri, "ignoring registration of a URI without a host");
                continue;
            };
            accepted += 1;
            let routes = table.entry(host).or_default();
            let route = match routes.iter().position(|route| route.path == path) {
                Some(index) => &mut routes[index],
                None => {
                    routes.push(Route {
                        path: path.clone(),
                        endpoints: Vec::new(),
                        next: AtomicUsize::new(0),
                        emptied_at: None,
                    });
                    // Longest path first, so the first match is the longest prefix.
                    routes.sort_by_key(|route| std::cmp::Reverse(route.path.len()));
                    let index = routes
                        .iter()
                        .position(|route| route.path == path)
                        .expect("the route was just inserted");
                    &mut routes[index]
                }
            };
            route.emptied_at = None;
            match route
                .endpoints
                .iter()
                .position(|endpoint| endpoint.address == candidate.address)
            {
                Some(index) if route.endpoints[index].same_registration(&candidate) => {
                    route.endpoints[index].touch(now);
                }
                Some(index) => {
                    let endpoint = Endpoint::new(message, stale_threshold, now);
                    endpoint.touch(now);
                    route.endpoints[index] = Arc::new(endpoint);
                }
                None => {
                    let endpoint = Endpoint::new(message, stale_threshold, now);
                    endpoint.touch(now);
                    route.endpoints.push(Arc::new(endpoint));
                }
            }
        }
        accepted
    }

    /// Removes the message's endpoint (matched on host and port) from each of its URIs.
    pub(crate) fn unregister(&self, message: &RegistryMessage, now: Instant) {
        let address = format_address(&message.host, message.port);
        let mut table = self.write();
        for uri in &message.uris {
            let Some((host, path)) = route_key(uri) else {
                continue;
            };
            let Some(routes) = table.get_mut(&host) else {
                continue;
            };
            if let Some(route) = routes.iter_mut().find(|route| route.path == path) {
                let before = route.endpoints.len();
                route
                    .endpoints
                    .retain(|endpoint| endpoint.address != address);
                if before > 0 && route.endpoints.is_empty() {
                    route.emptied_at = Some(now);
                }
            }
            self.drop_empty_routes(routes, now);
            if routes.is_empty() {
                table.remove(&host);
            }
        }
    }

    /// Keeps an emptied route only while the empty-pool timeout runs.
    fn drop_empty_routes(&self, routes: &mut Vec<Route>, now: Instant) {
        routes.retain(|route| {
            !route.endpoints.is_empty()
                || route.emptied_at.is_some_and(|emptied_at| {
                    now.saturating_duration_since(emptied_at) < self.empty_pool_timeout
                })
        });
    }

    /// Removes endpoints not re-registered within their stale threshold. Returns how many.
    pub(crate) fn prune(&self, now: Instant) -> usize {
        let mut pruned = 0;
        let mut table = self.write();
        table.retain(|host, routes| {
            for route in routes.iter_mut() {
                let before = route.endpoints.len();
                route.endpoints.retain(|endpoint| {
                    let stale = endpoint.is_stale(now);
                    if stale {
                        tracing::info!(host = %host, path = %route.path, backend = %endpoint.address, "pruned stale endpoint");
                    }
                    !stale
                });
                pruned += before - route.endpoints.len();
                if before > 0 && route.endpoints.is_empty() {
                    route.emptied_at = Some(now);
                }
            }
            self.drop_empty_routes(routes, now);
            !routes.is_empty()
        });
        pruned
    }

    /// Finds the pool for a request: exact host, then wildcards (`*.b.c`, `*.c`), longest path
    /// prefix first.
    pub(crate) fn lookup(&self, host: &str, path: &str) -> Lookup {
        let path = path.to_ascii_lowercase();
        let table = self.read();
        let mut candidate = host.to_owned();
        loop {
            if let Some(route) = table
                .get(&candidate)
                .and_then(|routes| routes.iter().find(|route| route.matches(&path)))
            {
                if route.endpoints.is_empty() {
                    return Lookup::NoEndpoints;
                }
                return Lookup::Found {
                    endpoints: route.endpoints.clone(),
                    start: route.next.fetch_add(1, Ordering::Relaxed),
                };
            }
            let rest = candidate.strip_prefix("*.").unwrap_or(&candidate);
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => candidate = format!("*.{parent}"),
                _ => return Lookup::Unknown,
            }
        }
    }

    /// Number of route keys (host + path), empty pools included.
    pub(crate) fn route_count(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }

    /// Number of (route, endpoint) pairs.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.read()
            .values()
            .flatten()
            .map(|route| route.endpoints.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(port: u16, uris: &[&str]) -> RegistryMessage {
        RegistryMessage {
            host: "10.0.0.1".into(),
            port,
            uris: uris.iter().map(|uri| uri.to_string()).collect(),
            app: Some("app-guid".into()),
            ..RegistryMessage::default()
        }
    }

    fn found_ports(lookup: Lookup) -> Vec<String> {
        match lookup {
            Lookup::Found { endpoints, .. } => {
                endpoints.iter().map(|e| e.address.clone()).collect()
            }
            other => panic!("expected a pool, got {other:?}"),
        }
    }

    #[test]
    fn host_keys_drop_ports_and_case() {
        assert_eq!(host_key("MyApp.Example.COM:8080"), "myapp.example.com");
        assert_eq!(host_key("myapp.example.com."), "myapp.example.com");
        assert_eq!(host_key("[::1]:80"), "[::1]");
        assert_eq!(
            route_key("App.Example.com/Foo/"),
            Some(("app.example.com".into(), "/foo".into()))
        );
        assert_eq!(route_key("/nohost"), None);
    }

    #[test]
    fn longest_path_prefix_wins_on_segment_boundaries() {
        let table = RouteTable::new(Duration::from_secs(120), Duration::ZERO);
        let now = Instant::now();
        table.register(&message(1, &["app.example.com"]), now);
        table.register(&message(2, &["app.example.com/api"]), now);
        table.register(&message(3, &["app.example.com/api/v2"]), now);
        assert_eq!(
            found_ports(table.lookup("app.example.com", "/")),
            ["10.0.0.1:1"]
        );
        assert_eq!(
            found_ports(table.lookup("app.example.com", "/apix")),
            ["10.0.0.1:1"]
        );
        assert_eq!(
            found_ports(table.lookup("app.example.com", "/API/x")),
            ["10.0.0.1:2"]
        );
        assert_eq!(
            found_ports(table.lookup("app.example.com", "/api/v2?q=1")),
            ["10.0.0.1:3"]
        );
        assert!(matches!(
            table.lookup("other.example.com", "/"),
            Lookup::Unknown
        ));
        assert_eq!(table.route_count(), 3);
    }

    #[test]
    fn wildcards_match_subdomains() {
        let table = RouteTable::new(Duration::from_secs(120), Duration::ZERO);
        table.register(&message(1, &["*.example.com"]), Instant::now());
        assert_eq!(
            found_ports(table.lookup("a.b.example.com", "/")),
            ["10.0.0.1:1"]
        );
        assert!(matches!(table.lookup("example.org", "/"), Lookup::Unknown));
    }

    #[test]
    fn unregister_and_prune_remove_endpoints() {
        let table = RouteTable::new(Duration::from_secs(10), Duration::ZERO);
        let start = Instant::now();
        table.register(&message(1, &["a.example.com"]), start);
        table.register(&message(2, &["a.example.com"]), start);
        table.register(&message(2, &["a.example.com"]), start); // refresh, not a duplicate
        assert_eq!(table.endpoint_count(), 2);
        table.unregister(&message(1, &["A.example.com"]), start);
        assert_eq!(
            found_ports(table.lookup("a.example.com", "/")),
            ["10.0.0.1:2"]
        );
        assert_eq!(table.prune(start + Duration::from_secs(5)), 0);
        assert_eq!(table.prune(start + Duration::from_secs(11)), 1);
        assert!(matches!(
            table.lookup("a.example.com", "/"),
            Lookup::Unknown
        ));
        assert_eq!(table.route_count(), 0);
    }

    #[test]
    fn a_registration_may_shorten_the_stale_threshold() {
        let table = RouteTable::new(Duration::from_secs(120), Duration::ZERO);
        let start = Instant::now();
        let mut short = message(1, &["a.example.com"]);
        short.stale_threshold_in_seconds = Some(5);
        table.register(&short, start);
        let mut long = message(2, &["a.example.com"]);
        long.stale_threshold_in_seconds = Some(500);
        table.register(&long, start);
        assert_eq!(table.prune(start + Duration::from_secs(6)), 1);
        assert_eq!(table.prune(start + Duration::from_secs(119)), 0);
        assert_eq!(table.prune(start + Duration::from_secs(121)), 1);
    }

    #[test]
    fn emptied_pools_are_kept_during_the_empty_pool_timeout() {
        let table = RouteTable::new(Duration::from_secs(120), Duration::from_secs(10));
        let start = Instant::now();
        table.register(&message(1, &["a.example.com"]), start);
        table.unregister(&message(1, &["a.example.com"]), start);
        assert!(matches!(
            table.lookup("a.example.com", "/"),
            Lookup::NoEndpoints
        ));
        table.prune(start + Duration::from_secs(11));
        assert!(matches!(
            table.lookup("a.example.com", "/"),
            Lookup::Unknown
        ));
    }
}
