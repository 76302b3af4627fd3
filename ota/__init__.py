"""Signed documents and update bundles shared by the fleet and the gateway.

Not built yet; this package reserves the name so the project layout matches DESIGN.md.
"""
