"""Over-the-air updates' storage written once: groups, site configs, releases, rollouts, outbox.

``OtaTables`` is the ``OtaRepository`` of both backends: its statements run through a
``fleet.statements.Statements``, which owns what differs between SQLite and PostgreSQL
(placeholders, connections, transactions, the write lock, ``FOR UPDATE``, JSON functions);
``fleet.sqlite_ota`` and ``fleet.postgres_ota`` hold each backend's ``SCHEMA`` and open the
store. The ingest writer calls ``record_ota_report`` inside the transaction that stores an
``ota`` event, so each report counts exactly once. Signed document versions come from one
counter per kind, taken in the transaction that stores the document: they never repeat
and never go back. Release files live under ``files_dir/<version>/`` and are kept only
once their hash matched.

This module must never issue a document version twice, never hand a document to a
gateway held by another active rollout of its kind, never keep a release file whose hash
does not match its manifest, and never know a database driver.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleet.ota_reports import config_change, device_change, read_report
from fleet.repository import (
    ConfigDelivery,
    ConfigState,
    ConflictError,
    DeviceState,
    DocumentIssuer,
    GatewayGroup,
    NewRollout,
    NewSiteConfig,
    NotFoundError,
    OutboxDocument,
    ReleaseRecord,
    Rollout,
    RolloutDevice,
    RolloutState,
    RolloutStep,
    RolloutWave,
    SiteConfigRecord,
)
from fleet.statements import Row, Statements, Transaction, marks
from fleet.station_ids import is_station
from ota.document import DocumentKind
from ota.download import sha256_file
from ota.manifest import ReleaseManifest
from protocol import EventRow

#: A claim older than this is taken to be from a worker that died before publishing.
STALE_CLAIM_S = 60.0
_ACTIVE = tuple(s.value for s in RolloutState if s.active)
_OPEN_DEVICE = tuple(s.value for s in DeviceState if not s.final)


def record_ota_report(conn: Transaction, gw: int, event: EventRow, received_at: float) -> None:
    """Apply a newly stored ``ota`` event (``fleet.ota_reports``) to configs and rollouts."""
    read = read_report(event)
    if read is None:
        return
    kind, report = read
    if (config := config_change(kind, report)) is not None:
        replaceable = [s.value for s in config.replaceable]
        conn.execute(
            f"UPDATE config_deliveries SET state = ?, reason = ?, updated_at = ? "
            f"WHERE gw = ? AND version = ? AND state IN ({marks(len(replaceable))})",
            (config.state.value, config.reason, received_at, gw, config.version, *replaceable),
        )
    rows = conn.execute(
        "SELECT d.rollout_id, d.state, d.reported FROM rollout_devices d "
        "JOIN rollouts r ON r.id = d.rollout_id "
        "WHERE d.gw = ? AND d.doc_version = ? AND r.kind = ?",
        (gw, report.version, kind.value),
    ).fetchall()
    for rollout_id, state_text, reported in rows:
        device = device_change(DeviceState(state_text), reported, report)
        if device is None:
            continue
        conn.execute(
            "UPDATE rollout_devices SET state = ?, reported = ?, reason = coalesce(?, reason), "
            "updated_at = ? WHERE rollout_id = ? AND gw = ?",
            (device.state.value, device.reported.value, device.reason, received_at, rollout_id, gw),
        )
        conn.execute(
            "UPDATE rollouts SET revision = revision + 1, updated_at = ? WHERE id = ?",
            (received_at, rollout_id),
        )


def _next_version(conn: Transaction, kind: DocumentKind) -> int:
    row = conn.execute(
        "INSERT INTO ota_counters (kind, last_version) VALUES (?, 1) ON CONFLICT (kind) "
        "DO UPDATE SET last_version = ota_counters.last_version + 1 RETURNING last_version",
        (kind.value,),
    ).fetchone()
    assert row is not None  # an upsert always returns its row
    return int(row[0])


def _issue(
    conn: Transaction,
    kind: DocumentKind,
    targets: Sequence[tuple[str, int]],
    issue: DocumentIssuer,
    now: float,
    *,
    config_id: int | None = None,
    rollout_id: int | None = None,
) -> int:
    """Sign one document for ``targets`` (gateway id, number), keep it and queue it for each."""
    version = _next_version(conn, kind)
    ids = tuple(gateway_id for gateway_id, _ in targets)
    conn.execute(
        "INSERT INTO ota_documents (kind, version, gateways, issued_at, document) "
        "VALUES (?, ?, ?, ?, ?)",
        (kind.value, version, json.dumps(ids), now, issue(version, ids)),
    )
    conn.executemany(
        "INSERT INTO ota_outbox (gw, kind, version, status, queued_at) "
        "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (gw, kind) DO UPDATE SET "
        "version = excluded.version, status = 'pending', queued_at = excluded.queued_at, "
        "claimed_at = NULL, published_at = NULL WHERE excluded.version > ota_outbox.version",
        [(gw, kind.value, version, now) for _, gw in targets],
    )
    if config_id is not None:
        open_states = (ConfigState.PENDING.value, ConfigState.DELIVERED.value)
        conn.executemany(
            "UPDATE config_deliveries SET state = 'superseded', updated_at = ? "
            "WHERE gw = ? AND state IN (?, ?)",
            [(now, gw, *open_states) for _, gw in targets],
        )
        conn.executemany(
            "INSERT INTO config_deliveries (gw, version, config_id, rollout_id, state, "
            "issued_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
            [(gw, version, config_id, rollout_id, now, now) for _, gw in targets],
        )
    return version


def _refuse_stations(gateway_ids: Sequence[str]) -> None:
    """ConflictError for SL 651 stations: they run no agent, so no document reaches them."""
    if stations := [g for g in gateway_ids if is_station(g)]:
        msg = f"{', '.join(stations)}: SL 651 stations take no signed config or release"
        raise ConflictError(msg)


def _gateway_nums(conn: Transaction, gateway_ids: Sequence[str]) -> list[tuple[str, int]]:
    """``(id, num)`` for each id, in order; NotFoundError naming every unknown one."""
    found: dict[str, int] = {}
    for start in range(0, len(gateway_ids), 500):
        chunk = gateway_ids[start : start + 500]
        found.update(
            conn.execute(
                f"SELECT id, num FROM gateways WHERE id IN ({marks(len(chunk))})", chunk
            ).fetchall()
        )
    if unknown := [g for g in gateway_ids if g not in found]:
        names = ", ".join(repr(g) for g in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise NotFoundError(f"no gateway {names}{more}")
    return [(g, found[g]) for g in gateway_ids]


def _check_not_in_rollout(
    conn: Transaction, kind: DocumentKind, targets: Sequence[tuple[str, int]]
) -> None:
    nums = [num for _, num in targets]
    for start in range(0, len(nums), 500):
        chunk = nums[start : start + 500]
        rows = conn.execute(
            "SELECT r.id, r.state, g.id FROM rollout_devices d "
            "JOIN rollouts r ON r.id = d.rollout_id JOIN gateways g ON g.num = d.gw "
            f"WHERE r.kind = ? AND r.state IN ({marks(len(_ACTIVE))}) "
            f"AND d.gw IN ({marks(len(chunk))}) ORDER BY r.id, g.id",
            (kind.value, *_ACTIVE, *chunk),
        ).fetchall()
        if rows:
            rollout_id, state = rows[0][0], rows[0][1]
            held = [gateway for rid, _, gateway in rows if rid == rollout_id]
            shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
            msg = (
                f"gateway(s) {shown} belong to {kind.value} rollout {rollout_id} ({state}); "
                "abort that rollout first or leave them out"
            )
            raise ConflictError(msg)


class OtaTables:
    """``OtaRepository`` on the fleet's database (through ``statements``) and ``files_dir``.

    ``outbox`` runs the claims and finishes of the document outbox (the writes ingest
    workers make); by default ``statements`` itself.
    """

    #: Marks the documents to publish as claimed; RETURNING (gateway id, kind, version).
    #: Its parameters: now, and the claimed_at before which a claim is stale.
    claim_statement = (
        "UPDATE ota_outbox SET status = 'publishing', claimed_at = ? "
        "WHERE status = 'pending' OR (status = 'publishing' AND claimed_at < ?) "
        "RETURNING (SELECT id FROM gateways WHERE num = ota_outbox.gw), kind, version"
    )

    def __init__(
        self, statements: Statements, files_dir: Path | None, outbox: Statements | None = None
    ) -> None:
        self._sql = statements
        self._outbox = outbox or statements
        self.files_dir = files_dir

    def _files(self) -> Path:
        """The release directory; a store opened without one (an ingest worker) has none."""
        if self.files_dir is None:
            msg = "this fleet process has no release directory (fleet serve keeps release files)"
            raise RuntimeError(msg)
        return self.files_dir

    # --- groups ---------------------------------------------------------------------------

    def set_group(self, name: str, gateway_ids: Sequence[str], now: float) -> GatewayGroup:
        """Create or replace a group; raises NotFoundError for an unknown gateway."""
        with self._sql.writing() as db:
            targets = _gateway_nums(db, list(dict.fromkeys(gateway_ids)))
            db.execute(
                "INSERT INTO gateway_groups (name, created_at, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
                (name, now, now),
            )
            db.execute("DELETE FROM group_members WHERE grp = ?", (name,))
            db.executemany(
                "INSERT INTO group_members (grp, gw) VALUES (?, ?)",
                [(name, num) for _, num in targets],
            )
        return self.get_group(name)

    def get_group(self, name: str) -> GatewayGroup:
        """One group; raises NotFoundError."""
        found = self._groups("WHERE name = ?", [name])
        if not found:
            raise NotFoundError(f"no group {name!r}")
        return found[0]

    def list_groups(self) -> list[GatewayGroup]:
        """All groups by name."""
        return self._groups("", [])

    def _groups(self, where: str, params: list[Any]) -> list[GatewayGroup]:
        with self._sql.snapshot() as db:
            rows = db.rows(f"SELECT * FROM gateway_groups {where} ORDER BY name", params)
            members = db.grouped(
                "SELECT m.grp, g.id FROM group_members m JOIN gateways g ON g.num = m.gw "
                "WHERE m.grp IN ({keys}) ORDER BY g.id",
                [r["name"] for r in rows],
                "grp",
            )
        return [
            GatewayGroup(
                r["name"],
                tuple(m["id"] for m in members.get(r["name"], ())),
                r["created_at"],
                r["updated_at"],
            )
            for r in rows
        ]

    # --- configurations -------------------------------------------------------------------

    def create_config(
        self, config: NewSiteConfig, now: float, issue: DocumentIssuer | None
    ) -> SiteConfigRecord:
        """Store a config; with ``issue``, also sign and queue it for its gateways at once."""
        scope, target = (
            ("group", config.group) if config.group is not None else ("gateway", config.gateway_id)
        )
        if target is None:
            msg = "a config needs a gateway or a group"
            raise ValueError(msg)
        with self._sql.writing() as conn:
            if scope == "group":
                # SL 651 stations in a group take no signed document: left out.
                ids = [g for g in self._members(conn, target) if not is_station(g)]
                if not ids:
                    msg = f"group {target!r} has no gateways: add some to it first"
                    raise ConflictError(msg)
            else:
                _refuse_stations([target])
                ids = [target]
            targets = _gateway_nums(conn, ids)
            if issue is not None:
                _check_not_in_rollout(conn, DocumentKind.CONFIG, targets)
            (revision,) = conn.rows(
                "SELECT coalesce(max(revision), 0) + 1 FROM site_configs WHERE scope = ? "
                "AND target = ?",
                (scope, target),
            )[0]
            config_id = conn.insert(
                "INSERT INTO site_configs (scope, target, revision, site_toml, sha256, gateways, "
                "note, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    scope,
                    target,
                    revision,
                    config.site_toml,
                    hashlib.sha256(config.site_toml.encode()).hexdigest(),
                    json.dumps([g for g, _ in targets]),
                    config.note,
                    now,
                    config.created_by,
                ),
            )
            if issue is not None:
                version = _issue(
                    conn, DocumentKind.CONFIG, targets, issue, now, config_id=config_id
                )
                conn.execute(
                    "UPDATE site_configs SET version = ? WHERE id = ?", (version, config_id)
                )
        return self.get_config(config_id)

    @staticmethod
    def _members(conn: Transaction, group: str) -> list[str]:
        if conn.row("SELECT 1 FROM gateway_groups WHERE name = ?", (group,)) is None:
            raise NotFoundError(f"no group {group!r}")
        rows = conn.execute(
            "SELECT g.id FROM group_members m JOIN gateways g ON g.num = m.gw WHERE m.grp = ? "
            "ORDER BY g.id",
            (group,),
        )
        return [gateway_id for (gateway_id,) in rows]

    def get_config(self, config_id: int) -> SiteConfigRecord:
        """One config; raises NotFoundError."""
        rows = self._sql.rows("SELECT * FROM site_configs WHERE id = ?", [config_id])
        if not rows:
            raise NotFoundError(f"no config with id {config_id}")
        return _config(rows[0])

    def list_configs(
        self, *, gateway_id: str | None, group: str | None, limit: int
    ) -> list[SiteConfigRecord]:
        """Configs newest first, optionally those addressing a gateway or a group."""
        rows = self._sql.rows(
            "SELECT * FROM site_configs c WHERE (CAST(? AS TEXT) IS NULL OR "
            f"{self._sql.json_array_has('c.gateways')}) "
            "AND (CAST(? AS TEXT) IS NULL OR (c.scope = 'group' AND c.target = ?)) "
            "ORDER BY c.id DESC LIMIT ?",
            [gateway_id, gateway_id, group, group, limit],
        )
        return [_config(r) for r in rows]

    def config_deliveries(self, gateway_id: str, limit: int) -> list[ConfigDelivery]:
        """A gateway's configuration documents, newest first; raises NotFoundError."""
        with self._sql.snapshot() as db:
            ((_, gw),) = _gateway_nums(db, [gateway_id])
            rows = db.rows(
                "SELECT d.*, c.revision FROM config_deliveries d "
                "JOIN site_configs c ON c.id = d.config_id WHERE d.gw = ? "
                "ORDER BY d.version DESC LIMIT ?",
                [gw, limit],
            )
        return [
            ConfigDelivery(
                gateway_id=gateway_id,
                version=r["version"],
                config_id=r["config_id"],
                revision=r["revision"],
                rollout_id=r["rollout_id"],
                state=ConfigState(r["state"]),
                reason=r["reason"],
                issued_at=r["issued_at"],
                published_at=r["published_at"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

    # --- releases -------------------------------------------------------------------------

    def add_release(self, manifest: ReleaseManifest, by: str | None, now: float) -> ReleaseRecord:
        """Register a release; the same manifest again is a no-op, another one ConflictError."""
        text = manifest.model_dump_json()
        with self._sql.writing() as db:
            row = db.row("SELECT manifest FROM releases WHERE version = ?", (manifest.version,))
            if row is None:
                db.execute(
                    "INSERT INTO releases (version, manifest, created_at, created_by) "
                    "VALUES (?, ?, ?, ?)",
                    (manifest.version, text, now, by),
                )
            elif ReleaseManifest.model_validate_json(row[0]) != manifest:
                msg = (
                    f"release {manifest.version} is already registered with another manifest; "
                    "a version is published once: build a new version"
                )
                raise ConflictError(msg)
        return self.get_release(manifest.version)

    def get_release(self, version: str) -> ReleaseRecord:
        """One release; raises NotFoundError."""
        found = self._releases("WHERE version = ?", [version])
        if not found:
            raise NotFoundError(f"no release {version!r}")
        return found[0]

    def list_releases(self) -> list[ReleaseRecord]:
        """All releases, newest registration first."""
        return self._releases("", [])

    def _releases(self, where: str, params: list[Any]) -> list[ReleaseRecord]:
        with self._sql.snapshot() as db:
            rows = db.rows(f"SELECT * FROM releases {where} ORDER BY created_at DESC", params)
            uploaded = db.grouped(
                "SELECT version, name FROM release_files WHERE version IN ({keys})",
                [r["version"] for r in rows],
                "version",
            )
        return [
            ReleaseRecord(
                ReleaseManifest.model_validate_json(r["manifest"]),
                r["created_at"],
                r["created_by"],
                frozenset(f["name"] for f in uploaded.get(r["version"], ())),
            )
            for r in rows
        ]

    def _release_entry(self, version: str, name: str) -> tuple[ReleaseRecord, int, str]:
        release = self.get_release(version)
        for entry in release.manifest.files:
            if entry.name == name:
                return release, entry.size, entry.sha256
        listed = ", ".join(f.name for f in release.manifest.files)
        raise NotFoundError(f"release {version} has no file {name!r} (its files: {listed})")

    def release_upload_path(self, version: str, name: str) -> tuple[Path, int]:
        """A fresh temporary file to receive ``name`` of ``version``, and the size expected.

        Raises NotFoundError for an unknown release or file.
        """
        _, size, _ = self._release_entry(version, name)
        directory = self._files() / version
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f".{name}.{uuid.uuid4().hex}.part", size

    def store_release_file(
        self, version: str, name: str, upload: Path, now: float
    ) -> ReleaseRecord:
        """Check ``upload`` against the manifest (size, sha256) and keep it, or raise ValueError."""
        _, size, sha256 = self._release_entry(version, name)
        try:
            actual_size = upload.stat().st_size
            problem = None
            if actual_size != size:
                problem = f"{name}: {actual_size} bytes, the manifest says {size}"
            elif (actual := sha256_file(upload)) != sha256:
                problem = (
                    f"{name}: sha256 {actual} does not match the manifest's "
                    f"{sha256} (corrupted upload or another build)"
                )
            if problem is not None:
                raise ValueError(problem)
            os.replace(upload, self._files() / version / name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                upload.unlink()
        with self._sql.writing() as db:
            db.execute(
                "INSERT INTO release_files (version, name, stored_at) VALUES (?, ?, ?) "
                "ON CONFLICT (version, name) DO UPDATE SET stored_at = excluded.stored_at",
                (version, name, now),
            )
        return self.get_release(version)

    def release_file(self, version: str, name: str) -> Path:
        """The stored, verified file; raises NotFoundError."""
        release, _, _ = self._release_entry(version, name)
        if name not in release.uploaded:
            raise NotFoundError(f"file {name} of release {version} has not been uploaded yet")
        return self._files() / version / name

    def gateway_password_hash(self, gateway_id: str) -> str | None:
        """The gateway's MQTT password hash (gateways download releases with it), or None."""
        row = self._sql.row("SELECT mqtt_password_hash FROM gateways WHERE id = ?", (gateway_id,))
        return None if row is None else str(row[0])

    # --- rollouts -------------------------------------------------------------------------

    def create_rollout(self, rollout: NewRollout, now: float) -> Rollout:
        """Store a rollout (running, no wave started); NotFoundError or ConflictError."""
        ids = [g for _, gateways in rollout.waves for g in gateways]
        _refuse_stations(ids)
        with self._sql.writing() as conn:
            targets = _gateway_nums(conn, ids)
            if rollout.release_version is not None:
                release = self.get_release(rollout.release_version)
                if release.missing:
                    msg = (
                        f"release {release.version} lacks {', '.join(release.missing)}: upload "
                        "every file before rolling it out"
                    )
                    raise ConflictError(msg)
            if rollout.config_id is not None:
                self.get_config(rollout.config_id)
            _check_not_in_rollout(conn, rollout.kind, targets)
            rollout_id = conn.insert(
                "INSERT INTO rollouts (kind, release_version, config_id, grp, success_threshold, "
                "error_threshold, device_timeout_s, state, current_wave, revision, created_at, "
                "created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', -1, 0, ?, ?, ?) "
                "RETURNING id",
                (
                    rollout.kind.value,
                    rollout.release_version,
                    rollout.config_id,
                    rollout.group,
                    rollout.success_threshold,
                    rollout.error_threshold,
                    rollout.device_timeout_s,
                    now,
                    rollout.created_by,
                    now,
                ),
            )
            nums = dict(targets)
            conn.executemany(
                "INSERT INTO rollout_waves (rollout_id, idx, spec) VALUES (?, ?, ?)",
                [(rollout_id, index, spec) for index, (spec, _) in enumerate(rollout.waves)],
            )
            # One statement for every device (a county's rollout names thousands), in wave
            # order: a device's position counts on across the waves.
            devices = [
                (rollout_id, nums[gateway_id], index)
                for index, (_, gateways) in enumerate(rollout.waves)
                for gateway_id in gateways
            ]
            conn.executemany(
                "INSERT INTO rollout_devices (rollout_id, gw, wave, pos, state, updated_at) "
                "VALUES (?, ?, ?, ?, 'waiting', ?)",
                [(*device, position, now) for position, device in enumerate(devices)],
            )
        return self.get_rollout(rollout_id)

    def get_rollout(self, rollout_id: int) -> Rollout:
        """One rollout with waves and devices; raises NotFoundError."""
        found = self._rollouts("WHERE id = ?", [rollout_id])
        if not found:
            raise NotFoundError(f"no rollout with id {rollout_id}")
        return found[0]

    def list_rollouts(self, limit: int) -> list[Rollout]:
        """Rollouts, newest first."""
        return self._rollouts("ORDER BY id DESC LIMIT ?", [limit])

    def active_rollout_ids(self) -> list[int]:
        """Rollouts that may still change by themselves (running, paused, halted)."""
        rows = self._sql.rows(
            f"SELECT id FROM rollouts WHERE state IN ({marks(len(_ACTIVE))}) ORDER BY id", _ACTIVE
        )
        return [rollout_id for (rollout_id,) in rows]

    def _rollouts(self, tail: str, params: list[Any]) -> list[Rollout]:
        with self._sql.snapshot() as db:
            rows = db.rows(f"SELECT * FROM rollouts {tail}", params)
            ids = [r["id"] for r in rows]
            waves = db.grouped(
                "SELECT * FROM rollout_waves WHERE rollout_id IN ({keys}) ORDER BY idx",
                ids,
                "rollout_id",
            )
            devices = db.grouped(
                "SELECT d.*, g.id AS gateway_id FROM rollout_devices d "
                "JOIN gateways g ON g.num = d.gw WHERE d.rollout_id IN ({keys}) ORDER BY d.pos",
                ids,
                "rollout_id",
            )
        return [_rollout(r, waves.get(r["id"], []), devices.get(r["id"], [])) for r in rows]

    def control_rollout(self, rollout_id: int, state: RolloutState, by: str, now: float) -> Rollout:
        """Pause, resume (``RUNNING``) or abort, by whom; ConflictError if the state forbids it."""
        allowed = {
            RolloutState.PAUSED: (RolloutState.RUNNING,),
            RolloutState.RUNNING: (RolloutState.PAUSED,),
            RolloutState.ABORTED: (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.HALTED),
        }[state]
        verb = {
            RolloutState.PAUSED: "paused",
            RolloutState.RUNNING: "resumed",
            RolloutState.ABORTED: "aborted",
        }[state]
        with self._sql.writing() as db:
            row = db.row(
                f"SELECT state FROM rollouts WHERE id = ?{self._sql.for_update}", (rollout_id,)
            )
            if row is None:
                raise NotFoundError(f"no rollout with id {rollout_id}")
            current = RolloutState(row[0])
            if current not in allowed:
                hint = {
                    RolloutState.HALTED: "a halted rollout can only be aborted",
                    RolloutState.RUNNING: "it is running",
                }.get(current, "it has ended")
                msg = f"rollout {rollout_id} is {current.value} and cannot be {verb}: {hint}"
                raise ConflictError(msg)
            if state is RolloutState.ABORTED:
                db.execute(
                    "UPDATE rollout_devices SET state = 'cancelled', reason = ?, updated_at = ? "
                    "WHERE rollout_id = ? AND state IN (?, ?)",
                    (f"rollout {verb}", now, rollout_id, *_OPEN_DEVICE),
                )
            db.execute(
                "UPDATE rollouts SET state = ?, reason = ?, revision = revision + 1, "
                "updated_at = ? WHERE id = ?",
                (state.value, f"{verb} by {by}", now, rollout_id),
            )
        return self.get_rollout(rollout_id)

    def apply_rollout_step(
        self, step: RolloutStep, now: float, issue: DocumentIssuer | None
    ) -> bool:
        """Apply ``step`` if the rollout is still at ``step.revision``; False if it moved."""
        with self._sql.writing() as conn:
            row = conn.row(
                "SELECT revision, kind, config_id, device_timeout_s, current_wave FROM rollouts "
                f"WHERE id = ?{self._sql.for_update}",
                (step.rollout_id,),
            )
            if row is None or row[0] != step.revision:
                return False
            _, kind, config_id, timeout_s, current_wave = row
            if step.timed_out:
                conn.executemany(
                    "UPDATE rollout_devices SET state = 'timed_out', updated_at = ?, reason = "
                    "'no final report within ' || CAST(? AS TEXT) || ' s' || "
                    "coalesce(' (last report: ' || reported || ')', ' (no report at all)') "
                    "WHERE rollout_id = ? AND state = 'in_progress' AND gw = "
                    "(SELECT num FROM gateways WHERE id = ?)",
                    [(now, f"{timeout_s:g}", step.rollout_id, g) for g in step.timed_out],
                )
            if step.start_wave is not None:
                if issue is None:
                    msg = "starting a wave needs a document issuer"
                    raise ValueError(msg)
                targets = [
                    (gateway_id, num)
                    for gateway_id, num in conn.execute(
                        "SELECT g.id, d.gw FROM rollout_devices d JOIN gateways g ON g.num = d.gw "
                        "WHERE d.rollout_id = ? AND d.wave = ? AND d.state = 'waiting' "
                        "ORDER BY d.pos",
                        (step.rollout_id, step.start_wave),
                    )
                ]
                document_kind = DocumentKind(kind)
                version = _issue(
                    conn,
                    document_kind,
                    targets,
                    issue,
                    now,
                    config_id=config_id if document_kind is DocumentKind.CONFIG else None,
                    rollout_id=step.rollout_id,
                )
                conn.execute(
                    "UPDATE rollout_devices SET state = 'in_progress', doc_version = ?, "
                    "sent_at = ?, deadline = ?, updated_at = ? "
                    "WHERE rollout_id = ? AND wave = ? AND state = 'waiting'",
                    (version, now, now + timeout_s, now, step.rollout_id, step.start_wave),
                )
                conn.execute(
                    "UPDATE rollout_waves SET doc_version = ?, started_at = ? "
                    "WHERE rollout_id = ? AND idx = ?",
                    (version, now, step.rollout_id, step.start_wave),
                )
                current_wave = step.start_wave
            conn.execute(
                "UPDATE rollouts SET state = ?, reason = ?, current_wave = ?, "
                "revision = revision + 1, updated_at = ? WHERE id = ?",
                (step.state.value, step.reason, current_wave, now, step.rollout_id),
            )
        return True

    # --- outbox ---------------------------------------------------------------------------

    def claim_documents(self, now: float) -> list[OutboxDocument]:
        """Take the documents waiting to be published (and claims older than a minute)."""
        waiting = (
            "SELECT 1 FROM ota_outbox WHERE status = 'pending' "
            "OR (status = 'publishing' AND claimed_at < ?) LIMIT 1"
        )
        if self._outbox.row(waiting, (now - STALE_CLAIM_S,)) is None:
            return []
        with self._outbox.writing() as db:
            rows = db.rows(self.claim_statement, (now, now - STALE_CLAIM_S))
            # A wave's gateways share one document: read each once, hand out the same bytes.
            documents = {
                (kind, version): bytes(
                    db.rows(
                        "SELECT document FROM ota_documents WHERE kind = ? AND version = ?",
                        (kind, version),
                    )[0][0]
                )
                for kind, version in {(kind, version) for _, kind, version in rows}
            }
        claimed = [
            OutboxDocument(gateway_id, DocumentKind(kind), version, documents[(kind, version)])
            for gateway_id, kind, version in rows
        ]
        return sorted(claimed, key=lambda d: (d.kind, d.version, d.gateway_id))

    def finish_documents(
        self, published: Sequence[OutboxDocument], failed: Sequence[OutboxDocument], now: float
    ) -> None:
        """Record what was published; put failed ones back for the next attempt.

        When a newer document for the same topic was claimed meanwhile (by another ingest
        worker), it is queued again: the broker must retain the newest, whichever publish
        finished last.
        """
        if not published and not failed:
            return
        key = "gw = (SELECT num FROM gateways WHERE id = ?) AND kind = ?"
        with self._outbox.writing() as conn:
            keyed = [(d.gateway_id, d.kind.value, d.version) for d in published]
            conn.executemany(
                "UPDATE ota_outbox SET status = 'published', published_at = ? "
                f"WHERE {key} AND version = ? AND status = 'publishing'",
                [(now, *k) for k in keyed],
            )
            conn.executemany(
                f"UPDATE ota_outbox SET status = 'pending' WHERE {key} AND version > ? "
                "AND status IN ('publishing', 'published')",
                keyed,
            )
            conn.executemany(
                "UPDATE config_deliveries SET published_at = coalesce(published_at, ?) "
                "WHERE gw = (SELECT num FROM gateways WHERE id = ?) AND version = ?",
                [(now, d.gateway_id, d.version) for d in published if d.kind == "config"],
            )
            conn.executemany(
                f"UPDATE ota_outbox SET status = 'pending' WHERE {key} AND version = ? "
                "AND status = 'publishing'",
                [(d.gateway_id, d.kind.value, d.version) for d in failed],
            )


def _config(row: Row) -> SiteConfigRecord:
    return SiteConfigRecord(
        id=row["id"],
        scope=row["scope"],
        target=row["target"],
        revision=row["revision"],
        site_toml=row["site_toml"],
        sha256=row["sha256"],
        gateways=tuple(json.loads(row["gateways"])),
        note=row["note"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        version=row["version"],
    )


def _rollout(row: Row, waves: list[Row], devices: list[Row]) -> Rollout:
    members: dict[int, list[str]] = {}
    for d in devices:
        members.setdefault(d["wave"], []).append(d["gateway_id"])
    return Rollout(
        id=row["id"],
        kind=DocumentKind(row["kind"]),
        release_version=row["release_version"],
        config_id=row["config_id"],
        group=row["grp"],
        success_threshold=row["success_threshold"],
        error_threshold=row["error_threshold"],
        device_timeout_s=row["device_timeout_s"],
        state=RolloutState(row["state"]),
        current_wave=row["current_wave"],
        reason=row["reason"],
        revision=row["revision"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        updated_at=row["updated_at"],
        waves=tuple(
            RolloutWave(
                w["idx"],
                w["spec"],
                tuple(members.get(w["idx"], ())),
                w["doc_version"],
                w["started_at"],
            )
            for w in waves
        ),
        devices=tuple(
            RolloutDevice(
                gateway_id=d["gateway_id"],
                wave=d["wave"],
                state=DeviceState(d["state"]),
                doc_version=d["doc_version"],
                sent_at=d["sent_at"],
                deadline=d["deadline"],
                reported=d["reported"],
                reason=d["reason"],
                updated_at=d["updated_at"],
            )
            for d in devices
        ),
    )
