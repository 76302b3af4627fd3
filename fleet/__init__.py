"""County fleet service: enrollment, MQTT ingest with exactly-once storage, health and REST.

``fleet serve`` runs the FastAPI console with the MQTT ingest in its lifespan; storage sits
behind ``fleet.repository.Repository``. It must never import ``edge_agent``: what it shares
with gateways is the ``protocol`` package. The one exception is ``fleet.site_validation``,
which runs the gateway's site-file parser before a configuration is signed, until that
schema moves to a package both sides import.
"""
