"""Work-chat robots take at most 20 messages a minute each: the fleet keeps under that.

A WeChat Work robot answers errcode 45009 to a message beyond its 20 a minute, and that
message is not shown to anyone. In a storm many sites may share one robot (a county duty
group's), so ``RobotPace`` counts each robot's posts (by URL) over its window and says how
long a call must wait for a slot; a robot that still answers 45009 (someone else posts
to it too) counts as full for a whole window from then. The waiting call goes back in
the outbox and is sent at the next free slot.

This module only counts: it never posts, never drops a call, and never logs a URL (the
robot's key is in it).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: A WeChat Work robot's limit: messages in any minute.
ROBOT_PER_MINUTE = 20
#: The window the fleet counts over: a minute, and 2 s for the network and the robot's
#: own clock, so a post the fleet sends at the window's edge is not the robot's 21st.
ROBOT_WINDOW_S = 62.0
#: Past this many robots counted, those with no post in their window are forgotten.
FORGET_AFTER_ROBOTS = 4096
#: What a robot answers to a message beyond its limit.
ERRCODE_OVER_LIMIT = 45009


@dataclass(frozen=True, slots=True)
class RobotLimit:
    """``per_window`` posts to one robot in any ``window_s`` seconds."""

    per_window: int = ROBOT_PER_MINUTE
    window_s: float = ROBOT_WINDOW_S

    def __post_init__(self) -> None:
        if self.per_window < 1 or not self.window_s > 0:
            msg = f"a robot limit needs at least 1 post in a window over 0 s, not {self}"
            raise ValueError(msg)


class RobotPace:
    """Each robot's posts in its last window; ``clock`` is monotonic seconds."""

    def __init__(
        self, limit: RobotLimit | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit or RobotLimit()
        self._clock = clock
        self._posts: dict[str, deque[float]] = {}

    def wait_s(self, url: str) -> float:
        """0 and a slot taken when ``url``'s robot may have a post now; else how long until."""
        now = self._clock()
        posts = self._recent(url, now)
        if len(posts) < self.limit.per_window:
            posts.append(now)
            return 0.0
        return posts[0] + self.limit.window_s - now

    def full(self, url: str) -> float:
        """The robot refused for its limit: no post to it for a window; that wait."""
        now = self._clock()
        self._posts[url] = deque([now] * self.limit.per_window)
        return self.limit.window_s

    def _recent(self, url: str, now: float) -> deque[float]:
        posts = self._posts.setdefault(url, deque())
        while posts and posts[0] <= now - self.limit.window_s:
            posts.popleft()
        if len(self._posts) > FORGET_AFTER_ROBOTS:  # robots quiet for a window are forgotten
            since = now - self.limit.window_s
            for quiet in [u for u, p in self._posts.items() if u != url and p[-1] <= since]:
                del self._posts[quiet]
        return posts
