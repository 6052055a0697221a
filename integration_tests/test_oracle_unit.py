"""The merging-destination oracle (oracle.py) finds each kind of difference, so the tests
that use it cannot pass vacuously. No binary, no emulator: records and documents made here."""

from __future__ import annotations

import json

import pytest

from harness import Run, strict
from oracle import MergingDestination, assert_destination_exact, diff_rows, report, updated_at_of

TS = 1_770_335_567_024_386_710


def doc(_id: str, ts: int = TS, **fields) -> dict:
    return {"_id": _id, "_ts": ts, "_creationTime": 1770335566781.5, **fields}


def record(d: dict, *, deleted: bool = False) -> dict:
    when = updated_at_of(d["_ts"]).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {**d, "_ab_cdc_lsn": d["_ts"], "_ab_cdc_updated_at": when, "_deleted": deleted,
            "_ab_cdc_deleted_at": when if deleted else None}


def run_of(*messages: dict, cut: bool = False) -> Run:
    out = "".join(json.dumps(m) + "\n" for m in messages).encode()
    return Run(["source-convex", "read"], 0, out, b"", 0.0, cut=cut)


def rec_msg(stream: str, data: dict) -> dict:
    return {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": 1}}


def state_msg(stream: str, ts: int = TS) -> dict:
    return {"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": stream}, "stream_state": {"delta_cursor": ts}}}}


def kinds(rows: list, truth: dict, **kwargs) -> list:
    problems = diff_rows("users", rows, truth, equal=strict(), exact_keys=True, **kwargs)
    return sorted(p.split(" ", 1)[0] for p in problems)


A, B = doc("a", name="x"), doc("b", name="y")


def test_an_exact_destination_has_no_problem():
    assert kinds([record(A), record(B)], {"a": A, "b": B}) == []
    assert report("label", {"users": []}) is None


@pytest.mark.parametrize("rows,want", [
    ([record(A), record(A), record(B)], ["DUPLICATE"]),
    ([record(B)], ["MISSING"]),
    ([record(A), record(B), record(doc("c"))], ["LIVE-BUT-DELETED"]),
    ([record(A, deleted=True), record(B)], ["DELETED-BUT-LIVE"]),
    ([record({**A, "_ts": TS - 1}), record(B)], ["STALE"]),
    ([record({**A, "name": "z"}), record(B)], ["FIELD"]),
    ([record({**A, "extra": None}), record(B)], ["EXTRA"]),
    ([record({k: v for k, v in A.items() if k != "name"}), record(B)], ["COLUMN"]),
    ([{**record(A), "_ab_cdc_lsn": TS + 1}, record(B)], ["LSN"]),
    ([{**record(A), "_ab_cdc_updated_at": "2026-01-01T00:00:00Z"}, record(B)], ["UPDATED-AT"]),
    ([{**record(A), "_deleted": None}, record(B)], ["DELETED-FLAG"]),
    ([{**record(A), "_ab_cdc_deleted_at": "x"}, record(B)], ["DELETED-AT"]),
])
def test_each_difference_is_found(rows, want):
    assert kinds(rows, {"a": A, "b": B}) == want


def test_a_float_one_ulp_off_is_a_difference_unless_allowed():
    off = {**A, "_creationTime": 1770335566781.5002}
    assert kinds([record(off), record(B)], {"a": A, "b": B}) == ["FIELD"]
    assert diff_rows("users", [record(off), record(B)], {"a": A, "b": B},
                     equal=strict(ulps=1)) == []


def test_legacy_updated_at_is_the_python_connectors_string():
    legacy = {**record(A), "_ab_cdc_updated_at": "2026-02-06T00:32:47.024386"}
    assert diff_rows("users", [legacy], {"a": A}, equal=strict(), column_types="legacy") == []
    wrong = {**legacy, "_ab_cdc_updated_at": "2026-02-06 00:32:47"}
    assert kinds([wrong], {"a": A}, column_types="legacy") == ["UPDATED-AT"]


def test_known_deletes_and_unknown_rows():
    gone = record(doc("c"), deleted=True)
    assert kinds([record(A), gone], {"a": A}, deleted={"c"}) == []
    assert kinds([record(A)], {"a": A}, deleted={"c"}) == ["DELETE-MISSING"]
    assert kinds([record(A), gone], {"a": A}, deleted=set()) == ["UNKNOWN"]
    assert kinds([record(A), gone], {"a": A}, deleted=set(), transient=frozenset({"c"})) == []


def test_the_destination_merges_by_id_and_keeps_only_checkpointed_streams_of_a_cut_run():
    old, new = doc("a", TS - 5, name="old"), doc("a", name="new")
    full = run_of(rec_msg("users", record(old)), rec_msg("users", record(new)),
                  state_msg("users"))
    assert MergingDestination().apply(full).rows("users") == [record(new)]
    cut = run_of(rec_msg("users", record(new)), state_msg("users"),
                 rec_msg("messages", record(B)), cut=True)
    dest = MergingDestination().apply(cut)
    assert dest.rows("users") == [record(new)] and dest.rows("messages") == []


def test_a_document_sent_twice_by_one_run_fails_even_when_merged():
    twice = run_of(rec_msg("users", record(A)), rec_msg("users", record(A)))
    with pytest.raises(AssertionError, match="DUPLICATE users _id=a: 2 records in attempt 1"):
        assert_destination_exact("t", MergingDestination().apply(twice), {"users": {"a": A}},
                                 equal=strict(), runs=[twice])
