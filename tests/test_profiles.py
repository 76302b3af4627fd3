"""Device profiles: the shipped ones load, and each kind of bad file is refused clearly."""

from pathlib import Path

import pytest

from drivers.profiles import ProfileError, Table, builtin_profiles, load_profile

GOOD = """
[device]
model = "Test gauge"
max_registers = 4

[[channel]]
name = "level"
quantity = "water_level"
unit = "mm"
table = "holding"
address = 10
type = "uint16"
range = [0, 5000]

[[channel]]
name = "total"
quantity = "rain_total"
unit = "mm"
table = "input"
address = 0
type = "uint32"
word_order = "little"
scale = 0.1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gauge.toml"
    path.write_text(text)
    return path


def test_shipped_profiles_all_load_with_the_real_register_maps():
    shipped = builtin_profiles()
    assert {
        "dfrobot_sen0575",
        "generic_rs485_rain",
        "hlk_ld8001h",
        "inclinometer_dual_axis",
        "pressure_level_transmitter",
        "wire_extensometer",
        "gnss_displacement",
        "relay_module_8ch",
    } <= set(shipped)
    sen0575 = shipped["dfrobot_sen0575"]
    total = sen0575.channel("rain_total")
    assert (total.table, total.address, total.dtype, total.word_order) == (
        Table.INPUT,
        8,
        "uint32",
        "little",
    )
    assert total.scale == pytest.approx(1e-4)
    assert sen0575.default_unit_id == 0xC0
    radar = shipped["hlk_ld8001h"]
    assert radar.channel("water_level").address == 3
    assert radar.serial.baudrate == 115200
    tilt = shipped["inclinometer_dual_axis"].channel("tilt_y")
    assert (tilt.address, tilt.dtype, tilt.scale) == (2, "int32", 0.001)
    relays = [c for c in shipped["relay_module_8ch"].channels if c.table is Table.COIL]
    assert len(relays) == 8
    assert all(c.writable for c in relays)


def test_good_profile_loads(tmp_path):
    profile = load_profile(write(tmp_path, GOOD))
    assert profile.name == "gauge"
    assert profile.channel("total").to_engineering(1234) == pytest.approx(123.4)


@pytest.mark.parametrize(
    ("change", "channel", "problem"),
    [
        (('type = "uint16"', 'type = "int24"'), "level", "unknown data type 'int24'"),
        (
            ('table = "input"\naddress = 0', 'table = "holding"\naddress = 9'),
            "level",
            "overlaps channel 'total'",
        ),
        (("address = 10", "address = 70000"), "level", "'address' = 70000 is outside 0..65535"),
        (
            ('address = 0\ntype = "uint32"', 'address = 65535\ntype = "uint32"'),
            "total",
            "runs past the last address",
        ),
        (("scale = 0.1", "scale = 0"), "total", "scale must not be zero"),
        (('unit = "mm"\ntable = "holding"', 'table = "holding"'), "level", "missing 'unit'"),
        (
            ('unit = "mm"\ntable = "holding"', 'unit = ""\ntable = "holding"'),
            "level",
            "missing 'unit'",
        ),
        (("max_registers = 4", "max_registers = 1"), "total", "could never be read"),
        (('table = "holding"', 'table = "coils"'), "level", "unknown table 'coils'"),
        (('word_order = "little"', 'word_order = "middle"'), "total", "word_order must be"),
        (("range = [0, 5000]", "range = [5000, 0]"), "level", "not below maximum"),
        (('quantity = "water_level"', 'quantity = "waterlevel"'), "level", "unknown quantity"),
        (("address = 10", "adress = 10"), "level", "missing 'address'"),
    ],
)
def test_bad_channel_is_refused_naming_file_channel_and_problem(tmp_path, change, channel, problem):
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    message = str(err.value)
    assert str(path) in message
    assert f"channel '{channel}'" in message
    assert problem in message


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("max_registers = 4", "max_registers = 200"), "'max_registers' = 200 is outside 1..125"),
        (('model = "Test gauge"', ""), "needs a 'model'"),
        (
            ("[device]", "[devices]"),
            "unknown key(s) in the top level: devices (allowed: channel, device)",
        ),
        (
            ("max_registers = 4", "max_registers = 4\ncolour = 1"),
            "unknown key(s) in [device]: colour",
        ),
        (("[[channel]]", "[[channel]]]"), "not valid TOML"),
    ],
)
def test_bad_device_section_is_refused_naming_file_and_problem(tmp_path, change, problem):
    old, new = change
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(path) in str(err.value)
    assert problem in str(err.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "absent.toml")


def test_bool_type_outside_bit_tables_is_refused(tmp_path):
    path = write(tmp_path, GOOD.replace('type = "uint16"', 'type = "bool"', 1))
    with pytest.raises(
        ProfileError, match="channel 'level': type 'bool' only fits coil or discrete"
    ):
        load_profile(path)


#: What each shipped profile's stated source says a reader may read, per table, as
#: inclusive address ranges. A profile must never plan a read outside them: a device
#: answers a read of a write-only register with exception 02 (issue 16).
READABLE_PER_SOURCE: dict[str, dict[Table, list[tuple[int, int]]]] = {
    # DFRobot_RainfallSensor reads input registers 0x0000..0x000C (FC04) and only writes
    # holding 0x0006 and 0x0007 (FC16).
    "dfrobot_sen0575": {Table.INPUT: [(0x0000, 0x000C)]},
    # The vendor manual: FC03 on 0x0000..0x0002; the unit id at 0x1000 is written only.
    "generic_rs485_rain": {Table.HOLDING: [(0x0000, 0x0002)]},
    # The HLK-LD8001H / SEN0676 register table: 0x0001, 0x0003 read; 0x0005, 0x03F4,
    # 0x03F6 and 0x07D4 read and write.
    "hlk_ld8001h": {
        Table.HOLDING: [(a, a) for a in (0x0001, 0x0003, 0x0005, 0x03F4, 0x03F6, 0x07D4)]
    },
    # The minimalmodbus driver the profile comes from reads holding 0..3 (two int32).
    "inclinometer_dual_axis": {Table.HOLDING: [(0x0000, 0x0003)]},
    "pressure_level_transmitter": {Table.HOLDING: [(0x0004, 0x0005), (0x0010, 0x0011)]},
    "wire_extensometer": {Table.INPUT: [(0x0000, 0x0005)]},
    "gnss_displacement": {Table.INPUT: [(0x0000, 0x0008)]},
    "relay_module_8ch": {Table.COIL: [(0, 7)], Table.DISCRETE: [(0, 1)]},
    # drivers/siren_node/registers.py: coils 0..5, holding 0..4 and the status block
    # 16..29; 5..15 read as 0 (the firmware answers the whole 0..29 span).
    "siren_node": {Table.COIL: [(0, 5)], Table.HOLDING: [(0, 29)]},
}


def test_every_shipped_profile_reads_only_what_its_source_says_is_readable():
    from drivers.plan import plan_profile  # noqa: PLC0415

    shipped = builtin_profiles()
    assert set(shipped) == set(READABLE_PER_SOURCE)
    for name, profile in shipped.items():
        readable = READABLE_PER_SOURCE[name]
        for block in plan_profile(profile):
            for address in range(block.address, block.address + block.count):
                assert any(lo <= address <= hi for lo, hi in readable.get(block.table, [])), (
                    f"{name} reads {block.table.value} {address:#06x}, which its source "
                    "does not list as readable"
                )


def test_a_write_only_channel_is_never_planned_and_must_be_writable(tmp_path):
    from drivers.plan import plan_profile  # noqa: PLC0415

    rain = builtin_profiles()["generic_rs485_rain"]
    assert not rain.channel("device_address").readable
    assert rain.channel("device_address").writable
    planned = {c.name for block in plan_profile(rain) for c in block.channels}
    assert planned == {"rain_total", "rain_acc2", "rain_acc3"}
    assert {
        c.name
        for block in plan_profile(rain, ["rain_total", "device_address"])
        for c in block.channels
    } == {"rain_total"}
    path = write(tmp_path, GOOD.replace("range = [0, 5000]", "range = [0, 5000]\nreadable = false"))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value) == (
        f"{path}: channel 'level': readable = false needs writable = true: a channel that can "
        "be neither read nor written serves no purpose"
    )
