"""Fuzzing the Modbus decode path: any register words in, a number or a clear refusal out.

What a device puts on the wire is untrusted: any 16-bit words, any count of them. The path
``codec.decode`` -> ``ChannelSpec.to_engineering`` -> ``PlausibilityCheck.assess`` must
either give a value with quality bits or refuse with ``ValueError`` (a width that does not
fit the type), and must never call a value good that is not a finite number: an
infinity decoded from a float32 register must not reach the alarm rules as a measurement.

Derandomized with bounded example counts; ``HAZARDWATCH_FUZZ_EXAMPLES`` runs longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drivers.bus import ModbusBus, TransactionError
from drivers.bus_config import TcpBusConfig
from drivers.codec import BYTE_ORDERS, DATA_TYPES, WORD_ORDERS, decode, register_width
from drivers.model import BAD_QUALITY, Quality
from drivers.plausibility import PlausibilityCheck
from drivers.profiles import ChannelSpec, Table

EXAMPLES = int(os.environ.get("HAZARDWATCH_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES * 3,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Words as a device or a broken client library may hand them over, out of range included.
words = st.integers(0, 0xFFFF) | st.integers(-(2**20), 2**20)
#: Float32 words that matter: infinities, NaNs, the largest finite values, denormals.
SPECIAL_FLOAT32 = [
    [0x7F80, 0x0000],  # +inf
    [0xFF80, 0x0000],  # -inf
    [0x7FC0, 0x0000],  # NaN
    [0xFFFF, 0xFFFF],  # NaN with every bit set
    [0x7F7F, 0xFFFF],  # FLT_MAX
    [0x0000, 0x0001],  # smallest denormal
]
register_lists = st.lists(words, max_size=4) | st.sampled_from(SPECIAL_FLOAT32)

INTEGER_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "bool": (0, 1),
}


@FUZZ
@given(
    registers=register_lists,
    dtype=st.sampled_from(DATA_TYPES),
    word_order=st.sampled_from(WORD_ORDERS),
    byte_order=st.sampled_from(BYTE_ORDERS),
)
# Found by this test: an empty read of a coil escaped as IndexError.
@example(registers=[], dtype="bool", word_order="big", byte_order="big")
@example(registers=[1, 0], dtype="bool", word_order="big", byte_order="big")
def test_any_words_decode_to_a_number_of_the_type_or_a_clear_refusal(
    registers: list[int], dtype: str, word_order: str, byte_order: str
) -> None:
    width = register_width(dtype)  # type: ignore[arg-type]
    try:
        value = decode(registers, dtype, word_order, byte_order)  # type: ignore[arg-type]
    except ValueError as refusal:
        problem = str(refusal)
    else:
        problem = ""
    if len(registers) != width:
        assert f"{dtype} needs {width} register(s), got {len(registers)}" == problem
        return
    assert not problem
    assert isinstance(value, float)
    if dtype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[dtype]
        assert value.is_integer()
        assert low <= value <= high


spec_numbers = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def channels(draw: st.DrawFn) -> ChannelSpec:
    """A channel as a profile may define it: any type, order, scaling, limits and checks."""
    dtype = draw(st.sampled_from(DATA_TYPES))
    low, high = sorted(draw(st.tuples(spec_numbers, spec_numbers)))
    return ChannelSpec(
        name="ch",
        quantity="water_level",
        unit="mm",
        table=Table.COIL if dtype == "bool" else Table.HOLDING,
        address=0,
        dtype=dtype,  # type: ignore[arg-type]
        word_order=draw(st.sampled_from(WORD_ORDERS)),  # type: ignore[arg-type]
        byte_order=draw(st.sampled_from(BYTE_ORDERS)),  # type: ignore[arg-type]
        scale=draw(st.sampled_from([1.0, 0.1, -1.0, 1e300]) | spec_numbers),
        offset=draw(st.sampled_from([0.0, -1e300]) | spec_numbers),
        valid_min=draw(st.none() | st.just(low)),
        valid_max=draw(st.none() | st.just(high)),
        max_rate=draw(st.none() | st.floats(min_value=0.001, max_value=1e6)),
        stuck_after_s=draw(st.none() | st.floats(min_value=1, max_value=3600)),
    )


INFINITY_CHANNEL = ChannelSpec("ch", "water_level", "mm", Table.HOLDING, 0, "float32")


@FUZZ
@given(
    spec=channels(),
    samples=st.lists(
        st.tuples(st.floats(min_value=0, max_value=600), register_lists), min_size=1, max_size=8
    ),
)
# Found by this test: +inf from a float32 register, on a channel without limits, was good.
@example(spec=INFINITY_CHANNEL, samples=[(0.0, [0x7F80, 0x0000])])
@example(spec=INFINITY_CHANNEL, samples=[(0.0, [0x4000, 0x0000]), (1.0, [0xFF80, 0x0000])])
def test_a_sample_is_good_only_when_it_is_a_finite_number(
    spec: ChannelSpec, samples: list[tuple[float, list[int]]]
) -> None:
    check = PlausibilityCheck(spec)
    t = 1_750_000_000.0
    for step, registers in samples:
        t += step
        try:
            raw = decode(registers, spec.dtype, spec.word_order, spec.byte_order)
        except ValueError:
            assert len(registers) != spec.width  # the only refusal decode gives
            continue
        value = spec.to_engineering(raw)
        quality = check.assess(t, value)
        assert isinstance(quality, Quality)
        if not math.isfinite(value):
            assert quality & Quality.OUT_OF_RANGE, (value, quality)
            assert quality & BAD_QUALITY
        elif spec.in_range(value) is False:
            assert quality & Quality.OUT_OF_RANGE


async def _short_coil_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A Modbus TCP device that answers every read with a byte count of 0 and no data."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            header = await reader.readexactly(7)
            transaction, _protocol, length, unit = struct.unpack(">HHHB", header)
            pdu = await reader.readexactly(length - 1)
            answer = bytes([pdu[0], 0])  # function code, byte count 0
            writer.write(struct.pack(">HHHB", transaction, 0, len(answer) + 1, unit) + answer)
            await writer.drain()
    writer.close()


async def test_a_coil_read_answered_with_no_bits_is_a_failed_transaction() -> None:
    # A real socket and pymodbus client; the device is hand-written because no simulator
    # can be made to send a malformed answer. Found by the decode fuzzing above: the empty
    # list reached decode, whose refusal would have ended every device loop of the agent.
    server = await asyncio.start_server(_short_coil_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = ModbusBus(TcpBusConfig("field", "127.0.0.1", port))
    try:
        with pytest.raises(TransactionError, match="asked for 1 bits, got 0") as failed:
            await bus.read(1, Table.COIL, 0, 1, timeout_s=2.0)
        assert failed.value.quality == Quality.EXCEPTION
        assert bus.stats.failures["short_response"] == 1
    finally:
        await bus.close()
        server.close()
        await server.wait_closed()
