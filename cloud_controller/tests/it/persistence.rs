//! Data survives a restart on the same database, concurrent duplicate creates produce the CF
//! error rather than a 500, and later migrations upgrade databases holding older data.

use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::json;

use crate::support::{databases, start_cc, Harness, TestDatabase};

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

/// Runs SQL on one backend's connection.
type Execute = Box<dyn FnMut(&str)>;

/// Brings a database to the state of the first release only: its schema, its migration marked as
/// run, and rows that a later migration must cope with.
fn seed_first_release(database: &TestDatabase, rows: &str) {
    let (init, mut connection): (&str, Execute) = match database {
        TestDatabase::Sqlite { .. } => {
            let path = database.url().trim_start_matches("sqlite://").to_owned();
            let mut connection = diesel::sqlite::SqliteConnection::establish(&path).unwrap();
            (
                include_str!("../../migrations/sqlite/2026-11-21-000000_init/up.sql"),
                Box::new(move |sql: &str| connection.batch_execute(sql).unwrap()),
            )
        }
        TestDatabase::Postgres { .. } => {
            let mut connection = diesel::pg::PgConnection::establish(database.url()).unwrap();
            (
                include_str!("../../migrations/postgres/2026-11-21-000000_init/up.sql"),
                Box::new(move |sql: &str| connection.batch_execute(sql).unwrap()),
            )
        }
    };
    connection(init);
    connection(
        "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
         run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP); \
         INSERT INTO __diesel_schema_migrations (version) VALUES ('20261121000000');",
    );
    connection(rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_names_migration_keeps_older_duplicates() {
    for database in databases() {
        // Before names were compared case-insensitively, "acme" and "ACME" could both exist.
        seed_first_release(
            &database,
            "INSERT INTO quota_definitions (guid, name, created_at, updated_at, \
               non_basic_services_allowed, total_services, total_routes, memory_limit, \
               instance_memory_limit, app_instance_limit, app_task_limit, total_service_keys, \
               total_reserved_route_ports, total_private_domains, log_rate_limit) \
             VALUES ('q-1', 'default', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', \
               true, 100, 1000, 10240, -1, -1, -1, -1, 0, -1, -1); \
             INSERT INTO organizations (guid, name, created_at, updated_at, suspended, \
               billing_enabled, quota_definition_id) VALUES \
               ('o-1', 'acme', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', false, false, 1), \
               ('o-2', 'ACME', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', false, false, 1), \
               ('o-3', 'Ünïcode', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', false, false, 1); \
             INSERT INTO spaces (guid, name, organization_id, created_at, updated_at, allow_ssh) VALUES \
               ('s-1', 'dev', 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', true), \
               ('s-2', 'Dev', 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', true);",
        );
        let label = database.label();
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let both = harness.get("/v3/organizations?names=Acme", &admin).await;
        assert_eq!(
            both.body["pagination"]["total_results"], 2,
            "{label}: {:#}",
            both.body
        );
        harness
            .post("/v3/organizations", &admin, json!({"name": "aCME"}))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Organization 'aCME' already exists.",
            );
        // The key of a non-ASCII name is folded by the application, whatever SQL lower() did.
        harness
            .post("/v3/organizations", &admin, json!({"name": "üNÏCODE"}))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Organization 'üNÏCODE' already exists.",
            );
        let spaces = harness
            .get("/v3/spaces?organization_guids=o-1", &admin)
            .await;
        assert_eq!(spaces.body["pagination"]["total_results"], 2);
        harness
            .post("/v3/spaces", &admin, json!({"name": "DEV", "relationships": {"organization": {"data": {"guid": "o-1"}}}}))
            .await
            .assert_v3_error(422, "CF-UnprocessableEntity", "Name must be unique per organization");
        harness.stop().await;
    }
}

/// Users from before `admin` and `default_space_guid` were stored get CC's defaults from the
/// migration, and the values set by `PUT /v2/users/:g` survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_admin_and_default_space_survive_migration_and_restart() {
    for database in databases() {
        seed_first_release(
            &database,
            "INSERT INTO users (guid, username, origin, is_client, created_at, updated_at) \
             VALUES ('u-old', 'old', 'uaa', false, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');",
        );
        let label = database.label();
        let mut harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let old = harness.get("/v2/users/u-old", &admin).await;
        assert_eq!(old.status, 200, "{label}: {:#}", old.body);
        assert_eq!(old.body["entity"]["admin"], false);
        assert_eq!(
            old.body["entity"]["default_space_guid"],
            serde_json::Value::Null
        );

        let org = harness.create_org("kept-org").await;
        let space = harness.create_space(&org, "kept-space").await;
        let updated = harness
            .put(
                "/v2/users/u-old",
                &admin,
                json!({"admin": true, "default_space_guid": space}),
            )
            .await;
        assert_eq!(updated.status, 201, "{label}: {:#}", updated.body);

        harness.cc.take().unwrap().stop().await;
        let (cc, base) = start_cc(harness.database.url(), &harness.issuer.url).await;
        harness.cc = Some(cc);
        harness.base = base;
        let after = harness.get("/v2/users/u-old", &admin).await;
        assert_eq!(
            after.body["entity"]["admin"], true,
            "{label}: {:#}",
            after.body
        );
        assert_eq!(after.body["entity"]["default_space_guid"], space.as_str());
        assert_eq!(
            after.body["entity"]["default_space_url"],
            format!("/v2/spaces/{space}")
        );
        harness.stop().await;
    }
}
