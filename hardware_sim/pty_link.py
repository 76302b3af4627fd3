"""A virtual RS485 cable: two linked pseudo-terminals made by socat.

The simulator opens ``device_end``, the gateway opens ``agent_end``. This module only
starts and stops its own socat process; it never touches a real serial port.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self


class PtyLinkError(RuntimeError):
    """socat is missing, failed, or did not create the links in time."""


class PtyPair:
    """Two pseudo-terminals wired back to back by ``socat``, reachable through symlinks.

    Paths left out are placed in a private temporary directory, removed on close. A pty
    passes bytes at once whatever the baud rate; it does not reproduce line timing.
    """

    def __init__(
        self,
        agent_end: str | Path | None = None,
        device_end: str | Path | None = None,
        *,
        timeout: float = 5.0,
    ) -> None:
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if agent_end is None or device_end is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="hwsim-pty-")
        folder = Path(self._tempdir.name) if self._tempdir else Path()
        self.agent_end = Path(agent_end) if agent_end is not None else folder / "agent"
        self.device_end = Path(device_end) if device_end is not None else folder / "device"
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Start socat and wait until both link paths exist.

        Raises:
            PtyLinkError: when socat is not installed, exits, or is too slow.
        """
        try:
            self._start_socat()
        except BaseException:
            self.close()
            raise
        return self

    def _start_socat(self) -> None:
        socat = shutil.which("socat")
        if socat is None:
            msg = "socat is not installed; install it with: apt-get install socat"
            raise PtyLinkError(msg)
        for link in (self.agent_end, self.device_end):
            link.parent.mkdir(parents=True, exist_ok=True)
            # A stale link from a killed run would look like a ready one.
            if link.is_symlink():
                link.unlink()
        process = self._process = subprocess.Popen(
            [
                socat,
                f"pty,raw,echo=0,link={self.device_end}",
                f"pty,raw,echo=0,link={self.agent_end}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.timeout
        while not (self.agent_end.exists() and self.device_end.exists()):
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                msg = f"socat exited with status {process.returncode}: {stderr.strip()}"
                raise PtyLinkError(msg)
            if time.monotonic() > deadline:
                msg = f"socat did not create {self.device_end} and {self.agent_end} within "
                msg += f"{self.timeout} s"
                raise PtyLinkError(msg)
            time.sleep(0.005)

    def close(self) -> None:
        """Stop socat (it removes the links) and drop the temporary directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stderr is not None:
            process.stderr.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
