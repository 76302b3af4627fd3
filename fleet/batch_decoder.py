"""A fast first try at decoding a readings batch, for ingest's hot path (msgspec).

``protocol.DataBatch.model_validate_json`` is the protocol's definition of a valid batch,
and it costs about half a microsecond a reading. msgspec decodes the same JSON straight
into tuples with the same limits in about half that time. ``decode_data_batch`` returns a
``DataBatch`` only when msgspec accepts the payload and the gateway id and seq order
checks pass; otherwise it returns None and the caller validates with pydantic, whose
answer and error message stand. So this module can only make a valid batch cheaper,
never change what is accepted: ``tests/test_batch_decoder.py`` checks it against pydantic
on thousands of mutated payloads.

msgspec comes with the ``fleet`` extra (servers only: it has no 32-bit ARM wheel); without
it every batch takes the pydantic path.

This module must never accept a payload that ``protocol.DataBatch`` refuses, and never
give a batch whose fields differ from the ones pydantic would give.
"""

from __future__ import annotations

from typing import Annotated, Literal

from protocol import DataBatch
from protocol.limits import (
    MAX_READING_MAGNITUDE,
    MAX_READING_ROWS,
    MAX_TIMESTAMP,
    MAX_WIRE_INT,
    MIN_TIMESTAMP,
    PROTOCOL_VERSION,
)
from protocol.topics import valid_gateway_id

try:
    import msgspec
except ImportError:  # a fleet installed without its extra: pydantic decodes everything
    msgspec = None  # type: ignore[assignment]

if msgspec is not None:
    from msgspec import Meta

    _Seq = Annotated[int, Meta(ge=1, le=MAX_WIRE_INT)]
    _Timestamp = Annotated[float, Meta(ge=MIN_TIMESTAMP, le=MAX_TIMESTAMP)]
    _Value = Annotated[float, Meta(ge=-MAX_READING_MAGNITUDE, le=MAX_READING_MAGNITUDE)]
    _Channel = Annotated[str, Meta(min_length=1, max_length=64)]
    _Quality = Annotated[int, Meta(ge=0, lt=1 << 16)]
    _Row = tuple[_Seq, _Timestamp, _Channel, _Value | None, _Quality]

    class _WireBatch(msgspec.Struct, frozen=True):
        """``DataBatch`` as msgspec reads it; unknown fields are ignored, as pydantic does."""

        gateway_id: str
        first_seq: _Seq
        last_seq: _Seq
        rows: Annotated[list[_Row], Meta(max_length=MAX_READING_ROWS)]
        v: Literal[1] = PROTOCOL_VERSION
        sent_at: _Timestamp | None = None

    _DECODER: msgspec.json.Decoder[_WireBatch] | None = msgspec.json.Decoder(_WireBatch)
else:
    _DECODER = None


def decode_data_batch(payload: bytes) -> DataBatch | None:
    """The batch ``payload`` holds if the fast path can vouch for it, else None.

    None says nothing about validity: validate with ``DataBatch.model_validate_json``.
    """
    if _DECODER is None:
        return None
    try:
        # Decoded as text first: msgspec skips an unknown key without checking its UTF-8,
        # which pydantic refuses (the fuzz test found one).
        wire = _DECODER.decode(payload.decode())
    except (UnicodeDecodeError, msgspec.DecodeError):
        return None
    if not valid_gateway_id(wire.gateway_id):
        return None
    batch = DataBatch.model_construct(
        v=wire.v,
        gateway_id=wire.gateway_id,
        first_seq=wire.first_seq,
        last_seq=wire.last_seq,
        sent_at=wire.sent_at,
        rows=wire.rows,
    )
    try:
        batch.check_rows()
    except ValueError:
        return None
    return batch
