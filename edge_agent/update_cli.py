"""``edge update``: the agent release slots of this gateway, as a technician sees them.

``status`` shows the current, previous and pending slot, the starts counted for a version
on trial and the last outcome. ``install`` puts a release bundle (a USB stick) into the
slots and switches to it: a gateway's first install, or one with no network. The hidden
``apply`` and ``confirm`` run a signed release document through ``ReleaseUpdater`` and
one agent start's confirmation; crash tests and manual recovery use them, and they store
their reports in the agent's store as the agent does.
Also runnable as ``python -m edge_agent.update_cli``.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from edge_agent.cli_console import console, fail, print_json
from ota.supervisor import DEFAULT_ROOT, Outcome, SlotRelease, StateFileError

if TYPE_CHECKING:
    from edge_agent.updater import AfterApply, Emit
    from ota.slots import SlotStatus

# The agent's own modules load inside the commands: `edge` imports this module for every
# command, and `edge run` must load its alarm kernels before anything heavy.

update_app = typer.Typer(
    help="Agent releases on this gateway: slots, a version on trial, the last outcome.",
    no_args_is_help=True,
)

RootOpt = Annotated[Path, typer.Option("--root", help="The release slot tree.")]
DataDirOpt = Annotated[
    Path, typer.Option("--data-dir", "-d", help="The agent's data directory (store, enrollment).")
]
T = TypeVar("T")


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, with asyncio imported only by the commands that need it."""
    import asyncio  # noqa: PLC0415 - `edge run` loads its kernels before asyncio

    return asyncio.run(work)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _release(release: SlotRelease | None) -> str:
    if release is None:
        return "none"
    return f"{release.version} (release document {release.doc_version})"


def _outcome(outcome: Outcome | None) -> str:
    if outcome is None:
        return "none"
    reason = f": {outcome.reason}" if outcome.reason else ""
    sent = "reported" if outcome.reported else "not reported yet"
    return f"{outcome.state} {_release(outcome.release)} at {_when(outcome.at)}{reason} ({sent})"


def _status_json(view: SlotStatus) -> dict[str, Any]:
    return {
        "root": str(view.root),
        **view.state.to_json(),
        "links": {"current": view.current_link, "previous": view.previous_link},
        "slots": list(view.slots),
        "unfinished": list(view.partial),
    }


def _config_status(data_dir: Path) -> tuple[str, dict[str, Any]]:
    """The configuration update's state in the data directory: a line and its JSON."""
    from edge_agent.config_state import (  # noqa: PLC0415
        MAX_TAKE_TRIES,
        ConfigOtaState,
        Taking,
        config_status,
    )

    state = ConfigOtaState.load(data_dir)
    taking = Taking.load(data_dir)
    words = [f"v{state.installed_version} installed" if state.installed_version else "local file"]
    if state.confirming is not None:
        words.append(f"v{state.confirming} switched to, confirming (start {state.confirm_starts})")
    if taking is not None:
        tried = f"v{taking.version} being taken: try {taking.tries} of {MAX_TAKE_TRIES}"
        words.append(tried + (f" (last error: {taking.failure})" if taking.failure else ""))
    last = state.last
    if last is not None:
        reason = f": {last['reason']}" if last.get("reason") else ""
        words.append(f"last {last.get('state')} v{last.get('version')}{reason}")
    return "; ".join(words), config_status(state, taking)


@update_app.command()
def status(
    root: RootOpt = DEFAULT_ROOT,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", "-d", help="Also the configuration update's state in this data directory."
        ),
    ] = None,
) -> None:
    """Show the current, previous and pending release slots and the last outcome.

    With ``--data-dir``, also the configuration update's: the installed version, one being
    confirmed, one being taken with its tries and last error, and the last outcome.
    """
    from ota.slots import SlotTree  # noqa: PLC0415

    if not root.is_dir():
        raise fail(f"no release slots under {root}")
    try:
        view = SlotTree(root).status()
    except StateFileError as exc:
        raise fail(str(exc)) from None
    config = None
    if data_dir is not None:
        if not data_dir.is_dir():
            raise fail(f"no data directory {data_dir}")
        try:
            config = _config_status(data_dir)
        except (OSError, ValueError, TypeError) as exc:
            problem = f"the configuration update's state in {data_dir} cannot be read: {exc}"
            raise fail(problem) from None
    if as_json:
        shown = _status_json(view)
        if config is not None:
            shown["config"] = config[1]
        print_json(shown)
        return
    state = view.state
    pending = state.pending
    if pending is None:
        console.print(f"current   {_release(state.committed)}", highlight=False)
        console.print(f"previous  {_release(state.previous)}", highlight=False)
    else:
        console.print(
            f"current   {_release(pending.release)} [bold]pending[/]: start "
            f"{pending.boots} of {pending.max_boots}, must be healthy within "
            f"{pending.health_deadline_s:g} s; switched {_when(pending.switched_at)}",
            highlight=False,
        )
        console.print(f"previous  {_release(state.committed)} (the rollback)", highlight=False)
    console.print(f"links     current -> {view.current_link}, previous -> {view.previous_link}")
    unfinished = f" (unfinished: {', '.join(view.partial)})" if view.partial else ""
    console.print(f"slots     {', '.join(view.slots) or 'none'}{unfinished}", markup=False)
    console.print(f"last      {_outcome(view.last_outcome)}", markup=False, highlight=False)
    if config is not None:
        console.print(f"config    {config[0]}", markup=False, highlight=False)


@update_app.command()
def install(
    bundle: Annotated[
        Path, typer.Argument(help="A release bundle: a folder with manifest.json and wheels/.")
    ],
    root: RootOpt = DEFAULT_ROOT,
    compile_bytecode: Annotated[
        bool, typer.Option("--compile/--no-compile", help="Precompile the slot.")
    ] = True,
) -> None:
    """Install a release bundle offline into a slot and switch to it (first install, USB).

    Every wheel's hash is checked against the bundle's manifest before anything is
    installed. A first install is committed at once (there is nothing to fall back to)
    and puts the boot supervisor in the root's bin folder; on a gateway already running a release
    the new one goes on trial, as one received over the air: the agent's next start
    confirms it, or the supervisor goes back after three failed starts.
    """
    from ota.bundle import WHEELS_DIR  # noqa: PLC0415
    from ota.manifest import MANIFEST_FILE, ReleaseManifest  # noqa: PLC0415
    from ota.slots import ReleaseRefusedError, SlotError, SlotTree  # noqa: PLC0415

    try:
        manifest = ReleaseManifest.model_validate_json((bundle / MANIFEST_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        raise fail(f"{bundle / MANIFEST_FILE}: not a release manifest: {exc}") from None
    tree = SlotTree(root, compile_bytecode=compile_bytecode)
    try:
        committed = tree.state().committed
        if committed is not None and committed.version == manifest.version:
            console.print(f"release {manifest.version} is already current", highlight=False)
            return
        tree.admit(manifest, revert=False)
        done = tree.install(manifest, bundle / WHEELS_DIR)
        # Release document 0: no signed document was involved, the technician was.
        tree.switch(manifest.version, 0, max_boots=3, health_deadline_s=120)
        if committed is None:
            tree.commit()
            tree.mark_reported(tree.unreported())
    except (ReleaseRefusedError, SlotError, StateFileError, OSError) as exc:
        raise fail(f"cannot install {bundle}: {exc}") from None
    console.print(
        f"release {manifest.version} installed in {done.seconds:.0f} s: "
        + ("current" if committed is None else "on trial until the agent's next start"),
        highlight=False,
    )


async def _with_reports(data_dir: Path, work: Callable[[Emit], Awaitable[T]]) -> T:
    """Run ``work`` with an ``emit`` that stores each report as the agent does, and shows it."""
    from edge_agent.store import LocalStore  # noqa: PLC0415
    from ota.report import OTA_EVENT_KIND, OtaReport  # noqa: PLC0415

    async with LocalStore(data_dir) as store:

        async def emit(report: OtaReport) -> None:
            detail = report.detail()
            await store.record_event(
                time.time(), OTA_EVENT_KIND, report.subject.value, None, detail
            )
            console.print(f"report {json.dumps(detail)}", highlight=False)

        return await work(emit)


@update_app.command(hidden=True)
def apply(
    document: Annotated[Path, typer.Argument(help="A signed release document (JSON).")],
    data_dir: DataDirOpt,
    root: RootOpt = DEFAULT_ROOT,
    max_boots: Annotated[int, typer.Option(min=1)] = 3,
    health_deadline: Annotated[float, typer.Option(min=1.0)] = 120.0,
    compile_bytecode: Annotated[
        bool, typer.Option("--compile/--no-compile", help="Precompile the new slot.")
    ] = True,
) -> None:
    """Verify a release document and take it up to the switch (the agent does this itself)."""
    from edge_agent.enroll import load_enrollment  # noqa: PLC0415
    from edge_agent.updater import ReleaseUpdater  # noqa: PLC0415
    from ota.document import DocumentKind, DocumentRefusedError, verify_document  # noqa: PLC0415
    from ota.download import DownloadError  # noqa: PLC0415
    from ota.slots import SlotError, SlotTree  # noqa: PLC0415

    enrollment = load_enrollment(data_dir)
    if enrollment is None:
        raise fail(f"{data_dir} holds no enrollment: enroll the gateway first")
    tree = SlotTree(root, compile_bytecode=compile_bytecode)

    async def work(emit: Emit) -> AfterApply:
        updater = ReleaseUpdater.for_enrollment(
            tree, enrollment, emit, max_boots=max_boots, health_deadline_s=health_deadline
        )
        verified = verify_document(
            document.read_bytes(),
            enrollment.fleet_signing_key,
            enrollment.gateway_id,
            DocumentKind.RELEASE,
            updater.installed_document_version(),
        )
        return await updater.apply(verified)

    try:
        after = run_async(_with_reports(data_dir, work))
    except (DocumentRefusedError, DownloadError, SlotError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(f"result {after.value}")


async def _agent_loads() -> str | None:
    try:
        importlib.import_module("edge_agent.cli")
    except Exception as exc:  # whatever breaks the import is the reason
        return f"the agent does not load: {exc!r}"
    return None


@update_app.command(hidden=True)
def confirm(
    data_dir: DataDirOpt,
    root: RootOpt = DEFAULT_ROOT,
    probe_interval: Annotated[float, typer.Option(min=0.01)] = 2.0,
) -> None:
    """One agent start's confirmation: commit this version on trial once the agent loads."""
    from edge_agent.updater import ReleaseUpdater  # noqa: PLC0415
    from ota.slots import SlotError, SlotTree  # noqa: PLC0415

    tree = SlotTree(root)

    async def work(emit: Emit) -> str:
        updater = ReleaseUpdater(tree, "", emit, probe_interval_s=probe_interval)
        decided = await updater.confirm_started(_agent_loads)
        return f"running {updater.running_version}: {decided.value}"

    try:
        console.print(run_async(_with_reports(data_dir, work)), highlight=False)
    except (SlotError, StateFileError, OSError) as exc:
        raise fail(str(exc)) from None


if __name__ == "__main__":
    update_app(prog_name="edge update")
