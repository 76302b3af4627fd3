"""Every data type and word/byte order decodes to the value that was encoded."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.codec import BYTE_ORDERS, WORD_ORDERS, decode, encode

RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


@pytest.mark.parametrize("word_order", WORD_ORDERS)
@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@pytest.mark.parametrize("dtype", sorted(RANGES))
def test_integers_round_trip_through_registers(dtype, word_order, byte_order):
    lo, hi = RANGES[dtype]
    for value in (lo, hi, 0, 1, -1 if lo < 0 else 2, (lo + hi) // 3):
        assert (
            decode(encode(value, dtype, word_order, byte_order), dtype, word_order, byte_order)
            == value
        )


@given(
    st.floats(width=32, allow_nan=False),
    st.sampled_from(WORD_ORDERS),
    st.sampled_from(BYTE_ORDERS),
)
def test_float32_round_trips_exactly(value, word_order, byte_order):
    assert (
        decode(encode(value, "float32", word_order, byte_order), "float32", word_order, byte_order)
        == value
    )


def test_known_wire_layouts():
    # 0x12345678 as the four common layouts (ABCD, CDAB, BADC, DCBA).
    assert encode(0x12345678, "uint32") == [0x1234, 0x5678]
    assert encode(0x12345678, "uint32", "little") == [0x5678, 0x1234]
    assert encode(0x12345678, "uint32", "big", "little") == [0x3412, 0x7856]
    assert encode(0x12345678, "uint32", "little", "little") == [0x7856, 0x3412]
    assert decode([0x4049, 0x0FDB], "float32") == pytest.approx(math.pi, rel=1e-7)
    assert decode([0xFFFF], "int16") == -1
    assert decode([0xFFFF], "uint16") == 65535


def test_value_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit uint16"):
        encode(70000, "uint16")


def test_wrong_register_count_is_refused():
    with pytest.raises(ValueError, match="int32 needs 2 register"):
        decode([1], "int32")
