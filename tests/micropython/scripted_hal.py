"""A HAL the specs drive by hand, and a gateway that talks to the node through it.

The specs set the time, put frames on the line, press the button and tip the bucket;
the node cannot tell this HAL from a board.
"""

from siren_node.crc import crc_ok, with_crc
from siren_node.hal import NodeHal
from siren_node.node import SirenNode
from siren_node.registers import COIL_SIREN, DEFAULT_UNIT_ID, REG_HEARTBEAT


class ScriptedHal(NodeHal):
    """Time, line, button and bucket as the spec sets them; the relay as the node drives it."""

    def __init__(self) -> None:
        self.now_ms = 0
        self.line: list[bytes] = []
        self.sent: list[bytes] = []
        self.siren_changes: list[tuple[int, bool]] = []
        self.ack = False
        self.tips = 0

    @property
    def siren(self) -> bool:
        """Return the relay as last driven."""
        return bool(self.siren_changes) and self.siren_changes[-1][1]

    def ticks_ms(self) -> int:
        """Return the spec's time."""
        return self.now_ms

    def uart_read(self) -> bytes | None:
        """Return the next chunk the spec put on the line."""
        return self.line.pop(0) if self.line else None

    def uart_write(self, frame: bytes) -> None:
        """Keep what the node sent."""
        self.sent.append(frame)

    def set_siren(self, on: bool) -> None:
        """Log the relay being driven."""
        self.siren_changes.append((self.now_ms, on))

    def ack_pressed(self) -> bool:
        """Return the button as the spec holds it."""
        return self.ack

    def take_tips(self) -> int:
        """Hand over the tips the spec tipped."""
        tips, self.tips = self.tips, 0
        return tips


class Gateway:
    """Plays the gateway on the node's line: one request, one step, one answer."""

    def __init__(self, node: SirenNode, hal: ScriptedHal, unit_id: int = DEFAULT_UNIT_ID) -> None:
        self.node = node
        self.hal = hal
        self.unit_id = unit_id
        self.beats = 0

    def send(self, frame: bytes) -> bytes | None:
        """Put raw bytes on the line, step the node, and return its answer if it gave one."""
        self.hal.line.append(frame)
        self.node.step()
        if not self.hal.sent:
            return None
        answer = self.hal.sent.pop(0)
        assert crc_ok(answer), answer
        return answer

    def request(self, pdu: bytes) -> bytes:
        """Send a request PDU with a good CRC and return the answer's PDU."""
        answer = self.send(with_crc(bytes((self.unit_id,)) + pdu))
        assert answer is not None, "no answer"
        assert answer[0] == self.unit_id
        return answer[1:-2]

    def write_coil(self, address: int, on: bool) -> bytes:
        """FC05."""
        value = 0xFF00 if on else 0
        return self.request(bytes((5, address >> 8, address & 0xFF, value >> 8, value & 0xFF)))

    def write_register(self, address: int, value: int) -> bytes:
        """FC06."""
        return self.request(bytes((6, address >> 8, address & 0xFF, value >> 8, value & 0xFF)))

    def read_registers(self, address: int, count: int) -> list[int]:
        """FC03; fails on an exception response."""
        pdu = self.request(bytes((3, address >> 8, address & 0xFF, 0, count)))
        assert pdu[0] == 3, pdu
        return [(pdu[2 + 2 * i] << 8) | pdu[3 + 2 * i] for i in range(count)]

    def read_coils(self, address: int, count: int) -> list[bool]:
        """FC01; fails on an exception response."""
        pdu = self.request(bytes((1, address >> 8, address & 0xFF, 0, count)))
        assert pdu[0] == 1, pdu
        return [(pdu[2 + (i >> 3)] >> (i & 7)) & 1 == 1 for i in range(count)]

    def heartbeat(self) -> None:
        """Write the heartbeat register, as the agent does on every poll."""
        self.beats = (self.beats + 1) & 0xFFFF
        self.write_register(REG_HEARTBEAT, self.beats)

    def siren(self, on: bool) -> None:
        """Command the siren."""
        self.write_coil(COIL_SIREN, on)


def boot(hal: ScriptedHal | None = None) -> tuple[SirenNode, ScriptedHal, Gateway]:
    """Power a node up on a scripted HAL and return it with its HAL and a gateway."""
    hal = hal or ScriptedHal()
    node = SirenNode(hal)
    return node, hal, Gateway(node, hal)


def run_for(
    node: SirenNode, hal: ScriptedHal, ms: int, step_ms: int = 100, gateway: Gateway | None = None
) -> None:
    """Let ``ms`` pass in steps; with a gateway, it sends a heartbeat every 10 s."""
    end = hal.now_ms + ms
    while hal.now_ms < end:
        hal.now_ms += step_ms
        if gateway is not None and hal.now_ms % 10000 == 0:
            gateway.heartbeat()
        else:
            node.step()
