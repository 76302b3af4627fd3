"""The technician's guide (docs/install-pi.md) cannot rot: every command in it is exercised.

Each command of its ``sh`` blocks is one of:

- in the install block, which ``./dev pi-check`` runs verbatim in the arm64 and armhf roots
  (``bench/pi_check.py`` reads it by its marker);
- in the 32-bit step (Debian's numpy and cffi), which it runs verbatim in the armhf root
  before the install block;
- an ``edge`` command that parses with the real CLI, option by option, and that a named
  test of this suite (and, where it needs a running agent, the pi-check) runs;
- a command the check runs too (installing the site file);
- a service-manager command an emulated root cannot run (no systemd, no udev daemon),
  listed with what stands in for it.

A new command in the guide fails here until it is put in one of those lists.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from edge_agent.cli import app

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from pi_check import ARMHF_MARKER, GUIDE, INSTALL_MARKER, guide_block  # noqa: E402

from ota.system_packages import DEBIAN_PACKAGES  # noqa: E402

PI_CHECK = (REPO / "bench" / "pi_check.py").read_text()

#: ``edge`` subcommand -> the test that runs it (file, function).
EXERCISED = {
    "scan": ("test_edge_cli.py", "test_scan_finds_who_answers_and_what_it_probably_is"),
    "profiles": ("test_edge_cli.py", "test_edge_profiles_never_cuts_a_name"),
    "poll": ("test_edge_cli.py", "test_poll_once_exits_1_and_flags_a_silent_device"),
    "status": ("test_agent_e2e.py", "test_edge_status_names_the_alarm_kernels"),
    "doctor": (
        "test_edge_doctor.py",
        "test_a_dead_device_and_a_missing_adapter_fail_and_the_siren_is_only_read_back",
    ),
    "siren test": (
        "test_control_socket.py",
        "test_the_edge_cli_sends_typed_requests_and_prints_the_typed_replies",
    ),
    "enroll": (
        "test_enroll.py",
        "test_offline_bundle_is_checked_at_once_and_completes_on_the_first_connection",
    ),
    "update install": ("test_update_install.py", "test_a_bundle_installs_offline_and_once"),
}
#: ``edge`` subcommands the pi-check also runs in the root against the running agent.
RUN_BY_PI_CHECK = {"scan", "profiles", "poll", "status", "doctor", "siren test"}
#: Other commands outside the install block that the pi-check runs as written.
OTHER_RUN_BY_PI_CHECK = {"install -m 644 site.toml /etc/hazardwatch/site.toml"}
#: What an emulated root cannot run, and what exercises it instead.
NOT_EMULATED = {
    "udevadm control --reload": "test_udev_rule.py parses the rule and matches it",
    "udevadm trigger --subsystem-match=tty --action=add": "test_udev_rule.py matches it",
    "ls -l /dev/rs485-*": "the names test_udev_rule.py derives",
    "systemctl daemon-reload": "pi-check reads the installed unit file",
    "systemctl enable --now hazardwatch-edge-slots": (
        "pi-check runs the installed unit's ExecStartPre and ExecStart as its User and Group"
    ),
}


def blocks(text: str) -> list[tuple[str, str]]:
    """(the line before the block, the block) for every ```sh block."""
    found = re.finditer(r"(?m)^([^\n]*)\n```sh\n(.*?)```", text, re.S)
    return [(m.group(1), m.group(2)) for m in found]


def commands(block: str) -> list[list[str]]:
    """Each command line of a block as words, comments and ``sudo [-u USER]`` left out."""
    result = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["sudo", "-u"]:
            words = words[3:]
        elif words[:1] == ["sudo"]:
            words = words[1:]
        if words:
            result.append(words)
    return result


def edge_command(words: list[str]) -> tuple[str, Any, list[str]]:
    """The subcommand's name, its (typer's own click) command and its arguments."""
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = words[1:]
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest[0]]
        rest = rest[1:]
    return " ".join(path), command, rest


GUIDE_TEXT = GUIDE.read_text()
RUN_VERBATIM = {INSTALL_MARKER, ARMHF_MARKER}
OTHER_BLOCKS = [b for before, b in blocks(GUIDE_TEXT) if before.strip() not in RUN_VERBATIM]
EDGE_LINES = [w for b in OTHER_BLOCKS for w in commands(b) if w[0] == "edge"]


def test_the_install_block_is_the_one_the_pi_check_runs() -> None:
    marked = [b for before, b in blocks(GUIDE_TEXT) if before.strip() == INSTALL_MARKER]
    assert len(marked) == 1
    assert guide_block() == marked[0]
    assert "guide_block()" in PI_CHECK
    install = " ".join(" ".join(w) for w in commands(marked[0]))
    assert "edge update install" in install
    assert "99-hazardwatch-rs485.rules" in install
    assert "hazardwatch-edge-slots.service" in install


def test_the_32_bit_step_is_run_in_the_armhf_root_and_installs_what_slots_take() -> None:
    marked = [b for before, b in blocks(GUIDE_TEXT) if before.strip() == ARMHF_MARKER]
    assert len(marked) == 1
    assert guide_block(ARMHF_MARKER) == marked[0]
    assert "guide_block(ARMHF_MARKER)" in PI_CHECK
    lines = commands(marked[0])
    assert lines[0] == ["apt-get", "update"]
    assert lines[1][:3] == ["apt-get", "install", "-y"]
    assert set(lines[1][3:]) == set(DEBIAN_PACKAGES.values())
    # The installer venv must see them too, or its pip finds no numpy in the 32-bit bundle.
    assert "venv --without-pip --system-site-packages /tmp/hw-installer" in guide_block()


@pytest.mark.parametrize("words", EDGE_LINES, ids=lambda w: " ".join(w[:3]))
def test_every_edge_command_of_the_guide_parses_with_the_real_cli(words: list[str]) -> None:
    name, command, rest = edge_command(words)
    assert name, f"{shlex.join(words)}: no such edge command"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    used = {word for word in rest if word.startswith("-")}
    assert used <= known, f"{shlex.join(words)}: unknown option(s) {sorted(used - known)}"
    # The real parser, with the guide's own arguments: types, required options, arity.
    command.make_context(f"edge {name}", list(rest))


@pytest.mark.parametrize("words", EDGE_LINES, ids=lambda w: " ".join(w[:3]))
def test_every_edge_command_of_the_guide_is_run_by_a_named_test(words: list[str]) -> None:
    name, _, _ = edge_command(words)
    assert name in EXERCISED, f"edge {name}: no test named as running it (EXERCISED)"
    file, test = EXERCISED[name]
    source = (REPO / "tests" / file).read_text()
    assert re.search(rf"(?m)^(async )?def {test}\(", source), f"{file} has no {test}"
    if name in RUN_BY_PI_CHECK:
        assert f'"edge {name}' in PI_CHECK, f"pi_check.py does not run edge {name}"


def test_every_other_command_is_run_by_the_pi_check_or_stood_in_for() -> None:
    others = {" ".join(w) for b in OTHER_BLOCKS for w in commands(b) if w[0] != "edge"}
    assert others == OTHER_RUN_BY_PI_CHECK | set(NOT_EMULATED)
    for command in OTHER_RUN_BY_PI_CHECK:
        assert command in PI_CHECK


def test_the_guide_covers_what_the_technician_needs() -> None:
    for topic in (
        "Raspberry Pi OS Lite (64-bit)",
        "USB stick",
        "120 Ω",
        "Biasing",
        "A to A, B to B",
        "/dev/rs485-",
        "edge scan",
        "edge doctor",
        "edge siren test",
        "edge enroll",
    ):
        assert topic in GUIDE_TEXT, topic
