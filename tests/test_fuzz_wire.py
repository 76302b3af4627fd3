"""Fuzzing every parser that takes bytes off the network: a clear refusal, never a crash.

Each wire model of ``protocol`` (uplink payloads, acks, commands, enrollment messages), the
fleet's ``ingest.decode`` (topic + payload as MQTT delivers them), ``parse_topic`` and the
signed-document reader of ``ota.document`` get arbitrary bytes, arbitrary JSON and
near-valid mutations of valid messages. The only allowed outcomes are a parsed message that
keeps the wire's promises (finite numbers, 64-bit integers, a lossless round trip) or the
documented refusal: pydantic's ``ValidationError``, ingest's ``Rejection``, ``None`` for a
foreign topic, ``DocumentRefusedError``. Any other exception fails the test.

Derandomized with bounded example counts so CI stays fast; set
``HAZARDWATCH_FUZZ_EXAMPLES`` (examples per property, 60 by default) for a longer run
(see the README's attack suite).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from fleet.ingest import Rejection, decode
from fleet.repository import Received
from fleet.signing import SigningKey
from ota.document import (
    FORMAT,
    Document,
    DocumentKind,
    DocumentRefusedError,
    Target,
    claimed_version,
    read_unverified,
    verify_document,
)
from protocol import (
    MAX_WIRE_INT,
    Ack,
    AckAlarmArgs,
    Command,
    CommandResult,
    DataBatch,
    EnrollmentRefusal,
    EnrollmentRequest,
    EnrollmentResponse,
    EventBatch,
    GatewayState,
    Health,
    MqttCredentials,
    OfflineBundle,
    Topic,
    gateway_topic,
    parse_topic,
)

EXAMPLES = int(os.environ.get("HAZARDWATCH_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

T0 = 1_750_000_000.0
GW = "gw-3f2a9c01d4"
KEY_B64 = "A" * 43 + "="

#: One valid message of every wire model, as the JSON a sender would put on the wire.
VALID: dict[type[BaseModel], dict[str, Any]] = {
    DataBatch: {
        "v": 1,
        "gateway_id": GW,
        "first_seq": 7,
        "last_seq": 9,
        "sent_at": T0,
        "rows": [[7, T0, "rain_total", 0.2, 0], [9, T0 + 1, "level", None, 1]],
    },
    EventBatch: {
        "v": 1,
        "gateway_id": GW,
        "first_seq": 1,
        "last_seq": 2,
        "rows": [
            {"seq": 1, "ts": T0, "kind": "alarm", "subject": "r1", "level": 2, "detail": {}},
            {"seq": 2, "ts": T0, "kind": "ack", "detail": {"by": "ops", "n": [1, 2.5]}},
        ],
    },
    Health: {
        "v": 1,
        "gateway_id": GW,
        "ts": T0,
        "uptime_s": 12.5,
        "agent_version": "0.1.0",
        "cpu_temp_c": 41.0,
        "mem_total": 1 << 30,
        "alarm_level": 1,
        "buses": {"rs485": {"last_success": T0, "transactions": 5, "failures": 1}},
        "sensor_faults": {"tilt-1": 2},
    },
    GatewayState: {"v": 1, "state": "online", "ts": T0, "agent_version": "0.1.0"},
    Ack: {"v": 1, "stream": "readings", "seq": 42},
    Command: {
        "v": 1,
        "id": "c-1",
        "name": "ack_alarm",
        "args": {"rule": "r1", "by": "ops"},
        "issued_at": T0,
        "issued_by": "ops",
    },
    CommandResult: {"v": 1, "id": "c-1", "ok": True, "detail": "done", "ts": T0},
    EnrollmentRequest: {
        "v": 1,
        "token": "hwe_" + "x" * 43,
        "public_key": KEY_B64,
        "signature": "B" * 86 + "==",
        "hostname": "pi-01",
        "agent_version": "0.1.0",
    },
    MqttCredentials: {"v": 1, "username": GW, "password": "secret", "client_id": GW},
    EnrollmentResponse: {
        "v": 1,
        "gateway_id": GW,
        "site_id": "creek-village",
        "mqtt": {"username": GW, "password": "secret", "client_id": GW},
        "broker_url": "mqtts://fleet.example:8883",
        "fleet_signing_key": KEY_B64,
        "topic_prefix": f"hw/v1/{GW}",
    },
    EnrollmentRefusal: {"v": 1, "detail": "token already used"},
    AckAlarmArgs: {"rule": "creek_level", "by": "operator"},
    OfflineBundle: {
        "format": "hazardwatch-enrollment-bundle",
        "fleet_url": "https://fleet.example",
        "token": "hwe_" + "x" * 43,
        "site_id": "creek-village",
        "expires_at": T0 + 3600,
        "fleet_signing_key": KEY_B64,
    },
}
MODELS = list(VALID)

#: Numbers at and just past every bound the wire has, plus the usual suspects.
EDGE_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    True,
    False,
    1.5,
    MAX_WIRE_INT,
    MAX_WIRE_INT + 1,
    -MAX_WIRE_INT - 1,
    2**64,
    10**400,
    1e308,
    -1e308,
    3.5e38,
    946_684_799.0,
    4_102_444_801.0,
    math.nan,
    math.inf,
    -math.inf,
    "1",
    "",
    None,
    [],
    {},
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(EDGE_NUMBERS)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) into a JSON value, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutated(value: Any, path: tuple[Any, ...], action: str, new: Any) -> Any:
    """A deep copy of ``value`` with the node at ``path`` replaced, deleted or grown."""
    copy = json.loads(json.dumps(value))
    if not path:
        return new
    parent = copy
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "wrap":
        parent[last] = [parent[last]]
    elif action == "extra" and isinstance(parent, dict):
        parent[f"{last}_extra"] = new
    else:
        parent[last] = new
    return copy


@st.composite
def near_valid_json(draw: st.DrawFn, message: Any) -> bytes:
    """``message`` with one to three nodes replaced, deleted, wrapped or added, as JSON bytes."""
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(message)))
        action = draw(st.sampled_from(["replace", "replace", "delete", "wrap", "extra"]))
        if action == "delete" and not path:
            action = "replace"
        new = draw(st.sampled_from(EDGE_NUMBERS) | json_values)
        message = _mutated(message, path, action, new)
    return json.dumps(message, allow_nan=True).encode()


def near_valid(model: type[BaseModel]) -> st.SearchStrategy[bytes]:
    """A valid message of ``model`` with a few nodes changed."""
    return near_valid_json(VALID[model])


def _walk_numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [n for item in value.values() for n in _walk_numbers(item)]
    if isinstance(value, list | tuple):
        return [n for item in value for n in _walk_numbers(item)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def _parse_or_refuse(model: type[BaseModel], payload: bytes) -> None:
    """Parse ``payload``; a refusal must be a ValidationError, a success must keep promises."""
    try:
        message = model.model_validate_json(payload)
    except ValidationError as refusal:
        problems = refusal.errors()
    else:
        problems = None
    if problems is not None:
        assert problems[0]["msg"]  # says what is wrong
        return
    for number in _walk_numbers(message.model_dump(mode="python")):
        if isinstance(number, float):
            assert math.isfinite(number), (model.__name__, payload)
        else:
            assert abs(number) <= MAX_WIRE_INT, (model.__name__, payload)
    assert model.model_validate_json(message.model_dump_json()) == message


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(payload=st.binary(max_size=300))
@example(payload=b"")
@example(payload=b"\xff\xfe{")
@example(payload=b"[" * 100_000)
@example(payload=b'{"v":1' + b"," * 10)
def test_arbitrary_bytes_are_parsed_or_refused(model: type[BaseModel], payload: bytes) -> None:
    _parse_or_refuse(model, payload)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(value=json_values)
def test_arbitrary_json_is_parsed_or_refused(model: type[BaseModel], value: Any) -> None:
    _parse_or_refuse(model, json.dumps(value, allow_nan=True).encode())


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(data=st.data())
def test_near_valid_messages_are_parsed_or_refused(model: type[BaseModel], data: Any) -> None:
    _parse_or_refuse(model, data.draw(near_valid(model)))


def test_the_valid_samples_parse() -> None:
    # Without this the mutation tests could pass on samples that are refused anyway.
    for model, message in VALID.items():
        model.model_validate_json(json.dumps(message))


UPLINK_TOPICS = [gateway_topic(GW, kind) for kind in Topic]
topics = st.sampled_from(UPLINK_TOPICS) | st.text(max_size=40)


@FUZZ
@given(topic=topics, payload=st.binary(max_size=300), retained=st.booleans())
def test_ingest_decodes_or_rejects_any_message(topic: str, payload: bytes, retained: bool) -> None:
    result = decode(topic, payload, retained=retained, now=T0)
    assert isinstance(result, Received | Rejection)
    if isinstance(result, Rejection):
        assert result.reason in {
            "unknown_topic",
            "oversize",
            "malformed_json",
            "schema",
            "gateway_mismatch",
        }
        assert result.detail


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        (Topic.DATA, DataBatch),
        (Topic.EVENTS, EventBatch),
        (Topic.HEALTH, Health),
        (Topic.STATE, GatewayState),
        (Topic.CMD_RESULT, CommandResult),
    ],
)
@FUZZ
@given(data=st.data())
def test_ingest_decodes_or_rejects_near_valid_uplinks(
    kind: Topic, model: type[BaseModel], data: Any
) -> None:
    payload = data.draw(near_valid(model))
    result = decode(gateway_topic(GW, kind), payload, retained=False, now=T0)
    assert isinstance(result, Received | Rejection)


@FUZZ
@given(topic=st.text(max_size=80) | st.sampled_from(UPLINK_TOPICS))
@example(topic=f"hw/v1/{GW}/cmd/result")
@example(topic="hw/v1//data")
@example(topic="hw/v1/+/data")
def test_a_topic_parses_to_a_valid_gateway_or_nothing(topic: str) -> None:
    parsed = parse_topic(topic)
    if parsed is not None:
        gateway_id, kind = parsed
        assert gateway_topic(gateway_id, kind) == topic


# --- signed documents (configs and releases pushed to gateways) ------------------------------


@pytest.fixture(scope="module")
def fleet_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return SigningKey.load_or_create(Path(tmp_path_factory.mktemp("key")))


def _signed(body: bytes, key: SigningKey) -> bytes:
    """An envelope around arbitrary body bytes with a valid signature by ``key``."""
    return json.dumps(
        {"format": FORMAT, "body": body.decode(), "signature": key.sign(body)}
    ).encode()


VALID_BODY = json.loads(
    Document(
        DocumentKind.CONFIG, 5, Target((GW,), "north"), T0, {"site_toml": "[site]\nid = 'x'\n"}
    ).body_bytes()
)


def _read_or_refuse(data: bytes, key: SigningKey) -> None:
    """Every reader of a document either returns one or raises ``DocumentRefusedError``."""
    for read in (
        lambda: verify_document(data, key.public_key_b64, GW, DocumentKind.CONFIG, 4),
        lambda: read_unverified(data),
    ):
        try:
            document = read()
        except DocumentRefusedError as refusal:
            reason = refusal.reason
        else:
            reason = None
            assert document.version >= 1
        assert reason is None or reason  # a refusal says why
    assert claimed_version(data) >= 0


@FUZZ
@given(data=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
@example(data=b"[" * 100_000)
@example(data=json.dumps({"format": FORMAT, "body": "\ud800", "signature": "x"}).encode())
def test_a_document_of_arbitrary_bytes_is_refused(fleet_key: SigningKey, data: bytes) -> None:
    _read_or_refuse(data, fleet_key)


@FUZZ
@given(body=near_valid_json(VALID_BODY))
# Found by this test: a huge integer time escaped as OverflowError, deep nesting as
# RecursionError.
@example(body=json.dumps({**VALID_BODY, "issued_at": 10**400}).encode())
@example(body=b'{"kind":"config","payload":' + b"[" * 100_000)
def test_a_signed_near_valid_document_is_read_or_refused(
    fleet_key: SigningKey, body: bytes
) -> None:
    _read_or_refuse(_signed(body, fleet_key), fleet_key)
