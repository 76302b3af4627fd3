"""REST bodies of 叫应: roster persons (masked for viewers), policies, the escalation record.

A viewer's view of a person never carries a phone number, e-mail or webhook in clear;
only an admin sees a webhook URL (its key is a credential).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fleet.escalation_store import Call, Escalation, EscalationStore
from fleet.repository import Alarm, Role
from fleet.roster import Person, Tier, mask_email, mask_webhook
from fleet.schemas import AlarmOut
from protocol.contacts import mask_phone
from protocol.levels import LEVEL_NAMES


class PersonIn(BaseModel):
    """A responsible person: tier, name, role and at least one channel."""

    model_config = ConfigDict(extra="forbid")

    tier: Tier
    name: Annotated[str, Field(min_length=1, max_length=100, examples=["王建国"])]
    role: Annotated[str, Field(max_length=100, examples=["群测群防员"])] = ""
    mobile: Annotated[str | None, Field(examples=["+8613800000000"])] = None
    email: Annotated[str | None, Field(max_length=254)] = None
    webhook: Annotated[str | None, Field(max_length=500)] = None


class PersonOut(BaseModel):
    """A person as the caller's role may see them (``masked`` says if contacts are masked)."""

    model_config = ConfigDict(frozen=True)

    id: int
    site_id: str
    tier: Tier
    name: str
    role: str
    mobile: str | None
    email: str | None
    webhook: str | None
    masked: bool

    @classmethod
    def of(cls, person: Person, role: Role) -> PersonOut:
        """Viewers get masked contacts; operators the phone and e-mail; admins everything."""
        viewer = role.rank < Role.OPERATOR.rank
        return cls(
            id=person.id,
            site_id=person.site_id,
            tier=person.tier,
            name=person.name,
            role=person.role,
            mobile=mask_phone(person.mobile) if viewer else person.mobile,
            email=mask_email(person.email) if viewer else person.email,
            webhook=person.webhook if role is Role.ADMIN else mask_webhook(person.webhook),
            masked=viewer,
        )


class PolicyOut(BaseModel):
    """The policy in force at a site and where it comes from."""

    site_id: str
    source: Literal["site", "default"]
    policy: dict[str, Any]


class CallOut(BaseModel):
    """One message to one person over one channel (``planned`` until the channel answers)."""

    id: int
    person: str
    tier: Tier
    channel: str
    planned_at: float
    sent_at: float | None
    status: str

    @classmethod
    def of(cls, call: Call) -> CallOut:
        """The REST view of a call."""
        return cls(
            id=call.id,
            person=call.person,
            tier=call.tier,
            channel=call.channel,
            planned_at=call.planned_at,
            sent_at=call.sent_at,
            status=call.status,
        )


class RecordStep(BaseModel):
    """One step of the record: started, call_sent, call_failed, delivery, answer, escalated..."""

    at: float
    kind: str
    tier: str | None
    person: str | None
    channel: str | None
    call_id: int | None
    detail: str | None


class EscalationOut(BaseModel):
    """An escalation of the alarm at one level: its state, calls and timed record."""

    id: int
    level: int
    level_name: str
    started_at: float
    tier: Tier
    ended_at: float | None
    end_reason: str | None
    policy: dict[str, Any]
    calls: list[CallOut]
    record: list[RecordStep]

    @classmethod
    def of(
        cls, escalation: Escalation, calls: list[Call], record: list[dict[str, Any]]
    ) -> EscalationOut:
        """The REST view of an escalation with its calls and record."""
        steps = escalation.policy.steps
        return cls(
            id=escalation.id,
            level=escalation.level,
            level_name=LEVEL_NAMES[escalation.level],
            started_at=escalation.started_at,
            tier=steps[min(escalation.step, len(steps) - 1)].tier,
            ended_at=escalation.ended_at,
            end_reason=escalation.end_reason,
            policy=escalation.policy.to_json(),
            calls=[CallOut.of(c) for c in calls],
            record=[RecordStep(**r) for r in record],
        )


class AlarmDetailOut(AlarmOut):
    """One alarm with its receipts and its 叫应 record: every escalation, call and answer."""

    escalation: list[EscalationOut]

    @classmethod
    def with_escalation(cls, alarm: Alarm, store: EscalationStore) -> AlarmDetailOut:
        """The alarm and the record of calling its responsible persons."""
        return cls(
            **AlarmOut.of(alarm).model_dump(),
            escalation=[
                EscalationOut.of(e, store.calls(e.id), store.record(e.id))
                for e in store.escalations_of(alarm.id)
            ],
        )
