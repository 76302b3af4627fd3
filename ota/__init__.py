"""Over-the-air updates shared by the fleet and the gateway.

``ota.document`` is the signed envelope both site configurations and release manifests
travel in; the gateway verifies it against the trust anchor pinned at enrollment.
"""
