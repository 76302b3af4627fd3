"""County fleet service: enrollment, MQTT ingest with exactly-once storage, health and REST.

``fleet serve`` runs the FastAPI console with the MQTT ingest in its lifespan; storage sits
behind ``fleet.repository.Repository``. It must never import ``edge_agent``: what it shares
with gateways is the ``protocol`` package.
"""
