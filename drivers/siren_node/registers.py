"""The siren node's Modbus register map: addresses, power-up values and write limits.

``drivers/profiles/siren_node.toml`` describes the same map to the agent; a test holds the
two together. Coils and holding registers only (function codes 1, 3, 5, 6, 15, 16).
"""

FIRMWARE_VERSION = 100
"""Major * 100 + minor: 100 is version 1.0 (the profile scales it by 0.01)."""

DEFAULT_UNIT_ID = 20

# Coils. The first two are the gateway's commands; the rest report state and refuse writes.
COIL_SIREN = 0
"""The gateway's siren command; reads back the last command (power-up: off)."""
COIL_FALLBACK_ACK = 1
"""Writing 1 acknowledges the node's fallback: the gateway takes the siren over. Reads 0."""
COIL_SIREN_OUTPUT = 2
"""The siren relay as driven: the gateway's command or the node's own fallback."""
COIL_FALLBACK_ACTIVE = 3
COIL_HEARTBEAT_SILENT = 4
COIL_ACK_INPUT = 5
"""The local acknowledge button, pressed now."""
COIL_COUNT = 6
WRITABLE_COILS = (COIL_SIREN, COIL_FALLBACK_ACK)

# Holding registers the gateway writes.
REG_HEARTBEAT = 0
"""Any write is a heartbeat; the gateway writes a counter on every poll."""
REG_HEARTBEAT_TIMEOUT_S = 1
REG_FALLBACK_RAIN = 2
"""Fallback threshold: rain over the window, in 0.1 mm."""
REG_FALLBACK_WINDOW_S = 3
REG_MM_PER_TIP = 4
"""Rain per bucket tip, in 0.0001 mm."""

# Holding registers that report state (read-only). uint32 values take two registers,
# high word first.
REG_FIRMWARE_VERSION = 16
REG_FALLBACK_STATE = 17
REG_FALLBACK_REASON = 18
REG_FALLBACK_END = 19
REG_FALLBACK_ACTIVATIONS = 20
REG_HEARTBEAT_AGE_S = 21
REG_RAIN_WINDOW = 22
"""Rain over the fallback window now, in 0.1 mm."""
REG_RAIN_TIPS = 23
REG_RAIN_TOTAL = 25
"""Rain since power-up, in 0.0001 mm (uint32)."""
REG_UPTIME_S = 27
REG_CRC_ERRORS = 29
REGISTER_COUNT = 30
"""Registers 0 .. REGISTER_COUNT - 1 answer (unlisted ones read 0); beyond is illegal."""

WRITABLE_REGISTERS = (
    # (address, power-up value, lowest, highest)
    (REG_HEARTBEAT, 0, 0, 0xFFFF),
    (REG_HEARTBEAT_TIMEOUT_S, 120, 10, 3600),
    (REG_FALLBACK_RAIN, 300, 1, 0xFFFF),
    (REG_FALLBACK_WINDOW_S, 3600, 60, 43200),
    (REG_MM_PER_TIP, 2000, 1, 0xFFFF),
)

READ_ONLY_REGISTERS = (
    # (address, width in registers)
    (REG_FIRMWARE_VERSION, 1),
    (REG_FALLBACK_STATE, 1),
    (REG_FALLBACK_REASON, 1),
    (REG_FALLBACK_END, 1),
    (REG_FALLBACK_ACTIVATIONS, 1),
    (REG_HEARTBEAT_AGE_S, 1),
    (REG_RAIN_WINDOW, 1),
    (REG_RAIN_TIPS, 2),
    (REG_RAIN_TOTAL, 2),
    (REG_UPTIME_S, 2),
    (REG_CRC_ERRORS, 1),
)


def write_limits(address: int) -> tuple[int, int] | None:
    """Return (lowest, highest) the gateway may write at ``address``; None if read-only."""
    for register, _, lowest, highest in WRITABLE_REGISTERS:
        if register == address:
            return lowest, highest
    return None


def power_up_values() -> dict[int, int]:
    """Return the power-up value of every writable register, by address."""
    return {register: value for register, value, _, _ in WRITABLE_REGISTERS}
