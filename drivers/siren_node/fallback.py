"""The node's own judgement: is the gateway silent, has enough rain fallen, must it sound.

Pure logic over a millisecond uptime that never wraps; it never touches a pin, so the
same code decides on the board, in the simulator and under MicroPython in the tests.
"""

# Fallback states (holding register REG_FALLBACK_STATE).
IDLE = 0
"""Armed: sounds as soon as the gateway is silent and the rain reaches the threshold."""
SOUNDING = 1
"""The node sounds the siren on its own."""
DISARMED = 2
"""The last fallback was ended; armed again by a heartbeat or by the rain easing off."""

# Why the fallback last started (REG_FALLBACK_REASON).
REASON_NONE = 0
REASON_SILENT_GATEWAY_RAIN = 1

# How the last fallback ended (REG_FALLBACK_END).
END_NONE = 0
END_GATEWAY_SIREN = 1
END_GATEWAY_ACK = 2
END_LOCAL_ACK = 3


class HeartbeatWatch:
    """When the gateway last showed it is alive, and whether it has been silent too long.

    Power-up counts as a heartbeat: the gateway is taken as silent only once the timeout
    has passed since boot, so a node that restarts beside a healthy gateway never sounds.
    """

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.last_ms = 0

    def beat(self, now_ms: int) -> None:
        """Record a heartbeat from the gateway."""
        self.last_ms = now_ms

    def age_ms(self, now_ms: int) -> int:
        """Return the time since the last heartbeat (or since boot)."""
        return now_ms - self.last_ms

    def silent(self, now_ms: int) -> bool:
        """Return True once the timeout has passed without a heartbeat."""
        return now_ms - self.last_ms >= self.timeout_ms


class RainWindow:
    """Rain over a sliding window, kept in SLOTS + 1 slots of a sixtieth of the window each.

    The sum covers the whole window plus the part of the oldest slot that has already
    slid out of it: it is never less than the rain in the window and at most one slot's
    rain more, so the fallback can sound a little early but never late. Amounts are in
    any fixed unit (the node uses 0.0001 mm).
    """

    SLOTS = 60

    def __init__(self, window_ms: int) -> None:
        self.total = 0
        self.resize(window_ms, 0)

    def resize(self, window_ms: int, now_ms: int) -> None:
        """Change the window length.

        The rain counted so far is kept as if it had all fallen now, so a change of
        window during a storm can delay the end of a fallback but never its start.
        """
        self.window_ms = window_ms
        self.slot_ms = max(1, -(-window_ms // self.SLOTS))
        kept = self.total
        self._slots = [0] * (self.SLOTS + 1)
        self._current = now_ms // self.slot_ms
        self._slots[self._current % len(self._slots)] = kept

    def add(self, now_ms: int, amount: int) -> None:
        """Count ``amount`` of rain that fell at ``now_ms``."""
        self.advance(now_ms)
        self._slots[self._current % len(self._slots)] += amount
        self.total += amount

    def advance(self, now_ms: int) -> None:
        """Let slots older than the window drop out; ``total`` is then up to date."""
        slot = now_ms // self.slot_ms
        if slot <= self._current:
            return
        slots = self._slots
        if slot - self._current >= len(slots):
            for index in range(len(slots)):
                slots[index] = 0
            self.total = 0
        else:
            for passed in range(self._current + 1, slot + 1):
                index = passed % len(slots)
                self.total -= slots[index]
                slots[index] = 0
        self._current = slot


class Fallback:
    """The node's own siren decision, separate from the gateway's command.

    It starts sounding when armed, the gateway is silent and the rain reaches the
    threshold. Once ended (by the gateway writing the siren or acknowledging, or by the
    local button) it stays disarmed until a heartbeat arrives or the rain drops below the
    threshold, so an acknowledged fallback does not start again at once.

    Attributes:
        state: IDLE, SOUNDING or DISARMED.
        reason: why the last fallback started (REASON_*).
        end: how the last fallback ended (END_*; END_NONE while it sounds).
        activations: fallbacks started since power-up, modulo 65536.
    """

    def __init__(self) -> None:
        self.state = IDLE
        self.reason = REASON_NONE
        self.end = END_NONE
        self.activations = 0

    @property
    def sounding(self) -> bool:
        """Return True while the node itself wants the siren on."""
        return self.state == SOUNDING

    def evaluate(self, gateway_silent: bool, rain_over: bool) -> None:
        """Decide on the current conditions; call after every change of them."""
        if self.state == IDLE and gateway_silent and rain_over:
            self.state = SOUNDING
            self.reason = REASON_SILENT_GATEWAY_RAIN
            self.end = END_NONE
            self.activations = (self.activations + 1) & 0xFFFF
        elif self.state == DISARMED and not rain_over:
            self.state = IDLE

    def heartbeat(self) -> None:
        """The gateway is alive: re-arm, but never stop a sounding fallback."""
        if self.state == DISARMED:
            self.state = IDLE

    def stop(self, end: int) -> bool:
        """End a sounding fallback for the reason ``end``; return True if one was sounding."""
        if self.state != SOUNDING:
            return False
        self.state = DISARMED
        self.end = end
        return True
