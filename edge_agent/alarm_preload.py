"""Load the alarm kernels first, then give the JIT compiler's pages back to the kernel.

Loading numba and its cached kernels maps tens of megabytes of LLVM code that is needed
only while loading: the kernels then run as plain machine code. ``edge run`` calls
``preload_kernels`` before it imports anything else of the agent (Modbus, the uplink,
the models), so the process is at its smallest when LLVM is in use; afterwards the
read-only pages of ``libllvmlite`` are handed back with ``madvise(MADV_PAGEOUT)``
(Linux 5.4+; elsewhere nothing happens). They are clean file pages: should the compiler
be needed again, they are read back in; pages another process maps too stay mapped.
The kernels loaded are those the site file's rule kinds run on (one rule of each kind
in ``warm_up_rules`` reaches them all); when the file cannot be read, all of them.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from alarm_engine.backends import resolve_backend
from alarm_engine.kernel_cache import prune_other_versions
from site_schema.rule_files import rule_file_path
from site_schema.rule_specs import (
    AntecedentRainRule,
    CombinationRule,
    FailureForecastRule,
    IntensityDurationRule,
    PowerLaw,
    RainWindow,
    RainWindowRule,
    RateOfRiseRule,
    RuleSpec,
    WaterLevelRule,
)

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21
#: Rule kinds evaluated by the two slope kernels.
SLOPE_KINDS = frozenset(
    {
        "rate_of_rise",
        "displacement_velocity",
        "displacement_acceleration",
        "tangent_angle",
        "inverse_velocity",
    }
)
COMPILER_LIBRARY = "libllvmlite"


def release_compiler_pages() -> int:
    """Hand the read-only pages of the LLVM library back; the bytes advised (0 if none)."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    advised = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or COMPILER_LIBRARY not in fields[5] or "w" in fields[1]:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_PAGEOUT):
                return advised  # an older kernel: keep the pages, nothing else changes
            advised += end - start
    return advised


def warm_up_rules() -> list[RuleSpec]:
    """One rule of each kernel: rain, antecedent rain, intensity, level, slope, forecast.

    Every slope rule (rate of rise, velocity, acceleration, tangent angle, inverse
    velocity) runs on the same two kernels, so one of them stands for all. The failure
    forecast has a kernel of its own; left out, it would compile (or load) on the agent's
    first reading, with the polling stopped meanwhile.
    """
    levels = (1.0, 2.0, 3.0, 4.0)
    return [
        RainWindowRule(id="w", channel="r", windows=(RainWindow("1h", 3600.0, levels),)),
        AntecedentRainRule(id="a", channel="r", decay_per_day=0.8, thresholds=levels),
        IntensityDurationRule(id="i", channel="r", curves=(PowerLaw(2.2, -0.44), None, None, None)),
        WaterLevelRule(id="l", channel="c", thresholds=levels),
        RateOfRiseRule(id="s", channel="c", window_s=600.0, thresholds=levels),
        FailureForecastRule(id="f", channel="c", horizons_h=(None, 168.0, 144.0, 48.0)),
    ]


def rules_for_kinds(kinds: Iterable[str]) -> list[RuleSpec]:
    """The warm-up rules whose kernels the rule ``kinds`` of a site file run on."""
    wanted = set(kinds)
    slope = bool(wanted & SLOPE_KINDS)
    return [
        r for r in warm_up_rules() if r.kind in wanted or (slope and isinstance(r, RateOfRiseRule))
    ]


def preload_kernels(backend: str, rules: Sequence[RuleSpec] | None = None) -> str:
    """Load the kernels of ``rules`` (default: all) in ``backend``; the backend resolved."""
    rules = warm_up_rules() if rules is None else rules
    resolved = resolve_backend(backend)
    if resolved != "numba":
        return resolved
    from alarm_engine.numba_backend import load_kernels  # noqa: PLC0415 - numba is optional

    release_compiler_pages()  # numba's own start-up touched them; loading touches fewer
    load_kernels([r for r in rules if not isinstance(r, CombinationRule)])
    from alarm_engine.kernels import CACHE_DIR  # noqa: PLC0415 - loaded with the kernels

    for old in prune_other_versions(CACHE_DIR):
        log.info("removed an older engine version's compiled kernels: %s", old)
    advised = release_compiler_pages()
    log.debug("alarm kernels loaded; %.0f MB of compiler pages handed back", advised / 2**20)
    return resolved


def _rules_of(path: Path) -> list[Any] | None:
    try:
        rules = tomllib.loads(path.read_text()).get("rule", [])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # the site loader reports the problem; meanwhile every kernel loads
    return rules if isinstance(rules, list) else None


def rule_kinds(config: Path) -> set[str] | None:
    """The rule kinds a site file names, its included rule files' too, read cheaply.

    None when the file or an included one cannot be read (then every kernel loads).
    """
    rules = _rules_of(config)
    if rules is None:
        return None
    try:
        includes = tomllib.loads(config.read_text()).get("include", [])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    for include in includes if isinstance(includes, list) else [None]:
        ref = include.get("rules") if isinstance(include, dict) else None
        path = rule_file_path(ref, config.parent) if isinstance(ref, str) else None
        included = None if path is None else _rules_of(path)
        if included is None:
            return None
        rules = [*rules, *included]
    return {str(rule.get("kind")) for rule in rules if isinstance(rule, dict)}


def preload_for_site(config: Path, backend: str) -> str:
    """Preload the kernels a site file's rules need (all of them if it cannot be read)."""
    kinds = rule_kinds(config)
    return preload_kernels(backend, None if kinds is None else rules_for_kinds(kinds))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m edge_agent.alarm_preload [SITE_FILE]``: compile the kernels into the cache.

    The kernels a site file's rules run on, or every kernel without one, into
    ``NUMBA_CACHE_DIR``. The updater runs it in a new slot before the switch, the demo
    before its clocks start, the tests before any agent does.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if args:
        preload_for_site(Path(args[0]), "auto")
    else:
        preload_kernels("auto")


if __name__ == "__main__":
    main()
