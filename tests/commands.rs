//! spec, check and discover of the real binary, against the emulator.

// Test helpers outside #[test] fns may unwrap and panic too (clippy.toml covers only those fns).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::Path;

use common::Harness;
use convex_emulator::{FaultKind, FaultRule};
use serde_json::{json, Value};

#[test]
fn spec_prints_spec_json_and_keeps_the_python_connectors_contract() {
    let h = Harness::with_tables(0, 0, false);
    let run = h.run(&["spec"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.messages.len(), 1);
    assert_eq!(run.stdout.lines().count(), 1);
    let spec = &run.messages[0]["spec"];
    let file: Value = serde_json::from_str(include_str!("../spec.json")).unwrap();
    assert_eq!(*spec, file);
    // The 0.4.51 contract, key by key.
    let cs = &spec["connectionSpecification"];
    assert_eq!(cs["type"], "object");
    assert_eq!(
        spec["documentationUrl"],
        "https://docs.airbyte.com/integrations/sources/convex"
    );
    assert_eq!(cs["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(cs["required"], json!(["deployment_url", "access_key"]));
    assert_eq!(cs["additionalProperties"], true);
    assert_eq!(cs["title"], "Convex Source Spec");
    assert_eq!(
        cs["properties"]["deployment_url"],
        json!({"type": "string", "title": "Deployment Url", "examples": ["https://murky-swan-635.convex.cloud", "https://cluttered-owl-337.convex.cloud"]})
    );
    assert_eq!(
        cs["properties"]["access_key"],
        json!({"type": "string", "title": "Access Key", "description": "API access key used to retrieve data from Convex.", "airbyte_secret": true})
    );
    // Only access_key is secret; added properties are optional.
    for (name, p) in cs["properties"].as_object().unwrap() {
        assert_eq!(
            p.get("airbyte_secret").is_some(),
            name == "access_key",
            "{name}"
        );
    }
}

#[test]
fn usage_errors_go_to_stderr_with_exit_2() {
    let h = Harness::with_tables(0, 0, false);
    // No arguments at all, an unknown command, missing options.
    for args in [&[][..], &["bogus"], &["check"], &["read", "--config", "x"]] {
        let run = h.run(args);
        assert_eq!(run.code, 2, "{args:?}");
        assert!(run.stdout.is_empty());
        assert!(!run.stderr.is_empty());
    }
    // --debug is accepted before or after the subcommand.
    assert_eq!(h.run(&["--debug", "spec"]).code, 0);
    assert_eq!(h.run(&["spec", "--debug"]).code, 0);
}

fn check(h: &Harness, config: &std::path::Path) -> (i32, Value, String) {
    let run = h.run(&["check", "--config", config.to_str().unwrap()]);
    let statuses: Vec<_> = run
        .of_type("CONNECTION_STATUS")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(statuses.len(), 1, "{}", run.stdout);
    (
        run.code,
        statuses[0]["connectionStatus"].clone(),
        run.stdout + &run.stderr,
    )
}

#[test]
fn check_succeeds_with_one_json_schemas_request_and_the_client_header() {
    let h = Harness::with_tables(2, 3, false);
    let (code, status, _) = check(&h, &h.config());
    assert_eq!(code, 0);
    assert_eq!(status, json!({"status": "SUCCEEDED"}));
    let log = h.dep().request_log();
    assert_eq!(log.len(), 1);
    assert!(
        log[0]
            .uri
            .starts_with("/api/json_schemas?deltaSchema=true&format=json"),
        "{}",
        log[0].uri
    );
}

#[test]
fn check_failures_are_answers_a_person_can_act_on() {
    let h = Harness::with_tables(1, 1, false);
    let secret = "prod:wrong-key-0123456789abcdef";
    let (code, status, all) = check(&h, &h.config_with_key(secret));
    assert_eq!(code, 0);
    assert_eq!(status["status"], "FAILED");
    let msg = status["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Connection to Convex via json_schemas endpoint failed: 401: BadAdminKey:"),
        "{msg}"
    );
    assert!(msg.contains("generate a deploy key"), "{msg}");
    assert!(!all.contains(secret), "the key leaked");

    let missing = h.write(
        "missing.json",
        &json!({"deployment_url": h.emu.url()}).to_string(),
    );
    let (code, status, _) = check(&h, &missing);
    assert_eq!(code, 0);
    assert_eq!(
        status["message"],
        "Config validation error: 'access_key' is a required property"
    );

    h.dep()
        .update_settings(|s| s.streaming_export_enabled = false);
    let (_, status, _) = check(&h, &h.config());
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("StreamingExportNotEnabled"));
    h.dep()
        .update_settings(|s| s.streaming_export_enabled = true);

    // Nothing listening: a clear connection failure, quickly.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = h.write(
        "dead.json",
        &json!({"deployment_url": format!("http://127.0.0.1:{port}"), "access_key": "k"})
            .to_string(),
    );
    let started = std::time::Instant::now();
    let (code, status, _) = check(&h, &dead);
    assert_eq!(code, 0);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{status}"
    );
    assert!(started.elapsed().as_secs() < 20);
}

#[test]
fn check_survives_a_transient_failure() {
    let h = Harness::with_tables(1, 1, false);
    h.dep()
        .add_fault(FaultRule::status("json_schemas", 503, "Overloaded", "busy").times(1))
        .unwrap();
    let (_, status, _) = check(&h, &h.config());
    assert_eq!(status["status"], "SUCCEEDED");
    h.dep()
        .add_fault(
            FaultRule {
                status: Some(502),
                ..FaultRule::new("json_schemas", FaultKind::Html)
            }
            .times(1),
        )
        .unwrap();
    let (_, status, _) = check(&h, &h.config());
    assert_eq!(status["status"], "SUCCEEDED");
}

#[test]
fn a_deployment_under_a_path_prefix_and_a_trailing_slash_works() {
    let h = Harness::with_tables(1, 1, false);
    let cfg = h.write(
        "slash.json",
        &json!({"deployment_url": format!("{}/", h.emu.url()), "access_key": h.emu.access_key()})
            .to_string(),
    );
    let (_, status, _) = check(&h, &cfg);
    assert_eq!(status["status"], "SUCCEEDED");
}

#[test]
fn discover_lists_root_tables_like_before_and_components_as_namespaced_streams() {
    let mut h = Harness::with_tables(2, 5, true);
    let typed = h.discover();
    h.use_legacy_columns();
    let legacy = h.discover();
    for (streams, legacy) in [(typed, false), (legacy, true)] {
        discovered_streams_are_the_tables(&h, &streams, legacy);
    }
}

fn discovered_streams_are_the_tables(h: &Harness, streams: &[Value], legacy: bool) {
    let names: Vec<(String, Option<String>)> = streams
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["namespace"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let expected: Vec<(String, Option<String>)> = common::tables(h.dep())
        .into_iter()
        .map(|(c, _, name)| (name, (!c.is_empty()).then_some(c)))
        .collect();
    let mut a = names.clone();
    let mut b = expected;
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // The root `users` table and the component's `users` table are distinct streams.
    assert!(names.contains(&("users".into(), None)));
    assert!(names.contains(&("betterAuth/users".into(), Some("betterAuth".into()))));
    for s in streams {
        assert_eq!(
            s["supported_sync_modes"],
            json!(["full_refresh", "incremental"])
        );
        assert_eq!(s["source_defined_cursor"], true);
        assert_eq!(s["default_cursor_field"], json!(["_ts"]));
        assert_eq!(s["source_defined_primary_key"], json!([["_id"]]));
        let schema = &s["json_schema"];
        assert_eq!(schema["additionalProperties"], true);
        assert_eq!(
            schema["properties"]["_ab_cdc_lsn"],
            json!({"type": "integer"})
        );
        let when = if legacy {
            json!({"type": "string"})
        } else {
            json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"})
        };
        assert_eq!(schema["properties"]["_ab_cdc_updated_at"], when);
        let mut deleted_at = when;
        deleted_at["type"] = json!(["null", "string"]);
        assert_eq!(schema["properties"]["_ab_cdc_deleted_at"], deleted_at);
        assert_eq!(schema["properties"]["_ts"], json!({"type": "integer"}));
        for meta in ["_id", "_table", "_component", "_deleted"] {
            assert!(schema["properties"].get(meta).is_some(), "{meta} in {s}");
        }
        if !legacy {
            // Typed: one type each, no `anyOf`, for the system fields.
            for field in ["_id", "_ts", "_creationTime"] {
                let p = &schema["properties"][field];
                assert!(!p.to_string().contains("anyOf"), "{field}: {p}");
            }
        }
        // Delete records carry only metadata, and every record must satisfy the schema.
        let required = schema.get("required").and_then(Value::as_array);
        assert!(
            required.into_iter().flatten().all(|r| r == "_id"),
            "required: {}",
            schema["required"]
        );
        assert!(!schema
            .to_string()
            .contains("\"additionalProperties\":false"));
        jsonschema::draft7::new(schema).expect("valid draft-07");
    }
}

#[test]
fn discover_with_a_bad_key_is_a_config_error_trace() {
    let h = Harness::with_tables(1, 1, false);
    let cfg = h.config_with_key("nope-nope-nope-nope");
    let run = h.run(&["discover", "--config", cfg.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.of_type("CATALOG").is_empty());
    let errs = run.errors();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0]["failure_type"], "config_error");
    assert!(!run.stdout.contains("nope-nope-nope-nope"));
    assert!(!run.stderr.contains("nope-nope-nope-nope"));
}

/// With `api: data_sync`, `check` also proves the deployment serves the Data Sync API to this
/// key (a conversion of the head for no table: nothing read, no sync started), and says what
/// to do when it does not.
#[test]
fn check_on_data_sync_proves_the_api_and_names_the_way_out() {
    let mut h = Harness::with_tables(1, 3, false);
    h.use_data_sync();
    let (code, status, _) = check(&h, &h.config());
    assert_eq!((code, &status), (0, &json!({"status": "SUCCEEDED"})));
    let served: Vec<String> = h
        .dep()
        .request_log()
        .into_iter()
        .map(|r| r.endpoint)
        .collect();
    assert!(
        served.contains(&"data_sync_cursor_from_deltas".to_owned()),
        "{served:?}"
    );
    assert!(
        !served.contains(&"data_sync".to_owned()),
        "no sync started: {served:?}"
    );
    // A backend without the Data Sync API (an older self-hosted one) answers 404.
    h.dep()
        .add_fault(FaultRule::status(
            "data_sync_cursor_from_deltas",
            404,
            "NotFound",
            "No route",
        ))
        .unwrap();
    let (code, status, _) = check(&h, &h.config());
    assert_eq!(code, 0);
    assert_eq!(status["status"], "FAILED");
    let msg = status["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "Connection to Convex's Data Sync API (api: data_sync) failed: 404: NotFound"
        ) && msg.contains("set api to streaming_export"),
        "{msg}"
    );
    // The default API does not touch it.
    h.use_streaming_export();
    let (_, status, _) = check(&h, &h.config());
    assert_eq!(status["status"], "SUCCEEDED");
}

/// The CLI's own steps for a person at a terminal: `catalog` writes a configured catalog
/// (`read` takes it, or a bare list of its streams); discover's output given as a catalog is
/// refused with the right form; `read`'s own output is a state (its STATE lines, one per line,
/// the rest passed over); a mistyped option value names the allowed ones.
#[test]
fn the_cli_forgives_what_is_unambiguous_and_says_the_fix_otherwise() {
    let h = Harness::with_tables(2, 5, false);
    let config = h.config();
    let config = config.to_str().unwrap();
    let made = h.run(&["catalog", "--config", config]);
    assert_eq!(made.code, 0, "{}", made.stdout);
    let catalog: Value = serde_json::from_str(&made.stdout).unwrap();
    let streams = catalog["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    assert!(streams
        .iter()
        .all(|s| s["sync_mode"] == "incremental" && s["destination_sync_mode"] == "append_dedup"));
    let one = h.run(&[
        "catalog",
        "--config",
        config,
        "--sync-mode",
        "full-refresh",
        "--streams",
        "users",
    ]);
    let one: Value = serde_json::from_str(&one.stdout).unwrap();
    assert_eq!(one["streams"].as_array().unwrap().len(), 1);
    assert_eq!(one["streams"][0]["sync_mode"], "full_refresh");
    let typo = h.run(&["catalog", "--config", config, "--streams", "usres"]);
    assert_eq!(typo.code, 1);
    assert!(
        typo.stdout.contains(r#"did you mean \"users\"?"#),
        "{}",
        typo.stdout
    );

    // `read` takes the file `catalog` wrote, and a bare list of its streams.
    let file = h.write("configured.json", &made.stdout);
    let first = h.bin.read(Path::new(config), &file, None);
    assert_eq!(first.code, 0, "{}", first.stdout);
    assert_eq!(first.records().values().map(Vec::len).sum::<usize>(), 10);
    let bare = h.write("bare.json", &catalog["streams"].to_string());
    let again = h.bin.read(Path::new(config), &bare, None);
    assert_eq!(again.code, 0, "{}", again.stdout);

    // discover's output is not a configured catalog: the error shows the form and the command.
    let discovered = h.run(&["discover", "--config", config]);
    let wrong = h.write("discovered.json", &discovered.stdout);
    let refused = h.bin.read(Path::new(config), &wrong, None);
    assert_eq!(refused.code, 1);
    let message = refused.errors()[0]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("discover's output") && message.contains("source-convex catalog"),
        "{message}"
    );

    // The whole output of the first read, as it was printed, resumes exactly: nothing new.
    let resumed = h.bin.read(Path::new(config), &file, Some(&first.stdout));
    assert_eq!(resumed.code, 0, "{}", resumed.stdout);
    assert!(
        resumed.records().values().all(Vec::is_empty),
        "{}",
        resumed.stdout
    );
    assert!(
        !resumed.stdout.contains(r#""level":"WARN""#),
        "{}",
        resumed.stdout
    );

    // A value outside an option's list names the list.
    let bad = h.write(
        "bad-config.json",
        &json!({"deployment_url": h.emu.url(), "access_key": h.emu.access_key(), "api": "datasync"})
            .to_string(),
    );
    let check = h.run(&["check", "--config", bad.to_str().unwrap()]);
    assert!(
        check
            .stdout
            .contains(r#"'api' must be one of [\"auto\",\"streaming_export\",\"data_sync\"]"#),
        "{}",
        check.stdout
    );
}
