"""Protocol conformance of the real binary against the emulator: every command's output goes
through the strict checker (checker.py), plus the source-convex contract: the output shape of
the Python connector 0.4.x it replaces (docs/convex.md), fixed where that one broke the
Airbyte protocol."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from checker import check_output
from exactness import typed_updated_at_ok
from harness import (COLUMN_TYPES, IT_DIR, Emulator, configured_catalog, run_connector,
                     stream_name, table_list, typed_truth, values_match, write_json)

pytestmark = pytest.mark.conformance

CDC_FIELDS = ("_ab_cdc_lsn", "_ab_cdc_updated_at", "_deleted", "_ab_cdc_deleted_at")
# `_ab_cdc_updated_at` with `column_types: legacy`: the Python connector's form. Typed:
# RFC 3339 with microseconds and `Z`, `_ts` truncated (exactness.typed_updated_at_ok).
UPDATED_AT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")
BAD_CATALOG = {"streams": [{"stream": {
    "name": "__AIRBYTE__stream_that_does_not_exist",
    "json_schema": {"type": "object", "properties": {"f1": {"type": "string"}}},
    "supported_sync_modes": ["full_refresh"]},
    "sync_mode": "INVALID", "destination_sync_mode": "INVALID"}]}


class Session:
    """Runs commands for one emulator and checks every output with the checker."""

    def __init__(self, emu: Emulator, tmp: Path, column_types: str = "typed",
                 api: str | None = None):
        """`column_types`: `typed` leaves the property out (the default must be typed);
        `legacy` sets it. `api`: set for a test about one API's pages (else the default,
        `auto`, as users have it)."""
        self.emu = emu
        self.tmp = tmp
        self.n = 0
        self.column_types = column_types
        extra = {"column_types": "legacy"} if column_types == "legacy" else {}
        if api:
            extra["api"] = api
        self.config_path = write_json(tmp / "config.json", emu.config(**extra))

    def file(self, stem: str, value, *, raw: bool = False, suffix: str = ".json") -> Path:
        self.n += 1
        path = self.tmp / f"{stem}-{self.n}{suffix}"
        if raw:
            path.write_text(value)
            path.chmod(0o444)
            return path
        return write_json(path, value)

    def run(self, command: str, *extra, config: Path | None = None, catalog=None,
            state=None, expect_ok: bool = True, checked: bool = True, secrets=(),
            catalog_is_valid: bool = True):
        args = [command]
        if command != "spec":
            args += ["--config", str(config or self.config_path)]
        cat_value = None
        if catalog is not None:
            cat_path = catalog if isinstance(catalog, Path) else self.file("catalog", catalog)
            args += ["--catalog", str(cat_path)]
            try:
                cat_value = json.loads(Path(cat_path).read_text())
            except ValueError:
                cat_value = {"streams": []}
        if state is not None:
            args += ["--state", str(state if isinstance(state, Path) else self.file("state", state))]
        args += list(extra)
        run = run_connector(args)
        report = check_output(command, run.stdout, run.stderr, run.exit_code,
                              configured_catalog=cat_value if catalog_is_valid else None,
                              secrets=[self.emu.access_key, *secrets])
        if checked:
            assert report.ok, report.summary() + "\n" + run.describe()
        if expect_ok is True:
            assert run.exit_code == 0, run.describe()
        elif expect_ok is False:
            assert run.exit_code != 0, run.describe()
        return run, report

    def discover(self) -> dict:
        _, report = self.run("discover")
        return report.of_type("CATALOG")[0]["catalog"]


@pytest.fixture
def session(emulator_factory, tmp_path):
    def make(column_types: str = "typed", api: str | None = None, **kwargs) -> Session:
        return Session(emulator_factory(**kwargs), tmp_path, column_types, api)
    return make


def strip_cdc(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in CDC_FIELDS}


def live_documents(emu: Emulator, column_types: str = "typed") -> dict:
    """{stream name: {_id: document}} from the emulator's control API, as records of
    `column_types` carry them (Emulator.documents)."""
    out = {}
    for component, table in table_list(emu):
        out[stream_name(component, table)] = {
            d["_id"]: d for d in emu.documents(table, component, column_types)}
    return out


def by_stream_name(report) -> dict:
    return {name: recs for (ns, name), recs in report.records_by_stream().items()}


def state_messages(report, pyairbyte_form: bool = True) -> str:
    """The final STATE of each stream as a state file. PyAirbyte's form: a JSON array over
    several lines, nulls, extra keys and a duplicated `global_` key in each object."""
    entries = []
    for state in report.states:
        entries.append(state)
    last = {}
    for state in entries:
        d = state["stream"]["stream_descriptor"]
        last[(d.get("namespace"), d["name"])] = state
    if not pyairbyte_form:
        return json.dumps(list(last.values()))
    parts = []
    for state in last.values():
        desc = state["stream"]["stream_descriptor"]
        stream = {"stream_descriptor": {"name": desc["name"], "namespace": desc.get("namespace")},
                  "stream_state": state["stream"]["stream_state"]}
        body = json.dumps({"type": "STREAM", "stream": stream, "global_": None})[:-1]
        parts.append(body + ', "global_": null, "data": null, "sourceStats": '
                     '{"recordCount": 5.0, "rejectedRecordCount": null}, '
                     '"destinationStats": null}')
    return "[" + "\n, ".join(parts) + "]"


# -- spec ------------------------------------------------------------------------------------

def test_spec(binaries, tmp_path):
    run = run_connector(["spec"])
    report = check_output("spec", run.stdout, run.stderr, run.exit_code)
    assert report.ok, report.summary()
    assert run.exit_code == 0
    spec = report.of_type("SPEC")[0]["spec"]
    assert spec["documentationUrl"] == "https://docs.airbyte.com/integrations/sources/convex"
    cs = spec["connectionSpecification"]
    assert cs["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert cs["type"] == "object"
    assert cs.get("additionalProperties") is True
    assert cs["required"] == ["deployment_url", "access_key"]
    props = cs["properties"]
    assert props["deployment_url"]["type"] == "string"
    assert props["access_key"]["type"] == "string"
    assert props["access_key"]["airbyte_secret"] is True
    secret_props = [k for k, v in props.items() if v.get("airbyte_secret")]
    assert secret_props == ["access_key"]
    for opt in ("concurrency", "connect_timeout_seconds", "request_timeout_seconds"):
        if opt in props:
            assert opt not in cs["required"]


@pytest.mark.parametrize("argv", [["--debug", "spec"], ["spec", "--debug"]])
def test_debug_flag_accepted(binaries, argv):
    run = run_connector(argv)
    report = check_output("spec", run.stdout, run.stderr, run.exit_code)
    assert run.exit_code == 0 and report.ok, report.summary() + run.describe()


@pytest.mark.parametrize("argv", [[], ["bogus"], ["check"], ["read", "--config", "x.json"]])
def test_usage_errors_exit_2(binaries, argv):
    run = run_connector(argv)
    assert run.exit_code == 2, run.describe()
    assert all(line.startswith("{") for line in run.stdout.decode().splitlines()), run.describe()


# -- check -----------------------------------------------------------------------------------

def test_check_succeeds(session):
    s = session(tables=2, docs=5)
    _, report = s.run("check")
    assert report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"


def test_check_bad_key_fails_gracefully(session):
    s = session(tables=1, docs=1)
    bad = s.file("config", {**s.emu.config(), "access_key": "definitely-wrong-key-123"})
    _, report = s.run("check", config=bad, secrets=["definitely-wrong-key-123"])
    status = report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert status.get("message"), status
    assert "'" not in status["message"][:1], "message must not be wrapped in repr() quotes"


def test_check_missing_key_fails_gracefully(session):
    s = session(tables=1, docs=1)
    bad = s.file("config", {"deployment_url": s.emu.url})
    _, report = s.run("check", config=bad)
    status = report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "access_key" in status.get("message", ""), status


def test_check_unreachable_deployment_fails_gracefully(session, tmp_path):
    s = session(tables=1, docs=1)
    import socket
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bad = s.file("config", {**s.emu.config(), "deployment_url": f"http://127.0.0.1:{port}"})
    _, report = s.run("check", config=bad)
    assert report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "FAILED"


# -- discover --------------------------------------------------------------------------------

@pytest.mark.parametrize("column_types", COLUMN_TYPES)
def test_discover_streams_and_schemas(session, column_types):
    s = session(tables=3, docs=5, components=True, column_types=column_types)
    catalog = s.discover()
    expected = {stream_name(c, t): (c or None) for c, t in table_list(s.emu)}
    got = {st["name"]: st.get("namespace") for st in catalog["streams"]}
    assert got == expected
    for st in catalog["streams"]:
        assert st["supported_sync_modes"] == ["full_refresh", "incremental"]
        assert st["source_defined_cursor"] is True
        assert st["default_cursor_field"] == ["_ts"]
        assert st["source_defined_primary_key"] == [["_id"]]
        schema = st["json_schema"]
        assert schema.get("additionalProperties") is True
        props = schema["properties"]
        for meta in ("_id", "_ts", "_table", "_component", "_deleted"):
            assert meta in props, (st["name"], meta)
        if column_types == "legacy":  # the Python connector's schemas
            assert props["_ab_cdc_updated_at"] == {"type": "string"}
            assert props["_ab_cdc_deleted_at"] == {"type": ["null", "string"]}
        else:
            date_time = {"format": "date-time", "airbyte_type": "timestamp_with_timezone"}
            assert props["_ab_cdc_updated_at"] == {"type": "string", **date_time}
            assert props["_ab_cdc_deleted_at"] == {"type": ["null", "string"], **date_time}
            assert "anyOf" not in json.dumps({k: v for k, v in props.items()
                                              if k in ("_id", "_ts", "_creationTime")})
        assert props["_ab_cdc_lsn"] == {"type": "integer"}
        assert "_ab_cdc_lsn" in props
        assert set(schema.get("required", [])) <= {"_id"}, \
            "delete records carry only metadata, and every record must satisfy the discovered " \
            "schema: required must be at most _id"


def test_discover_bad_key_is_config_error(session):
    s = session(tables=1, docs=1)
    bad = s.file("config", {**s.emu.config(), "access_key": "definitely-wrong-key-123"})
    _, report = s.run("discover", config=bad, expect_ok=False,
                      secrets=["definitely-wrong-key-123"])
    assert [e.get("failure_type") for e in report.trace_errors][-1] == "config_error"


# -- read ------------------------------------------------------------------------------------

def assert_matches_live(report, emu: Emulator, streams=None, column_types: str = "typed"):
    live = live_documents(emu, column_types)
    got = by_stream_name(report)
    for name, docs in live.items():
        if streams is not None and name not in streams:
            continue
        recs = got.get(name, [])
        assert len(recs) == len(docs), f"{name}: {len(recs)} records, {len(docs)} documents"
        by_id = {r["_id"]: r for r in recs}
        for _id, doc in docs.items():
            rec = by_id[_id]
            assert values_match(strip_cdc(rec), doc), \
                f"{name} {_id}: record differs from document:\n{strip_cdc(rec)}\n{doc}"
            assert rec["_ab_cdc_lsn"] == doc["_ts"]
            assert rec["_deleted"] is False and rec["_ab_cdc_deleted_at"] is None
            if column_types == "legacy":
                assert UPDATED_AT_RE.match(rec["_ab_cdc_updated_at"]), rec["_ab_cdc_updated_at"]
            else:
                assert typed_updated_at_ok(rec["_ab_cdc_updated_at"], doc["_ts"]), \
                    (rec["_ab_cdc_updated_at"], doc["_ts"])


@pytest.mark.parametrize("column_types", COLUMN_TYPES)
@pytest.mark.parametrize("components", [False, True], ids=["root", "components"])
def test_read_snapshot_matches_documents(session, components, column_types):
    s = session(tables=3, docs=30, components=components, seed=5, column_types=column_types)
    catalog = configured_catalog(s.discover())
    run, report = s.run("read", catalog=catalog, state=[])
    assert_matches_live(report, s.emu, column_types=s.column_types)
    assert set(report.terminal_statuses().values()) == {"COMPLETE"}
    # JSON text of values passes through unchanged: big integers and floats.
    assert b'"_ts":1' in run.stdout


@pytest.mark.parametrize("column_types", COLUMN_TYPES)
def test_read_passes_api_bytes_through(session, column_types):
    """Records carry Convex's values exactly (no float reformatting, no int64 rounding):
    compared with list_snapshot's own response, fetched here page by page. `legacy`: the
    `json` format, byte for byte (the Python connector's records). `typed`: the
    `export_json` format, `$bytes` as base64 text and `$float` as null (typed_truth); the
    bytes of each document without such a value pass through unchanged."""
    import urllib.parse
    import urllib.request
    s = session(tables=2, docs=300, seed=5, column_types=column_types, api="streaming_export")
    fmt = "json" if column_types == "legacy" else "export_json"
    catalog = configured_catalog(s.discover())
    run, report = s.run("read", catalog=catalog, state=[])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _component, table in table_list(s.emu):
        api, cursor, snapshot = {}, None, None
        while True:
            q = {"tableName": table, "format": fmt}
            if cursor:
                q.update(cursor=cursor, snapshot=snapshot)
            req = urllib.request.Request(f"{s.emu.url}/api/list_snapshot?{urllib.parse.urlencode(q)}",
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


def test_read_multi_page_checkpoints(session):
    s = session(tables=1, docs=2600, seed=9, api="streaming_export")
    catalog = configured_catalog(s.discover())
    _, report = s.run("read", catalog=catalog)
    assert_matches_live(report, s.emu, column_types=s.column_types)
    assert len(report.states) >= 3, "expected a STATE per list_snapshot page (1024 docs)"


def test_incremental_reads_bring_only_changes(session):
    s = session(tables=2, docs=40, components=True, seed=3)
    catalog = configured_catalog(s.discover())
    _, first = s.run("read", catalog=catalog, state=[])
    assert_matches_live(first, s.emu, column_types=s.column_types)
    users = live_documents(s.emu, s.column_types)["users"]
    ids = sorted(users)
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
    state = s.file("state", state_messages(first), raw=True, suffix=".txt")
    _, second = s.run("read", catalog=catalog, state=state)
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
    state = s.file("state", state_messages(second, pyairbyte_form=False), raw=True)
    _, third = s.run("read", catalog=catalog, state=state)
    assert not third.records
    assert len(third.final_states()) == len(catalog["streams"])


def test_generated_changes_roundtrip(session):
    s = session(tables=3, docs=50, seed=21)
    catalog = configured_catalog(s.discover())
    _, first = s.run("read", catalog=catalog, state=[])
    before = live_documents(s.emu, s.column_types)
    summary = s.emu.changes(60, seed=4)
    after = live_documents(s.emu, s.column_types)
    # The changes add columns: refresh the schema as the platform does (a configured schema
    # with fewer properties than discovered is a field selection).
    catalog = configured_catalog(s.discover())
    state = s.file("state", state_messages(first), raw=True, suffix=".txt")
    _, second = s.run("read", catalog=catalog, state=state)
    got = by_stream_name(second)
    n_ops = summary.get("inserted", 0) + summary.get("updated", 0) + summary.get("deleted", 0) \
        if isinstance(summary, dict) else None
    total = sum(len(v) for v in got.values())
    if n_ops:
        assert total <= n_ops, (total, summary)
    for name in after:
        # Replaying the change records onto the first read's documents gives the live set.
        docs = dict(before.get(name, {}))
        for rec in sorted(got.get(name, []), key=lambda r: r["_ts"]):
            if rec["_deleted"]:
                docs.pop(rec["_id"], None)
                assert rec["_ab_cdc_deleted_at"] is not None
            else:
                docs[rec["_id"]] = strip_cdc(rec)
        assert values_match({k: strip_cdc(v) for k, v in docs.items()}, after[name]), name


@pytest.mark.parametrize("form", ["empty-array", "empty-file", "whitespace", "legacy-object",
                                  "no-state-arg", "null-stream-state", "unknown-stream"])
def test_state_input_forms_start_from_scratch(session, form):
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
    state_path = None if state is None else s.file("state", state, raw=True, suffix=".txt")
    _, report = s.run("read", catalog=catalog, state=state_path)
    assert_matches_live(report, s.emu, column_types=s.column_types)


def test_full_refresh_after_finished_sync_rereads_everything(session):
    s = session(tables=2, docs=12, seed=8)
    discovered = s.discover()
    _, first = s.run("read", catalog=configured_catalog(discovered), state=[])
    fr = configured_catalog(discovered, sync_mode="full_refresh", destination_sync_mode="overwrite")
    state = s.file("state", state_messages(first), raw=True, suffix=".txt")
    _, second = s.run("read", catalog=fr, state=state)
    assert_matches_live(second, s.emu, column_types=s.column_types)


def test_catalog_subset_and_cdk_null_form(session):
    s = session(tables=3, docs=10, components=True, seed=6)
    discovered = s.discover()
    cat = configured_catalog(discovered, sync_mode="full_refresh", destination_sync_mode="append",
                             names=["messages", "betterAuth/users"])
    for entry in cat["streams"]:  # what the CDK Docker path sends: explicit nulls
        entry.update(cursor_field=None, primary_key=None, generation_id=None,
                     minimum_generation_id=None, sync_id=None, unknown_future_key={"x": 1})
    _, report = s.run("read", catalog=cat)
    assert set(by_stream_name(report)) == {"messages", "betterAuth/users"}
    assert_matches_live(report, s.emu, streams={"messages", "betterAuth/users"},
                        column_types=s.column_types)


def test_read_bad_key_marks_every_stream_incomplete(session):
    s = session(tables=2, docs=5, components=True)
    catalog = configured_catalog(s.discover())
    bad = s.file("config", {**s.emu.config(), "access_key": "definitely-wrong-key-123"})
    _, report = s.run("read", config=bad, catalog=catalog, state=[], expect_ok=False,
                      secrets=["definitely-wrong-key-123"])
    assert not report.records
    assert set(report.terminal_statuses().values()) == {"INCOMPLETE"}
    assert len(report.terminal_statuses()) == len(catalog["streams"])
    assert "config_error" in [e.get("failure_type") for e in report.trace_errors]


def test_read_invalid_catalog_is_trace_error(session):
    s = session(tables=1, docs=3)
    _, report = s.run("read", catalog=BAD_CATALOG, expect_ok=False, catalog_is_valid=False)
    assert report.trace_errors


def test_read_unparsable_catalog_is_trace_error(session):
    s = session(tables=1, docs=3)
    path = s.file("catalog", "{not json", raw=True)
    _, report = s.run("read", catalog=path, expect_ok=False, catalog_is_valid=False)
    assert report.trace_errors


def test_read_invalid_state_marks_streams_incomplete(session):
    """A failure before the first stream still gives every configured stream INCOMPLETE
    (the Python connector emitted no stream status at all, and destinations that want a terminal
    status per stream then hide the real cause), then the TRACE ERROR, exit 1."""
    s = session(tables=2, docs=3)
    catalog = configured_catalog(s.discover())
    state = s.file("state", '"not a list"', raw=True)
    _, report = s.run("read", catalog=catalog, state=state, expect_ok=False)
    assert report.trace_errors
    assert set(report.terminal_statuses().values()) == {"INCOMPLETE"}
    assert len(report.terminal_statuses()) == 2


def test_read_unknown_stream_gets_incomplete(session):
    """A configured table the deployment does not have (deleted or renamed) fails its stream
    with a config error naming it; the other streams complete; exit 1."""
    s = session(tables=2, docs=4)
    discovered = s.discover()
    catalog = configured_catalog(discovered, names=["users"])
    ghost = json.loads(json.dumps(catalog["streams"][0]))
    ghost["stream"]["name"] = "ghost_table"
    catalog["streams"].append(ghost)
    run, report = s.run("read", catalog=catalog, expect_ok=False)
    assert report.terminal_statuses()[(None, "ghost_table")] == "INCOMPLETE"
    assert report.terminal_statuses()[(None, "users")] == "COMPLETE"
    assert not by_stream_name(report).get("ghost_table")
    ghost_errors = [t for t in report.trace_errors if "ghost_table" in json.dumps(t)]
    assert ghost_errors and all(json.dumps(t).count("config_error") for t in ghost_errors)


def test_transient_errors_are_retried(session):
    s = session(tables=2, docs=20, seed=4, api="streaming_export")
    catalog = configured_catalog(s.discover())
    s.emu.add_fault({"endpoint": "list_snapshot", "kind": "status", "status": 503,
                     "code": "Overloaded", "message": "try later", "times": 2})
    s.emu.add_fault({"endpoint": "json_schemas", "kind": "html", "status": 502, "times": 1})
    _, report = s.run("read", catalog=catalog, state=[])
    assert_matches_live(report, s.emu, column_types=s.column_types)


def test_permanent_stream_error_fails_sync(session):
    s = session(tables=3, docs=5, seed=4, api="streaming_export")
    catalog = configured_catalog(s.discover())
    s.emu.add_fault({"endpoint": "list_snapshot", "kind": "status", "status": 403,
                     "code": "OperationNotPermitted", "message": "no access", "after": 1,
                     "times": 0})
    _, report = s.run("read", catalog=catalog, state=[], expect_ok=False)
    assert "INCOMPLETE" in report.terminal_statuses().values()
    assert report.trace_errors


# -- the connector directory files -----------------------------------------------------------

def test_connector_directory_files(fixed_emulator, tmp_path):
    """integration_tests/*.json are usable as the CDK and humans use them."""
    s = Session(fixed_emulator, tmp_path)
    s.config_path = IT_DIR / "config.json"
    assert json.loads(s.config_path.read_text())["access_key"] == fixed_emulator.access_key
    _, report = s.run("check", config=IT_DIR / "invalid_config.json")
    assert report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "FAILED"
    discovered = {st["name"] for st in s.discover()["streams"]}
    catalog_path = IT_DIR / "configured_catalog.json"
    catalog = json.loads(catalog_path.read_text())
    assert {e["stream"]["name"] for e in catalog["streams"]} <= discovered
    _, first = s.run("read", catalog=catalog_path)
    assert first.records
    for name in ("sample_state.json", "abnormal_state.json"):
        _, report = s.run("read", catalog=catalog_path, state=IT_DIR / name)
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
    _, report = s.run("check", config=legacy)
    assert report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    s.config_path = legacy
    legacy_streams = {st["name"]: st for st in s.discover()["streams"]}
    assert legacy_streams.keys() == discovered
    assert legacy_streams["users"]["json_schema"]["properties"]["balance"]["type"] == "string"
    assert {e["stream"]["name"]: e["stream"]["json_schema"]["properties"]["balance"]
            for e in catalog["streams"]} == {"users": {"type": "integer"},
                                             "betterAuth/users": {"type": "integer"}}
