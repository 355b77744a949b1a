//! Labels and annotations on organizations, spaces and apps: what the cf CLI's `set-label`,
//! `labels`, `unset-label` and `--labels` send and read, CC's validation messages, merge
//! semantics, `label_selector` filtering, and metadata going with its resource.

use diesel::sql_types::Text;
use diesel::{Connection, QueryableByName, RunQueryDsl};
use serde_json::{json, Value};

use crate::support::{databases, Harness, TestDatabase};

fn names(answer: &Value) -> Vec<String> {
    answer["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|resource| resource["name"].as_str().unwrap().to_owned())
        .collect()
}

#[derive(QueryableByName)]
struct StoredGuid {
    #[diesel(sql_type = Text)]
    resource_guid: String,
}

/// GUIDs of the resources that still have rows in the metadata tables, read straight from the
/// database.
fn stored_metadata_guids(database: &TestDatabase) -> Vec<String> {
    let query = "SELECT resource_guid FROM resource_labels \
                 UNION SELECT resource_guid FROM resource_annotations";
    let rows: Vec<StoredGuid> = match database {
        TestDatabase::Sqlite { .. } => {
            let path = database.url().trim_start_matches("sqlite://");
            let mut connection = diesel::sqlite::SqliteConnection::establish(path).unwrap();
            diesel::sql_query(query).load(&mut connection).unwrap()
        }
        TestDatabase::Postgres { .. } => {
            let mut connection = diesel::pg::PgConnection::establish(database.url()).unwrap();
            diesel::sql_query(query).load(&mut connection).unwrap()
        }
    };
    let mut guids: Vec<String> = rows.into_iter().map(|row| row.resource_guid).collect();
    guids.sort();
    guids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_annotations_are_stored_merged_and_presented() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("labelled").await;
        let org_path = format!("/v3/organizations/{org}");

        // What `cf set-label org labelled env=prod tier=web` sends.
        let set = harness
            .patch(
                &org_path,
                &admin,
                json!({"metadata": {"labels": {"env": "prod", "example.com/tier": "web"}}}),
            )
            .await;
        assert_eq!(set.status, 200, "{:#}", set.body);
        assert_eq!(
            set.body["metadata"],
            json!({"labels": {"env": "prod", "example.com/tier": "web"}, "annotations": {}})
        );

        // Absent keys are kept, null deletes, a new value replaces, annotations alongside.
        let merged = harness
            .patch(
                &org_path,
                &admin,
                json!({"metadata": {
                    "labels": {"env": "staging", "example.com/tier": null, "empty": ""},
                    "annotations": {"contact": "ops team <ops@example.com>"},
                }}),
            )
            .await;
        assert_eq!(merged.status, 200, "{:#}", merged.body);
        let expected = json!({
            "labels": {"env": "staging", "empty": ""},
            "annotations": {"contact": "ops team <ops@example.com>"},
        });
        assert_eq!(merged.body["metadata"], expected);
        let fetched = harness.get(&org_path, &admin).await;
        assert_eq!(fetched.body["metadata"], expected);
        let listed = harness
            .get(&format!("/v3/organizations?guids={org}"), &admin)
            .await;
        assert_eq!(listed.body["resources"][0]["metadata"], expected);

        // A PATCH without metadata (a rename) keeps it.
        let renamed = harness
            .patch(&org_path, &admin, json!({"name": "labelled-2"}))
            .await;
        assert_eq!(renamed.body["metadata"], expected);

        // Metadata given at creation, for an org, a space and an app.
        let created = harness
            .post(
                "/v3/organizations",
                &admin,
                json!({"name": "born-labelled", "metadata": {"labels": {"env": "dev"}, "annotations": {"note": "x"}}}),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        assert_eq!(
            created.body["metadata"],
            json!({"labels": {"env": "dev"}, "annotations": {"note": "x"}})
        );
        let space = harness
            .post(
                "/v3/spaces",
                &admin,
                json!({"name": "dev", "relationships": {"organization": {"data": {"guid": org}}},
                       "metadata": {"labels": {"team": "a"}}}),
            )
            .await;
        assert_eq!(space.status, 201, "{:#}", space.body);
        assert_eq!(space.body["metadata"]["labels"], json!({"team": "a"}));
        let space_guid = space.body["guid"].as_str().unwrap().to_owned();
        let app = harness
            .post(
                "/v3/apps",
                &admin,
                json!({"name": "web", "relationships": {"space": {"data": {"guid": space_guid}}},
                       "metadata": {"labels": {"release": "v1"}}}),
            )
            .await;
        assert_eq!(app.status, 201, "{:#}", app.body);
        assert_eq!(app.body["metadata"]["labels"], json!({"release": "v1"}));
        let app_guid = app.body["guid"].as_str().unwrap().to_owned();
        let app_path = format!("/v3/apps/{app_guid}");
        let updated = harness
            .patch(
                &app_path,
                &admin,
                json!({"metadata": {"labels": {"release": null, "canary": "true"}}}),
            )
            .await;
        assert_eq!(updated.status, 200, "{:#}", updated.body);
        assert_eq!(
            updated.body["metadata"]["labels"],
            json!({"canary": "true"})
        );
        let fetched_app = harness.get(&app_path, &admin).await;
        assert_eq!(
            fetched_app.body["metadata"]["labels"],
            json!({"canary": "true"})
        );
        // The stop action answers the app with its metadata too.
        let stopped = harness
            .post(&format!("{app_path}/actions/stop"), &admin, json!({}))
            .await;
        assert_eq!(stopped.status, 200, "{:#}", stopped.body);
        assert_eq!(
            stopped.body["metadata"]["labels"],
            json!({"canary": "true"})
        );
        let space_path = format!("/v3/spaces/{space_guid}");
        let updated_space = harness
            .patch(
                &space_path,
                &admin,
                json!({"metadata": {"annotations": {"owner": "me"}}}),
            )
            .await;
        assert_eq!(
            updated_space.body["metadata"],
            json!({"labels": {"team": "a"}, "annotations": {"owner": "me"}})
        );

        // Included orgs and spaces carry their metadata too.
        let apps = harness
            .get(
                &format!("/v3/apps?guids={app_guid}&include=space,space.organization"),
                &admin,
            )
            .await;
        assert_eq!(apps.status, 200, "{:#}", apps.body);
        assert_eq!(
            apps.body["included"]["spaces"][0]["metadata"]["labels"],
            json!({"team": "a"})
        );
        assert_eq!(
            apps.body["included"]["organizations"][0]["metadata"],
            expected
        );
        let spaces = harness
            .get(
                &format!("/v3/spaces?guids={space_guid}&include=organization"),
                &admin,
            )
            .await;
        assert_eq!(
            spaces.body["included"]["organizations"][0]["metadata"],
            expected
        );
        let space_with_org = harness
            .get(&format!("{space_path}?include=org"), &admin)
            .await;
        assert_eq!(
            space_with_org.body["included"]["organizations"][0]["metadata"],
            expected
        );
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metadata_answers_ccs_messages_and_changes_nothing() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("strict").await;
        let space = harness.create_space(&org, "dev").await;
        let org_path = format!("/v3/organizations/{org}");
        let kept = harness
            .patch(
                &org_path,
                &admin,
                json!({"metadata": {"labels": {"env": "prod"}, "annotations": {"a": "b"}}}),
            )
            .await;
        assert_eq!(kept.status, 200, "{:#}", kept.body);
        let long_name = "a".repeat(64);
        // Five DNS labels of 60 characters: valid DNS, 304 characters.
        let long_prefix = vec!["b".repeat(60); 5].join(".");
        let long_annotation = "c".repeat(5001);
        let cases: Vec<(Value, String)> = vec![
            (json!({"labels": {"": "x"}}), "Metadata label key error: key cannot be empty string".into()),
            (json!({"labels": {"a/b/c": "x"}}), "Metadata label key error: key has more than one '/'".into()),
            (json!({"labels": {"-bad.com/key": "x"}}), "Metadata label key error: prefix '-bad.com' must be in valid dns format".into()),
            (json!({"labels": {format!("{long_prefix}/key"): "x"}}), "Metadata label key error: prefix 'bbbbbbbb...' is greater than 253 characters".into()),
            (json!({"labels": {"CloudFoundry.org/key": "x"}}), "Metadata label key error: prefix 'cloudfoundry.org' is reserved".into()),
            (json!({"labels": {"example.com/": "x"}}), "Metadata label key error: key cannot be empty string".into()),
            (json!({"labels": {"sp ace": "x"}}), "Metadata label key error: 'sp ace' contains invalid characters".into()),
            (json!({"labels": {"_key": "x"}}), "Metadata label key error: '_key' starts or ends with invalid characters".into()),
            (json!({"labels": {long_name.clone(): "x"}}), "Metadata label key error: 'aaaaaaaa...' is greater than 63 characters".into()),
            (json!({"labels": {"env": "a b"}}), "Metadata label value error: 'a b' contains invalid characters".into()),
            (json!({"labels": {"env": "prod-"}}), "Metadata label value error: 'prod-' starts or ends with invalid characters".into()),
            (json!({"labels": {"env": long_name}}), "Metadata label value error: 'aaaaaaaa...' is greater than 63 characters".into()),
            (json!({"annotations": {"note": long_annotation}}), "Metadata annotation value error: 'cccccccc...' is greater than 5000 characters".into()),
            (json!({"annotations": {"cloudfoundry.org/note": "x"}}), "Metadata annotation key error: prefix 'cloudfoundry.org' is reserved".into()),
            (json!({"annotations": {"note": "nul\u{0}byte"}}), "Metadata annotation value error: 'nulbyte...' contains invalid characters".into()),
            (json!({"labels": ["env"]}), "Metadata 'labels' is not an object".into()),
            (json!({"annotations": "note"}), "Metadata 'annotations' is not an object".into()),
            (json!({"labels": {"-a": "b-"}}), "Metadata label key error: '-a' starts or ends with invalid characters, Metadata label value error: 'b-' starts or ends with invalid characters".into()),
        ];
        for target in [org_path.clone(), format!("/v3/spaces/{space}")] {
            for (metadata, detail) in &cases {
                let body = json!({"metadata": metadata});
                let answer = harness.patch(&target, &admin, body.clone()).await;
                answer.assert_v3_error(422, "CF-UnprocessableEntity", detail);
            }
        }
        // A refused create creates nothing.
        let refused = harness
            .post(
                "/v3/organizations",
                &admin,
                json!({"name": "never", "metadata": {"labels": {"env": "a b"}}}),
            )
            .await;
        assert_eq!(refused.status, 422, "{:#}", refused.body);
        let never = harness.get("/v3/organizations?names=never", &admin).await;
        assert_eq!(never.body["pagination"]["total_results"], 0);
        // A refused update changes nothing, even the valid parts of it.
        let mixed = harness
            .patch(
                &org_path,
                &admin,
                json!({"name": "renamed", "metadata": {"labels": {"env": null, "bad key": "x"}}}),
            )
            .await;
        assert_eq!(mixed.status, 422, "{:#}", mixed.body);
        let org_now = harness.get(&org_path, &admin).await;
        assert_eq!(org_now.body["name"], "strict");
        assert_eq!(
            org_now.body["metadata"],
            json!({"labels": {"env": "prod"}, "annotations": {"a": "b"}})
        );
        // Deleting an annotation under a key no annotation can have is a no-op, as in CC.
        let noop = harness
            .patch(
                &org_path,
                &admin,
                json!({"metadata": {"annotations": {"bad key\u{0}": null}}}),
            )
            .await;
        assert_eq!(noop.status, 200, "{:#}", noop.body);
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_selector_filters_orgs_spaces_and_apps() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let mut orgs = Vec::new();
        for (name, labels) in [
            ("prod-web", json!({"env": "prod", "tier": "web"})),
            ("prod-db", json!({"env": "prod", "tier": "db"})),
            ("dev", json!({"env": "dev"})),
            ("plain", json!({})),
        ] {
            let answer = harness
                .post(
                    "/v3/organizations",
                    &admin,
                    json!({"name": name, "metadata": {"labels": labels}}),
                )
                .await;
            assert_eq!(answer.status, 201, "{:#}", answer.body);
            orgs.push(answer.body["guid"].as_str().unwrap().to_owned());
        }
        let orgs_matching = |selector: &'static str| {
            let harness = &harness;
            let admin = admin.clone();
            async move {
                let encoded = serde_urlencoded::to_string([
                    ("label_selector", selector),
                    ("order_by", "name"),
                ])
                .unwrap();
                let answer = harness
                    .get(&format!("/v3/organizations?{encoded}"), &admin)
                    .await;
                assert_eq!(answer.status, 200, "{selector}: {:#}", answer.body);
                assert_eq!(
                    answer.body["pagination"]["total_results"],
                    answer.body["resources"].as_array().unwrap().len(),
                    "{selector}"
                );
                names(&answer.body)
            }
        };
        assert_eq!(orgs_matching("env").await, ["dev", "prod-db", "prod-web"]);
        assert_eq!(orgs_matching("!env").await, ["plain"]);
        assert_eq!(orgs_matching("env=prod").await, ["prod-db", "prod-web"]);
        assert_eq!(orgs_matching("env==dev").await, ["dev"]);
        assert_eq!(orgs_matching("env!=prod").await, ["dev", "plain"]);
        assert_eq!(
            orgs_matching("tier in (web,db)").await,
            ["prod-db", "prod-web"]
        );
        assert_eq!(
            orgs_matching("tier notin (web)").await,
            ["dev", "plain", "prod-db"]
        );
        assert_eq!(orgs_matching("env=prod,tier=web").await, ["prod-web"]);
        assert_eq!(orgs_matching("env=prod,!tier").await, Vec::<String>::new());
        assert_eq!(orgs_matching("env=staging").await, Vec::<String>::new());
        let bad = harness
            .get("/v3/organizations?label_selector=env%20in%20(a", &admin)
            .await;
        bad.assert_v3_error(
            400,
            "CF-BadQueryParameter",
            "The query parameter is invalid: Invalid label_selector value",
        );

        // Spaces and apps.
        let space_a = harness.create_space(&orgs[0], "a").await;
        let space_b = harness.create_space(&orgs[0], "b").await;
        let labelled = harness
            .patch(
                &format!("/v3/spaces/{space_a}"),
                &admin,
                json!({"metadata": {"labels": {"team": "blue"}}}),
            )
            .await;
        assert_eq!(labelled.status, 200, "{:#}", labelled.body);
        let spaces = harness
            .get("/v3/spaces?label_selector=team%3Dblue", &admin)
            .await;
        assert_eq!(names(&spaces.body), ["a"]);
        let spaces = harness
            .get("/v3/spaces?label_selector=!team&order_by=name", &admin)
            .await;
        assert_eq!(names(&spaces.body), ["b"]);
        for (name, space, labels) in [
            ("one", &space_a, json!({"release": "v1"})),
            ("two", &space_b, json!({"release": "v2"})),
        ] {
            let app = harness
                .post(
                    "/v3/apps",
                    &admin,
                    json!({"name": name, "relationships": {"space": {"data": {"guid": space}}},
                           "metadata": {"labels": labels}}),
                )
                .await;
            assert_eq!(app.status, 201, "{:#}", app.body);
        }
        let apps = harness
            .get("/v3/apps?label_selector=release%20in%20(v2,v3)", &admin)
            .await;
        assert_eq!(names(&apps.body), ["two"]);
        let apps = harness
            .get(
                &format!("/v3/apps?label_selector=release&space_guids={space_a}"),
                &admin,
            )
            .await;
        assert_eq!(names(&apps.body), ["one"]);
        // Resources that carry no labels yet still match no label.
        let domains = harness
            .get("/v3/domains?label_selector=env%3Dprod", &admin)
            .await;
        assert_eq!(domains.status, 200, "{:#}", domains.body);
        assert_eq!(domains.body["pagination"]["total_results"], 0);
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_resource_deletes_its_metadata() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let labels = json!({"metadata": {"labels": {"env": "x"}, "annotations": {"note": "y"}}});
        let doomed = harness.create_org("doomed").await;
        let kept = harness.create_org("kept").await;
        let doomed_space = harness.create_space(&doomed, "s").await;
        let kept_space = harness.create_space(&kept, "s").await;
        let lone_space = harness.create_space(&kept, "lone").await;
        let mut app_guids = Vec::new();
        for (name, space) in [
            ("in-doomed", &doomed_space),
            ("kept-app", &kept_space),
            ("lone-app", &kept_space),
        ] {
            let app = harness
                .post(
                    "/v3/apps",
                    &admin,
                    json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}}),
                )
                .await;
            assert_eq!(app.status, 201, "{:#}", app.body);
            app_guids.push(app.body["guid"].as_str().unwrap().to_owned());
        }
        for path in [
            format!("/v3/organizations/{doomed}"),
            format!("/v3/organizations/{kept}"),
            format!("/v3/spaces/{doomed_space}"),
            format!("/v3/spaces/{kept_space}"),
            format!("/v3/spaces/{lone_space}"),
            format!("/v3/apps/{}", app_guids[0]),
            format!("/v3/apps/{}", app_guids[1]),
            format!("/v3/apps/{}", app_guids[2]),
        ] {
            let answer = harness.patch(&path, &admin, labels.clone()).await;
            assert_eq!(answer.status, 200, "{path}: {:#}", answer.body);
        }
        let mut all = vec![
            doomed.clone(),
            kept.clone(),
            doomed_space.clone(),
            kept_space.clone(),
            lone_space.clone(),
        ];
        all.extend(app_guids.iter().cloned());
        all.sort();
        assert_eq!(stored_metadata_guids(&harness.database), all);

        // An app on its own, a space with its app, an org with its space and app.
        for path in [
            format!("/v3/apps/{}", app_guids[2]),
            format!("/v3/spaces/{lone_space}"),
            format!("/v3/organizations/{doomed}"),
        ] {
            let deleted = harness.delete(&path, &admin).await;
            assert_eq!(deleted.status, 202, "{path}: {:#}", deleted.body);
            let job = harness
                .wait_job(&deleted.header("location").unwrap(), &admin)
                .await;
            assert_eq!(job["state"], "COMPLETE", "{path}: {job:#}");
        }
        let mut remaining = vec![kept.clone(), kept_space.clone(), app_guids[1].clone()];
        remaining.sort();
        assert_eq!(stored_metadata_guids(&harness.database), remaining);
        harness.stop().await;
    }
}
