//! Errors actix produces before or instead of our handlers — an oversized body, a method a known
//! path does not serve — answer in UAA's JSON error shape like every other error, never plain
//! text or an empty body.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{TestDb, TestUaa};

crate::backend_tests!(framework_errors_are_uaa_json);

/// Status, content type and JSON body of a raw request, with a bearer token when given.
async fn raw(
    uaa: &TestUaa,
    (method, path): (Method, &str),
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let mut request = uaa
        .http
        .request(method, uaa.url(path))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.header("Authorization", format!("bearer {token}"));
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{status} answered with a body that is not JSON: {text:?}"));
    (status, content_type, body)
}

async fn framework_errors_are_uaa_json(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let too_large = json!({
        "error": "invalid_request",
        "error_description": "The request body is larger than the limit of 1048576 bytes",
    });
    let big_form = format!("grant_type=password&padding={}", "x".repeat(1 << 20)).into_bytes();
    let (status, content_type, body) = raw(
        &uaa,
        (Method::POST, "/oauth/token"),
        None,
        "application/x-www-form-urlencoded",
        big_form,
    )
    .await;
    assert_eq!((status, content_type.as_str()), (413, "application/json"));
    assert_eq!(body, too_large);
    let big_json = json!({"userName": "x".repeat(1 << 20)})
        .to_string()
        .into_bytes();
    let admin = uaa.admin_token().await;
    let (status, _, body) = raw(
        &uaa,
        (Method::POST, "/Users"),
        Some(&admin),
        "application/json",
        big_json,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body, too_large);

    // Known paths, methods they do not serve: Spring's method_not_allowed, as UAA renders it.
    for (method, path) in [
        (Method::GET, "/oauth/token"),
        (Method::DELETE, "/Users"),
        (Method::PATCH, "/Groups/some-id"),
        (Method::PUT, "/oauth/clients/admin-client"),
        (Method::POST, "/token_keys"),
    ] {
        let (status, content_type, body) = raw(
            &uaa,
            (method.clone(), path),
            None,
            "application/json",
            Vec::new(),
        )
        .await;
        assert_eq!(
            (status, content_type.as_str()),
            (405, "application/json"),
            "{method} {path}"
        );
        assert_eq!(
            body,
            json!({
                "error": "method_not_allowed",
                "error_description": format!("Request method '{method}' is not supported"),
            }),
            "{method} {path}"
        );
    }

    // Unknown paths stay 404 not_found.
    let (status, _, body) = raw(
        &uaa,
        (Method::PUT, "/nothing/here"),
        None,
        "text/plain",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");

    // The server still answers normally afterwards.
    uaa.admin_token().await;
    uaa.stop().await;
}
