//! Discovery documents, health, metrics, request ids and unknown paths.

use serde_json::json;

use crate::support::{check, databases, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_documents_and_operational_endpoints() {
    let harness = Harness::start(databases().remove(0)).await;
    let root = harness.request(reqwest::Method::GET, "/", None, None).await;
    assert_eq!(root.status, 200);
    let uaa = harness.issuer.url.clone();
    let redacted_uaa = root.body["links"]["uaa"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(redacted_uaa, uaa);
    check(
        &root.body,
        &harness.base,
        json!({"links": {
            "self": {"href": "<api>"},
            "bits_service": null,
            "cloud_controller_v2": {"href": "<api>/v2", "meta": {"version": "2.155.0"}},
            "cloud_controller_v3": {"href": "<api>/v3", "meta": {"version": "3.160.0"}},
            "network_policy_v0": null,
            "network_policy_v1": null,
            "login": {"href": uaa},
            "uaa": {"href": uaa},
            "credhub": null,
            "routing": null,
            "logging": null,
            "log_cache": null,
            "log_stream": null,
            "app_ssh": null,
        }}),
    );
    let v2_info = harness
        .request(reqwest::Method::GET, "/v2/info", None, None)
        .await;
    assert_eq!(v2_info.status, 200);
    assert_eq!(v2_info.body["api_version"], "2.155.0");
    assert_eq!(
        v2_info.body["authorization_endpoint"],
        harness.issuer.url.as_str()
    );
    assert!(v2_info.body["min_cli_version"].is_null());
    let v3_info = harness
        .request(reqwest::Method::GET, "/v3/info", None, None)
        .await;
    assert_eq!(v3_info.status, 200);
    assert_eq!(
        v3_info.body["links"]["self"]["href"],
        format!("{}/v3/info", harness.base)
    );
    let v3 = harness
        .request(reqwest::Method::GET, "/v3", None, None)
        .await;
    assert_eq!(
        v3.body["links"]["organizations"]["href"],
        format!("{}/v3/organizations", harness.base)
    );

    let health = harness
        .request(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(health.status, 200);

    let unknown = harness
        .request(
            reqwest::Method::GET,
            "/v3/nothing-here",
            Some(&harness.admin_token),
            None,
        )
        .await;
    unknown.assert_v3_error(404, "CF-NotFound", "Unknown request");
    assert!(unknown
        .header("x-vcap-request-id")
        .is_some_and(|id| !id.is_empty()));
    let unknown_v2 = harness
        .request(reqwest::Method::GET, "/v2/nothing-here", None, None)
        .await;
    assert_eq!(unknown_v2.status, 404);
    assert_eq!(
        unknown_v2.body,
        json!({"code": 10000, "description": "Unknown request", "error_code": "CF-NotFound"})
    );
    let wrong_method = harness
        .request(
            reqwest::Method::PUT,
            "/v3/organizations",
            Some(&harness.admin_token),
            Some("{}"),
        )
        .await;
    wrong_method.assert_v3_error(404, "CF-NotFound", "Unknown request");

    let echoed = harness
        .http
        .get(format!("{}/v3/info", harness.base))
        .header("X-Vcap-Request-Id", "my-request-id")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-vcap-request-id"], "my-request-id");

    let metrics = harness
        .http
        .get(format!("{}/metrics", harness.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cloud_controller_http_requests_total{method=\"GET\",status=\"404\"}"),
        "{metrics}"
    );
    harness.stop().await;
}

/// Status and JSON body of a raw request; panics when the body is not JSON.
async fn raw(
    harness: &Harness,
    (method, path): (reqwest::Method, &str),
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut request = harness
        .http
        .request(method.clone(), format!("{}{path}", harness.base))
        .header("Authorization", format!("bearer {}", harness.admin_token))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!("{method} {path}: {status} answered with a body that is not JSON: {text:?}")
    });
    (status, body)
}

/// Failures decided by actix before or around our handlers — body limits, content types, body
/// syntax, unrouted methods, undecodable paths — answer with catalog errors in the API version's
/// shape, never plain text or an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_failures_answer_catalog_json() {
    let harness = Harness::start(databases().remove(0)).await;
    let org_guid = harness.create_org("errors").await;
    let oversized = json!({"name": "x".repeat(1 << 20)})
        .to_string()
        .into_bytes();
    let parse_error = |body: &serde_json::Value| {
        assert_eq!(body["errors"][0]["title"], "CF-MessageParseError", "{body}");
        assert_eq!(body["errors"][0]["code"], 1001, "{body}");
    };

    let (status, body) = raw(
        &harness,
        (reqwest::Method::POST, "/v3/organizations"),
        Some("application/json"),
        oversized.clone(),
    )
    .await;
    assert_eq!(status, 400);
    parse_error(&body);
    let (status, body) = raw(
        &harness,
        (reqwest::Method::POST, "/v2/organizations"),
        Some("application/json"),
        oversized,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error_code"], "CF-MessageParseError", "{body}");
    assert_eq!(body["code"], 1001, "{body}");

    // Like CC, the body is read as JSON whatever the Content-Type says.
    let org_path = format!("/v3/organizations/{org_guid}");
    for (content_type, payload) in [
        (
            Some("application/x-www-form-urlencoded"),
            &b"name=renamed"[..],
        ),
        (Some("application/json"), &b"{\"name\": "[..]),
        (None, &b""[..]),
    ] {
        let (status, body) = raw(
            &harness,
            (reqwest::Method::PATCH, &org_path),
            content_type,
            payload.to_vec(),
        )
        .await;
        assert_eq!(status, 400, "{content_type:?}: {body}");
        parse_error(&body);
    }

    for (method, path) in [
        (reqwest::Method::DELETE, "/v3/info"),
        (reqwest::Method::PATCH, "/v3/organizations"),
        (reqwest::Method::HEAD, "/v3/organizations"),
        (reqwest::Method::PUT, "/v3/roles"),
        (reqwest::Method::OPTIONS, "/v3/spaces"),
    ] {
        let response = harness
            .http
            .request(method.clone(), format!("{}{path}", harness.base))
            .header("Authorization", format!("bearer {}", harness.admin_token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{method} {path}");
        if method != reqwest::Method::HEAD {
            let body: serde_json::Value = response.json().await.expect("JSON body");
            assert_eq!(body["errors"][0]["title"], "CF-NotFound", "{method} {path}");
        }
    }
    let (status, body) = raw(
        &harness,
        (reqwest::Method::DELETE, "/v2/info"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": 10000, "description": "Unknown request", "error_code": "CF-NotFound"})
    );

    // A path segment that does not decode to UTF-8.
    let (status, body) = raw(
        &harness,
        (reqwest::Method::GET, "/v3/organizations/%FF%FE"),
        None,
        Vec::new(),
    )
    .await;
    assert!(status == 404, "{status}: {body}");
    harness.stop().await;
}
