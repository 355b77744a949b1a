//! Data survives a restart on the same database, and concurrent duplicate creates produce the CF
//! error rather than a 500.

use serde_json::json;

use crate::support::{databases, start_cc, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_keeps_data_and_duplicates_race_cleanly() {
    for database in databases() {
        let mut harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("durable").await;
        harness.create_space(&org, "kept").await;

        // Concurrent duplicates: exactly one wins, the others get the CF error.
        let attempts =
            (0..6).map(|_| harness.post("/v3/organizations", &admin, json!({"name": "racy"})));
        let answers = futures_join(attempts).await;
        let created = answers.iter().filter(|answer| answer.status == 201).count();
        assert_eq!(created, 1, "{answers:#?}");
        for answer in answers.iter().filter(|answer| answer.status != 201) {
            answer.assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Organization 'racy' already exists.",
            );
        }

        harness.cc.take().unwrap().stop().await;
        let (cc, base) = start_cc(harness.database.url(), &harness.issuer.url).await;
        harness.cc = Some(cc);
        harness.base = base;
        let orgs = harness.get("/v3/organizations?names=durable", &admin).await;
        assert_eq!(
            orgs.body["resources"][0]["guid"],
            org.as_str(),
            "{}",
            harness.database.label()
        );
        let spaces = harness
            .get(&format!("/v3/spaces?organization_guids={org}"), &admin)
            .await;
        assert_eq!(spaces.body["resources"][0]["name"], "kept");
        // Bootstrap is idempotent: still one shared domain and one default quota.
        assert_eq!(
            harness.get("/v3/domains", &admin).await.body["pagination"]["total_results"],
            1
        );
        assert_eq!(
            harness
                .get("/v3/organization_quotas?names=default", &admin)
                .await
                .body["pagination"]["total_results"],
            1
        );
        harness.stop().await;
    }
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(future);
    }
    let mut outputs = Vec::new();
    let joined = futures_util::future::join_all(set).await;
    outputs.extend(joined);
    outputs
}
