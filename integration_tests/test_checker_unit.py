"""Unit tests of the protocol checker itself: it must accept good output and reject each
kind of bad output, so that the conformance tests cannot pass vacuously."""

from __future__ import annotations

import copy
import json

import pytest

from checker import check_output, main

TS = 1_700_000_000_000
SCHEMA = {
    "type": "object",
    "properties": {"_id": {"type": "string"}, "_ts": {"type": "integer"},
                   "name": {"type": "string"}},
    "required": ["_id"],
    "additionalProperties": True,
}
CATALOG = {"streams": [
    {"stream": {"name": "users", "json_schema": SCHEMA,
                "supported_sync_modes": ["full_refresh", "incremental"]},
     "sync_mode": "incremental", "destination_sync_mode": "append"},
    {"stream": {"name": "events", "namespace": "comp", "json_schema": SCHEMA,
                "supported_sync_modes": ["full_refresh", "incremental"]},
     "sync_mode": "incremental", "destination_sync_mode": "append"},
]}


def status(name, st, ns=None):
    desc = {"name": name} if ns is None else {"name": name, "namespace": ns}
    return {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": TS,
                                       "stream_status": {"stream_descriptor": desc,
                                                         "status": st}}}


def record(name, i, ns=None, **extra):
    rec = {"stream": name, "data": {"_id": f"id{i}", "_ts": i, "name": "x", **extra},
           "emitted_at": TS}
    if ns is not None:
        rec["namespace"] = ns
    return {"type": "RECORD", "record": rec}


def state(name, count, ns=None):
    return {"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": name, "namespace": ns},
        "stream_state": {"snapshot_cursor": None, "snapshot_has_more": False,
                         "delta_cursor": 1700000000000000123}},
        "sourceStats": {"recordCount": float(count)}}}


def error_trace(failure_type="config_error"):
    err = {"message": "bad key", "internal_message": "401"}
    if failure_type is not None:
        err["failure_type"] = failure_type
    return {"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": TS, "error": err}}


def good_read():
    return [
        {"type": "LOG", "log": {"level": "INFO", "message": "start"}},
        status("users", "STARTED"), status("users", "RUNNING"),
        record("users", 1), record("users", 2), state("users", 2),
        record("users", 3), state("users", 1), status("users", "COMPLETE"),
        status("events", "STARTED", "comp"), state("events", 0, "comp"),
        status("events", "COMPLETE", "comp"),
    ]


def dump(msgs):
    return "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in msgs)


def check_read(msgs, exit_code=0, **kw):
    return check_output("read", dump(msgs), "", exit_code, configured_catalog=CATALOG, **kw)


def test_good_read_passes():
    report = check_read(good_read())
    assert report.ok, report.summary()
    assert report.terminal_statuses() == {(None, "users"): "COMPLETE",
                                          ("comp", "events"): "COMPLETE"}
    assert len(report.records) == 3


def test_good_failed_read_passes():
    msgs = [status("users", "STARTED"), status("users", "INCOMPLETE"),
            status("events", "INCOMPLETE", "comp"), error_trace()]
    report = check_read(msgs, exit_code=1)
    assert report.ok, report.summary()


def mutate(fn):
    msgs = good_read()
    fn(msgs)
    return msgs


BAD_READS = {
    "record count off": lambda m: m.__setitem__(5, state("users", 3)),
    "record count missing": lambda m: m[5]["state"].pop("sourceStats"),
    "record count fractional": lambda m: m[5]["state"]["sourceStats"].update(recordCount=1.5),
    "no final state": lambda m: m.__delitem__(7),
    "legacy state": lambda m: m.__setitem__(5, {"type": "STATE",
                                                "state": {"data": {"users": {}}}}),
    "global state": lambda m: m[5]["state"].update(type="GLOBAL"),
    "record emitted_at float": lambda m: m[3]["record"].update(emitted_at=1.7e12),
    "record emitted_at string": lambda m: m[3]["record"].update(emitted_at=str(TS)),
    "record emitted_at seconds": lambda m: m[3]["record"].update(emitted_at=1_700_000_000),
    "record for unconfigured stream": lambda m: m.insert(4, record("orders", 9)),
    "record wrong namespace": lambda m: m.insert(4, record("users", 9, ns="other")),
    "record violates schema": lambda m: m[3]["record"]["data"].update(_ts="not-int"),
    "record missing required": lambda m: m[3]["record"]["data"].pop("_id"),
    "record data not object": lambda m: m[3]["record"].update(data=[1]),
    "record before started": lambda m: m.insert(0, record("users", 0)),
    "record after complete": lambda m: m.insert(9, record("users", 4)),
    "status after terminal": lambda m: m.insert(9, status("users", "INCOMPLETE")),
    "started twice": lambda m: m.insert(2, status("users", "STARTED")),
    "running before started": lambda m: m.insert(0, status("users", "RUNNING")),
    "missing terminal": lambda m: m.__delitem__(11),
    "two payloads": lambda m: m[3].update(log={"level": "INFO", "message": "x"}),
    "missing payload": lambda m: m[3].pop("record"),
    "unknown type": lambda m: m[0].update(type="BANNER"),
    "bad log level": lambda m: m[0]["log"].update(level="NOTICE"),
    "trace without sub-object": lambda m: m[1]["trace"].pop("stream_status"),
    "error without failure_type": lambda m: m.append(error_trace(None)),
    "error with bad failure_type": lambda m: m.append(error_trace("oops")),
    "error but exit 0": lambda m: m.append(error_trace()),
    "spec in read": lambda m: m.append({"type": "SPEC", "spec": {"connectionSpecification": {}}}),
}


@pytest.mark.parametrize("name", sorted(BAD_READS))
def test_bad_read_is_rejected(name):
    report = check_read(mutate(BAD_READS[name]))
    assert not report.ok, f"checker accepted: {name}"


def test_incomplete_with_exit_zero_rejected():
    msgs = [status("users", "STARTED"), status("users", "INCOMPLETE"),
            status("events", "INCOMPLETE", "comp")]
    assert not check_read(msgs, exit_code=0).ok


def test_exit_nonzero_without_error_rejected():
    assert not check_read(good_read(), exit_code=1).ok


def test_secret_leak_rejected():
    msgs = good_read()
    msgs[0]["log"]["message"] = "key is super-secret-key-123"
    assert not check_read(msgs, secrets=["super-secret-key-123"]).ok
    assert check_read(good_read(), secrets=["super-secret-key-123"]).ok
    leak = check_output("read", dump(good_read()), "debug: super-secret-key-123", 0,
                        configured_catalog=CATALOG, secrets=["super-secret-key-123"])
    assert not leak.ok


@pytest.mark.parametrize("raw", [
    "not json\n",
    '{"type":"LOG","log":{"level":"INFO","message":"x"}}',  # no trailing newline
    '\n',
    '[1,2]\n',
    '{"type":"LOG","log":{"level":"INFO","message":"x"}}\r\n',
    '{"type":"LOG","log":{"level":"INFO","message":NaN}}\n',
    '{"type":"LOG",\n"log":{"level":"INFO","message":"x"}}\n',  # pretty-printed
])
def test_framing_problems_rejected(raw):
    assert not check_output("spec", raw, "", 0).ok


def spec_msg():
    return {"type": "SPEC", "spec": {"connectionSpecification": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "required": ["access_key"],
        "properties": {"access_key": {"type": "string", "airbyte_secret": True}}}}}


def test_spec_rules():
    assert check_output("spec", dump([spec_msg()]), "", 0).ok
    assert not check_output("spec", dump([spec_msg(), spec_msg()]), "", 0).ok
    assert not check_output("spec", "", "", 0).ok
    bad = spec_msg()
    bad["spec"]["connectionSpecification"]["type"] = "objekt"
    assert not check_output("spec", dump([bad]), "", 0).ok
    assert not check_output("spec", dump([spec_msg()]), "", 1).ok


def cs(st):
    return {"type": "CONNECTION_STATUS", "connectionStatus": {"status": st, "message": "m"}}


def test_check_rules():
    assert check_output("check", dump([cs("SUCCEEDED")]), "", 0).ok
    assert check_output("check", dump([cs("FAILED")]), "", 0).ok
    assert not check_output("check", dump([cs("MAYBE")]), "", 0).ok
    assert not check_output("check", dump([cs("FAILED"), cs("FAILED")]), "", 0).ok
    assert not check_output("check", dump([]), "", 0).ok
    # an unexpected failure: TRACE ERROR + exit 1, no status
    assert check_output("check", dump([error_trace("system_error")]), "", 1).ok
    assert not check_output("check", dump([cs("FAILED")]), "", 1).ok


def catalog_msg(streams):
    return {"type": "CATALOG", "catalog": {"streams": streams}}


def stream(name, ns=None, **over):
    s = {"name": name, "json_schema": copy.deepcopy(SCHEMA),
         "supported_sync_modes": ["full_refresh", "incremental"],
         "source_defined_cursor": True, "default_cursor_field": ["_ts"],
         "source_defined_primary_key": [["_id"]]}
    if ns:
        s["namespace"] = ns
    s.update(over)
    return s


def test_discover_rules():
    ok = catalog_msg([stream("users"), stream("comp/users", "comp")])
    assert check_output("discover", dump([ok]), "", 0).ok
    bad_cases = [
        catalog_msg([stream("users"), stream("users")]),
        catalog_msg([stream("users"), stream("users", "comp")]),  # names must be unique alone
        catalog_msg([stream("users", json_schema={"type": 5})]),
        catalog_msg([stream("users", supported_sync_modes=[])]),
        catalog_msg([stream("users", supported_sync_modes=["sometimes"])]),
        catalog_msg([stream("users", default_cursor_field=None)]),
        catalog_msg([stream("users", source_defined_primary_key=["_id"])]),
    ]
    for msg in bad_cases:
        assert not check_output("discover", dump([msg]), "", 0).ok, msg
    assert not check_output("discover", dump([ok, ok]), "", 0).ok
    assert not check_output("discover", dump([ok, record("users", 1)]), "", 0).ok


def test_models_catch_wrong_types():
    # a string where the official model wants an enum member
    msg = {"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED", "message": 5}}
    assert not check_output("check", dump([msg]), "", 0).ok


def test_cli(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text(dump(good_read()))
    cat = tmp_path / "cat.json"
    cat.write_text(json.dumps(CATALOG))
    assert main(["read", "--stdout", str(out), "--exit-code", "0", "--catalog", str(cat)]) == 0
    out.write_text(dump(mutate(BAD_READS["record count off"])))
    assert main(["read", "--stdout", str(out), "--exit-code", "0", "--catalog", str(cat)]) == 1
    assert "recordCount" in capsys.readouterr().out


def test_cli_run_mode(capsys):
    import sys
    good = json.dumps(spec_msg(), separators=(",", ":"))
    prog = f"import sys; print({good!r}); sys.exit(0)"
    assert main(["run", "--", sys.executable, "-c", prog, "spec"]) == 0
    prog = "print('hello, not json')"
    assert main(["run", "--", sys.executable, "-c", prog, "spec"]) == 1
    assert "not JSON" in capsys.readouterr().out
