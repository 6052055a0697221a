"""The real binary through the strict protocol checker (checker.py: the airbyte-protocol
models plus what real consumers rely on), against the emulator.

The CLI contract itself (exit codes, usage errors, spec and catalog shapes, check's answers,
bad keys, catalogs and states in every form, failures mid-read) is tested where it is owned, in
the Rust tests (tests/commands.rs, tests/read.rs, tests/hostile.rs). This file keeps one smoke
test per command family through the checker (spec, check, discover, read) and what only Python
can show: the connector directory files the CDK reads, and records byte for byte against
Convex's own answer.
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

    def checked(self, command: str, **files):
        """Runs `command` (`config=`, `catalog=`, `state=`, `extra=`), checks its output (no
        key of this deployment's in it) and that it exited 0."""
        run = self.command(command, **files)
        catalog = files.get("catalog")
        if isinstance(catalog, Path):
            catalog = json.loads(catalog.read_text())
        report = check_output(command, run.stdout, run.stderr, run.exit_code,
                              configured_catalog=catalog, secrets=[self.emu.access_key])
        assert report.ok, report.summary() + "\n" + run.describe()
        assert run.exit_code == 0, run.describe()
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


def assert_matches_live(run, s: Session) -> None:
    """`run`'s records, merged by `_id`, are the emulator's live documents record for record
    (values exact, no key more or less, CDC fields of a live document), each sent once."""
    assert_destination_exact(f"{run.argv[1:]}", MergingDestination().apply(run),
                             s.emu.live(s.column_types), equal=strict(), runs=[run],
                             column_types=s.column_types)


# -- smoke: one test per command family --------------------------------------------------------

@pytest.mark.parametrize("argv", [["spec"], ["--debug", "spec"], ["spec", "--debug"]])
def test_spec(binaries, tmp_path, argv):
    """tests/commands.rs holds spec's contract (spec.json, key by key) and `--debug` in both
    places; here the output, with and without it, passes the checker."""
    run = Connector(tmp_path).run(argv)
    report = check_output("spec", run.stdout, run.stderr, run.exit_code)
    assert run.exit_code == 0 and report.ok, report.summary() + run.describe()


def test_check_succeeds(session):
    s = session(tables=2, docs=5)
    _, report = s.checked("check")
    assert report.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"


@pytest.mark.parametrize("column_types", COLUMN_TYPES)
def test_discover_streams_and_schemas(session, column_types):
    """tests/commands.rs holds the streams and their schemas (sync modes, cursor, key,
    metadata and CDC columns, what is required) of both column types; here the catalog passes
    the checker."""
    s = session(tables=3, docs=5, components=True, column_types=column_types)
    catalog = s.discover()
    assert {st["name"] for st in catalog["streams"]} == set(s.emu.streams())


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
