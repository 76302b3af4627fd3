"""How to talk to field hardware: device profiles, Modbus buses, the poller and decoding.

Imports nothing else of the project; everything above it imports from here.
"""
