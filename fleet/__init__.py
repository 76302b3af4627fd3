"""County fleet service: enrollment, signed configuration, health and store-and-forward ingest.

Not built yet; this package reserves the name so the project layout matches DESIGN.md.
It must never import ``edge_agent``.
"""
