//! Runs the real `source-convex` binary against a deployment (the Convex emulator here, or
//! `hostile.rs`'s scripted server) and reads what it printed; `oracle` is the merging
//! destination every Rust test compares reads with (shared with the engine's tests).
#![allow(dead_code)] // each test file uses its own subset

pub mod oracle;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use convex_emulator::{apply_changes, Config, Deployment, EmulatorServer, GenerateSpec, Settings};
use serde_json::{json, Value};

#[allow(unused_imports)] // each test file uses its own subset
pub use oracle::{documents_at, state_after, without_cdc, MergingDestination};

/// No run of the binary in these tests may take longer: past it, it is a hang, killed, and
/// the test fails (memory is bounded by the connector itself: its change buffer and pages).
pub const RUN_BOUND: Duration = Duration::from_secs(300);

/// The child's output once it exits, or a failed test once `bound` has passed (the child is
/// killed first). Its pipes (those still piped) are drained meanwhile, so a large output
/// cannot block it.
pub fn wait_bounded(mut child: Child, bound: Duration) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut b);
            }
            b
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
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

/// Runs the binary against one deployment: the files it reads (config, catalog, state) in a
/// directory of its own, its environment, and what no run may print.
pub struct Binary {
    pub url: String,
    pub dir: tempfile::TempDir,
    /// The executable.
    pub path: String,
    /// Extra environment (`SSL_CERT_FILE`).
    pub env: Vec<(String, String)>,
    /// Past this a run is a hang ([`RUN_BOUND`] unless set).
    pub bound: Duration,
    /// Strings no run may print, on stdout or stderr: checked on every run.
    pub secrets: Vec<String>,
}

impl Binary {
    pub fn new(url: &str) -> Binary {
        Binary {
            url: url.to_owned(),
            dir: tempfile::tempdir().unwrap(),
            path: env!("CARGO_BIN_EXE_source-convex").to_owned(),
            env: Vec::new(),
            bound: RUN_BOUND,
            secrets: Vec::new(),
        }
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// `config.json`: the deployment, `key`, and the properties of `extra`.
    pub fn config(&self, key: &str, extra: &Value) -> PathBuf {
        let mut c = json!({"deployment_url": self.url, "access_key": key});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        self.write("config.json", &c.to_string())
    }

    /// Starts the binary with stdout and stderr piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(&self.path)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run source-convex")
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let out = wait_bounded(self.spawn(args), self.bound);
        // `catalog` prints a configured catalog; every other command Airbyte messages.
        let messages = args.first() != Some(&"catalog");
        Run::from(out, started.elapsed(), &self.secrets, messages)
    }

    /// `read` with this config and catalog, and `state` (written to a file) if any.
    pub fn read(&self, config: &Path, catalog: &Path, state: Option<&str>) -> Run {
        let state = state.map(|s| self.write("state.json", s));
        self.read_files(config, catalog, state.as_deref())
    }

    /// `read` with this config and catalog, and the state file `state` if any.
    pub fn read_files(&self, config: &Path, catalog: &Path, state: Option<&Path>) -> Run {
        let mut args = vec![
            "read",
            "--config",
            config.to_str().unwrap(),
            "--catalog",
            catalog.to_str().unwrap(),
        ];
        if let Some(p) = state {
            args.extend(["--state", p.to_str().unwrap()]);
        }
        self.run(&args)
    }
}

/// The binary against the emulator.
pub struct Harness {
    pub emu: EmulatorServer,
    pub bin: Binary,
    /// Extra config properties (timeouts, concurrency).
    pub config_extra: Value,
}

/// Tests name the API they are about: the streaming export API unless they say otherwise
/// (`use_data_sync`, `use_auto`), so each rule is proven on the API that owns it.
fn default_config_extra() -> Value {
    json!({"api": "streaming_export"})
}

/// What a run printed, parsed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub messages: Vec<Value>,
    pub elapsed: Duration,
}

impl AsRef<[Value]> for Run {
    fn as_ref(&self) -> &[Value] {
        &self.messages
    }
}

impl Harness {
    pub fn new(generate: GenerateSpec, settings: Settings) -> Harness {
        Harness::serving(Config {
            seed: 7,
            generate,
            settings,
            ..Config::default()
        })
    }

    fn serving(config: Config) -> Harness {
        let emu = EmulatorServer::start(config).expect("emulator starts");
        let bin = Binary::new(emu.url());
        Harness {
            emu,
            bin,
            config_extra: default_config_extra(),
        }
    }

    /// An emulator serving `https` (HTTP/2 by ALPN) with a CA of its own, which the binary
    /// trusts the standard way: `SSL_CERT_FILE`.
    pub fn tls(generate: GenerateSpec) -> Harness {
        let mut h = Harness::serving(Config {
            seed: 7,
            generate,
            tls: true,
            ..Config::default()
        });
        let ca = h.emu.ca_file().expect("a CA file");
        let ca = ca.to_string_lossy().into_owned();
        h.bin.env.push(("SSL_CERT_FILE".into(), ca));
        h
    }

    pub fn with_tables(tables: usize, docs: usize, components: bool) -> Harness {
        Harness::generated(tables, docs, components, Settings::default())
    }

    /// Generated tables on a deployment whose default settings `f` changes.
    pub fn with_settings(
        tables: usize,
        docs: usize,
        components: bool,
        f: impl FnOnce(&mut Settings),
    ) -> Harness {
        let mut settings = Settings::default();
        f(&mut settings);
        Harness::generated(tables, docs, components, settings)
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

    /// Reads through the Data Sync API if `yes`, else the streaming export API.
    pub fn use_data_sync_if(&mut self, yes: bool) {
        if yes {
            self.use_data_sync();
        } else {
            self.use_streaming_export();
        }
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
        self.bin.write(name, content)
    }

    pub fn config_with_key(&self, key: &str) -> PathBuf {
        self.bin.config(key, &self.config_extra)
    }

    pub fn config(&self) -> PathBuf {
        self.config_with_key(self.emu.access_key())
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.bin.run(args)
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
        self.bin.read(&self.config(), catalog, state)
    }

    /// A first read of every stream, incremental, from the start; it succeeded. Returns its
    /// catalog and the read.
    pub fn read_all(&self) -> (PathBuf, Run) {
        let catalog = self.catalog_all("incremental");
        let first = self.read(&catalog, Some("[]"));
        assert_eq!(first.code, 0, "{}", first.stdout);
        (catalog, first)
    }
}

impl Run {
    /// Parses a run, asserting what must hold whatever the deployment did: stdout is UTF-8,
    /// every line of it one JSON value (an Airbyte message, with `messages`), no `secrets`
    /// anywhere, no panic.
    pub fn from(out: Output, elapsed: Duration, secrets: &[String], messages: bool) -> Run {
        let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for text in [&stdout, &stderr] {
            for secret in secrets {
                assert!(!text.contains(secret.as_str()), "a secret leaked:\n{text}");
            }
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        let messages = stdout
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("non-JSON stdout line {l:?}: {e}"));
                assert!(!messages || v["type"].is_string(), "{l}");
                v
            })
            .collect();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            messages,
            elapsed,
        }
    }

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

    /// The LOG messages of `level`.
    pub fn logs(&self, level: &str) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|m| m["log"]["level"] == level)
            .map(|m| m["log"]["message"].as_str().unwrap())
            .collect()
    }

    /// The only TRACE ERROR: (failure type, "message | internal message").
    pub fn error(&self) -> (String, String) {
        let errors = self.errors();
        assert_eq!(errors.len(), 1, "{}", self.stdout);
        let e = errors[0];
        (
            e["failure_type"].as_str().unwrap().to_owned(),
            format!("{} | {}", e["message"], e["internal_message"]),
        )
    }

    /// `check`'s answer: (status, message).
    pub fn check_status(&self) -> (String, String) {
        let s = self.of_type("CONNECTION_STATUS");
        assert_eq!(s.len(), 1, "{}", self.stdout);
        let cs = &s[0]["connectionStatus"];
        (
            cs["status"].as_str().unwrap().to_owned(),
            cs["message"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// A failed read of one stream: exit 1, the stream INCOMPLETE, no STATE, one TRACE ERROR of
    /// `kind`. Returns the error's text.
    pub fn assert_failed(&self, stream: &str, kind: &str) -> String {
        assert_eq!(self.code, 1, "{}", self.stdout);
        assert_eq!(
            self.statuses(stream).last().map(String::as_str),
            Some("INCOMPLETE"),
            "{}",
            self.stdout
        );
        assert!(self.of_type("STATE").is_empty(), "{}", self.stdout);
        let (failure, message) = self.error();
        assert_eq!(failure, kind, "{message}");
        message
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
                    let s = name_of(&m["state"]["stream"]);
                    let count = m["state"]["sourceStats"]["recordCount"].as_f64().unwrap();
                    assert_eq!(
                        count as u64,
                        since_state.remove(&s).unwrap_or(0),
                        "recordCount of {s}"
                    );
                }
                "TRACE" if m["trace"]["type"] == "STREAM_STATUS" => {
                    let s = name_of(&m["trace"]["stream_status"]);
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

/// The stream name of a STATE's `stream` or a TRACE's `stream_status`.
fn name_of(v: &Value) -> String {
    v["stream_descriptor"]["name"].as_str().unwrap().to_owned()
}

/// The emulator's live documents of a table, keyed by `_id`, as typed columns carry them.
pub fn live(dep: &Deployment, component: &str, table: &str) -> BTreeMap<String, Value> {
    documents_at(dep, component, table, dep.head())
}

/// Asserts that `reads`, merged one after another, hold every table of the deployment exactly
/// as it is now.
pub fn assert_matches_live<R: AsRef<[Value]>>(h: &Harness, reads: &[R]) {
    let dest = MergingDestination::of_reads(reads.iter().map(AsRef::as_ref));
    for (component, table, name) in tables(h.dep()) {
        let head = h.dep().head();
        dest.assert_matches(h.dep(), &name, (&component, &table), head, "now");
    }
}

/// Asserts that `reads`, merged one after another, hold the tables of the streams `only`
/// names exactly as they are now (each name a table of the deployment).
pub fn assert_streams_match_live<R: AsRef<[Value]>>(h: &Harness, reads: &[R], only: &[&str]) {
    let dest = MergingDestination::of_reads(reads.iter().map(AsRef::as_ref));
    let head = h.dep().head();
    let mut compared = 0;
    for (component, table, name) in tables(h.dep()) {
        if only.contains(&name.as_str()) {
            dest.assert_matches(h.dep(), &name, (&component, &table), head, "now");
            compared += 1;
        }
    }
    assert_eq!(
        compared,
        only.len(),
        "{only:?} are tables of the deployment"
    );
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

/// Merges `runs` in order and compares every stream with the deployment at its final
/// `delta_cursor` (the timestamp its data sync is consistent at). Streams whose sync stopped
/// in the middle of a snapshot have none yet and are skipped; returns how many were compared.
pub fn assert_exact_where_consistent(h: &Harness, runs: &[&Run]) -> usize {
    let dest = MergingDestination::of_reads(runs.iter().map(|r| r.as_ref()));
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
        dest.assert_matches(h.dep(), &name, (&component, &table), t, "consistent");
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
    MergingDestination::default().merge(&run.messages, what);
}
