"""The site file's schema: what a gateway's site TOML may say, validated, shared by both sides.

The gateway (``edge_agent``) loads its site file with it and the county (``fleet``)
checks every site file with it before signing one, so both refuse the same file with the
same message. Like ``protocol``, it is imported by both sides and must never import
either (nor ``hardware_sim``, ``ota``, ``tests``, ``bench``), nor numba, nor the Modbus
runtime (``drivers.bus``, ``drivers.poller``): from ``drivers`` only the plain settings
and profile modules. It reads no file but the text it is given, the shipped device
profiles and rule tables, and, for a local site file only, the profiles and rule files
that file names beside it; it never opens a port.
"""
