"""A site's roster (责任人) and escalation policy over REST.

Admins write the roster, operators read it, viewers read it with contacts masked. A
configurator sets a site's own escalation policy (it decides who is called, like a site
configuration decides what sirens do). Nothing here logs a person's contacts.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, status
from fastapi import Path as PathParam

from fleet.dependencies import (
    TOKEN_REFUSALS,
    Admin,
    Calls,
    Configurator,
    Ingest,
    Repo,
    RowIdPath,
    Viewer,
    refusals,
    require,
)
from fleet.escalation import EscalationEngine
from fleet.escalation_policy import PolicyError, parse_policy
from fleet.escalation_schemas import PersonIn, PersonOut, PolicyOut
from fleet.repository import NotFoundError, Role
from fleet.roster import PersonIn as ValidPerson
from fleet.roster import RosterError, validate_person
from fleet.routers.configs import FleetKey
from fleet.schemas import SITE_ID_PATTERN
from fleet.village_config_refresh import refresh_if_village_changed, village_tier

router = APIRouter(
    prefix="/api/v1/sites/{site_id}",
    tags=["roster"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)
SitePath = Annotated[str, PathParam(pattern=SITE_ID_PATTERN, examples=["creek-village"])]


def _known(site_id: str, calls: EscalationEngine) -> None:
    """404 for a site the fleet has never heard of (most likely a typo in the id)."""
    if not calls.store.site_known(site_id):
        msg = f"no site {site_id!r}: no gateway, enrollment token or roster names it"
        raise HTTPException(status.HTTP_404_NOT_FOUND, msg)


class RosterChange:
    """Sends the site's gateways their config again if the change touched the village tier."""

    def __init__(self, site_id: str, repository: Repo, key: FleetKey, ingest: Ingest) -> None:
        self.site_id = site_id
        self.repository = repository
        self.key = key
        self.ingest = ingest
        self.before = village_tier(repository.roster(site_id))

    def done(self, by: str) -> None:
        """After the change is stored: re-sign and queue configs if the village tier moved."""
        outcome = refresh_if_village_changed(
            self.repository, self.site_id, self.before, lambda: self.key, time.time(), by
        )
        if outcome is not None and outcome.sent and self.ingest is not None:
            self.ingest.wake_outbox()


def _valid(person: PersonIn) -> ValidPerson:
    try:
        return validate_person(
            person.tier.value,
            person.name,
            person.role,
            person.mobile or "",
            person.email or "",
            person.webhook or "",
        )
    except RosterError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.get("/roster", responses=refusals(404))
def get_roster(site_id: SitePath, principal: Viewer, calls: Calls) -> list[PersonOut]:
    """The site's persons by tier; a viewer sees contacts masked."""
    _known(site_id, calls)
    return [PersonOut.of(p, principal.role) for p in calls.store.roster(site_id)]


@router.put("/roster", responses=refusals(404))
def replace_roster(
    site_id: SitePath,
    persons: list[PersonIn],
    principal: Admin,
    calls: Calls,
    repository: Repo,
    key: FleetKey,
    ingest: Ingest,
) -> list[PersonOut]:
    """Replace the whole roster of the site (all persons checked before any is stored).

    A change to the village tier sends each gateway of the site that texts its village
    (``[village_call]``) its config again, re-signed with the new numbers.
    """
    _known(site_id, calls)
    change = RosterChange(site_id, repository, key, ingest)
    valid = []
    for i, person in enumerate(persons):
        try:
            valid.append(_valid(person))
        except HTTPException as exc:
            raise HTTPException(exc.status_code, f"person {i}: {exc.detail}") from exc
    calls.store.replace_roster(site_id, valid, time.time())
    change.done(principal.name)
    return [PersonOut.of(p, principal.role) for p in calls.store.roster(site_id)]


@router.post("/roster", status_code=status.HTTP_201_CREATED, responses=refusals(404))
def add_person(
    site_id: SitePath,
    person: PersonIn,
    principal: Admin,
    calls: Calls,
    repository: Repo,
    key: FleetKey,
    ingest: Ingest,
) -> PersonOut:
    """Add one person to the site's roster (a village person's number reaches the gateways)."""
    _known(site_id, calls)
    change = RosterChange(site_id, repository, key, ingest)
    stored = calls.store.add_person(site_id, _valid(person), time.time())
    change.done(principal.name)
    return PersonOut.of(stored, principal.role)


@router.delete(
    "/roster/{person_id}", status_code=status.HTTP_204_NO_CONTENT, responses=refusals(404)
)
def delete_person(
    site_id: SitePath,
    person_id: RowIdPath,
    principal: Admin,
    calls: Calls,
    repository: Repo,
    key: FleetKey,
    ingest: Ingest,
) -> None:
    """Remove a person from the site's roster (a village person leaves the gateways' list)."""
    change = RosterChange(site_id, repository, key, ingest)
    try:
        calls.store.delete_person(site_id, person_id)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    change.done(principal.name)


@router.get("/escalation-policy", responses=refusals(404))
def get_policy(site_id: SitePath, calls: Calls) -> PolicyOut:
    """The policy in force at the site: its own, or the fleet default."""
    _known(site_id, calls)
    own = calls.store.site_policy(site_id)
    if own is not None:
        return PolicyOut(site_id=site_id, source="site", policy=own)
    return PolicyOut(site_id=site_id, source="default", policy=calls.default_policy.to_json())


@router.put("/escalation-policy", responses=refusals(404))
def set_policy(
    site_id: SitePath,
    policy: Annotated[
        dict[str, Any],
        Body(
            examples=[
                {
                    "levels": {
                        "red": {
                            "tiers": [
                                {"tier": "village", "deadline_s": 300},
                                {"tier": "township", "deadline_s": 600},
                            ],
                            "repeat_s": 120,
                        }
                    }
                }
            ]
        ),
    ],
    principal: Configurator,
    calls: Calls,
) -> PolicyOut:
    """Give the site its own policy (escalations already running keep the one they began with)."""
    _known(site_id, calls)
    try:
        parsed = parse_policy(policy)
    except PolicyError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    document = parsed.to_json()
    calls.store.set_site_policy(site_id, document, principal.name, time.time())
    return PolicyOut(site_id=site_id, source="site", policy=document)


@router.delete("/escalation-policy", responses=refusals(404))
def delete_policy(site_id: SitePath, _by: Configurator, calls: Calls) -> PolicyOut:
    """Return the site to the fleet default policy."""
    if not calls.store.delete_site_policy(site_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site_id!r} has no policy of its own")
    return PolicyOut(site_id=site_id, source="default", policy=calls.default_policy.to_json())
