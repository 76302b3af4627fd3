"""The OTA store's contract (``OtaRepository``: groups, configs, releases, rollouts, outbox).

Written first, for the PostgreSQL port of the OTA store (issue 14), and run on both
backends: SQLite in a temporary file and PostgreSQL (a real cluster the session starts, a
fresh schema per test). It holds what any backend must keep: document versions that never
repeat, a document claimed by one publisher at a time, a newer config superseding an open
one, a gateway's report counted once as ingest stores it, release files kept only when
their hash matches, and a gateway held by an active rollout refused to another document.
The scheduler's decisions on top are in ``tests/test_rollouts.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.postgres_repository import PostgresRepository
from fleet.repository import (
    ConfigState,
    ConflictError,
    DeviceState,
    NewGateway,
    NewRollout,
    NewSiteConfig,
    NotFoundError,
    RolloutState,
    RolloutStep,
)
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.postgres import PostgresCluster
from hardware_sim.harness.release_rest import manifest_of
from ota.document import DocumentKind
from ota.report import OtaReport, OtaState, OtaSubject
from tests.ota_fixtures import commit_ota_report

T0 = 1_750_000_000.0
GATEWAYS = ("gw-0000000001", "gw-0000000002", "gw-0000000003")
BACKENDS = ("sqlite", "postgresql")
SITE_TOML = '[site]\nid = "creek"\n'
WHEEL = b"not really a wheel"


def issue(version: int, gateways: tuple[str, ...]) -> bytes:
    """A stand-in signer: the document names its version and gateways (no key needed)."""
    return f"{version}:{','.join(gateways)}".encode()


@pytest.fixture(params=BACKENDS)
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A store of each backend with three gateways enrolled at site ``creek``."""
    if request.param == "sqlite":
        yield from _enrolled(SQLiteRepository(tmp_path / "fleet.sqlite", durable=False))
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with cluster.fresh_schema() as url:
        yield from _enrolled(PostgresRepository(url, files_dir=tmp_path / "releases"))


def _enrolled(store: Any) -> Iterator[Any]:
    try:
        for gateway_id in GATEWAYS:
            _token, secret = store.create_enrollment_token("creek", T0 + 60, None, None, T0)
            gateway = NewGateway(gateway_id, "k" * 44, "$7$x", None, None)
            store.redeem_enrollment_token(secret, gateway, T0)
        yield store
    finally:
        store.close()


def config_for(gateway_id: str | None = None, group: str | None = None) -> NewSiteConfig:
    return NewSiteConfig(SITE_TOML, gateway_id, group, None, "ana")


def test_a_group_is_made_replaced_and_refuses_an_unknown_gateway(repo: Any) -> None:
    ota = repo.ota
    ota.set_group("north", GATEWAYS[:2], T0)
    replaced = ota.set_group("north", GATEWAYS[1:], T0 + 1)
    assert replaced.gateways == GATEWAYS[1:]
    assert [g.name for g in ota.list_groups()] == ["north"]
    with pytest.raises(NotFoundError, match="gw-unknown"):
        ota.set_group("south", ["gw-unknown"], T0)
    with pytest.raises(NotFoundError):
        ota.get_group("south")


def test_each_config_document_gets_a_new_version_and_supersedes_the_open_one(
    repo: Any,
) -> None:
    ota = repo.ota
    first = ota.create_config(config_for(GATEWAYS[0]), T0, issue)
    second = ota.create_config(config_for(GATEWAYS[0]), T0 + 1, issue)
    assert first.version is not None
    assert second.version is not None
    assert second.version > first.version
    assert (first.revision, second.revision) == (1, 2)
    deliveries = ota.config_deliveries(GATEWAYS[0], 10)
    assert [(d.version, d.state) for d in deliveries] == [
        (second.version, ConfigState.PENDING),
        (first.version, ConfigState.SUPERSEDED),
    ]
    stored_only = ota.create_config(config_for(GATEWAYS[1]), T0, None)
    assert stored_only.version is None  # left for a rollout to send
    assert ota.config_deliveries(GATEWAYS[1], 10) == []
    with pytest.raises(NotFoundError):
        ota.config_deliveries("gw-unknown", 10)


def test_a_queued_document_is_claimed_by_one_publisher_until_finished(repo: Any) -> None:
    ota = repo.ota
    ota.set_group("north", GATEWAYS, T0)
    config = ota.create_config(config_for(group="north"), T0, issue)
    claimed = ota.claim_documents(T0 + 1)
    assert sorted(d.gateway_id for d in claimed) == list(GATEWAYS)
    assert {d.version for d in claimed} == {config.version}
    assert ota.claim_documents(T0 + 2) == []  # claimed: no second publisher gets them


def test_a_gateways_report_moves_its_delivery_once_as_ingest_stores_it(
    repo: Any,
) -> None:
    ota = repo.ota
    config = ota.create_config(config_for(GATEWAYS[0]), T0, issue)
    assert config.version is not None
    seqs: dict[str, int] = {}
    report = OtaReport(OtaSubject.CONFIG, config.version, OtaState.DELIVERED, None)
    commit_ota_report(repo, seqs, GATEWAYS[0], report, T0 + 5)
    applied = OtaReport(OtaSubject.CONFIG, config.version, OtaState.APPLIED, None)
    commit_ota_report(repo, seqs, GATEWAYS[0], applied, T0 + 6)
    late = OtaReport(OtaSubject.CONFIG, config.version, OtaState.DELIVERED, None)
    commit_ota_report(repo, seqs, GATEWAYS[0], late, T0 + 7)  # after the last word
    (delivery,) = ota.config_deliveries(GATEWAYS[0], 10)
    assert (delivery.state, delivery.updated_at) == (ConfigState.APPLIED, T0 + 6)


def test_a_release_file_is_kept_only_when_its_hash_matches(repo: Any) -> None:
    ota = repo.ota
    manifest = manifest_of({"hazardwatch-1.4.0-py3-none-any.whl": WHEEL}, created_at=T0)
    name = manifest.files[0].name
    release = ota.add_release(manifest, "ana", T0)
    assert release.missing == (name,)
    assert ota.add_release(manifest, "ana", T0 + 1).created_at == T0  # the same: a no-op
    other = manifest_of({name: b"another wheel"}, created_at=T0)
    with pytest.raises(ConflictError):
        ota.add_release(other, "ana", T0)
    upload, _size = ota.release_upload_path("1.4.0", name)
    upload.write_bytes(b"x" * len(WHEEL))  # the right size, the wrong content
    with pytest.raises(ValueError, match="does not match the manifest"):
        ota.store_release_file("1.4.0", name, upload, T0)
    with pytest.raises(NotFoundError):
        ota.release_file("1.4.0", name)
    upload, _size = ota.release_upload_path("1.4.0", name)
    upload.write_bytes(WHEEL)
    assert ota.store_release_file("1.4.0", name, upload, T0).missing == ()
    assert ota.release_file("1.4.0", name).read_bytes() == WHEEL


def test_a_gateway_in_an_active_rollout_takes_no_other_document_of_its_kind(
    repo: Any,
) -> None:
    ota = repo.ota
    ota.set_group("north", GATEWAYS, T0)
    config = ota.create_config(config_for(group="north"), T0, None)
    new = NewRollout(
        kind=DocumentKind.CONFIG,
        release_version=None,
        config_id=config.id,
        group="north",
        waves=(("1", GATEWAYS[:1]), ("100%", GATEWAYS[1:])),
        success_threshold=1.0,
        error_threshold=0.0,
        device_timeout_s=600.0,
        created_by="ana",
    )
    rollout = ota.create_rollout(new, T0)
    assert ota.active_rollout_ids() == [rollout.id]
    with pytest.raises(ConflictError, match=f"rollout {rollout.id}"):
        ota.create_config(config_for(GATEWAYS[2]), T0 + 1, issue)
    paused = ota.control_rollout(rollout.id, RolloutState.PAUSED, "ana", T0 + 2)
    assert paused.state is RolloutState.PAUSED
    aborted = ota.control_rollout(rollout.id, RolloutState.ABORTED, "ana", T0 + 3)
    assert aborted.state is RolloutState.ABORTED
    with pytest.raises(ConflictError):
        ota.control_rollout(rollout.id, RolloutState.RUNNING, "ana", T0 + 4)
    assert ota.active_rollout_ids() == []
    assert ota.create_config(config_for(GATEWAYS[2]), T0 + 5, issue).version is not None


def test_a_wave_is_sent_only_at_the_revision_seen_and_its_reports_settle_its_devices(
    repo: Any,
) -> None:
    ota = repo.ota
    config = ota.create_config(config_for(GATEWAYS[0]), T0, None)
    new = NewRollout(
        kind=DocumentKind.CONFIG,
        release_version=None,
        config_id=config.id,
        group=None,
        waves=(("1", GATEWAYS[:1]), ("100%", GATEWAYS[1:])),
        success_threshold=1.0,
        error_threshold=0.0,
        device_timeout_s=600.0,
        created_by="ana",
    )
    rollout = ota.create_rollout(new, T0)
    start = RolloutStep(rollout.id, rollout.revision, (), 0, RolloutState.RUNNING, None)
    assert ota.apply_rollout_step(start, T0 + 1, issue) is True
    assert ota.apply_rollout_step(start, T0 + 2, issue) is False  # the rollout moved on
    sent = ota.get_rollout(rollout.id)
    (wave,) = [w for w in sent.waves if w.index == 0]
    assert wave.doc_version is not None
    states = {d.gateway_id: d.state for d in sent.devices}
    assert states == {
        GATEWAYS[0]: DeviceState.IN_PROGRESS,
        GATEWAYS[1]: DeviceState.WAITING,
        GATEWAYS[2]: DeviceState.WAITING,
    }
    seqs: dict[str, int] = {}
    applied = OtaReport(OtaSubject.CONFIG, wave.doc_version, OtaState.APPLIED, None)
    commit_ota_report(repo, seqs, GATEWAYS[0], applied, T0 + 3)
    reported = ota.get_rollout(rollout.id)
    assert reported.revision > sent.revision  # a report is a change the scheduler must see
    assert {d.gateway_id: d.state for d in reported.devices}[GATEWAYS[0]] is DeviceState.SUCCEEDED
    timed = RolloutStep(
        rollout.id, reported.revision, (GATEWAYS[0],), None, RolloutState.RUNNING, None
    )
    assert ota.apply_rollout_step(timed, T0 + 700, issue) is True
    # Only a device still in progress times out: the succeeded one stays succeeded.
    final = ota.get_rollout(rollout.id)
    assert {d.gateway_id: d.state for d in final.devices}[GATEWAYS[0]] is DeviceState.SUCCEEDED
