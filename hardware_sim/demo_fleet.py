"""The county side of the demo: ``fleet serve`` with its embedded broker, seen from outside.

It starts the fleet as a subprocess, makes tokens with the ``fleet`` CLI and reads what
the fleet holds over its REST API, exactly as a county operator would. It never imports
the fleet; blocking HTTP calls run on worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from hardware_sim.harness.ports import free_port

#: Far enough in the future for every simulated timestamp of a demo.
_UNTIL = 4_102_444_800.0  # 2100-01-01


async def run_cli(*args: str) -> str:
    """Run ``python -m ARGS`` to completion and return its stdout; RuntimeError on failure."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C for the demo must not cut a drain short
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        msg = f"{' '.join(args[:3])} failed: {err.decode(errors='replace').strip()}"
        raise RuntimeError(msg)
    return out.decode()


class DemoFleet:
    """The county fleet service for one demo, in ``folder``, on free loopback ports."""

    def __init__(self, folder: Path) -> None:
        self.data_dir = folder / "fleet"
        self.port = free_port()
        self.broker_port = free_port()
        self.log = folder / "fleet.log"
        self._process: asyncio.subprocess.Process | None = None
        self._api_token = ""
        self._county_token = ""

    @property
    def viewer_token(self) -> str:
        """The demo's viewer API token: what a person signs in to the console with."""
        return self._api_token

    @property
    def url(self) -> str:
        """The REST base URL, as gateways are given it for enrollment."""
        return f"http://127.0.0.1:{self.port}"

    def _cli(self, *args: str) -> list[str]:
        return ["fleet.cli", *args, "--data-dir", str(self.data_dir)]

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start ``fleet serve`` with the embedded broker; return once ingest is subscribed."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        created = await run_cli(
            *self._cli("apitoken", "create", "--name", "demo", "--role", "viewer")
        )
        self._api_token = created.strip()
        created = await run_cli(
            *self._cli("apitoken", "create", "--name", "demo-county", "--role", "configurator")
        )
        self._county_token = created.strip()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleet.cli", "serve", "--data-dir", str(self.data_dir),
            "--port", str(self.port), "--broker", "embedded",
            "--broker-port", str(self.broker_port), "--log-level", "warning",
            stdout=self.log.open("wb"), stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C is for the demo, which stops the fleet last
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self._process.returncode is not None:
                msg = f"the fleet exited at start; see {self.log}"
                raise RuntimeError(msg)
            with contextlib.suppress(OSError, ValueError):
                if (await self.get("/api/v1/ingest"))["ready"]:
                    return
            if loop.time() > deadline:
                msg = f"the fleet did not become ready within {timeout_s:g} s; see {self.log}"
                raise RuntimeError(msg)
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """SIGTERM the fleet and wait for it."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 20)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()

    async def token(self, site_id: str) -> str:
        """A one-time enrollment token for ``site_id`` (the county's `fleet token create`)."""
        return (
            await run_cli(*self._cli("token", "create", "--site", site_id, "--ttl", "1h"))
        ).strip()

    async def get(self, path: str, **params: str | float) -> Any:
        """GET a REST resource as the demo's viewer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(
            f"{self.url}{path}{query}", headers={"Authorization": f"Bearer {self._api_token}"}
        )

        def fetch() -> Any:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read())

        return await asyncio.to_thread(fetch)

    async def import_roster(self, csv_file: Path) -> str:
        """Import a roster spreadsheet with ``fleet roster import``; returns what it said."""
        return (await run_cli(*self._cli("roster", "import", str(csv_file)))).strip()

    async def put(self, path: str, body: Any) -> Any:
        """PUT a JSON body as the county's configurator."""
        return await asyncio.to_thread(
            self._send, "PUT", f"{self.url}{path}", json.dumps(body).encode(), self._county_token
        )

    async def answer(self, link: str) -> None:
        """Confirm a warning by its answer link, as the person it was sent to (no login)."""
        await asyncio.to_thread(self._send, "POST", link, b"", None)

    @staticmethod
    def _send(method: str, url: str, body: bytes, token: str | None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read()
        return json.loads(text) if answer.headers.get_content_type() == "application/json" else None

    async def reading_seqs(self, gateway_id: str) -> list[int]:
        """Every reading seq the fleet holds for a gateway, over all its channels."""
        seqs: list[int] = []
        for channel in await self.get(f"/api/v1/gateways/{gateway_id}/channels"):
            page = await self.get(
                f"/api/v1/gateways/{gateway_id}/readings",
                channel=channel,
                since=0,
                until=_UNTIL,
                limit=100_000,
            )
            if page["truncated"]:
                msg = f"more than 100000 readings of {channel}: too many for the demo's check"
                raise RuntimeError(msg)
            seqs += [r["seq"] for r in page["readings"]]
        return sorted(seqs)
