"""The real binary through the strict protocol checker (checker.py: the airbyte-protocol
models plus what real consumers rely on), against the emulator.

The CLI contract itself (exit codes, usage errors, check's answers, bad keys, bad catalogs,
bad states) is tested where it is owned, in the Rust tests (tests/commands.rs, tests/read.rs,
tests/hostile.rs). This file keeps one smoke test per command family through the checker
(spec, check, discover, read), what only Python can show (the connector directory files the
CDK reads, records byte for byte against Convex's own answer, the state PyAirbyte writes),
and the cases below marked "until tests/*.rs asserts ...": those have an assertion the Rust
tests lack so far.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from checker import check_output
from emulator import COLUMN_TYPES, Emulator, typed_truth
from harness import IT_DIR, Connector, configured_catalog, strict
from oracle import MergingDestination, assert_destination_exact

pytestmark = pytest.mark.conformance

CDC_FIELDS = ("_ab_cdc_lsn", "_ab_cdc_updated_at", "_deleted", "_ab_cdc_deleted_at")
WRONG_KEY = "definitely-wrong-key-123"


class Session(Connector):
    """A Connector for one emulator whose every run goes through the checker."""

    def __init__(self, emu: Emulator, tmp: Path, column_types: str = "typed",
                 api: str | None = None):
        """`column_types`: `typed` leaves the property out (the default must be typed);
        `legacy` sets it. `api`: set for a test about one API's pages (else the default,
        `auto`, as users have it)."""
        extra = {"column_types": "legacy"} if column_types == "legacy" else {}
        if api:
            extra["api"] = api
        super().__init__(tmp, emu.config(**extra))
        self.emu = emu
        self.column_types = column_types

    def checked(self, command: str, *, expect_ok: bool = True, secrets=(), **files):
        """Runs `command` (`config=`, `catalog=`, `state=`, `extra=`) and checks its output
        (no key of `secrets` or this deployment's in it); `expect_ok`: exit 0, else non-zero."""
        run = self.command(command, **files)
        catalog = files.get("catalog")
        if isinstance(catalog, Path):
            catalog = json.loads(catalog.read_text())
        report = check_output(command, run.stdout, run.stderr, run.exit_code,
                              configured_catalog=catalog,
                              secrets=[self.emu.access_key, *secrets])
        assert report.ok, report.summary() + "\n" + run.describe()
        assert (run.exit_code == 0) == expect_ok, run.describe()
        return run, report

    def discover(self) -> dict:
        _, report = self.checked("discover")
        return report.of_type("CATALOG")[0]["catalog"]


@pytest.fixture
def session(emulator_factory, tmp_path):
    def make(column_types: str = "typed", api: str | None = None, **kwargs) -> Session:
        return Session(emulator_factory(**kwargs), tmp_path, column_types, api)
    return make


def strip_cdc(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in CDC_FIELDS}


def by_stream_name(report) -> dict:
    return {name: recs for (ns, name), recs in report.records_by_stream().items()}


def assert_matches_live(run, s: Session, streams=None) -> None:
    """`run`'s records, merged by `_id`, are the emulator's live documents record for record
    (values exact, no key more or less, CDC fields of a live document), each sent once."""
    live = {name: docs for name, docs in s.emu.live(s.column_types).items()
            if streams is None or name in streams}
    assert_destination_exact(f"{run.argv[1:]}", MergingDestination().apply(run), live,
                             equal=strict(), runs=[run], column_types=s.column_types)


def last_states(report) -> list:
    """The last STATE of each stream, as a list (a state file)."""
    last = {}
    for state in report.states:
        d = state["stream"]["stream_descriptor"]
        last[(d.get("namespace"), d["name"])] = state
    return list(last.values())


def pyairbyte_state(report) -> str:
    """The final STATE of each stream as PyAirbyte writes its state file: a JSON array over
    several lines, nulls, extra keys and a duplicated `global_` key in each object."""
    parts = []
    for state in last_states(report):
        desc = state["stream"]["stream_descriptor"]
        stream = {"stream_descriptor": {"name": desc["name"], "namespace": desc.get("namespace")},
                  "stream_state": state["stream"]["stream_state"]}
        body = json.dumps({"type": "STREAM", "stream": stream, "global_": None})[:-1]
        parts.append(body + ', "global_": null, "data": null, "sourceStats": '
                     '{"recordCount": 5.0, "rejectedRecordCount": null}, '
                     '"destinationStats": null}')
    return "[" + "\n, ".join(parts) + "]"


# -- smoke: one test per command family --------------------------------------------------------

@pytest.mark.parametrize("argv", [["spec"], ["--debug", "spec"], ["spec", "--debug"]])
def test_spec(binaries, tmp_path, argv):
    """tests/commands.rs holds spec's contract (spec.json, key by key) and `--debug` in both
    places; here the output, with and without it, passes the checker. And, until
    tests/commands.rs asserts it: the connection specification is an object schema."""
    run = Connector(tmp_path).run(argv)
    report = check_output("spec", run.stdout, run.stderr, run.exit_code)
    assert run.exit_code == 0 and report.ok, report.summary() + run.describe()
    assert report.of_type("SPEC")[0]["spec"]["connectionSpecification"]["type"] == "object"


def test_check_succeeds(session):
    s = session(tables=2, docs=5)
    _, report = s.checked("check")
    assert report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"


@pytest.mark.parametrize("column_types", COLUMN_TYPES)
def test_discover_streams_and_schemas(session, column_types):
    """tests/commands.rs holds the streams, sync modes, cursor, key and CDC columns of both
    column types; here the catalog passes the checker. And, until tests/commands.rs asserts
    them: the metadata columns, no `anyOf` in `_id`/`_ts`/`_creationTime` (typed) and at most
    `_id` required (delete records carry only metadata)."""
    s = session(tables=3, docs=5, components=True, column_types=column_types)
    catalog = s.discover()
    assert {st["name"] for st in catalog["streams"]} == set(s.emu.streams())
    for st in catalog["streams"]:
        schema = st["json_schema"]
        props = schema["properties"]
        for meta in ("_id", "_ts", "_table", "_component", "_deleted", "_ab_cdc_lsn"):
            assert meta in props, (st["name"], meta)
        if column_types == "typed":
            assert "anyOf" not in json.dumps({k: v for k, v in props.items()
                                              if k in ("_id", "_ts", "_creationTime")})
        assert set(schema.get("required", [])) <= {"_id"}, \
            "delete records carry only metadata, and every record must satisfy the discovered " \
            "schema: required must be at most _id"


@pytest.mark.parametrize("column_types", COLUMN_TYPES)
@pytest.mark.parametrize("components", [False, True], ids=["root", "components"])
def test_read_snapshot_matches_documents(session, components, column_types):
    s = session(tables=3, docs=30, components=components, seed=5, column_types=column_types)
    catalog = configured_catalog(s.discover())
    run, report = s.checked("read", catalog=catalog, state=[])
    assert_matches_live(run, s)
    assert set(report.terminal_statuses().values()) == {"COMPLETE"}
    # JSON text of values passes through unchanged: big integers and floats.
    assert b'"_ts":1' in run.stdout


# -- what only this side shows -----------------------------------------------------------------

@pytest.mark.parametrize("column_types", COLUMN_TYPES)
def test_read_passes_api_bytes_through(session, column_types):
    """Records carry Convex's values exactly (no float reformatting, no int64 rounding):
    compared with list_snapshot's own response, fetched here page by page. `legacy`: the
    `json` format, byte for byte (the Python connector's records). `typed`: the
    `export_json` format, `$bytes` as base64 text and `$float` as null (typed_truth); the
    bytes of each document without such a value pass through unchanged."""
    s = session(tables=2, docs=300, seed=5, column_types=column_types, api="streaming_export")
    fmt = "json" if column_types == "legacy" else "export_json"
    catalog = configured_catalog(s.discover())
    run, report = s.checked("read", catalog=catalog, state=[])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _component, table in s.emu.tables():
        api, cursor, snapshot = {}, None, None
        while True:
            q = {"tableName": table, "format": fmt}
            if cursor:
                q.update(cursor=cursor, snapshot=snapshot)
            req = urllib.request.Request(
                f"{s.emu.url}/api/list_snapshot?{urllib.parse.urlencode(q)}",
                headers={"Authorization": f"Convex {s.emu.access_key}"})
            page = json.loads(opener.open(req, timeout=60).read())
            api.update({d["_id"]: d for d in page["values"]})
            cursor, snapshot = page["cursor"], page["snapshot"]
            if not page["hasMore"]:
                break
        recs = {r["_id"]: strip_cdc(r) for r in by_stream_name(report)[table]}
        assert recs.keys() == api.keys()
        converted = 0
        for _id, doc in api.items():
            want = doc if column_types == "legacy" else typed_truth(doc)
            assert recs[_id] == want, f"{table} {_id}:\n{recs[_id]}\n{want}"
            if want != doc:
                converted += 1
                continue
            raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
            assert raw[:-1].encode() in run.stdout, "record bytes differ from the API's"
        if column_types == "legacy":
            assert converted == 0


def test_incremental_reads_take_the_state_pyairbyte_writes(session):
    """tests/read.rs holds incremental reads (only the changes, deletes, each once, the
    content exact); here the second read resumes from the state file as PyAirbyte writes it
    (until tests/read.rs reads such a file end to end), and a component table's change
    arrives in its own stream."""
    s = session(tables=2, docs=40, components=True, seed=3)
    catalog = configured_catalog(s.discover())
    first_run, first = s.checked("read", catalog=catalog, state=[])
    assert_matches_live(first_run, s)
    ids = sorted(s.emu.documents("", "users"))
    tx = [
        [{"op": "insert", "component": "", "table": "users",
          "doc": {"name": "new-user", "age": 42.0, "tags": ["a", "b"]}}],
        [{"op": "patch", "component": "", "table": "users", "id": ids[0],
          "fields": {"name": "patched"}}],
        [{"op": "delete", "component": "", "table": "users", "id": ids[1]}],
        [{"op": "insert", "component": "betterAuth", "table": "users",
          "doc": {"name": "component-user"}}],
    ]
    for ops in tx:
        s.emu.transaction(ops)
    _, second = s.checked("read", catalog=catalog, state=pyairbyte_state(first))
    got = by_stream_name(second)
    root = got.get("users", [])
    assert len(root) == 3, root
    inserted = [r for r in root if r.get("name") == "new-user"]
    patched = [r for r in root if r["_id"] == ids[0]]
    deleted = [r for r in root if r["_id"] == ids[1]]
    assert inserted and patched and deleted, root
    assert patched[0]["name"] == "patched" and patched[0]["_deleted"] is False
    assert deleted[0]["_deleted"] is True
    assert deleted[0]["_ab_cdc_deleted_at"] == deleted[0]["_ab_cdc_updated_at"]
    comp = got.get("betterAuth/users", [])
    assert [r["name"] for r in comp] == ["component-user"]
    others = {k: v for k, v in got.items() if k not in ("users", "betterAuth/users")}
    assert not any(others.values()), f"unexpected records: {others}"
    assert set(second.terminal_statuses().values()) == {"COMPLETE"}
    # Nothing new: a third read emits no records, a final STATE per stream.
    _, third = s.checked("read", catalog=catalog, state=last_states(second))
    assert not third.records
    assert len(third.final_states()) == len(catalog["streams"])


@pytest.mark.parametrize("form", ["empty-array", "empty-file", "whitespace", "legacy-object",
                                  "no-state-arg", "null-stream-state", "unknown-stream"])
def test_state_input_forms_start_from_scratch(session, form):
    """Until tests/read.rs reads each of these end to end (src/state.rs parses them)."""
    s = session(tables=2, docs=15, seed=2)
    catalog = configured_catalog(s.discover())
    state = {
        "empty-array": "[]",
        "empty-file": "",
        "whitespace": " \n\t\n",
        "legacy-object": "{}",
        "no-state-arg": None,
        "null-stream-state": json.dumps([{"type": "STREAM", "stream": {
            "stream_descriptor": {"name": "users", "namespace": None}, "stream_state": None}}]),
        "unknown-stream": json.dumps([{"type": "STREAM", "stream": {
            "stream_descriptor": {"name": "nope"}, "stream_state": {"delta_cursor": 5}},
            "sourceStats": {"recordCount": 1.0}}]),
    }[form]
    run, _ = s.checked("read", catalog=catalog, state=state)
    assert_matches_live(run, s)


def test_full_refresh_after_finished_sync_rereads_everything(session):
    """Until tests/read.rs reads a full-refresh catalog with a finished sync's state."""
    s = session(tables=2, docs=12, seed=8)
    discovered = s.discover()
    _, first = s.checked("read", catalog=configured_catalog(discovered), state=[])
    fr = configured_catalog(discovered, sync_mode="full_refresh", destination_sync_mode="overwrite")
    run, _ = s.checked("read", catalog=fr, state=pyairbyte_state(first))
    assert_matches_live(run, s)


def test_catalog_subset_and_cdk_null_form(session):
    """Until tests/read.rs sends a catalog with explicit nulls and unknown keys."""
    s = session(tables=3, docs=10, components=True, seed=6)
    discovered = s.discover()
    cat = configured_catalog(discovered, sync_mode="full_refresh", destination_sync_mode="append",
                             names=["messages", "betterAuth/users"])
    for entry in cat["streams"]:  # what the CDK Docker path sends: explicit nulls
        entry.update(cursor_field=None, primary_key=None, generation_id=None,
                     minimum_generation_id=None, sync_id=None, unknown_future_key={"x": 1})
    run, report = s.checked("read", catalog=cat)
    assert set(by_stream_name(report)) == {"messages", "betterAuth/users"}
    assert_matches_live(run, s, streams={"messages", "betterAuth/users"})


# -- the CLI contract, until tests/*.rs asserts these parts of it ------------------------------

def test_no_command_is_a_usage_error(binaries, tmp_path):
    """tests/commands.rs holds the usage errors (exit 2, nothing on stdout) of an unknown
    command and of missing options; not yet of no command at all."""
    run = Connector(tmp_path).run([])
    assert run.exit_code == 2, run.describe()
    assert all(line.startswith("{") for line in run.stdout.decode().splitlines()), run.describe()


def test_discover_bad_key_is_config_error(session):
    """As tests/commands.rs, and the key in neither stdout nor stderr (the Rust test looks at
    stdout only)."""
    s = session(tables=1, docs=1)
    _, report = s.checked("discover", config=s.emu.config(access_key=WRONG_KEY),
                          expect_ok=False, secrets=[WRONG_KEY])
    assert [e.get("failure_type") for e in report.trace_errors][-1] == "config_error"


def test_read_bad_key_marks_every_stream_incomplete(session):
    """As tests/read.rs, with component streams, and no RECORD at all."""
    s = session(tables=2, docs=5, components=True)
    catalog = configured_catalog(s.discover())
    _, report = s.checked("read", config=s.emu.config(access_key=WRONG_KEY), catalog=catalog,
                          state=[], expect_ok=False, secrets=[WRONG_KEY])
    assert not report.records
    assert set(report.terminal_statuses().values()) == {"INCOMPLETE"}
    assert len(report.terminal_statuses()) == len(catalog["streams"])
    assert "config_error" in [e.get("failure_type") for e in report.trace_errors]


def test_read_unknown_stream_gets_incomplete(session):
    """A configured table the deployment does not have (deleted or renamed) fails its stream
    with a config error naming it; the other streams complete; exit 1."""
    s = session(tables=2, docs=4)
    catalog = configured_catalog(s.discover(), names=["users"])
    ghost = json.loads(json.dumps(catalog["streams"][0]))
    ghost["stream"]["name"] = "ghost_table"
    catalog["streams"].append(ghost)
    _, report = s.checked("read", catalog=catalog, expect_ok=False)
    assert report.terminal_statuses()[(None, "ghost_table")] == "INCOMPLETE"
    assert report.terminal_statuses()[(None, "users")] == "COMPLETE"
    assert not by_stream_name(report).get("ghost_table")
    ghost_errors = [t for t in report.trace_errors if "ghost_table" in json.dumps(t)]
    assert ghost_errors and all(json.dumps(t).count("config_error") for t in ghost_errors)


def test_transient_errors_are_retried(session):
    """As tests/read.rs (list_snapshot) and tests/commands.rs (json_schemas during check),
    with json_schemas failing during a read."""
    s = session(tables=2, docs=20, seed=4, api="streaming_export")
    catalog = configured_catalog(s.discover())
    s.emu.add_fault({"endpoint": "list_snapshot", "kind": "status", "status": 503,
                     "code": "Overloaded", "message": "try later", "times": 2})
    s.emu.add_fault({"endpoint": "json_schemas", "kind": "html", "status": 502, "times": 1})
    run, _ = s.checked("read", catalog=catalog, state=[])
    assert_matches_live(run, s)


def test_permanent_stream_error_fails_sync(session):
    """A permanent error (403) of list_snapshot mid-read: a stream INCOMPLETE, a TRACE ERROR,
    exit non-zero."""
    s = session(tables=3, docs=5, seed=4, api="streaming_export")
    catalog = configured_catalog(s.discover())
    s.emu.add_fault({"endpoint": "list_snapshot", "kind": "status", "status": 403,
                     "code": "OperationNotPermitted", "message": "no access", "after": 1,
                     "times": 0})
    _, report = s.checked("read", catalog=catalog, state=[], expect_ok=False)
    assert "INCOMPLETE" in report.terminal_statuses().values()
    assert report.trace_errors


# -- the connector directory files -------------------------------------------------------------

def test_connector_directory_files(fixed_emulator, tmp_path):
    """integration_tests/*.json are usable as the CDK and humans use them."""
    s = Session(fixed_emulator, tmp_path)
    s.config_path = IT_DIR / "config.json"
    assert json.loads(s.config_path.read_text())["access_key"] == fixed_emulator.access_key
    _, report = s.checked("check", config=IT_DIR / "invalid_config.json")
    assert report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "FAILED"
    discovered = {st["name"] for st in s.discover()["streams"]}
    catalog_path = IT_DIR / "configured_catalog.json"
    catalog = json.loads(catalog_path.read_text())
    assert {e["stream"]["name"] for e in catalog["streams"]} <= discovered
    _, first = s.checked("read", catalog=catalog_path)
    assert first.records
    for name in ("sample_state.json", "abnormal_state.json"):
        _, report = s.checked("read", catalog=catalog_path, state=IT_DIR / name)
        if name == "abnormal_state.json":
            # A cursor later than anything the deployment wrote (another deployment's state, a
            # restore) never gets the changes in between: each stream is read again from a
            # fresh snapshot, with a WARN that says why, instead of 0 records forever.
            assert len(report.records) == len(first.records), report.summary()
            warns = [m["log"]["message"] for m in report.of_type("LOG")
                     if m["log"]["level"] == "WARN"]
            assert len(warns) == len(catalog["streams"]), warns
            assert all("later than anything this deployment has written" in w for w in warns)
    # config_legacy.json: the same deployment with `column_types: legacy` (the CDK standard
    # tests run with both): int64 columns declared and sent as strings, as before.
    legacy = IT_DIR / "config_legacy.json"
    assert json.loads(legacy.read_text()) == {**json.loads(s.config_path.read_text()),
                                              "column_types": "legacy"}
    _, report = s.checked("check", config=legacy)
    assert report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    s.config_path = legacy
    legacy_streams = {st["name"]: st for st in s.discover()["streams"]}
    assert legacy_streams.keys() == discovered
    assert legacy_streams["users"]["json_schema"]["properties"]["balance"]["type"] == "string"
    assert {e["stream"]["name"]: e["stream"]["json_schema"]["properties"]["balance"]
            for e in catalog["streams"]} == {"users": {"type": "integer"},
                                             "betterAuth/users": {"type": "integer"}}
