//! Runs the real `source-convex` binary against the Convex emulator and reads what it printed.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use convex_emulator::{
    apply_changes, Config, Deployment, EmulatorServer, Format, GenerateSpec, Settings,
};
use serde_json::{json, Value};

/// No run of the binary in these tests may take longer: past it, it is a hang, killed, and
/// the test fails (memory is bounded by the connector itself: its change buffer and pages).
pub const RUN_BOUND: Duration = Duration::from_secs(300);

/// The child's output once it exits, or a failed test once `bound` has passed (the child is
/// killed first). Its pipes are drained meanwhile, so a large output cannot block it.
pub fn wait_bounded(mut child: Child, bound: Duration) -> Output {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for source-convex") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("source-convex ran longer than {bound:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

pub struct Harness {
    pub emu: EmulatorServer,
    pub dir: tempfile::TempDir,
    /// Extra config properties (timeouts, concurrency).
    pub config_extra: Value,
    /// Extra environment of the binary (`SSL_CERT_FILE`).
    pub env: Vec<(String, String)>,
}

/// Tests name the API they are about: the streaming export API unless they say otherwise
/// (`use_data_sync`, `use_auto`), so each rule is proven on the API that owns it.
fn default_config_extra() -> Value {
    json!({"api": "streaming_export"})
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub messages: Vec<Value>,
}

impl Harness {
    pub fn new(generate: GenerateSpec, settings: Settings) -> Harness {
        let emu = EmulatorServer::start(Config {
            seed: 7,
            generate,
            settings,
            ..Config::default()
        })
        .expect("emulator starts");
        Harness {
            emu,
            dir: tempfile::tempdir().unwrap(),
            config_extra: default_config_extra(),
            env: Vec::new(),
        }
    }

    /// An emulator serving `https` (HTTP/2 by ALPN) with a CA of its own, which the binary
    /// trusts the standard way: `SSL_CERT_FILE`.
    pub fn tls(generate: GenerateSpec) -> Harness {
        let emu = EmulatorServer::start(Config {
            seed: 7,
            generate,
            tls: true,
            ..Config::default()
        })
        .expect("emulator starts with TLS");
        let ca = emu
            .ca_file()
            .expect("a CA file")
            .to_string_lossy()
            .into_owned();
        Harness {
            emu,
            dir: tempfile::tempdir().unwrap(),
            config_extra: default_config_extra(),
            env: vec![("SSL_CERT_FILE".into(), ca)],
        }
    }

    pub fn with_tables(tables: usize, docs: usize, components: bool) -> Harness {
        Harness::generated(tables, docs, components, Settings::default())
    }

    pub fn generated(tables: usize, docs: usize, components: bool, settings: Settings) -> Harness {
        Harness::new(
            GenerateSpec {
                tables,
                docs,
                components,
                ..GenerateSpec::default()
            },
            settings,
        )
    }

    pub fn config_extra_concurrency(&mut self, n: u32) {
        self.config_extra["concurrency"] = json!(n);
    }

    /// Reads through Convex's Data Sync API (`api: data_sync`).
    pub fn use_data_sync(&mut self) {
        self.config_extra["api"] = json!("data_sync");
    }

    /// The Python connector's column types and values (`column_types: legacy`).
    pub fn use_legacy_columns(&mut self) {
        self.config_extra["column_types"] = json!("legacy");
    }

    pub fn use_streaming_export(&mut self) {
        self.config_extra["api"] = json!("streaming_export");
    }

    /// The config's default API (`auto`: Data Sync where served), as a user's config has it.
    pub fn use_auto(&mut self) {
        self.config_extra.as_object_mut().unwrap().remove("api");
    }

    pub fn config_extra_timeout(&mut self, secs: u64) {
        self.config_extra["request_timeout_seconds"] = json!(secs);
    }

    pub fn dep(&self) -> &Deployment {
        self.emu.deployment()
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn config_with_key(&self, key: &str) -> PathBuf {
        let mut c = json!({"deployment_url": self.emu.url(), "access_key": key});
        for (k, v) in self.config_extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        self.write("config.json", &c.to_string())
    }

    pub fn config(&self) -> PathBuf {
        self.config_with_key(self.emu.access_key())
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let child = Command::new(env!("CARGO_BIN_EXE_source-convex"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run source-convex");
        let out = wait_bounded(child, RUN_BOUND);
        let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
        let messages = stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("non-JSON stdout line {l:?}: {e}"))
            })
            .collect();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            messages,
        }
    }

    pub fn discover(&self) -> Vec<Value> {
        let config = self.config();
        let run = self.run(&["discover", "--config", config.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stdout);
        let catalogs: Vec<_> = run
            .messages
            .iter()
            .filter(|m| m["type"] == "CATALOG")
            .collect();
        assert_eq!(catalogs.len(), 1);
        catalogs[0]["catalog"]["streams"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// A configured catalog of every discovered stream in `mode`.
    pub fn catalog_all(&self, mode: &str) -> PathBuf {
        let streams: Vec<Value> = self
            .discover()
            .into_iter()
            .map(|s| json!({"stream": s, "sync_mode": mode, "destination_sync_mode": "append"}))
            .collect();
        self.write("catalog.json", &json!({ "streams": streams }).to_string())
    }

    /// A catalog of every stream whose schemas name no properties: every column is read,
    /// whatever columns appear later (a schema with fewer properties is a field selection).
    pub fn catalog_all_columns(&self, mode: &str) -> PathBuf {
        let streams: Vec<Value> = self
            .discover()
            .into_iter()
            .map(|mut s| {
                s["json_schema"] = json!({"type": "object", "additionalProperties": true});
                json!({"stream": s, "sync_mode": mode, "destination_sync_mode": "append"})
            })
            .collect();
        self.write("catalog.json", &json!({ "streams": streams }).to_string())
    }

    pub fn read(&self, catalog: &Path, state: Option<&str>) -> Run {
        let config = self.config();
        let mut args = vec![
            "read".to_owned(),
            "--config".into(),
            config.to_str().unwrap().into(),
            "--catalog".into(),
            catalog.to_str().unwrap().into(),
        ];
        if let Some(s) = state {
            let p = self.write("state.json", s);
            args.push("--state".into());
            args.push(p.to_str().unwrap().into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }
}

impl Run {
    pub fn of_type(&self, t: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m["type"] == t).collect()
    }

    /// Records' data by stream name, in output order.
    pub fn records(&self) -> BTreeMap<String, Vec<Value>> {
        let mut by: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for m in self.of_type("RECORD") {
            by.entry(m["record"]["stream"].as_str().unwrap().to_owned())
                .or_default()
                .push(m["record"]["data"].clone());
        }
        by
    }

    /// The state a platform would save after this run: the last STATE of each stream.
    pub fn saved_state(&self) -> String {
        let mut last: BTreeMap<String, Value> = BTreeMap::new();
        for m in self.of_type("STATE") {
            let d = &m["state"]["stream"]["stream_descriptor"];
            last.insert(d.to_string(), (*m).clone());
        }
        Value::Array(last.into_values().map(|m| m["state"].clone()).collect()).to_string()
    }

    /// The last `stream_state` of each stream, by descriptor.
    pub fn final_states(&self) -> BTreeMap<String, Value> {
        let mut last = BTreeMap::new();
        for m in self.of_type("STATE") {
            let d = &m["state"]["stream"]["stream_descriptor"];
            last.insert(d.to_string(), m["state"]["stream"]["stream_state"].clone());
        }
        last
    }

    pub fn statuses(&self, stream: &str) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| {
                m["trace"]["type"] == "STREAM_STATUS"
                    && m["trace"]["stream_status"]["stream_descriptor"]["name"] == stream
            })
            .map(|m| {
                m["trace"]["stream_status"]["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    pub fn errors(&self) -> Vec<&Value> {
        self.messages
            .iter()
            .filter(|m| m["trace"]["type"] == "ERROR")
            .map(|m| &m["trace"]["error"])
            .collect()
    }

    /// Protocol invariants every read must keep, whatever happened.
    pub fn assert_well_formed(&self, key: &str) {
        assert!(
            !self.stdout.contains(key) && !self.stderr.contains(key),
            "the access key leaked"
        );
        let mut since_state: BTreeMap<String, u64> = BTreeMap::new();
        let mut terminal: BTreeMap<String, String> = BTreeMap::new();
        for m in &self.messages {
            match m["type"].as_str().unwrap() {
                "RECORD" => {
                    let s = m["record"]["stream"].as_str().unwrap().to_owned();
                    assert!(
                        !terminal.contains_key(&s),
                        "record after terminal status of {s}"
                    );
                    assert!(m["record"]["emitted_at"].is_i64());
                    *since_state.entry(s).or_default() += 1;
                }
                "STATE" => {
                    assert_eq!(m["state"]["type"], "STREAM");
                    let s = m["state"]["stream"]["stream_descriptor"]["name"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    let count = m["state"]["sourceStats"]["recordCount"].as_f64().unwrap();
                    assert_eq!(
                        count as u64,
                        since_state.remove(&s).unwrap_or(0),
                        "recordCount of {s}"
                    );
                }
                "TRACE" if m["trace"]["type"] == "STREAM_STATUS" => {
                    let s = m["trace"]["stream_status"]["stream_descriptor"]["name"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    let status = m["trace"]["stream_status"]["status"].as_str().unwrap();
                    assert!(
                        !terminal.contains_key(&s),
                        "status after terminal status of {s}"
                    );
                    if status == "COMPLETE" || status == "INCOMPLETE" {
                        terminal.insert(s, status.to_owned());
                    }
                }
                "TRACE" if m["trace"]["type"] == "ANALYTICS" => {
                    assert!(m["trace"]["analytics"]["type"].is_string());
                    assert!(m["trace"]["analytics"]["value"].is_string());
                }
                "TRACE" => assert!(m["trace"]["error"]["failure_type"].is_string()),
                "LOG" => {}
                other => panic!("unexpected message type {other} in read"),
            }
        }
        let failed = terminal.values().any(|s| s == "INCOMPLETE") || !self.errors().is_empty();
        assert_eq!(
            self.code != 0,
            failed,
            "exit code {} vs reported failure",
            self.code
        );
    }
}

/// A document as the connector delivered it, minus what the connector added.
pub fn without_cdc(mut data: Value) -> Value {
    let o = data.as_object_mut().unwrap();
    for k in [
        "_ab_cdc_lsn",
        "_ab_cdc_updated_at",
        "_ab_cdc_deleted_at",
        "_deleted",
    ] {
        o.remove(k);
    }
    data
}

/// Applies records in order to a table image keyed by `_id` (upsert, or delete), the way an
/// `append_dedup` destination does.
pub fn apply(image: &mut BTreeMap<String, Value>, records: &[Value]) {
    for r in records {
        let id = r["_id"].as_str().unwrap().to_owned();
        if r["_deleted"] == true {
            image.remove(&id);
        } else {
            image.insert(id, without_cdc(r.clone()));
        }
    }
}

/// The emulator's live documents of a table, keyed by `_id`, as typed columns carry them.
pub fn live(dep: &Deployment, component: &str, table: &str) -> BTreeMap<String, Value> {
    dep.live_documents_in(component, table, Format::Export)
        .into_iter()
        .map(|d| (d["_id"].as_str().unwrap().to_owned(), typed_value(d)))
        .collect()
}

/// A value in Convex's `export_json` as typed columns carry it: bytes as their base64 string,
/// NaN and ±Infinity (which JSON cannot carry as numbers) as null, everything else as is.
pub fn typed_value(v: Value) -> Value {
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("$bytes") => o["$bytes"].clone(),
        Value::Object(o) if o.len() == 1 && o.contains_key("$float") => Value::Null,
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, typed_value(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(typed_value).collect()),
        other => other,
    }
}

/// (component, table, stream name) of every user table of the deployment.
pub fn tables(dep: &Deployment) -> Vec<(String, String, String)> {
    dep.tables()
        .into_iter()
        .map(|t| {
            let name = if t.component.is_empty() {
                t.table.clone()
            } else {
                format!("{}/{}", t.component, t.table)
            };
            (t.component, t.table, name)
        })
        .collect()
}

/// Applies `runs` in order and compares every stream with the deployment at its final
/// `delta_cursor` (the timestamp its data sync is consistent at). Streams whose sync stopped
/// in the middle of a snapshot have none yet and are skipped; returns how many were compared.
pub fn assert_exact_where_consistent(h: &Harness, runs: &[&Run]) -> usize {
    let mut image: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for run in runs {
        for (stream, records) in run.records() {
            apply(image.entry(stream).or_default(), &records);
        }
    }
    let last = runs.last().unwrap().final_states();
    let mut compared = 0;
    for (component, table, name) in tables(h.dep()) {
        let desc = json!({"name": name, "namespace": if component.is_empty() { Value::Null } else { json!(component) }});
        let Some(state) = last.get(&desc.to_string()) else {
            panic!("no final STATE for {name}");
        };
        let Some(t) = state["delta_cursor"].as_i64() else {
            continue;
        };
        compared += 1;
        let want: BTreeMap<String, Value> = h
            .dep()
            .documents_at_in(&component, &table, t, Format::Export)
            .into_iter()
            .map(|d| (d["_id"].as_str().unwrap().to_owned(), typed_value(d)))
            .collect();
        let have = image.get(&name).cloned().unwrap_or_default();
        if let Some((id, doc)) = want.iter().find(|(id, doc)| have.get(*id) != Some(*doc)) {
            panic!(
                "{name} at {t}: {id} is {doc}, the destination has {:?}",
                have.get(id)
            );
        }
        if let Some(id) = have.keys().find(|id| !want.contains_key(*id)) {
            panic!("{name} at {t}: {id} is live in the destination but not in the deployment");
        }
    }
    compared
}

/// Generated changes committed every 3 ms until stopped (at most `max` batches of 3), and,
/// with `clock_jump_every: Some(n)`, the clock moved 31 s ahead every n batches (past Convex's
/// 30 s Data Sync freshness window).
pub struct BackgroundWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl BackgroundWriter {
    pub fn start(dep: &Deployment, seed: u64, max: u64, clock_jump_every: Option<u64>) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dep, flag) = (dep.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while !flag.load(Ordering::SeqCst) && i < max {
                apply_changes(&dep, 3, seed + i).unwrap();
                if clock_jump_every.is_some_and(|n| i % n == 0) {
                    dep.advance_clock(std::time::Duration::from_secs(31));
                }
                std::thread::sleep(std::time::Duration::from_millis(3));
                i += 1;
            }
        });
        BackgroundWriter { stop, thread }
    }

    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap();
    }
}

/// Fails if a read sent one `_id` twice in a stream.
pub fn assert_no_id_twice(run: &Run, what: &str) {
    for (name, records) in run.records() {
        let mut ids: Vec<&str> = records.iter().map(|r| r["_id"].as_str().unwrap()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{what}: an _id twice in {name}");
    }
}
