"""Siren node firmware (MicroPython): the last line of defence when the gateway dies.

An RP2040 board beside the siren relay is a Modbus RTU slave on the RS485 bus. The gateway
commands the siren and writes a heartbeat on every poll; when the heartbeat has been
silent too long and the node's own tipping bucket passes its threshold, the node sounds
the siren by itself. Nothing in this package imports the rest of the project, and only
``board.py`` and ``main.py`` import ``machine``: the same logic runs on the board, in the
simulator under CPython and under a real MicroPython interpreter in the tests.

Modules
-------
``crc``        CRC-16/MODBUS.
``rtu_slave``  RTU framing and function codes 1, 3, 5, 6, 15, 16 with exception responses.
``registers``  the register map (``drivers/profiles/siren_node.toml`` is the same map).
``fallback``   heartbeat watch, sliding rain window, the fallback's state machine.
``node``       the node: serves the line, samples rain, reads the button, drives the relay.
``hal``        the interface to a board; ``board`` is the RP2040 one.
``main``       the board's loop, under an 8 s watchdog.

Register map (unit id 20, 9600 8N1)
-----------------------------------
Coils: 0 ``siren`` (gateway's command, read back), 1 ``fallback_ack`` (write 1 to take
over; reads 0), 2 ``siren_output``, 3 ``fallback_active``, 4 ``heartbeat_silent``,
5 ``ack_input`` (2-5 read-only). Holding registers the gateway writes: 0 ``heartbeat``,
1 ``heartbeat_timeout_s`` (10-3600, power-up 120), 2 ``fallback_rain`` in 0.1 mm (power-up
30 mm), 3 ``fallback_window_s`` (60-43200, power-up 3600), 4 ``mm_per_tip`` in 0.0001 mm
(power-up 0.2 mm). Read-only status: 16 firmware version (100 = 1.0), 17 fallback state
(0 armed, 1 sounding, 2 ended and not yet re-armed), 18 reason it started (1: gateway
silent and rain over threshold), 19 how it ended (1 siren write, 2 ``fallback_ack``,
3 local button), 20 activations, 21 heartbeat age in s, 22 rain over the window in 0.1 mm,
23-24 tips, 25-26 rain total in 0.0001 mm, 27-28 uptime in s, 29 CRC errors (uint32s high
word first). Registers 5-15 read 0; reads past 29 or past coil 5 are illegal addresses;
a write to a read-only address is an illegal address, a setting out of its limits an
illegal value, and a multiple write is applied whole or not at all.

Fallback semantics
------------------
- The relay is on while the gateway commands it *or* the fallback sounds. The node never
  switches off what the gateway commanded; the local button cannot either.
- Power-up is safe: relay off, command off, fallback armed. Power-up counts as a
  heartbeat, so the gateway is taken as silent only ``heartbeat_timeout_s`` after boot: a
  node that restarts beside a healthy gateway never sounds, and one that restarts beside
  a dead gateway in a storm sounds after one timeout (once its own bucket has counted the
  threshold again; the rain window starts empty at boot).
- Any write to ``heartbeat`` is a heartbeat. The fallback starts when the gateway is silent
  and the rain over the window reaches ``fallback_rain``; the window sum is kept in 60
  slots and is never less than the true sum (at most one slot's rain more). Tips are
  added once a second, so the siren sounds at most one rain sample after both hold.
- Resumed heartbeats alone never end a sounding fallback (no silent gap while the
  gateway finds its feet). The gateway takes over by writing ``siren`` (either value:
  the relay then follows the command in the same step) or by writing 1 to
  ``fallback_ack`` (the relay follows the current command). The local button's press
  (not a held button) ends the fallback too.
- An ended fallback is disarmed until a heartbeat arrives or the window rain drops below
  the threshold, so an acknowledged fallback does not restart in the same rain.
- Frames with a bad CRC, or for another unit id, are dropped unanswered and counted.
  Settings re-asserted with the same value change nothing; a new window keeps the rain
  already counted as if it fell at the change. Settings are not kept across a restart:
  the gateway sees ``uptime_s`` drop and writes them again.

Wiring (Raspberry Pi Pico defaults, ``board.BoardHal``)
-------------------------------------------------------
UART0 TX GP0, RX GP1, RS485 transceiver DE and /RE tied together on GP2 (so the node
never hears its own answers); siren relay GP15, active high, with a pull-down on the
driver input so a resetting board leaves it off; tipping-bucket reed contact GP14 to
ground; acknowledge button GP13 to ground.

Build and deploy
----------------
``mpy-cross`` (the version of the board's MicroPython) compiles each module; copy them to
``/lib/siren_node/`` (``mpremote mkdir :lib/siren_node``, ``mpremote cp *.mpy
:lib/siren_node/``) and put ``from siren_node.main import run`` and ``run()`` in the
board's ``/main.py``. The firmware is typed against the rp2 stubs:
``mypy --config-file drivers/siren_node/mypy.ini`` (``./dev setup`` installs them).

Tests: ``tests/micropython/*_spec.py`` run under MicroPython on Node
(``tests/micropython/run.mjs``), ``hardware_sim.siren_node`` runs the node behind a socat
pty for pymodbus, and ``hwsim siren-node`` serves one by hand. This is a hand-written
slave rather than micropython-modbus (umodbus): that package's sdist cannot be installed
with pip, and its RTU class builds ``machine.UART`` itself and times frames with busy
waits on the real clock, so it runs neither under CPython nor with injected time.
"""
