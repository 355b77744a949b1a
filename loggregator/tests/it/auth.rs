//! Authorization like log-cache's cf-auth-proxy, against a fake UAA (`/token_keys` with a real
//! RSA key) and a fake Cloud Controller (`/v3/apps/:guid`, `/v3/service_instances/:guid`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use loggregator::LoggregatorConfig;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

use crate::support::*;

struct Signer {
    kid: String,
    encoding: EncodingKey,
    jwks: serde_json::Value,
}

fn signer(kid: &str) -> Signer {
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let public = key.to_public_key();
    Signer {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwks: serde_json::json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        }]}),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(signer: &Signer, issuer: &str, scopes: &[&str], expires_in: i64) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(signer.kid.clone());
    let claims = serde_json::json!({
        "iss": issuer,
        "exp": now() as i64 + expires_in,
        "iat": now(),
        "user_id": "user-guid",
        "user_name": "dev",
        "scope": scopes,
        "aud": ["cloud_controller", "openid"],
    });
    jsonwebtoken::encode(&header, &claims, &signer.encoding).unwrap()
}

#[tokio::test]
async fn tokens_are_verified_and_sources_authorised_like_log_cache() {
    let uaa_key = signer("key-1");
    let jwks = uaa_key.jwks.to_string();
    let uaa = FakeServer::start(move |request| {
        if request.path_and_query == "/token_keys" {
            (200, jwks.clone())
        } else {
            (404, "{}".into())
        }
    })
    .await;
    let issuer = format!("{}/oauth/token", uaa.url());
    let user_token = token(&uaa_key, &issuer, &["openid", "cloud_controller.read"], 600);
    let expected_authorization = format!("bearer {user_token}");
    let cc = FakeServer::start(move |request| {
        let mine = request.authorization.as_deref() == Some(expected_authorization.as_str());
        match request.path_and_query.as_str() {
            "/v3/apps/visible-app" if mine => (200, r#"{"guid":"visible-app"}"#.into()),
            "/v3/service_instances/visible-instance" if mine => (200, r#"{"guid":"visible-instance"}"#.into()),
            _ => (404, r#"{"errors":[{"code":10010,"title":"CF-ResourceNotFound","detail":"App not found"}]}"#.into()),
        }
    })
    .await;
    let server = start(LoggregatorConfig {
        uaa_url: Some(uaa.url()),
        cc_url: Some(cc.url()),
        ..LoggregatorConfig::default()
    })
    .await;
    let emitter = emitter(&server);
    let base = seconds_ago(10);
    for source in ["visible-app", "hidden-app", "visible-instance"] {
        emitter.emit(&log_at(source, base, source));
    }
    let read_url = |source: &str| url(&server, &format!("/api/v1/read/{source}?start_time=0"));

    // No token, a malformed token, a foreign key, an expired token, a wrong issuer: bare 404s.
    let stranger = signer("key-1");
    for bad in [
        None,
        Some("not-a-jwt".to_owned()),
        Some(token(&stranger, &issuer, &["doppler.firehose"], 600)),
        Some(token(&uaa_key, &issuer, &["doppler.firehose"], -60)),
        Some(token(
            &uaa_key,
            "https://evil.example.com/oauth/token",
            &["doppler.firehose"],
            600,
        )),
    ] {
        let (status, body) = get(&read_url("visible-app"), bad.as_deref()).await;
        assert_eq!((status, body.as_str()), (404, ""), "token {bad:?}");
    }
    assert!(
        cc.requests().is_empty(),
        "invalid tokens never reach the CC"
    );
    // The info endpoint needs no token.
    assert_eq!(get(&url(&server, "/api/v1/info"), None).await.0, 200);

    // Admin-like scopes read anything without asking the CC.
    for scope in [
        "doppler.firehose",
        "logs.admin",
        "cloud_controller.admin",
        "cloud_controller.admin_read_only",
        "cloud_controller.global_auditor",
    ] {
        let admin = token(&uaa_key, &issuer, &[scope], 600);
        let batch = eventually(std::time::Duration::from_secs(10), || {
            let url = read_url("hidden-app");
            let admin = admin.clone();
            async move {
                let (status, body) = get(&url, Some(&admin)).await;
                assert_eq!(status, 200, "{scope}: {body}");
                (body.contains("aGlkZGVuLWFwcA==")).then_some(body)
            }
        })
        .await;
        assert!(batch.starts_with(r#"{"envelopes":{"batch":[{"#));
    }
    assert!(cc.requests().is_empty());

    // Others read what the CC shows them, asked with their own token.
    let (status, body) = get(&read_url("visible-app"), Some(&user_token)).await;
    assert_eq!(status, 200, "{body}");
    let asked = cc.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path_and_query, "/v3/apps/visible-app");
    assert_eq!(
        asked[0].authorization.as_deref(),
        Some(format!("bearer {user_token}").as_str())
    );
    // The positive answer is cached.
    assert_eq!(
        get(&read_url("visible-app"), Some(&user_token)).await.0,
        200
    );
    assert_eq!(cc.requests().len(), 1);
    // Service instances are looked up when the GUID is not an app.
    assert_eq!(
        get(&read_url("visible-instance"), Some(&user_token))
            .await
            .0,
        200
    );
    let (status, body) = get(&read_url("hidden-app"), Some(&user_token)).await;
    assert_eq!((status, body.as_str()), (404, ""));
    let paths: Vec<String> = cc
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert!(
        paths.contains(&"/v3/service_instances/visible-instance".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/v3/service_instances/hidden-app".to_owned()),
        "{paths:?}"
    );

    // Meta lists only what the caller may read.
    let (status, meta) = get(&url(&server, "/api/v1/meta"), Some(&user_token)).await;
    assert_eq!(status, 200);
    assert!(
        meta.contains("visible-app") && meta.contains("visible-instance"),
        "{meta}"
    );
    assert!(!meta.contains("hidden-app"), "{meta}");
    let (status, body) = get(&url(&server, "/api/v1/meta"), None).await;
    assert_eq!((status, body.as_str()), (404, ""));
    assert!(server
        .metrics_text()
        .contains("loggregator_unauthorized_reads_total"));
    server.stop().await;
}
