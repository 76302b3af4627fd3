"""The fast batch decoder never accepts what ``DataBatch`` refuses (``fleet.batch_decoder``).

Thousands of seeded payloads, valid and mutated at the JSON level and at the byte level,
go through both decoders. Whenever the fast one returns a batch, pydantic must accept the
same payload and give the same batch, field for field and type for type. Every valid
payload must take the fast path, or the decoder would be dead weight.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from pydantic import ValidationError

from fleet.batch_decoder import decode_data_batch
from fleet.ingest import Rejection, decode
from protocol import DataBatch
from protocol.limits import MAX_READING_MAGNITUDE, MAX_TIMESTAMP, MAX_WIRE_INT, MIN_TIMESTAMP

pytest.importorskip("msgspec", reason="the fleet extra's msgspec is what this tests")

T0 = 1_750_000_000.0
ODD_VALUES: list[Any] = [
    0,
    1,
    -1,
    1.0,
    0.5,
    -0.0,
    True,
    False,
    None,
    "",
    "x",
    "1",
    "1.5",
    [],
    {},
    [1],
    2**63,
    2**63 - 1,
    MAX_WIRE_INT,
    MAX_WIRE_INT + 1,
    2**64,
    -(2**63),
    1e308,
    -1e308,
    MIN_TIMESTAMP,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP - 1,
    MAX_TIMESTAMP + 1,
    MAX_READING_MAGNITUDE,
    MAX_READING_MAGNITUDE * 2,
    65535,
    65536,
    "a" * 64,
    "a" * 65,
    "é" * 64,
    "é" * 65,
    "gw-0001",
    "GW-0001",
    "gw-0001\n",
]
RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b'"\\ud800"', b"01"]


def valid_batch(rng: random.Random) -> dict[str, Any]:
    first = rng.randrange(1, 10_000)
    count = rng.randrange(0, 8)
    seqs = sorted(rng.sample(range(first, first + 20), count))
    rows = [
        [
            seq,
            rng.choice([T0 + seq, int(T0) + seq, T0 + seq + 0.25]),
            rng.choice(["rain", "level", "é" * 3]),
            rng.choice([None, 1.5, -2, 0, 3.25e6]),
            rng.choice([0, 1, 4096]),
        ]
        for seq in seqs
    ]
    batch: dict[str, Any] = {
        "gateway_id": "gw-" + "".join(rng.choice("abc0123") for _ in range(6)),
        "first_seq": first,
        "last_seq": first + 19,
        "rows": rows,
    }
    if rng.random() < 0.5:
        batch["v"] = 1
    if rng.random() < 0.5:
        batch["sent_at"] = rng.choice([None, T0, int(T0)])
    if rng.random() < 0.2:
        batch["extra"] = {"ignored": [1, 2]}
    return batch


def mutate(rng: random.Random, batch: dict[str, Any]) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:  # a field given an odd value
        batch[rng.choice(["gateway_id", "first_seq", "last_seq", "v", "sent_at", "rows"])] = (
            rng.choice(ODD_VALUES)
        )
    elif kind == 1 and batch["rows"]:  # one value of one row
        row = rng.choice(batch["rows"])
        row[rng.randrange(5)] = rng.choice(ODD_VALUES)
    elif kind == 2 and batch["rows"]:  # a row too short, too long, or not a list
        index = rng.randrange(len(batch["rows"]))
        batch["rows"][index] = rng.choice(
            [batch["rows"][index][:4], [*batch["rows"][index], 0], {"seq": 1}, 5]
        )
    elif kind == 3:  # a field missing
        batch.pop(rng.choice(["gateway_id", "first_seq", "last_seq", "rows"]), None)
    elif kind == 4 and len(batch["rows"]) > 1:  # rows out of order or repeated
        batch["rows"][0], batch["rows"][-1] = batch["rows"][-1], batch["rows"][0]
    elif kind == 5:  # a bare token JSON has no value for, or a duplicate key
        text = json.dumps(batch).encode()
        if rng.random() < 0.5:
            return text.replace(b'"first_seq": ', b'"first_seq": -5, "first_seq": ', 1)
        return text.replace(b"1.5", rng.choice(RAW_TOKENS), 1)
    text = json.dumps(batch).encode()
    if kind == 6 and text:  # a byte changed
        at = rng.randrange(len(text))
        text = text[:at] + bytes([rng.randrange(256)]) + text[at + 1 :]
    return text


def pydantic_batch(payload: bytes) -> DataBatch | None:
    try:
        return DataBatch.model_validate_json(payload)
    except ValidationError:
        return None


def same(fast: DataBatch, slow: DataBatch) -> bool:
    """Field for field and type for type (``repr`` tells 1 from 1.0 and a tuple from a list)."""
    fields = ("v", "gateway_id", "first_seq", "last_seq", "sent_at", "rows")
    return all(repr(getattr(fast, f)) == repr(getattr(slow, f)) for f in fields) and (
        fast.flat_rows() == slow.flat_rows()
    )


def test_the_fast_decoder_never_accepts_what_pydantic_refuses_and_gives_the_same_batch() -> None:
    rng = random.Random(20261204)
    valid = taken = mutated_taken = refused = 0
    for _ in range(10_000):
        payload = json.dumps(valid_batch(rng)).encode()
        slow = pydantic_batch(payload)
        assert slow is not None
        fast = decode_data_batch(payload)
        assert fast is not None, payload  # every valid batch takes the fast path
        assert same(fast, slow), payload
        valid += 1
        taken += 1
        mutated = mutate(rng, valid_batch(rng))
        fast = decode_data_batch(mutated)
        slow = pydantic_batch(mutated)
        if fast is not None:
            assert slow is not None, mutated
            assert same(fast, slow), mutated
            mutated_taken += 1
        elif slow is None:
            refused += 1
    assert valid == taken == 10_000
    # The mutations reach both sides: many still valid, many refused by both.
    assert mutated_taken > 1_000  # 1,479 of 10,000 with this seed
    assert refused > 3_000


def test_ingest_still_names_what_is_wrong_with_a_batch_the_fast_decoder_refuses() -> None:
    payload = json.dumps(
        {"gateway_id": "gw-0001", "first_seq": 1, "last_seq": 2, "rows": [[1, T0, "", 1, 0]]}
    ).encode()
    rejected = decode("hw/v1/gw-0001/data", payload, retained=False, now=T0)
    assert isinstance(rejected, Rejection)
    assert rejected.reason == "schema"
    assert "rows.0.2" in rejected.detail
    accepted = decode(
        "hw/v1/gw-0001/data", payload.replace(b'""', b'"rain"'), retained=False, now=T0
    )
    assert not isinstance(accepted, Rejection)
    assert isinstance(accepted.payload, DataBatch)
    assert accepted.payload.rows == [(1, T0, "rain", 1.0, 0)]
