"""The technician's enrollment and uplink commands: ``edge enroll`` and ``edge uplink ...``.

They work on the data directory and the running agent's control socket. They never print
the gateway's MQTT password or private key.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_agent.cli_console import console, fail, print_json

uplink_app = typer.Typer(
    help="The gateway's link to the county fleet: status, and draining a stopped gateway.",
    no_args_is_help=True,
)

DataDirOpt = Annotated[
    Path,
    typer.Option("--data-dir", "-d", help="The agent's data directory (store, keys, enrollment)."),
]


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def enroll(
    data_dir: DataDirOpt,
    fleet: Annotated[
        str | None, typer.Option("--fleet", help="The fleet's URL, e.g. https://fleet.example.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", envvar="HAZARDWATCH_ENROLL_TOKEN", help="One-time token from the county."
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", help="Offline bundle from `fleet token bundle` (USB stick)."),
    ] = None,
) -> None:
    """Enroll this gateway with the county fleet: online with a token, or with an offline bundle.

    Generates the gateway's Ed25519 key pair in the data directory (mode 0600; the private
    key never leaves the device). With --bundle the enrollment completes when the agent
    first reaches the fleet.
    """
    from edge_agent.agent import AGENT_VERSION  # noqa: PLC0415 - the daemon's own version
    from edge_agent.enroll import (  # noqa: PLC0415 - keeps `edge run` light until it polls
        KEY_FILE,
        EnrollmentError,
        EnrollmentRefusedError,
        FleetUnreachableError,
        enroll_online,
        store_bundle,
    )

    if bundle is not None and (fleet or token):
        raise fail("give either --bundle FILE, or --fleet URL with --token TOKEN")
    try:
        if bundle is not None:
            pending = store_bundle(data_dir, bundle, time.time())
            console.print(
                f"gateway key generated in {data_dir / KEY_FILE} (mode 0600); enrollment for "
                f"site {pending.site_id} completes when the agent first reaches "
                f"{pending.fleet_url} (token valid until {_when(pending.expires_at)})",
                highlight=False,
            )
            _restart_hint(data_dir)
            return
        if not fleet or not token:
            raise fail("give --fleet URL and --token TOKEN (or --bundle FILE)")
        stored = enroll_online(data_dir, fleet, token, AGENT_VERSION)
    except EnrollmentRefusedError as exc:
        raise fail(f"enrollment refused: {exc}") from None
    except FleetUnreachableError as exc:
        raise fail(f"{exc}; not enrolled, try again", code=1) from None
    except EnrollmentError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"enrolled as [bold]{stored.gateway_id}[/] for site {stored.site_id}; broker "
        f"{stored.broker_url}; fleet signing key {stored.fleet_signing_key} kept as the trust "
        f"anchor; private key {data_dir / KEY_FILE} (mode 0600) stays on this device",
        highlight=False,
    )
    _restart_hint(data_dir)


def _restart_hint(data_dir: Path) -> None:
    # The agent starts its uplink only when it finds an enrollment at start-up.
    if _live(data_dir) is not None:
        console.print(
            "the agent is running without its uplink: restart it (systemctl restart "
            "hazardwatch-edge) to start uploading"
        )


def _live(data_dir: Path) -> dict[str, Any] | None:
    """The running agent's uplink state; ``{"state": "off"}`` when it runs without one."""
    import asyncio  # noqa: PLC0415 - `edge run` imports this module before its kernels load

    from edge_agent.control import SOCKET_NAME, ControlError, ControlRefusedError, ask  # noqa: PLC0415
    from edge_agent.control_messages import UplinkReply, UplinkRequest  # noqa: PLC0415

    try:
        reply = asyncio.run(ask(data_dir / SOCKET_NAME, UplinkRequest(), UplinkReply))
    except ControlRefusedError:  # an agent without an uplink does not serve ``uplink``
        return {"state": "off"}
    except ControlError:
        return None
    return reply.wire()


def uplink_report(data_dir: Path) -> dict[str, Any]:
    """Enrollment, store progress and (when the agent runs) the live link, JSON-ready."""
    from edge_agent.enroll import enrollment_state, load_enrollment, load_pending  # noqa: PLC0415
    from edge_agent.upload_source import stored_progress  # noqa: PLC0415

    state = enrollment_state(data_dir)
    enrollment: dict[str, Any] = {"state": state}
    stored = load_enrollment(data_dir)
    if stored is not None:
        enrollment.update(
            gateway_id=stored.gateway_id,
            site_id=stored.site_id,
            fleet_url=stored.fleet_url,
            broker_url=stored.broker_url,
            fleet_signing_key=stored.fleet_signing_key,
            enrolled_at=stored.enrolled_at,
        )
    pending = load_pending(data_dir)
    if pending is not None:
        enrollment.update(
            site_id=pending.site_id, fleet_url=pending.fleet_url, refused=pending.refused
        )
    progress = stored_progress(data_dir / "store.sqlite")
    store = {
        s.value: {"stored": last, "acked": acked, "backlog": max(0, last - acked)}
        for s, (last, acked) in progress.items()
    }
    return {"enrollment": enrollment, "store": store, "live": _live(data_dir)}


@uplink_app.command("status")
def status(
    data_dir: DataDirOpt,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the enrollment, what the fleet has acknowledged, and the live link if running."""
    report = uplink_report(data_dir)
    if json_out:
        print_json(report)
        return
    enrollment = report["enrollment"]
    state = enrollment["state"]
    if state == "enrolled":
        console.print(
            f"gateway [bold]{enrollment['gateway_id']}[/] (site {enrollment['site_id']}), "
            f"enrolled {_when(enrollment['enrolled_at'])}; fleet {enrollment['fleet_url']}, "
            f"broker {enrollment['broker_url']}",
            highlight=False,
        )
    elif state == "pending":
        console.print(
            f"enrollment pending: completes when the agent reaches {enrollment['fleet_url']}"
        )
    elif state == "refused":
        console.print(f"[bold red]enrollment refused:[/] {enrollment['refused']}")
    else:
        console.print("not enrolled: run `edge enroll --fleet URL --token T` (or --bundle FILE)")
    live = report["live"]
    if live is None:
        console.print("agent not running (figures below are from the store)")
    elif live["state"] == "off":
        console.print("the agent runs without an uplink: it was not enrolled when it started")
    else:
        counters = live["counters"]
        console.print(
            f"link {live['state']}"
            + (f" since {_when(live['connected_since'])}" if live["connected_since"] else "")
            + f"; last ack {_when(live['last_ack_at'])}; connects {counters.get('connects', 0)}, "
            f"resends {counters.get('resends', 0)}, failures {counters.get('failures', 0)}"
            + (f"; last error: {live['last_error']}" if live["last_error"] else ""),
            highlight=False,
        )
    for stream, figures in report["store"].items():
        console.print(
            f"{stream}: stored up to seq {figures['stored']}, acknowledged up to "
            f"{figures['acked']}, backlog {figures['backlog']}"
        )


@uplink_app.command("drain")
def drain(
    data_dir: DataDirOpt,
    timeout: Annotated[float, typer.Option(min=1.0, help="Give up after this many seconds.")] = 300,
) -> None:
    """Upload everything a stopped gateway stored, then exit (e.g. before replacing it).

    Exit status 1 when the fleet did not acknowledge everything within --timeout.
    """
    import asyncio  # noqa: PLC0415

    from edge_agent.agent import AGENT_VERSION  # noqa: PLC0415
    from edge_agent.enroll import enrollment_state  # noqa: PLC0415
    from edge_agent.store import LocalStore  # noqa: PLC0415
    from edge_agent.uplink import Uplink  # noqa: PLC0415
    from edge_agent.upload_source import stored_progress  # noqa: PLC0415
    from site_schema.site_config import UplinkSettings  # noqa: PLC0415

    if _live(data_dir) is not None:
        raise fail("the agent is running and uploads by itself; stop it first to drain")
    if enrollment_state(data_dir) != "enrolled":
        raise fail("this gateway is not enrolled; see `edge uplink status`")

    async def run() -> None:
        async with LocalStore(data_dir) as store:
            uplink = Uplink(data_dir, store, UplinkSettings(), AGENT_VERSION)
            await asyncio.wait_for(uplink.drain(), timeout)

    try:
        asyncio.run(run())
    except TimeoutError:
        raise fail(f"the fleet did not acknowledge everything within {timeout:g} s", 1) from None
    progress = stored_progress(data_dir / "store.sqlite")
    for stream, (last, acked) in progress.items():
        console.print(f"{stream.value}: acknowledged up to {acked} of {last}")
    if any(acked < last for last, acked in progress.values()):
        raise typer.Exit(1)
