"""Debian bookworm roots of the Raspberry Pi's architectures, run under qemu-user-static.

``./dev pi-check`` (``bench/pi_check.py``) installs the agent's release bundle into one as
the technician's guide (``docs/install-pi.md``) says, and runs it against ``hwsim`` on this
host. A root is built once with ``debootstrap`` from the Debian mirror this host's own apt
sources name, and cached under ``~/.cache/hazardwatch/pi-roots``; binfmt_misc hands its
binaries to ``qemu-user-static``, so ``chroot`` runs them as if on a Pi. ``qemu-*-static``
is registered with the fix-binary flag, so nothing is copied into the root.

Needs root (debootstrap, chroot, mount). Never changes anything outside ``ROOTS`` but the
host's binfmt_misc registration; never imported by the production packages; never
imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Where built roots are kept between runs.
ROOTS = Path(os.environ.get("HAZARDWATCH_PI_ROOTS", Path.home() / ".cache/hazardwatch/pi-roots"))
SUITE = "bookworm"
#: The stamp a finished root carries: how long it took and what it holds.
STAMP = ".hazardwatch-root.json"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
HOST_PACKAGES = "debootstrap qemu-user-static binfmt-support"


class PiRootError(Exception):
    """A root could not be built or run; the message says which step and what to do."""


@dataclass(frozen=True)
class PiArch:
    """One Raspberry Pi OS architecture: Debian's name, the kernel's, qemu's."""

    debian: str
    machine: str
    qemu: str
    #: Beyond ``BASE_PACKAGES``, what a root of this architecture starts with.
    extra_packages: tuple[str, ...] = ()


#: armhf needs no compiler: numpy and cffi come from Debian, installed by the guide's own
#: 32-bit step (``apt-get install python3-numpy python3-cffi``), which the check runs.
ARCHES = {
    "arm64": PiArch("arm64", "aarch64", "qemu-aarch64"),
    "armhf": PiArch("armhf", "armv7l", "qemu-arm"),
}
#: Pi OS Lite has Python 3 and venv; ca-certificates lets pip reach the index (armhf).
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")


@dataclass(frozen=True)
class PiRoot:
    """A built root: where it is, its architecture, how long building it took."""

    path: Path
    arch: PiArch
    build_s: float
    cached: bool

    def host_path(self, inside: str) -> Path:
        """The host path of ``inside`` (an absolute path in the root)."""
        return self.path / inside.lstrip("/")


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive this host's apt sources use for bookworm (not the security one)."""
    sources = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        uris: list[str] = []
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"(?m)^(\w[\w-]*):\s*(.*)$", stanza))
                if SUITE in fields.get("Suites", "").split():
                    uris += fields.get("URIs", "").split()
        else:
            uris += re.findall(rf"(?m)^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", text)
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    msg = (
        f"no Debian {SUITE} archive in {apt_dir}/sources.list(.d): where would the root come from?"
    )
    raise PiRootError(msg)


def require_host_tools(arch: PiArch) -> None:
    """Refuse, with the command that fixes it, when root or a host tool is missing."""
    if os.geteuid() != 0:
        msg = "building and entering a Pi root needs root (debootstrap, chroot, mount)"
        raise PiRootError(msg)
    for tool in ("debootstrap", "chroot", f"{arch.qemu}-static"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            msg = f"{tool} is missing: apt-get install -y {HOST_PACKAGES}"
            raise PiRootError(msg)


def ensure_binfmt(arch: PiArch) -> None:
    """Make the kernel run ``arch`` binaries through qemu (mount binfmt_misc, enable it)."""
    entry = BINFMT / arch.qemu
    if not (BINFMT / "status").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "mounting binfmt_misc")
    if not entry.exists() or "enabled" not in entry.read_text():
        _run(["update-binfmts", "--enable", arch.qemu], f"registering {arch.qemu}")
    if not entry.exists() or "flags: PF" not in entry.read_text():
        msg = f"{entry} is not registered with the fix-binary flag; reinstall qemu-user-static"
        raise PiRootError(msg)


def ensure_root(arch: PiArch, mirror: str | None = None) -> PiRoot:
    """The cached root of ``arch``, built with debootstrap first if there is none."""
    require_host_tools(arch)
    ensure_binfmt(arch)
    packages = sorted({*BASE_PACKAGES, *arch.extra_packages})
    path = ROOTS / f"{SUITE}-{arch.debian}"
    stamp = path / STAMP
    if stamp.is_file():
        recorded = json.loads(stamp.read_text())
        # A root holding more than asked for (an older armhf one had a compiler) will do.
        if set(packages) <= set(recorded.get("packages", ())):
            return PiRoot(path, arch, float(recorded["build_s"]), cached=True)
    partial = path.with_name(path.name + ".partial")
    for leftover in (partial, path):
        _remove_root(leftover)
    partial.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _run(
        [
            "debootstrap", f"--arch={arch.debian}", "--variant=minbase",
            f"--include={','.join(packages)}", SUITE, str(partial),
            mirror or debian_mirror(),
        ],
        f"debootstrap of {SUITE} {arch.debian}",
        timeout=3600,
    )  # fmt: skip
    build_s = time.monotonic() - started
    (partial / STAMP).write_text(json.dumps({"build_s": round(build_s, 1), "packages": packages}))
    partial.rename(path)
    return PiRoot(path, arch, build_s, cached=False)


def _remove_root(path: Path) -> None:
    """Delete a root of ours, after making sure nothing is still mounted inside it."""
    if not path.exists():
        return
    if path.parent.resolve() != ROOTS.resolve():
        msg = f"refusing to delete {path}: not a root under {ROOTS}"
        raise PiRootError(msg)
    for inside in ("dev/pts", "dev", "proc"):
        _unmount(path / inside)
    shutil.rmtree(path)


def _mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def _unmount(path: Path) -> None:
    if path.exists() and _mounted(path):
        _run(["umount", "--lazy", str(path)], f"unmounting {path}")


@contextlib.contextmanager
def entered(root: PiRoot) -> Iterator[PiRoot]:
    """``/proc`` and ``/dev`` mounted in the root, and this host's DNS settings, meanwhile."""
    proc, dev = root.path / "proc", root.path / "dev"
    try:
        if not _mounted(proc):
            _run(["mount", "-t", "proc", "proc", str(proc)], "mounting /proc in the root")
        if not _mounted(dev):
            _run(["mount", "--bind", "/dev", str(dev)], "binding /dev into the root")
        shutil.copyfile("/etc/resolv.conf", root.path / "etc/resolv.conf")
        yield root
    finally:
        _unmount(dev)
        _unmount(proc)


def chroot_command(root: PiRoot, script: str, user: str | None = None) -> list[str]:
    """The argv running ``script`` with bash (errexit, pipefail) in the root, as ``user``."""
    who = [f"--userspec={user}"] if user else []
    return ["chroot", *who, str(root.path), "/bin/bash", "-eo", "pipefail", "-c", script]


def root_env(**extra: str) -> dict[str, str]:
    """A login-like environment for the root: nothing of this host's Python or pip."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        **extra,
    }


def in_root(
    root: PiRoot, script: str, what: str, user: str | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in the root; a failure raises naming ``what`` with the output's tail."""
    return _run(chroot_command(root, script, user), what, timeout=timeout, env=root_env())


def _run(
    argv: Sequence[str], what: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        msg = f"{what} took longer than {timeout:.0f} s"
        raise PiRootError(msg) from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip())[-3000:]
        msg = f"{what} failed (exit {done.returncode}): {tail}"
        raise PiRootError(msg)
    return done
