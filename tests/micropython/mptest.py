"""A tiny runner for MicroPython specs: calls each test_* function, prints one result line.

Runs inside MicroPython only (``sys.print_exception`` is MicroPython's); ``run.mjs``
collects the lines.
"""

import io
import json
import sys

RESULT = "@@result "


def run(namespace: dict[str, object]) -> None:
    """Run every ``test_*`` callable in ``namespace`` in name order."""
    for name in sorted(namespace):
        test = namespace[name]
        if not name.startswith("test_") or not callable(test):
            continue
        try:
            test()
        except Exception as exc:
            trace = io.StringIO()
            sys.print_exception(exc, trace)
            print(RESULT + json.dumps({"test": name, "ok": False, "detail": trace.getvalue()}))
        else:
            print(RESULT + json.dumps({"test": name, "ok": True}))
