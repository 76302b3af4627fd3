"""Over-the-air updates: bundle size, publish -> committed on one gateway, a 20-gateway rollout.

Three measurements in one run, JSON on the last line:

- the release bundle of this source tree (project wheel + every dependency wheel), and
  what a gateway that already runs the previous release downloads for it (the delta);
- one real gateway (``edge run --slots`` from an installed slot, under a restart-always
  loop with the supervisor, polling simulated devices) taken from 0.1.1 to 0.1.2 by a
  fleet rollout: from ``fleet rollout create`` to the fleet recording the commit, plus
  the download and install figures the gateway reported;
- a rollout of a release in three waves (1, 25 %, 100 %) across 20 simulated gateways
  that verify the signed document, download every file with their own credentials and
  report ``applied``, through a real mosquitto.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent_harness_bench import emit  # noqa: E402

from drivers.clock import ManualClock  # noqa: E402
from fleet.repository import RolloutState  # noqa: E402
from fleet.rollouts import RolloutTiming  # noqa: E402
from hardware_sim.harness.agent import events  # noqa: E402
from hardware_sim.harness.mosquitto import fleet_with_mosquitto  # noqa: E402
from hardware_sim.harness.ota_rig import RolloutRig  # noqa: E402
from hardware_sim.harness.release import (  # noqa: E402
    admin_token,
    build,
    create_rollout,
    run_fleet_cli,
    slot_gateway,
)
from hardware_sim.harness.uplink import make_clock, running_broker, running_fleet  # noqa: E402
from hardware_sim.harness.waiting import wait_for  # noqa: E402


async def one_gateway(tmp: Path) -> dict[str, Any]:
    """Build two releases, take a real gateway from the first to the second."""
    started = time.monotonic()
    first = build(tmp / "releases", "0.1.1")
    second = build(tmp / "releases", "0.1.2")
    build_s = (time.monotonic() - started) / 2
    have = {f.sha256 for f in first.manifest.files}
    delta = sum(f.size for f in second.manifest.files if f.sha256 not in have)
    with (
        running_broker(tmp / "fleet", tmp / "mosquitto") as broker,
        running_fleet(tmp / "fleet", broker) as fleet,
    ):
        cli = ("--fleet", fleet.url, "--token", admin_token(fleet.data_dir))
        run_fleet_cli("release", "publish", str(second.bundle), *cli)
        async with slot_gateway(tmp, fleet, first, make_clock(60)) as (gateway_id, service):
            published = time.monotonic()
            created = await create_rollout(cli, "0.1.2", [gateway_id])

            def completed() -> bool:
                answer = fleet.rest("GET", f"/api/v1/rollouts/{created['id']}")
                return bool(answer["state"] == "completed")

            await wait_for(completed, 600, "the rollout to complete")
            committed_s = time.monotonic() - published
            assert service.starts == ["0.1.1", "0.1.2"], service.starts
            installed = next(
                e
                for e in events(tmp / "gw", "ota")
                if e["subject"] == "release" and e["state"] == "installed"
            )
    download = installed.get("download", {})
    return {
        "bundle_bytes": second.manifest.total_size,
        "bundle_files": len(second.manifest.files),
        "delta_bytes": delta,
        "build_s": round(build_s, 2),
        "publish_to_committed_s": round(committed_s, 2),
        "download_bytes": download.get("bytes_downloaded"),
        "download_s": download.get("seconds"),
        "install_s": installed.get("install_s"),
    }


async def twenty_gateways(tmp: Path) -> dict[str, Any]:
    """A 3-wave rollout across 20 simulated gateways through mosquitto."""
    clock = ManualClock(time.time())
    timing = RolloutTiming(clock=clock.now, tick_s=0.05)
    async with (
        fleet_with_mosquitto(tmp, rollout_timing=timing) as fleet,
        AsyncExitStack() as stack,
    ):
        rig = RolloutRig(fleet, clock, stack)
        enrolled = [await fleet.enroll() for _ in range(20)]
        await rig.release()
        for gateway in enrolled:
            await rig.connect(gateway)
        started = time.monotonic()
        rollout_id = await rig.rollout([e.gateway_id for e in enrolled], waves=["1", "25%", "100%"])
        rollout = await rig.until(rollout_id, RolloutState.COMPLETED, within=120)
        seconds = time.monotonic() - started
    return {
        "rollout_20_gateways_3_waves_s": round(seconds, 2),
        "rollout_waves": [len(w.gateways) for w in rollout.waves],
    }


def run_part(part: Any, prefix: str) -> dict[str, Any]:
    """Run one part in its own event loop and temporary directory."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        result: dict[str, Any] = asyncio.run(part(Path(folder)))
    return result


def main() -> None:
    """Measure and print the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    figures = run_part(one_gateway, "hw-ota-one-")
    figures.update(run_part(twenty_gateways, "hw-ota-twenty-"))
    emit(figures)


if __name__ == "__main__":
    main()
