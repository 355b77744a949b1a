//! The PostgreSQL broker against a real server (`KILN_TEST_POSTGRES_URL`, an admin URL such as
//! the one `scripts/postgres` prints). Skips with a message when the variable is unset, unless
//! `KILN_REQUIRE_POSTGRES=1`, which makes a missing server a failure.

#[cfg(feature = "postgres-broker")]
mod with_feature {
    use std::sync::Arc;

    use broker_sdk::brokers::postgres::{
        PostgresBroker, PostgresBrokerConfig, LARGE_PLAN_ID, SERVICE_ID, SMALL_PLAN_ID,
    };
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};
    use serde_json::json;

    use crate::support::{guid, start};

    fn admin_url() -> Option<String> {
        match std::env::var("KILN_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var("KILN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "KILN_REQUIRE_POSTGRES=1 but KILN_TEST_POSTGRES_URL is not set"
                );
                eprintln!(
                    "skipping the PostgreSQL broker test: set KILN_TEST_POSTGRES_URL \
                     (bash scripts/postgres prints it) to run it"
                );
                None
            }
        }
    }

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }

    async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(work)
            .await
            .expect("blocking task")
    }

    fn count(url: &str, query: &str, name: &str) -> i64 {
        let mut connection = PgConnection::establish(url).expect("admin connection");
        diesel::sql_query(query)
            .bind::<Text, _>(name)
            .get_result::<Count>(&mut connection)
            .expect("count query")
            .count
    }

    fn database_count(admin: &str, name: &str) -> i64 {
        count(
            admin,
            "SELECT count(*) AS count FROM pg_database WHERE datname = $1",
            name,
        )
    }

    fn role_count(admin: &str, name: &str) -> i64 {
        count(
            admin,
            "SELECT count(*) AS count FROM pg_roles WHERE rolname = $1",
            name,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_are_databases_and_bindings_are_roles_that_really_connect() {
        let Some(admin) = admin_url() else { return };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (server, addr) = broker_sdk::brokers::postgres::serve(
            PostgresBrokerConfig::new(admin.clone()),
            crate::support::credentials(),
            listener,
        )
        .expect("serve the PostgreSQL broker");
        let osb = crate::support::Osb::new(format!("http://{addr}"));

        let instance = guid();
        let path = format!("/v2/service_instances/{instance}");
        let provision = json!({"service_id": SERVICE_ID, "plan_id": SMALL_PLAN_ID,
                               "organization_guid": "org", "space_guid": "space"});
        let reply = osb
            .put(&format!("{path}?accepts_incomplete=true"), &provision)
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        let database = format!("cf_{instance}");
        assert_eq!(
            blocking({
                let (a, d) = (admin.clone(), database.clone());
                move || database_count(&a, &d)
            })
            .await,
            1
        );
        assert_eq!(
            osb.put(&path, &provision).await.status,
            200,
            "identical provision"
        );
        let mut different = provision.clone();
        different["plan_id"] = json!(LARGE_PLAN_ID);
        assert_eq!(osb.put(&path, &different).await.status, 409);
        let reply = osb.get(&path).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["plan_id"], SMALL_PLAN_ID);

        // small → large changes the connection limit.
        let reply = osb
            .patch(
                &path,
                &json!({"service_id": SERVICE_ID, "plan_id": LARGE_PLAN_ID,
                                  "previous_values": {"plan_id": SMALL_PLAN_ID}}),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(osb.get(&path).await.body["plan_id"], LARGE_PLAN_ID);
        let limit = blocking({
            let (a, d) = (admin.clone(), database.clone());
            move || {
                count(
                    &a,
                    "SELECT datconnlimit::bigint AS count FROM pg_database WHERE datname = $1",
                    &d,
                )
            }
        })
        .await;
        assert_eq!(limit, 100);

        let binding = guid();
        let binding_path = format!("{path}/service_bindings/{binding}");
        let bind = json!({"service_id": SERVICE_ID, "plan_id": LARGE_PLAN_ID, "app_guid": "app",
                          "bind_resource": {"app_guid": "app"}});
        let reply = osb.put(&binding_path, &bind).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        let credentials = reply.body["credentials"].clone();
        let uri = credentials["uri"].as_str().unwrap().to_owned();
        let role = credentials["username"].as_str().unwrap().to_owned();
        assert_eq!(credentials["database"], database.as_str());
        assert_eq!(
            credentials["hostname"],
            url::Url::parse(&admin).unwrap().host_str().unwrap()
        );
        assert_eq!(
            credentials["port"],
            url::Url::parse(&admin).unwrap().port().unwrap_or(5432)
        );
        assert_eq!(
            uri,
            format!(
                "postgres://{role}:{}@{}:{}/{database}",
                credentials["password"].as_str().unwrap(),
                credentials["hostname"].as_str().unwrap(),
                credentials["port"]
            )
        );
        // Re-sent bind and fetch give the same credentials.
        let reply = osb.put(&binding_path, &bind).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["credentials"], credentials);
        assert_eq!(
            osb.get(&binding_path).await.body["credentials"],
            credentials
        );

        // The credentials really work: create a table, write, read.
        let rows = blocking({
            let uri = uri.clone();
            move || {
                let mut connection = PgConnection::establish(&uri).expect("connect with the binding's uri");
                connection
                    .batch_execute("CREATE TABLE notes (id bigint PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'hello')")
                    .expect("create a table with the binding's role");
                diesel::sql_query("SELECT count(*) AS count FROM notes")
                    .get_result::<Count>(&mut connection)
                    .expect("read the table")
                    .count
            }
        })
        .await;
        assert_eq!(rows, 1);

        // A second binding sees the first one's table (objects belong to the instance's owner).
        let second = format!("{path}/service_bindings/{}", guid());
        let reply = osb.put(&second, &bind).await;
        assert_eq!(reply.status, 201);
        let second_uri = reply.body["credentials"]["uri"]
            .as_str()
            .unwrap()
            .to_owned();

        // Unbind drops the role; the data stays.
        let reply = osb
            .delete(&format!(
                "{binding_path}?service_id={SERVICE_ID}&plan_id={LARGE_PLAN_ID}"
            ))
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(
            blocking({
                let (a, r) = (admin.clone(), role.clone());
                move || role_count(&a, &r)
            })
            .await,
            0
        );
        let old_login = blocking({
            let uri = uri.clone();
            move || PgConnection::establish(&uri).is_err()
        })
        .await;
        assert!(old_login, "the unbound role can no longer log in");
        let reply = osb
            .delete(&format!(
                "{binding_path}?service_id={SERVICE_ID}&plan_id={LARGE_PLAN_ID}"
            ))
            .await;
        assert_eq!(reply.status, 410);
        assert_eq!(osb.get(&binding_path).await.status, 404);
        let rows = blocking(move || {
            let mut connection =
                PgConnection::establish(&second_uri).expect("second binding connects");
            diesel::sql_query("SELECT count(*) AS count FROM notes")
                .get_result::<Count>(&mut connection)
                .expect("the second binding reads the first one's table")
                .count
        })
        .await;
        assert_eq!(rows, 1);

        // Deprovision with a session still open: it is terminated and the database dropped, with
        // the remaining binding's role and the owner role.
        let held = blocking({
            let (a, d) = (admin.clone(), database.clone());
            move || {
                let mut url = url::Url::parse(&a).unwrap();
                url.set_path(&format!("/{d}"));
                PgConnection::establish(url.as_str())
                    .expect("admin session on the instance database")
            }
        })
        .await;
        let reply = osb
            .delete(&format!(
                "{path}?service_id={SERVICE_ID}&plan_id={LARGE_PLAN_ID}"
            ))
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        drop(held);
        assert_eq!(
            blocking({
                let (a, d) = (admin.clone(), database.clone());
                move || database_count(&a, &d)
            })
            .await,
            0
        );
        let owner = format!("cf_{instance}_owner");
        assert_eq!(
            blocking({
                let a = admin.clone();
                move || role_count(&a, &owner)
            })
            .await,
            0
        );
        let reply = osb
            .delete(&format!(
                "{path}?service_id={SERVICE_ID}&plan_id={LARGE_PLAN_ID}"
            ))
            .await;
        assert_eq!(reply.status, 410);
        assert_eq!(osb.get(&path).await.status, 404);
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ids_that_cannot_be_identifiers_are_refused() {
        let Some(admin) = admin_url() else { return };
        let broker =
            Arc::new(PostgresBroker::new(PostgresBrokerConfig::new(admin)).expect("broker"));
        let (server, osb) = start(broker);
        let reply = osb
            .put(
                "/v2/service_instances/x%22%3B%20DROP%20DATABASE%20postgres%3B%20--",
                &json!({"service_id": SERVICE_ID, "plan_id": SMALL_PLAN_ID,
                        "organization_guid": "org", "space_guid": "space"}),
            )
            .await;
        assert_eq!(reply.status, 400);
        assert!(
            reply.description().contains("instance id must be"),
            "{:?}",
            reply.body
        );
        let reply = osb
            .put(
                &format!("/v2/service_instances/{}/service_bindings/a'b", guid()),
                &json!({"service_id": SERVICE_ID, "plan_id": SMALL_PLAN_ID}),
            )
            .await;
        assert_eq!(reply.status, 400);
        server.stop().await;
    }

    #[test]
    fn a_bad_admin_url_is_refused_without_echoing_the_password() {
        let error =
            PostgresBroker::new(PostgresBrokerConfig::new("mysql://u:secret@h/db")).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}

#[cfg(not(feature = "postgres-broker"))]
#[test]
fn postgres_broker_needs_its_feature() {
    assert!(
        std::env::var("KILN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
        "KILN_REQUIRE_POSTGRES=1 but the postgres-broker feature is off"
    );
    eprintln!("skipping the PostgreSQL broker tests: build with --features postgres-broker");
}
