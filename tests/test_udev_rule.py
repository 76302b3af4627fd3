"""The shipped udev rule for USB-RS485 adapters: well formed, and it names what it should.

The Pi's udevd is not here (nor any USB adapter), so the rule is read the way udev reads
it: comma-separated ``KEY op "value"`` assignments, ``GOTO`` to a ``LABEL`` further down,
``|`` alternatives and shell globs in matches, ``$env{NAME}`` in values. The properties
udev's ``usb_id`` and ``path_id`` builtins give each device are written out below from
real adapters (``udevadm info /dev/ttyUSB0`` on a Raspberry Pi 4).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RULE = REPO / "edge_agent" / "udev" / "99-hazardwatch-rs485.rules"
TOKEN = re.compile(r'\s*([A-Z]+(?:\{[^}]+\})?)\s*(==|!=|\+=|=)\s*"([^"]*)"\s*(?:,|$)')
MATCH_KEYS = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "KERNEL", "ENV"}
ASSIGN_KEYS = {"IMPORT", "GOTO", "LABEL", "GROUP", "MODE", "SYMLINK"}
PI4_PORT = "platform-fd500000_pcie-pci-0000_01_00_0-usb-0_1_3_1_0"


def parse(text: str) -> list[list[tuple[str, str, str]]]:
    """Each rule line as (key, operator, value) tokens; a malformed line raises."""
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens, at = [], 0
        while at < len(line):
            found = TOKEN.match(line, at)
            assert found, f"line {number}: cannot read {line[at:]!r}"
            tokens.append((found.group(1), found.group(2), found.group(3)))
            at = found.end()
        for key, op, _ in tokens:
            base = key.split("{")[0]
            assert base in MATCH_KEYS | ASSIGN_KEYS, f"line {number}: unknown key {key}"
            assert (op in ("==", "!=")) == (base in MATCH_KEYS and op != "="), (number, key)
        rules.append(tokens)
    return rules


@dataclass
class Device:
    """A tty as udev sees it: its own keys, its parents' subsystems, the builtins' output."""

    subsystem: str = "tty"
    parents: frozenset[str] = frozenset({"usb-serial", "usb"})
    builtins: dict[str, dict[str, str]] = field(default_factory=dict)
    action: str = "add"
    env: dict[str, str] = field(default_factory=dict)
    symlinks: list[str] = field(default_factory=list)
    group: str = "root"
    mode: str = "0600"


def matches(pattern: str, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in pattern.split("|"))


def run_rules(rules: list[list[tuple[str, str, str]]], device: Device) -> Device:
    """Apply the rules to ``device`` as udev would (the subset the file uses)."""
    skip_to: str | None = None
    for tokens in rules:
        if skip_to is not None:
            if ("LABEL", "=", skip_to) in tokens:
                skip_to = None
            continue
        matched = True
        for key, op, value in tokens:
            if op not in ("==", "!="):
                continue
            if key == "ACTION":
                actual = {device.action}
            elif key == "SUBSYSTEM":
                actual = {device.subsystem}
            elif key == "SUBSYSTEMS":
                actual = {device.subsystem, *device.parents}
            else:
                actual = {device.env.get(key[4:-1], "")}
            hit = any(matches(value, a) for a in actual)
            matched = matched and (hit if op == "==" else not hit)
        if not matched:
            continue
        for key, _, value in tokens:
            expanded = re.sub(r"\$env\{(\w+)\}", lambda m: device.env.get(m.group(1), ""), value)
            if key == "IMPORT{builtin}":
                device.env.update(device.builtins.get(value, {}))
            elif key == "SYMLINK":
                device.symlinks.append(expanded)
            elif key == "GROUP":
                device.group = expanded
            elif key == "MODE":
                device.mode = expanded
            elif key == "GOTO":
                skip_to = value
                break
    return device


def adapter(vendor: str, serial: str | None) -> Device:
    usb = {"ID_BUS": "usb", "ID_VENDOR_ID": vendor, "ID_MODEL_ID": "6001"}
    if serial:
        usb["ID_SERIAL_SHORT"] = serial
    path = {"ID_PATH": PI4_PORT.replace("_", ":"), "ID_PATH_TAG": PI4_PORT}
    return Device(builtins={"usb_id": usb, "path_id": path})


RULES = parse(RULE.read_text())


def test_every_goto_reaches_a_label_below_it() -> None:
    labels = [i for i, tokens in enumerate(RULES) for k, _, _ in tokens if k == "LABEL"]
    names = {RULES[i][0][2]: i for i in labels}
    for i, tokens in enumerate(RULES):
        for key, _, value in tokens:
            if key == "GOTO":
                assert value in names, f"GOTO {value} has no LABEL"
                assert names[value] > i


@pytest.mark.parametrize(
    ("device", "names"),
    [
        (adapter("0403", "A10KXYZ1"), ["rs485-sn-A10KXYZ1", f"rs485-{PI4_PORT}"]),  # FTDI
        (adapter("10c4", "0001"), ["rs485-sn-0001", f"rs485-{PI4_PORT}"]),  # CP2102
        (adapter("1a86", None), [f"rs485-{PI4_PORT}"]),  # CH340: no serial number
        (adapter("067b", None), [f"rs485-{PI4_PORT}"]),  # PL2303
    ],
)
def test_an_rs485_adapter_gets_its_stable_names_and_the_dialout_group(
    device: Device, names: list[str]
) -> None:
    done = run_rules(RULES, device)
    assert done.symlinks == names
    assert (done.group, done.mode) == ("dialout", "0660")


@pytest.mark.parametrize(
    "device",
    [
        adapter("2c7c", None),  # a Quectel modem's AT port: the village-call modem's own
        Device(parents=frozenset({"platform"})),  # the Pi's own UART, ttyAMA0
        Device(action="remove", builtins=adapter("0403", "A1").builtins),
        Device(subsystem="usb", builtins=adapter("0403", "A1").builtins),  # not the tty
    ],
)
def test_other_devices_are_left_alone(device: Device) -> None:
    done = run_rules(RULES, device)
    assert (done.symlinks, done.group, done.mode) == ([], "root", "0600")


def test_the_rule_ships_in_the_package() -> None:
    assert '"udev/*.rules"' in (REPO / "pyproject.toml").read_text()
