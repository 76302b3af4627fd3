"""Reads are coalesced into the fewest requests a device's block limit allows."""

from drivers.plan import plan_profile, plan_reads
from drivers.profiles import builtin_profiles


def spans(blocks):
    return [(b.table.value, b.address, b.count) for b in blocks]


def test_sen0575_input_registers_fit_one_request():
    # Its holding registers 6 and 7 are write-only (readable = false): never read.
    blocks = plan_profile(builtin_profiles()["dfrobot_sen0575"])
    assert spans(blocks) == [("input", 6, 7)]


def test_block_limit_splits_adjacent_registers():
    profile = builtin_profiles()["dfrobot_sen0575"]
    inputs = [c for c in profile.channels if c.table.value == "input"]
    assert spans(plan_reads(inputs, max_registers=4, max_bits=16)) == [
        ("input", 6, 4),
        ("input", 10, 3),
    ]
    assert spans(plan_reads(inputs, max_registers=2, max_bits=16)) == [
        ("input", 6, 2),
        ("input", 8, 2),
        ("input", 10, 2),
        ("input", 12, 1),
    ]


def test_gaps_split_blocks_unless_the_device_tolerates_them():
    radar = builtin_profiles()["hlk_ld8001h"]
    names = ["air_gap", "water_level", "install_height"]
    channels = [radar.channel(n) for n in names]
    assert len(plan_reads(channels, 16, 16, max_gap=0)) == 3
    assert spans(plan_reads(channels, 16, 16, max_gap=1)) == [("holding", 1, 5)]


def test_coils_are_read_as_bits_in_one_request():
    relays = builtin_profiles()["relay_module_8ch"]
    assert spans(plan_profile(relays)) == [("coil", 0, 8), ("discrete", 0, 2)]


def test_selected_channels_only():
    gnss = builtin_profiles()["gnss_displacement"]
    assert spans(plan_profile(gnss, ["east", "up"])) == [("input", 0, 2), ("input", 4, 2)]
