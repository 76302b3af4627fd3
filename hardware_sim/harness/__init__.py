"""The real parts run for tests, benches and the demo: broker, fleet, agents, Kannel, robots.

Each module starts a real program or server (mosquitto, ``fleet serve``, ``edge run``,
bearerbox and smsbox, an HTTP robot) on free loopback ports and stops it again; the tests
and the benches share them, so a bench measures exactly what a test checks.

Never imported by the production packages (``drivers``, ``edge_agent``, ``fleet``,
``ota``, ``protocol``); never imports ``tests`` or ``bench``. Nothing is imported here,
so ``ports`` and ``waiting`` stay light.
"""
