"""The socat pty pair that stands in for an RS485 cable."""

from __future__ import annotations

from pathlib import Path

import pytest
import serial

from hardware_sim.pty_link import PtyLinkError, PtyPair


def test_bytes_written_at_one_end_arrive_at_the_other(pty_pair: PtyPair) -> None:
    with (
        serial.Serial(str(pty_pair.agent_end), 9600, timeout=2) as agent,
        serial.Serial(str(pty_pair.device_end), 9600, timeout=2) as device,
    ):
        agent.write(b"\x01\x03\x00\x00\x00\x01")
        request = device.read(6)
        device.write(b"ok")
        reply = agent.read(2)
    assert (request, reply) == (b"\x01\x03\x00\x00\x00\x01", b"ok")


def test_links_appear_at_the_given_paths_and_vanish_on_exit(tmp_path: Path) -> None:
    agent_end = tmp_path / "run" / "rs485"
    stale = tmp_path / "sim"
    stale.symlink_to(tmp_path / "gone")
    with PtyPair(agent_end=agent_end, device_end=stale) as pair:
        assert pair.agent_end.resolve().parent == Path("/dev/pts")
        assert pair.device_end.resolve().parent == Path("/dev/pts")
    assert not agent_end.exists()
    assert not stale.is_symlink()


def test_missing_socat_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PtyLinkError, match="apt-get install socat"), PtyPair():
        pass
