"""``edge doctor``: print the on-site checks as a table (or JSON lines) and exit by verdict.

Exit 0 when the gateway can warn, 1 when a check failed (something would stop it warning),
2 when the site file itself cannot be read. Only formats and dispatches: the checks live in
``edge_agent.doctor``; never switches a relay or writes to a device.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table as RichTable

from edge_agent.cli_console import console, fail
from site_schema.site_errors import SiteConfigError

if TYPE_CHECKING:
    from edge_agent.doctor import Finding

STYLES = {"ok": "green", "warn": "bold yellow", "fail": "bold red"}


def doctor(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file (TOML).")],
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", "-d", help="The agent's data directory (store, control socket)."
        ),
    ],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per check.")] = False,
) -> None:
    """Check on site what the gateway needs to warn: ports, devices, siren, clock, disk, county.

    With the agent running, devices and the siren are judged from its own polls; stopped,
    they are probed (the siren's relay is only read back, never switched).
    """
    from edge_agent.control import SOCKET_NAME, ControlError, NoAgentError, ask  # noqa: PLC0415
    from edge_agent.control_messages import StatusReply, StatusRequest  # noqa: PLC0415
    from edge_agent.doctor import examine, verdict_of  # noqa: PLC0415
    from edge_agent.site_file import load_site  # noqa: PLC0415

    try:
        site = load_site(config)
    except SiteConfigError as exc:
        raise fail(str(exc)) from None

    async def run() -> tuple[list[Finding], bool]:
        # Only when nothing listens may the doctor open the lines itself: an agent that
        # refuses, answers oddly or is slow (compiling its kernels) still owns them.
        running: StatusReply | str | None
        try:
            asked = ask(data_dir / SOCKET_NAME, StatusRequest(), StatusReply)
            running = await asyncio.wait_for(asked, 5.0)
        except NoAgentError:
            running = None
        except TimeoutError:
            running = "it did not answer within 5 s"
        except (ControlError, OSError) as exc:
            running = str(exc) or type(exc).__name__
        return await examine(site, data_dir, running), running is not None

    findings, running = asyncio.run(run())
    if json_out:
        for finding in findings:
            print(json.dumps(asdict(finding), ensure_ascii=False))
    else:
        how = "from the running agent" if running else "probed (the agent is not running)"
        table = RichTable(title=f"edge doctor: {site.site_id}, devices {how}", expand=False)
        table.add_column("check", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        table.add_column("what was found / what to do")
        for f in findings:
            table.add_row(escape(f.check), f"[{STYLES[f.verdict]}]{f.verdict}[/]", escape(f.detail))
        console.print(table)
        verdict = verdict_of(findings)
        words = {
            "ok": "the gateway can warn",
            "warn": "the gateway can warn; see the warnings",
            "fail": "the gateway cannot warn as configured: fix the failures",
        }
        console.print(f"[{STYLES[verdict]}]{words[verdict]}[/]")
    if verdict_of(findings) == "fail":
        raise typer.Exit(1)
