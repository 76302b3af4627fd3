"""SL 651-2014 codec throughput: frames decoded and encoded per second, one core.

The first part of issue 15's bench: a timed report (32, 60 bytes) and an hourly report
(34, 121 bytes with two 5-minute series), both from the worked examples of
tests/test_sl651_codec.py; the centre's acknowledgement (decode a report, build and encode
its ESC answer); and a 1,630-byte equal-interval report through M3 split and reassembly.
The number of stations one receiving process holds connected comes with the receiving
centre. Prints a JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from protocol.sl651 import (
    Control,
    Direction,
    ElementId,
    Header,
    ObservationGroup,
    Reassembly,
    Report,
    Series,
    StationAddress,
    StationBlock,
    StationType,
    TimeStep,
    acknowledge,
    decode,
    encode,
    split,
)

# Worked examples (sources cited in tests/test_sl651_codec.py): yu-xiaoyao/sl651-2014-server,
# netty-client/.../Sl651ClientApplication.java, INNER_HEX 0x32 and 0x34.
TIMED_32 = bytes.fromhex(
    "7E7E05001122334403E832002B020034170718110016F1F1001122334448F0F01707181100"
    "201900004026190000403923000104903812109903A421"
)
HOURLY_34 = bytes.fromhex(
    "7E7E05001122334403E8340068020033170718110014F1F1001122334448F0F01707181005"
    "F4600500000014FFFFFFFFFF0000F0F017071811002619000040F0F01707181005F5C0000C000C"
    "001C00310031FFFFFFFFFFFFFFFFFFFF00310031F0F0170718110039230001049020190000403812"
    "109903F502"
)


def rate(work: Callable[[], object], seconds: float) -> float:
    """Calls of ``work`` per second over about ``seconds``."""
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            work()
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def m3_upload() -> tuple[Header, Report]:
    header = Header(Direction.UP, 5, StationAddress("0011223344"), 0x03E8, 0x31)
    when = datetime(2024, 6, 1, 8, 0)
    values = tuple(Decimal(n).scaleb(-3) for n in range(1000, 1400))
    series = Series(ElementId.WATER_LEVEL, values, 4, 3)
    group = ObservationGroup(when, (TimeStep(minutes=5), series))
    block = StationBlock(StationAddress("0011223344"), StationType.RIVER, (group,))
    return header, Report(7, when, (block,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    timed, hourly = decode(TIMED_32), decode(HOURLY_34)
    now = datetime(2017, 7, 18, 11, 0, 20)
    header, body = m3_upload()
    frames = split(header, body, 500)

    def reassemble() -> None:
        reassembly = Reassembly()
        for frame in frames:
            reassembly.add(decode(frame))

    results = {
        "decode_timed_32_per_s": rate(lambda: decode(TIMED_32), args.seconds),
        "encode_timed_32_per_s": rate(lambda: encode(timed), args.seconds),
        "decode_hourly_34_per_s": rate(lambda: decode(HOURLY_34), args.seconds),
        "encode_hourly_34_per_s": rate(lambda: encode(hourly), args.seconds),
        "decode_and_acknowledge_per_s": rate(
            lambda: encode(acknowledge(decode(TIMED_32), now, Control.ESC)), args.seconds
        ),
        "m3_split_1630_bytes_per_s": rate(lambda: split(header, body, 500), args.seconds),
        "m3_reassemble_1630_bytes_per_s": rate(reassemble, args.seconds),
    }
    for name, value in results.items():
        print(f"{name:34s} {value:12,.0f}")
    print(json.dumps({name: round(value) for name, value in results.items()}))


if __name__ == "__main__":
    main()
