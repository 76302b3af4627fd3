"""``fleet release`` and ``fleet rollout``: publish release bundles and steer rollouts.

Everything but ``release build`` talks to a running fleet over REST with an API token
(``--fleet``/``--token`` or ``HAZARDWATCH_FLEET_URL``/``HAZARDWATCH_API_TOKEN``); the
fleet's own message is printed when it refuses, and the command exits 1.
``release publish`` can simply run again after an interruption: uploaded files are skipped.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from ota.download import file_url
from ota.manifest import MANIFEST_FILE, ReleaseManifest

release_app = typer.Typer(help="Agent releases: build, publish, list.", no_args_is_help=True)
rollout_app = typer.Typer(
    help="Staged rollouts of releases and configs: create, status, pause, resume, abort.",
    no_args_is_help=True,
)

FleetUrl = Annotated[
    str,
    typer.Option("--fleet", envvar="HAZARDWATCH_FLEET_URL", help="The fleet's REST URL."),
]
Token = Annotated[
    str, typer.Option("--token", envvar="HAZARDWATCH_API_TOKEN", help="An API token.")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the fleet's JSON answer.")]
RolloutId = Annotated[int, typer.Argument(help="The rollout's id.")]
DEFAULT_FLEET = "http://127.0.0.1:8080"
WHEELS_DIR = "wheels"
_TIMEOUT_S = 300.0


class FleetClient:
    """The REST calls these commands make; a refusal exits with the fleet's message."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        upload: IO[bytes] | None = None,
        size: int = 0,
    ) -> Any:
        """Send one request; the decoded JSON answer."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data: bytes | IO[bytes] | None = None
        if upload is not None:
            data = upload
            headers |= {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = str(json.loads(detail).get("detail", detail))
            typer.echo(f"fleet refused ({exc.code}): {detail}", err=True)
            raise typer.Exit(1) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            typer.echo(f"cannot reach the fleet at {self.url}: {reason}", err=True)
            raise typer.Exit(1) from None


def _size(total: int) -> str:
    return f"{total / 1e6:.1f} MB" if total >= 100_000 else f"{total} bytes"


@release_app.command("build")
def release_build(
    source: Annotated[Path, typer.Argument(help="The project's source tree.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle directory to write.")],
    version: Annotated[str, typer.Option("--version", help="PEP 440 version, e.g. 1.4.0.")],
    min_upgrade_from: Annotated[
        str, typer.Option("--min-upgrade-from", help="Oldest version that may upgrade to it.")
    ],
    wheel_cache: Annotated[
        Path | None, typer.Option("--wheel-cache", help="Reuse dependency wheels from here.")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="The gateways' machine when not this host's: aarch64 (Raspberry Pi OS "
            "64-bit) or x86_64; Debian bookworm's glibc and Python 3.11.",
        ),
    ] = None,
) -> None:
    """Build a release bundle (manifest.json + wheels/) with ``ota.bundle``."""
    from ota.bundle import TARGETS, BundleError, build_release  # noqa: PLC0415 - only when asked

    if target is not None and target not in TARGETS:
        typer.echo(
            f"--target {target!r}: not a machine bundles are built for here "
            f"(targets: {', '.join(TARGETS)}; armv7l is built on an armv7l machine)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        manifest = build_release(
            source,
            out,
            version,
            min_upgrade_from,
            wheel_cache,
            None if target is None else TARGETS[target],
        )
    except BundleError as exc:
        typer.echo(f"cannot build release {version}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"built release {manifest.version} in {out}: {len(manifest.files)} files, "
        f"{_size(manifest.total_size)}"
    )


@release_app.command("publish")
def release_publish(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (manifest.json, wheels/).")],
    fleet: FleetUrl = DEFAULT_FLEET,
    token: Token = "",
) -> None:
    """Register a bundle's manifest and upload the wheels the fleet does not have yet."""
    try:
        manifest = ReleaseManifest.model_validate_json((bundle / MANIFEST_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        typer.echo(f"{bundle / MANIFEST_FILE}: not a release manifest: {exc}", err=True)
        raise typer.Exit(1) from None
    for entry in manifest.files:
        path = bundle / WHEELS_DIR / entry.name
        if not path.is_file() or path.stat().st_size != entry.size:
            typer.echo(f"{path}: missing or not the {entry.size} bytes the manifest says", err=True)
            raise typer.Exit(1)
    client = FleetClient(fleet, token)
    release = client.call("POST", "/api/v1/releases", manifest.model_dump(mode="json"))
    for entry in release["files"]:
        if entry["uploaded"]:
            typer.echo(f"{entry['name']}: already on the fleet")
            continue
        with (bundle / WHEELS_DIR / entry["name"]).open("rb") as file:
            release = client.call(
                "PUT",
                file_url("", manifest.version, entry["name"]),  # a path on the fleet
                upload=file,
                size=entry["size"],
            )
        typer.echo(f"{entry['name']}: uploaded ({_size(entry['size'])}), sha256 verified")
    state = "complete" if release["complete"] else "incomplete"
    typer.echo(
        f"release {manifest.version}: {len(manifest.files)} files, "
        f"{_size(manifest.total_size)}, {state}"
    )


@release_app.command("list")
def release_list(
    fleet: FleetUrl = DEFAULT_FLEET, token: Token = "", as_json: JsonOut = False
) -> None:
    """The fleet's releases, newest first."""
    releases = FleetClient(fleet, token).call("GET", "/api/v1/releases")
    if as_json:
        typer.echo(json.dumps(releases, indent=2))
        return
    for r in releases:
        state = "complete" if r["complete"] else "incomplete"
        typer.echo(
            f"{r['version']}\t{len(r['files'])} files\t{_size(r['total_size'])}\t{state}\t"
            f"from {r['min_upgrade_from']}"
        )


@rollout_app.command("create")
def rollout_create(
    release: Annotated[str | None, typer.Option("--release", help="Release version.")] = None,
    config: Annotated[int | None, typer.Option("--config", help="Config id.")] = None,
    gateway: Annotated[
        list[str] | None, typer.Option("--gateway", help="Target gateway (repeatable).")
    ] = None,
    group: Annotated[str | None, typer.Option("--group", help="Target group.")] = None,
    waves: Annotated[str, typer.Option("--waves", help="Cumulative waves.")] = "1,25%,100%",
    success_threshold: Annotated[
        float, typer.Option(help="Next wave at this success rate or above.")
    ] = 0.9,
    error_threshold: Annotated[
        float, typer.Option(help="Halt when a wave's failure rate passes this.")
    ] = 0.1,
    device_timeout: Annotated[
        str, typer.Option(help="Time a gateway has to report, e.g. 30m or 2h.")
    ] = "1h",
    fleet: FleetUrl = DEFAULT_FLEET,
    token: Token = "",
    as_json: JsonOut = False,
) -> None:
    """Roll a release or a config out in waves; the first wave starts at once."""
    from fleet.cli import parse_duration  # noqa: PLC0415 - fleet.cli imports this module

    body: dict[str, Any] = {
        "waves": [w.strip() for w in waves.split(",") if w.strip()],
        "success_threshold": success_threshold,
        "error_threshold": error_threshold,
        "device_timeout_s": parse_duration(device_timeout),
    }
    if release is not None:
        body["release"] = release
    if config is not None:
        body["config_id"] = config
    if gateway:
        body["gateways"] = gateway
    if group is not None:
        body["group"] = group
    rollout = FleetClient(fleet, token).call("POST", "/api/v1/rollouts", body)
    _show(rollout, as_json)


@rollout_app.command("status")
def rollout_status(
    rollout_id: RolloutId,
    fleet: FleetUrl = DEFAULT_FLEET,
    token: Token = "",
    as_json: JsonOut = False,
) -> None:
    """A rollout with every wave and gateway."""
    _show(FleetClient(fleet, token).call("GET", f"/api/v1/rollouts/{rollout_id}"), as_json)


def _control(action: str, rollout_id: int, fleet: str, token: str, as_json: bool) -> None:
    rollout = FleetClient(fleet, token).call("POST", f"/api/v1/rollouts/{rollout_id}/{action}")
    _show(rollout, as_json)


def _control_command(action: str, summary: str) -> None:
    """Register ``fleet rollout ACTION ID``: one POST to the rollout's ``action``."""

    def command(
        rollout_id: RolloutId,
        fleet: FleetUrl = DEFAULT_FLEET,
        token: Token = "",
        as_json: JsonOut = False,
    ) -> None:
        _control(action, rollout_id, fleet, token, as_json)

    command.__doc__ = summary
    rollout_app.command(action)(command)


for _action, _summary in (
    ("pause", "Start no further wave (gateways already sent keep reporting)."),
    ("resume", "Continue a paused rollout."),
    ("abort", "Stop for good: gateways not yet sent the document never get it."),
):
    _control_command(_action, _summary)


def _show(rollout: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rollout, indent=2))
        return
    what = (
        f"release {rollout['release']}" if rollout["release"] else f"config {rollout['config_id']}"
    )
    waves = rollout["waves"]
    typer.echo(
        f"rollout {rollout['id']} ({what}): {rollout['state']}, wave "
        f"{rollout['current_wave'] or 0} of {len(waves)}"
        + (f" - {rollout['reason']}" if rollout["reason"] else "")
    )
    for wave in waves:
        typer.echo(
            f"  wave {wave['number']} ({wave['spec']}, {wave['size']} gateways): {wave['status']}"
            f" - {wave['succeeded']} ok, {wave['failed']} failed, {wave['timed_out']} timed out,"
            f" {wave['in_progress']} in progress"
        )
    for device in rollout.get("devices") or []:
        reason = f" - {device['reason']}" if device["reason"] else ""
        typer.echo(f"    {device['gateway_id']}\twave {device['wave']}\t{device['state']}{reason}")
