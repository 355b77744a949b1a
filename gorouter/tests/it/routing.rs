//! The route table as clients see it: lookups by host (port and case ignored) and path,
//! round-robin, unregistering, empty pools and pruning.

use std::collections::HashMap;

use gorouter::RouterConfig;
use hyper::StatusCode;

use crate::support::{eventually, get, registration, test_config, Backend, TestRouter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_route_is_served_whatever_the_host_case_and_port() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let backend = Backend::start("one").await;
    router
        .register(&registration(backend.port, &["MyApp.Apps.Example.com"]), 1)
        .await;
    assert_eq!(router.server.route_count(), 1);

    for host in [
        "myapp.apps.example.com",
        "MYAPP.apps.EXAMPLE.com",
        "myapp.apps.example.com:8080",
        "MyApp.Apps.Example.com:80",
    ] {
        let answer = get(router.addr(), host, "/some/path?x=1").await;
        assert_eq!(answer.status, StatusCode::OK, "host {host}");
        assert_eq!(answer.backend(), "one");
        assert_eq!(answer.json()["path"], "/some/path?x=1");
        assert_eq!(
            answer.json()["headers"]["host"],
            host,
            "Host is passed through"
        );
    }
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_spread_round_robin_across_the_pool() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    for (n, backend) in backends.iter().enumerate() {
        router
            .register(&registration(backend.port, &["rr.example.com"]), n + 1)
            .await;
    }
    let mut seen = HashMap::<String, usize>::new();
    for _ in 0..9 {
        let answer = get(router.addr(), "rr.example.com", "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        *seen.entry(answer.backend()).or_default() += 1;
    }
    for backend in &backends {
        assert_eq!(seen.get(&backend.id), Some(&3), "round-robin over {seen:?}");
    }
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_path_prefix_wins() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let root = Backend::start("root").await;
    let api = Backend::start("api").await;
    router
        .register(&registration(root.port, &["paths.example.com"]), 1)
        .await;
    router
        .register(&registration(api.port, &["paths.example.com/api"]), 2)
        .await;
    let cases = [
        ("/", "root"),
        ("/apis", "root"),
        ("/api", "api"),
        ("/api/v1/things?q=1", "api"),
        ("/API/v1", "api"),
    ];
    for (path, expected) in cases {
        let answer = get(router.addr(), "paths.example.com", path).await;
        assert_eq!(answer.backend(), expected, "path {path}");
    }
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_unregistered_routes_get_404_unknown_route() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let answer = get(router.addr(), "nope.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header("x-cf-routererror"), Some("unknown_route"));
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        "404 Not Found: Requested route ('nope.example.com') does not exist.\n"
    );

    let backend = Backend::start("gone").await;
    let message = registration(backend.port, &["gone.example.com"]);
    router.register(&message, 1).await;
    assert_eq!(
        get(router.addr(), "gone.example.com", "/").await.status,
        StatusCode::OK
    );

    router.publish("router.unregister", &message).await;
    eventually("the route to disappear", || async {
        router.server.route_count() == 0
    })
    .await;
    let answer = get(router.addr(), "gone.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header("x-cf-routererror"), Some("unknown_route"));
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_matches_host_and_port_and_uris() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    router
        .register(
            &registration(a.port, &["x.example.com", "y.example.com"]),
            2,
        )
        .await;
    router
        .register(&registration(b.port, &["x.example.com"]), 3)
        .await;
    // Only a's registration on x goes; a stays on y, b stays on x.
    router
        .publish(
            "router.unregister",
            &registration(a.port, &["x.example.com"]),
        )
        .await;
    eventually("the unregistration", || async {
        router.server.endpoint_count() == 2
    })
    .await;
    for _ in 0..4 {
        assert_eq!(
            get(router.addr(), "x.example.com", "/").await.backend(),
            "b"
        );
    }
    assert_eq!(
        get(router.addr(), "y.example.com", "/").await.backend(),
        "a"
    );
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_route_with_an_empty_pool_gets_503_no_endpoints() {
    let config = RouterConfig {
        empty_pool_timeout_secs: 60,
        ..test_config()
    };
    let Some(router) = TestRouter::start(config).await else {
        return;
    };
    let backend = Backend::start("only").await;
    let message = registration(backend.port, &["empty.example.com"]);
    router.register(&message, 1).await;
    router.publish("router.unregister", &message).await;
    eventually("the pool to empty", || async {
        router.server.endpoint_count() == 0
    })
    .await;
    assert_eq!(router.server.route_count(), 1, "the route is kept, empty");
    let answer = get(router.addr(), "empty.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.header("x-cf-routererror"), Some("no_endpoints"));
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        "503 Service Unavailable: Requested route ('empty.example.com') has no available endpoints.\n"
    );
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_not_re_registered_are_pruned() {
    let config = RouterConfig {
        prune_threshold_secs: 2,
        prune_interval_secs: 1,
        register_interval_secs: 1,
        ..test_config()
    };
    let Some(router) = TestRouter::start(config).await else {
        return;
    };
    let stale = Backend::start("stale").await;
    let fresh = Backend::start("fresh").await;
    let stale_message = registration(stale.port, &["stale.example.com"]);
    let fresh_message = registration(fresh.port, &["fresh.example.com"]);
    router.register(&stale_message, 1).await;
    router.register(&fresh_message, 2).await;
    assert_eq!(
        get(router.addr(), "stale.example.com", "/").await.status,
        StatusCode::OK
    );

    // Only the fresh route keeps heartbeating, as a DEA would.
    eventually("the stale route to be pruned", || async {
        router.publish("router.register", &fresh_message).await;
        router.server.route_count() == 1
    })
    .await;
    let answer = get(router.addr(), "stale.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header("x-cf-routererror"), Some("unknown_route"));
    assert_eq!(
        get(router.addr(), "fresh.example.com", "/").await.backend(),
        "fresh"
    );
    assert!(router
        .server
        .metrics_text()
        .contains("gorouter_endpoints_pruned_total 1\n"));
    router.stop().await;
}
