"""The wire contract: topics, payload validation, limits, and the module's independence."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
from pydantic import ValidationError

import drivers.model
from protocol import (
    BAD_QUALITY,
    BAD_QUALITY_MASK,
    MAX_EVENT_ROWS,
    MAX_READING_ROWS,
    MIN_TIMESTAMP,
    Ack,
    AckAlarmArgs,
    AckEvent,
    AlarmEvent,
    DataBatch,
    EnrollmentRequest,
    EventBatch,
    GatewayState,
    Health,
    OfflineBundle,
    Quality,
    Stream,
    Topic,
    enrollment_message,
    gateway_topic,
    parse_topic,
    subscription,
)
from protocol.broker_url import parse_broker_url
from protocol.contacts import sender_numbers
from protocol.events import ActuationEvent, FailureForecast, StandingForecast
from protocol.payloads import finite_json, sendable_reading


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


#: A time in the wire's sane range (2025-06-15).
T0 = 1_750_000_000.0
GW = "gw-3f2a9c01d4"


def test_a_data_batch_is_compact_json_rows() -> None:
    batch = DataBatch(
        gateway_id="gw-3f2a9c01d4",
        first_seq=7,
        last_seq=9,
        rows=[(7, T0 + 1.5, "rain_total", 0.2, 0), (9, T0 + 2.5, "rain_total", None, 1)],
    )
    wire = json.loads(batch.model_dump_json())
    assert wire["v"] == 1
    assert wire["rows"] == [
        [7, T0 + 1.5, "rain_total", 0.2, 0],
        [9, T0 + 2.5, "rain_total", None, 1],
    ]
    assert DataBatch.model_validate_json(batch.model_dump_json()) == batch


def test_flat_rows_follow_the_rows_even_after_a_copy() -> None:
    rows = [(7, T0, "rain_total", 0.2, 0), (9, T0 + 1, "level", None, 1)]
    batch = DataBatch(gateway_id="gw-3f2a9c01d4", first_seq=7, last_seq=9, rows=rows)
    assert batch.flat_rows() == [7, T0, "rain_total", 0.2, 0, 9, T0 + 1, "level", None, 1]
    parsed = DataBatch.model_validate_json(batch.model_dump_json())
    assert parsed.flat_rows() == batch.flat_rows()
    copied = batch.model_copy(update={"rows": [(8, T0 + 2, "tilt", 1.0, 0)]})
    assert copied.flat_rows() == [8, T0 + 2, "tilt", 1.0, 0]


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
    rows = [(s, T0, "c", 1.0, 0) for s in seqs]
    with pytest.raises(ValidationError, match=problem):
        DataBatch(gateway_id="gw-3f2a9c01d4", first_seq=first, last_seq=last, rows=rows)


def test_batches_are_limited_in_rows() -> None:
    rows = [(s, T0, "c", 1.0, 0) for s in range(1, MAX_READING_ROWS + 2)]
    with pytest.raises(ValidationError, match="at most 2000"):
        DataBatch(gateway_id="gw-3f2a9c01d4", first_seq=1, last_seq=len(rows), rows=rows)
    events = [{"seq": s, "ts": T0, "kind": "fault"} for s in range(1, MAX_EVENT_ROWS + 2)]
    with pytest.raises(ValidationError, match="at most 200"):
        EventBatch.model_validate(
            {"gateway_id": "gw-3f2a9c01d4", "first_seq": 1, "last_seq": 201, "rows": events}
        )


def test_unknown_fields_are_ignored_but_another_version_is_refused() -> None:
    state = GatewayState.model_validate({"v": 1, "state": "online", "added_later": True})
    assert state.state == "online"
    with pytest.raises(ValidationError, match="Input should be 1"):
        GatewayState.model_validate({"v": 2, "state": "online"})


def test_quality_bits_keep_the_values_stored_in_files_and_sent_on_the_wire() -> None:
    assert {str(q.name).lower(): int(q) for q in Quality if q.value} == {
        "timeout": 1,
        "crc_error": 2,
        "exception": 4,
        "out_of_range": 8,
        "stuck": 16,
        "spike": 32,
        "clock_unsynced": 64,
        "simulated": 128,
        "no_connection": 256,
    }
    assert BAD_QUALITY_MASK == int(BAD_QUALITY) == 0b1_0011_1111
    assert (Quality.SPIKE | Quality.CLOCK_UNSYNCED).names() == ["spike", "clock_unsynced"]


def test_drivers_carry_the_protocols_quality_type_not_a_copy() -> None:
    assert drivers.model.Quality is Quality
    assert drivers.model.BAD_QUALITY is BAD_QUALITY


def test_acks_health_and_bundles_parse_their_documented_shapes() -> None:
    assert Ack.model_validate_json('{"v":1,"stream":"events","seq":42}') == Ack(
        stream=Stream.EVENTS, seq=42
    )
    health = Health.model_validate(
        {"gateway_id": "gw-3f2a9c01d4", "ts": T0, "uptime_s": 5, "agent_version": "0.1.0"}
    )
    assert health.backlog_readings == 0
    assert health.buses == {}
    bundle = OfflineBundle(
        fleet_url="https://fleet.example",
        token="hwe_" + "x" * 43,
        site_id="creek-village",
        expires_at=T0 + 3600,
        fleet_signing_key="A" * 43 + "=",
    )
    assert json.loads(bundle.model_dump_json())["format"] == "hazardwatch-enrollment-bundle"


def _batch_json(rows: str, first: int = 1, last: int = 3) -> str:
    return f'{{"gateway_id":"{GW}","first_seq":{first},"last_seq":{last},"rows":[{rows}]}}'


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (f'[1,{T0},"a",1,0],[2,NaN,"a",1,0],[3,{T0},"a",1,0]', "rows.1.1: finite"),
        (f'[1,{T0},"a",Infinity,0]', "rows.0.3: finite"),
        (f'[1,{T0},"a",-Infinity,0]', "rows.0.3: finite"),
        (f'[1,{T0},"a",NaN,0]', "rows.0.3: finite"),
        (f'[1,{T0},"a",-1e308,0]', "rows.0.3: greater than or equal to -34028"),
        (f'[1,{T0},"a",3.5e38,0]', "rows.0.3: less than or equal to 34028"),
        ('[1,0.0,"a",1,0]', "rows.0.1: greater than or equal to 946684800"),
        ('[1,1e12,"a",1,0]', "rows.0.1: less than or equal to 4102444800"),
        (f'[true,{T0},"a",1,0]', "rows.0.0: a valid integer"),
        (f'[1,{T0},"a",1,true]', "rows.0.4: a valid integer"),
    ],
)
def test_a_reading_batch_with_one_unusable_number_is_refused_whole(rows: str, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DataBatch.model_validate_json(_batch_json(rows))
    first = caught.value.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    expected_where, expected_msg = problem.split(": ", maxsplit=1)
    assert where == expected_where
    assert expected_msg in first["msg"]


@pytest.mark.parametrize("seq", [2**63, 2**64 + 5, 10**30])
def test_seqs_beyond_64_bits_are_refused(seq: int) -> None:
    with pytest.raises(ValidationError, match="less than or equal to 9223372036854775807"):
        DataBatch.model_validate_json(_batch_json("", seq, seq))
    with pytest.raises(ValidationError, match="less than or equal to 9223372036854775807"):
        Ack.model_validate_json(f'{{"stream":"readings","seq":{seq}}}')
    top = DataBatch.model_validate_json(_batch_json("", 2**63 - 1, 2**63 - 1))
    assert top.last_seq == 2**63 - 1


@pytest.mark.parametrize(
    ("detail", "where"),
    [('{"x":NaN}', "x"), ('{"a":{"b":[1,Infinity]}}', "a.b[1]"), ('{"big":1e400}', "big")],
)
def test_an_event_detail_with_a_non_finite_number_is_refused(detail: str, where: str) -> None:
    row = f'{{"seq":1,"ts":{T0},"kind":"fault","detail":{detail}}}'
    with pytest.raises(ValidationError, match=rf"{re.escape(where)} is (nan|inf)"):
        EventBatch.model_validate_json(
            f'{{"gateway_id":"{GW}","first_seq":1,"last_seq":1,"rows":[{row}]}}'
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uptime_s", "Infinity"),
        ("uptime_s", "NaN"),
        ("uptime_s", "-1"),
        ("ts", "0"),
        ("cpu_temp_c", "-Infinity"),
        ("mem_total", str(2**63)),
        ("mem_total", "-1"),
        ("backlog_readings", "true"),
    ],
)
def test_health_refuses_numbers_storage_and_json_cannot_hold(field: str, value: str) -> None:
    health = {"gateway_id": GW, "ts": T0, "uptime_s": 5, "agent_version": "0.1.0"}
    text = json.dumps(health)[:-1] + f', "{field}": {value}}}'
    with pytest.raises(ValidationError) as caught:
        Health.model_validate_json(text)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_a_sender_flags_what_the_wire_cannot_carry_and_still_sends_it() -> None:
    bits = {str(q.name).lower(): int(q) for q in Quality if q.value}
    rows = [
        sendable_reading(1, T0, "a", 2.5, 0),
        sendable_reading(2, T0, "a", math.inf, 0),
        sendable_reading(3, T0, "a", -1e308, 0),
        sendable_reading(4, T0, "a", math.nan, bits["spike"]),
        sendable_reading(5, 12.0, "a", 1.0, 0),
        sendable_reading(6, math.nan, "a", 1.0, 0),
    ]
    assert rows == [
        (1, T0, "a", 2.5, 0),
        (2, T0, "a", None, bits["out_of_range"]),
        (3, T0, "a", None, bits["out_of_range"]),
        (4, T0, "a", None, bits["spike"] | bits["out_of_range"]),
        (5, MIN_TIMESTAMP, "a", 1.0, bits["clock_unsynced"]),
        (6, MIN_TIMESTAMP, "a", 1.0, bits["clock_unsynced"]),
    ]
    batch = DataBatch(gateway_id=GW, first_seq=1, last_seq=6, rows=rows)
    assert all(row[4] & BAD_QUALITY_MASK for row in batch.rows[1:4])
    assert finite_json({"a": [math.nan, 2**64, 1.5], "b": True}) == {
        "a": ["nan", str(2**64), 1.5],
        "b": True,
    }


@pytest.mark.parametrize("expires_at", ["NaN", "Infinity", "1e300", "0"])
def test_a_bundle_expiring_at_no_sane_time_is_refused(expires_at: str) -> None:
    bundle = OfflineBundle(
        fleet_url="https://fleet.example",
        token="hwe_" + "x" * 43,
        site_id="creek-village",
        expires_at=T0,
        fleet_signing_key="A" * 43 + "=",
    )
    text = bundle.model_dump_json().replace(f'"expires_at":{T0}', f'"expires_at":{expires_at}')
    assert expires_at in text
    with pytest.raises(ValidationError) as caught:
        OfflineBundle.model_validate_json(text)
    assert caught.value.errors()[0]["loc"] == ("expires_at",)


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


def test_levels_read_as_county_staff_read_them_never_as_a_bare_number() -> None:
    from protocol.levels import LEVEL_NAMES, AlarmLevel  # noqa: PLC0415

    assert LEVEL_NAMES == ("normal", "blue", "yellow", "orange", "red")
    assert [AlarmLevel(n).display_zh for n in (4, 3, 2, 1)] == [
        "红色预警（Ⅰ级）",  # noqa: RUF001 - full-width brackets, as printed
        "橙色预警（Ⅱ级）",  # noqa: RUF001
        "黄色预警（Ⅲ级）",  # noqa: RUF001
        "蓝色预警（Ⅳ级）",  # noqa: RUF001
    ]
    assert AlarmLevel.RED.display_en == "Red warning (level I)"
    assert AlarmLevel.NORMAL.display_zh == "正常"
    assert [AlarmLevel(n).colour_zh for n in (1, 2, 3, 4)] == ["蓝色", "黄色", "橙色", "红色"]


def test_broker_urls_parse_with_the_default_port_of_their_scheme() -> None:
    assert parse_broker_url("mqtt://fleet.example") == ("mqtt", "fleet.example", 1883)
    assert parse_broker_url("mqtts://fleet.example") == ("mqtts", "fleet.example", 8883)
    secure = parse_broker_url("mqtts://10.0.0.5:9883")
    assert (secure.host, secure.port, secure.tls) == ("10.0.0.5", 9883, True)
    assert not parse_broker_url("mqtt://[::1]:1884").tls


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://fleet.example:1883", "must look like mqtt://host:port or mqtts://host:port"),
        ("mqtt://:1883", "must look like mqtt://host:port or mqtts://host:port"),
        ("fleet.example:1883", "must look like mqtt://host:port or mqtts://host:port"),
        ("mqtt://fleet.example:99999", "has no usable port (Port out of range 0-65535)"),
        ("mqtt://fleet.example:eighty", "has no usable port (Port could not be cast"),
        ("mqtt://fleet.example:0", "has no usable port (0); ports are 1 to 65535"),
    ],
)
def test_a_bad_broker_url_is_refused_naming_the_url_on_both_sides(url: str, error: str) -> None:
    from fleet.mqtt_connection import BrokerConnection  # noqa: PLC0415 - the fleet's side

    with pytest.raises(ValueError, match=re.escape(f"broker URL {url!r}")) as parsed:
        parse_broker_url(url)
    assert error in str(parsed.value)
    with pytest.raises(ValueError, match=re.escape(error)):
        _ = BrokerConnection(url).port


def test_an_alarm_event_is_written_in_the_shape_older_fleets_read() -> None:
    event = AlarmEvent(
        from_level="yellow",
        to_level="red",
        kind="rise",
        metric=51.5,
        detail="1h window 51.5 mm >= 50 (red)",
        at=T0,
    )
    assert event.wire() == {
        "from": "yellow",
        "to": "red",
        "kind": "rise",
        "metric": 51.5,
        "detail": "1h window 51.5 mm >= 50 (red)",
        "at": T0,
    }
    assert AlarmEvent.tolerant(finite_json(event.wire())) == event
    unmeasured = AlarmEvent(kind="ack", metric=math.nan)
    sent = finite_json(unmeasured.wire())
    assert sent == {"kind": "ack", "metric": "nan"}
    assert math.isnan(AlarmEvent.tolerant(sent).metric or 0.0)


def test_alarm_event_details_from_any_gateway_release_are_read_not_refused() -> None:
    older = AlarmEvent.tolerant({"detail": "level 2.4 m >= 2.2"})
    assert older == AlarmEvent(detail="level 2.4 m >= 2.2")
    newer = AlarmEvent.tolerant({"to": "red", "kind": "rise", "confidence": 0.9})
    assert (newer.to_level, newer.kind) == ("red", "rise")
    garbled = AlarmEvent.tolerant({"from": 3, "kind": "sideways", "detail": "kept", "at": "x"})
    assert garbled == AlarmEvent(detail="kept")
    assert AckEvent.tolerant({}).by == "local"
    assert AckEvent.tolerant({"by": ["not", "a", "name"]}).by == "local"


def test_a_failure_forecast_goes_with_its_alarm_event_and_infinity_is_left_out() -> None:
    forecast = FailureForecast(
        lead_h=30.0, failure_t=T0 + 108_000, failure_t_low=T0 + 90_000, alpha=2.0, evidence=41.0
    )
    event = AlarmEvent(to_level="orange", kind="rise", metric=30.0, forecast=forecast)
    sent = finite_json(event.wire())
    assert sent["forecast"] == {
        "lead_h": 30.0,
        "failure_t": T0 + 108_000,
        "failure_t_low": T0 + 90_000,
        "alpha": 2.0,
        "evidence": 41.0,
    }
    assert AlarmEvent.tolerant(sent) == event
    # An unbounded interval (the uplink sends infinity as text) is read as unknown.
    sent["forecast"]["failure_t_high"] = "inf"
    assert AlarmEvent.tolerant(sent).forecast == forecast
    # A time no wire carries (a faulty gateway's) is unknown too, never shown as a date.
    sent["forecast"]["failure_t_high"] = 1e300
    sent["forecast"]["failure_t"] = -5.0
    assert AlarmEvent.tolerant(sent).forecast == forecast.model_copy(update={"failure_t": None})
    standing = StandingForecast.tolerant({**sent["forecast"], "at": 2.0**63})
    assert (standing.at, standing.failure_t_low) == (None, T0 + 90_000)
    # A forecast that does not parse is dropped; the alarm event itself is kept.
    garbled = AlarmEvent.tolerant({"to": "red", "forecast": ["not", "a", "forecast"]})
    assert (garbled.to_level, garbled.forecast) == ("red", None)


def test_an_actuation_event_says_which_outputs_are_on() -> None:
    on = ActuationEvent.tolerant(
        {"from": "yellow", "to": "red", "cause": "r: x", "patterns": {"siren": "siren"}}
    )
    assert (on.from_level, on.to_level, on.switched_on) == ("yellow", "red", True)
    off = ActuationEvent.tolerant({"from": "red", "to": "normal", "patterns": {"siren": None}})
    assert not off.switched_on
    assert ActuationEvent.tolerant({"patterns": "siren"}) == ActuationEvent()


def test_ack_alarm_arguments_are_what_the_fleet_sends() -> None:
    args = AckAlarmArgs(rule="creek_level", by="operator").model_dump()
    assert args == {"rule": "creek_level", "by": "operator"}
    assert AckAlarmArgs.model_validate(args | {"note": "later field"}).rule == "creek_level"
    with pytest.raises(ValidationError, match="rule"):
        AckAlarmArgs.model_validate({"by": "operator"})
    # the agent's own ack request takes a name of at most 128 characters: so does this
    with pytest.raises(ValidationError, match="by"):
        AckAlarmArgs.model_validate({"rule": "creek_level", "by": "x" * 129})


@pytest.mark.parametrize(
    ("sender", "country_code", "numbers"),
    [
        ("+8613800000001", None, ("+8613800000001",)),
        ("+8613800000001", "86", ("+8613800000001",)),
        ("008613800000001", "86", ("+8613800000001",)),
        ("8613800000001", None, ("+8613800000001",)),
        # domestic: only with a country code, then read both ways (looked up exactly)
        ("13800000001", None, ("+13800000001",)),
        ("13800000001", "86", ("+13800000001", "+8613800000001")),
        # a landline with its trunk prefix
        ("075512345678", "86", ("+75512345678", "+8675512345678")),
        # a short code or a name is no number at all
        ("10086", "86", ()),
        ("China Mobile", "86", ()),
    ],
)
def test_a_reported_sender_stands_for_these_e164_numbers(
    sender: str, country_code: str | None, numbers: tuple[str, ...]
) -> None:
    assert sender_numbers(sender, country_code) == numbers


def test_a_shorter_number_ending_like_a_listed_one_stands_for_nobody_on_the_list() -> None:
    listed = "+8613800000001"
    for sender in ("3800000001", "800000001", "00000001"):
        assert listed not in sender_numbers(sender, "86")
