"""Sends a site's config again, re-signed, when the village tier of its roster changes.

A gateway cut off from the county texts the village from the numbers inside its signed
config (``fleet.village_roster``). When the village monitor changes, the gateway must learn
the new number now, not with whatever config someone happens to send next. For each
gateway of the site whose newest config has a ``[village_call]`` table, the same site file
goes out again as a direct config with the current roster written in.

It never edits the site file beyond the roster tables, never logs a number, never resends
a config the gateway refused (that needs a fixed file, not the same one again), and never
cuts into a config rollout (a gateway in one gets the roster with the rollout's document).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fastapi import HTTPException

from fleet.repository import (
    ConfigState,
    ConflictError,
    NewSiteConfig,
    NotFoundError,
    Repository,
    SiteConfigRecord,
)
from fleet.rollouts import document_issuer
from fleet.roster import Person, Tier
from fleet.signing import SigningKey
from fleet.site_validation import checked_for_signing
from ota.document import DocumentKind

log = logging.getLogger(__name__)

#: The note on a config sent again because of the roster (the config history shows it).
NOTE = "sent again: the village tier of the site's roster changed"


@dataclass(slots=True)
class RefreshOutcome:
    """What happened per gateway: configs sent (gateway, config id), and why not, if not."""

    sent: list[tuple[str, int]] = field(default_factory=list)
    not_sent: list[tuple[str, str]] = field(default_factory=list)


def village_tier(persons: Iterable[Person]) -> frozenset[tuple[str, str, str]]:
    """What of the roster reaches a gateway: village persons with a mobile number."""
    return frozenset(
        (p.name, p.role, p.mobile) for p in persons if p.tier is Tier.VILLAGE and p.mobile
    )


def _has_village_call(config: SiteConfigRecord) -> bool:
    try:
        return "village_call" in tomllib.loads(config.site_toml)
    except tomllib.TOMLDecodeError:  # stored configs were checked; a damaged row is skipped
        return False


def refresh_village_configs(
    repository: Repository, site_id: str, key: SigningKey, now: float, by: str | None
) -> RefreshOutcome:
    """Re-sign and queue the config of every gateway of ``site_id`` that texts its village."""
    outcome = RefreshOutcome()
    for gateway in repository.site_gateways(site_id):
        gateway_id = gateway.id
        try:
            deliveries = repository.ota.config_deliveries(gateway_id, 1)
        except NotFoundError:
            continue
        if not deliveries:
            continue
        newest = deliveries[0]
        config = repository.ota.get_config(newest.config_id)
        if not _has_village_call(config):
            continue
        if newest.state in (ConfigState.REJECTED, ConfigState.ROLLED_BACK):
            why = f"its newest config (revision {newest.revision}) was {newest.state.value}"
            outcome.not_sent.append((gateway_id, why))
            continue
        try:
            signed = checked_for_signing(config.site_toml, repository.roster)
        except HTTPException as exc:  # e.g. nobody left in the village tier with a mobile
            outcome.not_sent.append((gateway_id, str(exc.detail)))
            continue
        issue = document_issuer(DocumentKind.CONFIG, {"site_toml": signed}, None, key, now)
        new = NewSiteConfig(config.site_toml, gateway_id, None, NOTE, by)
        try:
            created = repository.ota.create_config(new, now, issue)
        except (ConflictError, NotFoundError) as exc:
            outcome.not_sent.append((gateway_id, str(exc)))
            continue
        outcome.sent.append((gateway_id, created.id))
    for gateway_id, config_id in outcome.sent:
        log.info(
            "site %s: village roster changed, config %d sent to %s", site_id, config_id, gateway_id
        )
    for gateway_id, why in outcome.not_sent:
        log.warning(
            "site %s: village roster changed but %s keeps its old list: %s",
            site_id,
            gateway_id,
            why,
        )
    return outcome


def refresh_if_village_changed(
    repository: Repository,
    site_id: str,
    before: frozenset[tuple[str, str, str]],
    key: Callable[[], SigningKey],
    now: float,
    by: str | None,
) -> RefreshOutcome | None:
    """After a roster change: refresh the site's configs if its village tier moved.

    ``before`` is ``village_tier`` of the roster before the change. None when nothing the
    gateways hold changed. The roster change is already stored, so a failure here is
    logged and reported as an outcome, never raised into the change that succeeded.
    """
    if village_tier(repository.roster(site_id)) == before:
        return None
    try:
        return refresh_village_configs(repository, site_id, key(), now, by)
    except Exception as exc:
        log.exception("site %s: village roster changed; its configs were not sent again", site_id)
        return RefreshOutcome(not_sent=[("*", f"configs not sent again: {type(exc).__name__}")])
