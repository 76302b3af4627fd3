"""The wire contract: topics, payload validation, limits, and the module's independence."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from drivers.model import BAD_QUALITY, Quality
from protocol import (
    BAD_QUALITY_MASK,
    MAX_EVENT_ROWS,
    MAX_READING_ROWS,
    QUALITY_BITS,
    Ack,
    DataBatch,
    EnrollmentRequest,
    EventBatch,
    GatewayState,
    Health,
    OfflineBundle,
    Stream,
    Topic,
    enrollment_message,
    gateway_topic,
    parse_topic,
    subscription,
)


def test_topics_round_trip_under_the_gateway_prefix() -> None:
    assert gateway_topic("gw-3f2a9c01d4", Topic.CMD_RESULT) == "hw/v1/gw-3f2a9c01d4/cmd/result"
    for kind in Topic:
        assert parse_topic(gateway_topic("gw-3f2a9c01d4", kind)) == ("gw-3f2a9c01d4", kind)
    assert subscription(Topic.DATA) == "hw/v1/+/data"
    assert subscription(Topic.DATA, "ingest") == "$share/ingest/hw/v1/+/data"


@pytest.mark.parametrize(
    "topic", ["hw/v2/gw-1234/data", "hw/v1/gw-1234/other", "hw/v1/+/data", "hw/v1/GW/data"]
)
def test_foreign_topics_do_not_parse(topic: str) -> None:
    assert parse_topic(topic) is None


@pytest.mark.parametrize("gateway_id", ["gw/1", "gw+1", "#", "Gw-1", "ab"])
def test_gateway_ids_that_would_break_topics_are_refused(gateway_id: str) -> None:
    with pytest.raises(ValueError, match="invalid gateway id"):
        gateway_topic(gateway_id, Topic.DATA)


def test_a_data_batch_is_compact_json_rows() -> None:
    batch = DataBatch(
        gateway_id="gw-3f2a9c01d4",
        first_seq=7,
        last_seq=9,
        rows=[(7, 1.5, "rain_total", 0.2, 0), (9, 2.5, "rain_total", None, 1)],
    )
    wire = json.loads(batch.model_dump_json())
    assert wire["v"] == 1
    assert wire["rows"] == [[7, 1.5, "rain_total", 0.2, 0], [9, 2.5, "rain_total", None, 1]]
    assert DataBatch.model_validate_json(batch.model_dump_json()) == batch


def test_flat_rows_follow_the_rows_even_after_a_copy() -> None:
    rows = [(7, 1.5, "rain_total", 0.2, 0), (9, 2.5, "level", None, 1)]
    batch = DataBatch(gateway_id="gw-3f2a9c01d4", first_seq=7, last_seq=9, rows=rows)
    assert batch.flat_rows() == [7, 1.5, "rain_total", 0.2, 0, 9, 2.5, "level", None, 1]
    parsed = DataBatch.model_validate_json(batch.model_dump_json())
    assert parsed.flat_rows() == batch.flat_rows()
    copied = batch.model_copy(update={"rows": [(8, 3.5, "tilt", 1.0, 0)]})
    assert copied.flat_rows() == [8, 3.5, "tilt", 1.0, 0]


@pytest.mark.parametrize(
    ("first", "last", "seqs", "problem"),
    [
        (5, 4, [], "below first_seq"),
        (1, 10, [3, 2], "out of order"),
        (1, 10, [11], "outside 1..10"),
        (5, 10, [4], "outside 5..10"),
        (1, 10, [2, 2], "out of order"),
    ],
)
def test_rows_must_lie_in_the_batch_range_in_order(
    first: int, last: int, seqs: list[int], problem: str
) -> None:
    rows = [(s, 0.0, "c", 1.0, 0) for s in seqs]
    with pytest.raises(ValidationError, match=problem):
        DataBatch(gateway_id="gw-3f2a9c01d4", first_seq=first, last_seq=last, rows=rows)


def test_batches_are_limited_in_rows() -> None:
    rows = [(s, 0.0, "c", 1.0, 0) for s in range(1, MAX_READING_ROWS + 2)]
    with pytest.raises(ValidationError, match="at most 2000"):
        DataBatch(gateway_id="gw-3f2a9c01d4", first_seq=1, last_seq=len(rows), rows=rows)
    events = [{"seq": s, "ts": 0.0, "kind": "fault"} for s in range(1, MAX_EVENT_ROWS + 2)]
    with pytest.raises(ValidationError, match="at most 200"):
        EventBatch.model_validate(
            {"gateway_id": "gw-3f2a9c01d4", "first_seq": 1, "last_seq": 201, "rows": events}
        )


def test_unknown_fields_are_ignored_but_another_version_is_refused() -> None:
    state = GatewayState.model_validate({"v": 1, "state": "online", "added_later": True})
    assert state.state == "online"
    with pytest.raises(ValidationError, match="Input should be 1"):
        GatewayState.model_validate({"v": 2, "state": "online"})


def test_quality_bits_match_the_drivers_model() -> None:
    assert {str(q.name).lower(): int(q) for q in Quality if q.value} == QUALITY_BITS
    assert int(BAD_QUALITY) == BAD_QUALITY_MASK


def test_acks_health_and_bundles_parse_their_documented_shapes() -> None:
    assert Ack.model_validate_json('{"v":1,"stream":"events","seq":42}') == Ack(
        stream=Stream.EVENTS, seq=42
    )
    health = Health.model_validate(
        {"gateway_id": "gw-3f2a9c01d4", "ts": 1.0, "uptime_s": 5, "agent_version": "0.1.0"}
    )
    assert health.backlog_readings == 0
    assert health.buses == {}
    bundle = OfflineBundle(
        fleet_url="https://fleet.example",
        token="hwe_" + "x" * 43,
        site_id="creek-village",
        expires_at=2.0,
        fleet_signing_key="A" * 43 + "=",
    )
    assert json.loads(bundle.model_dump_json())["format"] == "hazardwatch-enrollment-bundle"


def test_the_enrollment_proof_binds_token_and_key() -> None:
    assert enrollment_message("tok", "key") == b"hazardwatch-enroll-v1\ntok\nkey"
    with pytest.raises(ValidationError):
        EnrollmentRequest(token="short", public_key="k", signature="s")


def test_protocol_imports_neither_side() -> None:
    code = (
        "import sys, protocol; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'fleet', 'edge_agent', 'hardware_sim', 'drivers'}); "
        "print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
