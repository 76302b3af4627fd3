"""Site configurations: validated at the door, signed, sent retained to a gateway or a group.

A config is checked with the gateway's own site-file validator before it is stored, so a
file a gateway would refuse is refused here, with the same message. Only a configurator
(or an admin) may create one: the fleet signs it, and every gateway trusts that signature.
Groups (named sets of gateways that configs and rollouts address) are managed here too,
and each gateway's configuration state: pending, delivered, applied, rejected, rolled back.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal, Self

from fastapi import APIRouter, Depends, Query, status
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, model_validator

from fleet.dependencies import (
    TOKEN_REFUSALS,
    Configurator,
    EnrollmentService,
    Ingest,
    Operator,
    Repo,
    RowIdPath,
    http_error,
    refusals,
    require,
)
from fleet.repository import (
    ConfigDelivery,
    ConfigState,
    ConflictError,
    GatewayGroup,
    NewSiteConfig,
    NotFoundError,
    Role,
    SiteConfigRecord,
)
from fleet.rollouts import document_issuer
from fleet.schemas import SITE_ID_PATTERN, Out
from fleet.signing import SigningKey
from fleet.site_validation import checked_for_signing
from ota.document import DocumentKind

GROUP_PATTERN = SITE_ID_PATTERN  # group names follow the site id rules
GroupName = Annotated[str, Field(pattern=GROUP_PATTERN, examples=["north-valley"])]
#: Largest site file accepted; its signed document must fit one MQTT message with room.
MAX_SITE_TOML = 64_000

_viewer = [Depends(require(Role.VIEWER))]
router = APIRouter(
    prefix="/api/v1/configs", tags=["configs"], dependencies=_viewer, responses=TOKEN_REFUSALS
)
groups_router = APIRouter(
    prefix="/api/v1/groups", tags=["groups"], dependencies=_viewer, responses=TOKEN_REFUSALS
)
gateway_router = APIRouter(
    prefix="/api/v1/gateways", tags=["configs"], dependencies=_viewer, responses=TOKEN_REFUSALS
)
routers = (router, groups_router, gateway_router)


def get_signing_key(enrollment: EnrollmentService) -> SigningKey:
    """The fleet's signing key (the gateways' trust anchor)."""
    return enrollment.signing_key


FleetKey = Annotated[SigningKey, Depends(get_signing_key)]


class GroupIn(BaseModel):
    """The gateways of a group (replaces its members)."""

    gateways: Annotated[list[str], Field(max_length=100_000, examples=[["gw-3f2a9c01d4"]])]


class GroupOut(Out):
    """A named set of gateways."""

    name: str
    gateways: list[str]
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, group: GatewayGroup) -> GroupOut:
        """The REST view of a group."""
        return cls(
            name=group.name,
            gateways=list(group.gateways),
            created_at=group.created_at,
            updated_at=group.updated_at,
        )


class ConfigIn(BaseModel):
    """A site file (TOML) for one gateway or for every gateway of a group."""

    gateway_id: str | None = None
    group: GroupName | None = None
    site_toml: Annotated[str, Field(min_length=1, max_length=MAX_SITE_TOML)]
    note: Annotated[str, Field(max_length=500)] | None = None
    publish: bool = Field(
        default=True, description="false: store only, to be sent by a rollout in waves"
    )

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.gateway_id is None) == (self.group is None):
            msg = "give either gateway_id or group"
            raise ValueError(msg)
        return self


class ConfigOut(Out):
    """A stored site configuration; ``version`` is its signed document when published."""

    id: int
    scope: Literal["gateway", "group"]
    target: str
    revision: int = Field(description="counts the configs of this gateway or group")
    sha256: str
    gateways: list[str]
    note: str | None
    created_at: float
    created_by: str | None
    version: int | None
    site_toml: str

    @classmethod
    def of(cls, config: SiteConfigRecord) -> ConfigOut:
        """The REST view of a config."""
        return cls(
            id=config.id,
            scope="group" if config.scope == "group" else "gateway",
            target=config.target,
            revision=config.revision,
            sha256=config.sha256,
            gateways=list(config.gateways),
            note=config.note,
            created_at=config.created_at,
            created_by=config.created_by,
            version=config.version,
            site_toml=config.site_toml,
        )


class ConfigDeliveryOut(Out):
    """One signed configuration document on a gateway."""

    version: int
    config_id: int
    revision: int
    rollout_id: int | None
    state: ConfigState
    reason: str | None
    issued_at: float
    published_at: float | None = Field(description="when the broker took the document")
    updated_at: float

    @classmethod
    def of(cls, delivery: ConfigDelivery) -> ConfigDeliveryOut:
        """The REST view of a delivery."""
        return cls(
            version=delivery.version,
            config_id=delivery.config_id,
            revision=delivery.revision,
            rollout_id=delivery.rollout_id,
            state=delivery.state,
            reason=delivery.reason,
            issued_at=delivery.issued_at,
            published_at=delivery.published_at,
            updated_at=delivery.updated_at,
        )


class GatewayConfigOut(Out):
    """A gateway's configuration state: the newest document and the ones before it."""

    gateway_id: str
    state: ConfigState | None = Field(description="null: the fleet never sent it a config")
    reason: str | None
    version: int | None
    config_id: int | None
    updated_at: float | None
    history: list[ConfigDeliveryOut]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=refusals(404, 409),
)
def create_config(
    body: ConfigIn, principal: Configurator, repository: Repo, key: FleetKey, ingest: Ingest
) -> ConfigOut:
    """Validate, store and (unless ``publish`` is false) sign and send a site config.

    The site file is checked with the gateway's own parser first: 422 with its message.
    A ``[village_call]`` table gets the village tier of the site's roster written in (the
    stored text keeps none of their numbers); 422 if it lists persons or the roster none.

    The document goes retained to each addressed gateway, so one that is offline gets
    the newest on reconnect. 409 if a gateway is in an active config rollout.
    """
    signed = checked_for_signing(body.site_toml, repository.roster)
    now = time.time()
    issue = None
    if body.publish:
        payload = {"site_toml": signed}
        issue = document_issuer(DocumentKind.CONFIG, payload, body.group, key, now)
    new = NewSiteConfig(body.site_toml, body.gateway_id, body.group, body.note, principal.name)
    try:
        config = repository.ota.create_config(new, now, issue)
    except (NotFoundError, ConflictError) as exc:
        raise http_error(exc) from exc
    if issue is not None and ingest is not None:
        ingest.wake_outbox()
    return ConfigOut.of(config)


@router.get("")
def list_configs(
    repository: Repo,
    gateway_id: Annotated[str | None, Query(description="configs addressing this gateway")] = None,
    group: Annotated[str | None, Query(description="configs made for this group")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ConfigOut]:
    """Configs, newest first (the history of a gateway or a group with a filter)."""
    configs = repository.ota.list_configs(gateway_id=gateway_id, group=group, limit=limit)
    return [ConfigOut.of(c) for c in configs]


@router.get("/{config_id}", responses=refusals(404))
def get_config(config_id: RowIdPath, repository: Repo) -> ConfigOut:
    """One config with its site file."""
    try:
        return ConfigOut.of(repository.ota.get_config(config_id))
    except NotFoundError as exc:
        raise http_error(exc) from exc


@gateway_router.get("/{gateway_id}/config", responses=refusals(404))
def gateway_config(
    gateway_id: str,
    repository: Repo,
    history: Annotated[int, Query(ge=1, le=1000, description="documents listed")] = 20,
) -> GatewayConfigOut:
    """The gateway's configuration state, with the reason when it was refused or rolled back."""
    try:
        deliveries = repository.ota.config_deliveries(gateway_id, history)
    except NotFoundError as exc:
        raise http_error(exc) from exc
    newest = deliveries[0] if deliveries else None
    return GatewayConfigOut(
        gateway_id=gateway_id,
        state=newest.state if newest else None,
        reason=newest.reason if newest else None,
        version=newest.version if newest else None,
        config_id=newest.config_id if newest else None,
        updated_at=newest.updated_at if newest else None,
        history=[ConfigDeliveryOut.of(d) for d in deliveries],
    )


@groups_router.get("")
def list_groups(repository: Repo) -> list[GroupOut]:
    """Every group with its gateways."""
    return [GroupOut.of(g) for g in repository.ota.list_groups()]


@groups_router.get("/{name}", responses=refusals(404))
def get_group(name: str, repository: Repo) -> GroupOut:
    """One group."""
    try:
        return GroupOut.of(repository.ota.get_group(name))
    except NotFoundError as exc:
        raise http_error(exc) from exc


@groups_router.put("/{name}", responses=refusals(404))
def put_group(
    name: Annotated[str, PathParam(pattern=GROUP_PATTERN)],
    body: GroupIn,
    _principal: Operator,
    repository: Repo,
) -> GroupOut:
    """Create a group or replace its gateways (404 names unknown gateways)."""
    try:
        return GroupOut.of(repository.ota.set_group(name, body.gateways, time.time()))
    except NotFoundError as exc:
        raise http_error(exc) from exc
