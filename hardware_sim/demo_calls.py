"""The demo's 叫应: each site's responsible persons, their work-chat robots, one answer.

The county gives every demo site a roster (a village monitor, a township and a county
duty officer, each reached by a work-chat robot served here) and a short red policy
(the village has ``VILLAGE_DEADLINE_S`` to answer). Nobody at the village answers; the
first township officer called opens the answer link in the message and confirms. Like
the rest of the demo it never imports the fleet: the roster goes in through
``fleet roster import``, the policy and the answer over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Short, so that the demo shows the village's deadline passing and the township called.
VILLAGE_DEADLINE_S = 20
TOWNSHIP_DEADLINE_S = 600
REPEAT_S = 60
_LINK = re.compile(r"(https?://\S+/a/[A-Za-z0-9_-]+)")

#: (tier, name, role) of each site's persons.
PERSONS = (
    ("village", "王建国", "群测群防员"),
    ("township", "李敏", "乡镇值班"),
    ("county", "赵刚", "县值班"),
)


def red_policy() -> dict[str, object]:
    """The demo sites' own policy: red calls the village, then the township, then the county."""
    return {
        "levels": {
            "red": {
                "tiers": [
                    {"tier": "village", "deadline_s": VILLAGE_DEADLINE_S},
                    {"tier": "township", "deadline_s": TOWNSHIP_DEADLINE_S},
                    {"tier": "county", "deadline_s": 900},
                ],
                "repeat_s": REPEAT_S,
            }
        }
    }


@dataclass(frozen=True, slots=True)
class RobotMessage:
    """A message a robot was posted: whose robot, when it arrived, the text."""

    robot: str
    at: float
    text: str

    @property
    def answer_link(self) -> str | None:
        """The answer link the message carries."""
        match = _LINK.search(self.text)
        return match.group(1) if match else None


@dataclass
class DemoRobots:
    """Work-chat robots (WeChat Work / DingTalk style): a local HTTP server keeping posts."""

    messages: list[RobotMessage] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    def url(self, robot: str) -> str:
        """The robot URL of ``robot`` (e.g. ``creek-village-township``)."""
        return f"http://127.0.0.1:{self.port}/robot/{robot}"

    def to(self, robot: str) -> list[RobotMessage]:
        """Messages posted to ``robot``, in order."""
        return [m for m in self.messages if m.robot == robot]

    def roster_csv(self, site_ids: Sequence[str]) -> str:
        """The county's roster spreadsheet of these sites (for ``fleet roster import``)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["site_id", "tier", "name", "role", "mobile", "email", "webhook"])
        for site_id in site_ids:
            for tier, name, role in PERSONS:
                writer.writerow([site_id, tier, name, role, "", "", self.url(f"{site_id}-{tier}")])
        return out.getvalue()

    async def start(self) -> None:
        """Serve on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 POSTs on one kept-alive connection, each answered ``{"errcode": 0}``."""
        try:
            while request := await reader.readline():
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                robot = request.split()[1].decode().rsplit("/", 1)[-1]
                text = str(json.loads(body)["text"]["content"])
                self.messages.append(RobotMessage(robot, time.time(), text))
                reply = b'{"errcode": 0}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, KeyError, IndexError):
            pass  # a robot drops what it cannot read; the fleet records the failed call
        finally:
            writer.close()
