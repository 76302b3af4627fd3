"""The ``fleet`` command's offline commands, run as real subprocesses on a data directory."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

from fleet.credentials import mosquitto_verify
from fleet.repository import API_TOKEN_TTL_S, NewGateway, Role
from fleet.signing import KEY_FILE_NAME, SigningKey
from fleet.sqlite_repository import SQLiteRepository
from protocol import OfflineBundle


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args], capture_output=True, text=True, check=False
    )


def test_apitoken_create_prints_a_working_token(tmp_path: Path) -> None:
    done = fleet(
        "apitoken", "create", "--name", "duty", "--role", "operator", "--data-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    repository = SQLiteRepository(tmp_path / "fleet.sqlite")
    token = repository.api_token_for_secret(done.stdout.strip(), time.time())
    assert token is not None
    assert (token.name, token.role) == ("duty", Role.OPERATOR)
    assert token.expires_at is not None
    assert token.expires_at - token.created_at == API_TOKEN_TTL_S
    assert repository.api_token_for_secret(done.stdout.strip(), token.expires_at) is None


def test_apitoken_rotate_replaces_the_secret_and_the_expiry(tmp_path: Path) -> None:
    data_dir = ("--data-dir", str(tmp_path))
    created = fleet(
        "apitoken", "create", "--name", "cron", "--role", "viewer", "--ttl", "1d", *data_dir
    )
    assert created.returncode == 0, created.stderr
    about = json.loads(created.stderr)
    assert about["name"] == "cron"
    repository = SQLiteRepository(tmp_path / "fleet.sqlite")
    now = time.time()
    first = repository.api_token_for_secret(created.stdout.strip(), now)
    assert first is not None
    assert first.expires_at is not None
    assert 86000 < first.expires_at - now <= 86400

    rotated = fleet("apitoken", "rotate", str(about["id"]), "--ttl", "30d", *data_dir)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip() != created.stdout.strip()
    assert repository.api_token_for_secret(created.stdout.strip(), time.time()) is None
    second = repository.api_token_for_secret(rotated.stdout.strip(), time.time())
    assert second is not None
    assert (second.id, second.expires_at is not None) == (first.id, True)
    assert second.expires_at is not None
    assert 29 * 86400 < second.expires_at - time.time() <= 30 * 86400

    listed = fleet("apitoken", "list", *data_dir)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{about['id']}\tcron\tviewer\texpires 20")
    assert rotated.stdout.strip() not in listed.stdout

    missing = fleet("apitoken", "rotate", "999", *data_dir)
    assert (missing.returncode, missing.stderr) == (1, "error: no API token with id 999\n")
    too_long = fleet("apitoken", "rotate", str(about["id"]), "--ttl", "1000d", *data_dir)
    assert too_long.returncode == 2
    assert "at most 730d" in too_long.stderr


def test_the_database_is_created_readable_by_the_owner_only(tmp_path: Path) -> None:
    done = fleet(
        "apitoken", "create", "--name", "duty", "--role", "viewer", "--data-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    database = tmp_path / "fleet.sqlite"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_token_create_prints_a_one_time_token_and_refuses_bad_sites(tmp_path: Path) -> None:
    done = fleet(
        "token", "create", "--site", "creek-village", "--ttl", "2h", "--data-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert "site creek-village, valid until" in done.stderr
    repository = SQLiteRepository(tmp_path / "fleet.sqlite")
    gateway = repository.redeem_enrollment_token(
        done.stdout.strip(), NewGateway("gw-aaaaaaaaaa", "k" * 44, "$7$x", None, None), time.time()
    )
    assert gateway.site_id == "creek-village"

    bad = fleet("token", "create", "--site", "Creek Village", "--data-dir", str(tmp_path))
    assert bad.returncode == 2
    assert "site id 'Creek Village'" in bad.stderr


def test_token_bundle_writes_a_private_file_with_the_trust_anchor(tmp_path: Path) -> None:
    out = tmp_path / "usb" / "enroll.json"
    out.parent.mkdir()
    done = fleet(
        *("token", "bundle", "--site", "ridge", "--out", str(out), "--data-dir", str(tmp_path)),
        *("--fleet-url", "https://fleet.county.example"),
        *("--public-broker-url", "mqtts://mqtt.county.example:8883"),
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600
    bundle = OfflineBundle.model_validate_json(out.read_text())
    assert bundle.fleet_url == "https://fleet.county.example"
    assert bundle.broker_url == "mqtts://mqtt.county.example:8883"
    assert bundle.fleet_signing_key == SigningKey.load_or_create(tmp_path).public_key_b64
    assert bundle.expires_at - time.time() > 29 * 24 * 3600


def test_broker_config_writes_password_file_acl_and_config(tmp_path: Path) -> None:
    repository = SQLiteRepository(tmp_path / "fleet.sqlite")
    _token, secret = repository.create_enrollment_token("s", time.time() + 60, None, None, 0)
    repository.redeem_enrollment_token(
        secret, NewGateway("gw-aaaaaaaaaa", "k" * 44, "$7$101$abc$def", None, None), time.time()
    )
    done = fleet(
        *("broker-config", "--data-dir", str(tmp_path), "--listen", "0.0.0.0:1883"),
        *("--tls-listen", "0.0.0.0:8883", "--certfile", "/etc/c.pem", "--keyfile", "/etc/k.pem"),
    )
    assert done.returncode == 0, done.stderr
    broker = tmp_path / "broker"
    users = dict(line.split(":", 1) for line in (broker / "passwd").read_text().splitlines())
    assert users["gw-aaaaaaaaaa"] == "$7$101$abc$def"
    assert mosquitto_verify(_fleet_password(tmp_path), users["fleet_ingest"])
    acl = (broker / "acl").read_text()
    assert "pattern write hw/v1/%u/data" in acl
    assert "pattern read hw/v1/%u/cmd" in acl
    fleet_users = (broker / "fleet_passwd").read_text().splitlines()
    assert [line.split(":", 1)[0] for line in fleet_users] == ["fleet_ingest"]
    sections: dict[str, list[str]] = {}
    for line in (broker / "hazardwatch.conf").read_text().splitlines():
        if line.startswith("listener "):
            sections[line] = section = []
        elif sections and line and not line.startswith("#"):
            section.append(line)
    assert sections.keys() == {
        "listener 1883 0.0.0.0",
        "listener 8883 0.0.0.0",
        "listener 1884 127.0.0.1",  # the fleet's own, by default
    }
    for name, section in sections.items():
        fleet_only = name.endswith("1884 127.0.0.1")
        assert "allow_anonymous false" in section
        assert f"acl_file {broker / 'acl'}" in section
        passwords = broker / ("fleet_passwd" if fleet_only else "passwd")
        assert f"password_file {passwords}" in section
        assert ("use_username_as_clientid true" in section) is not fleet_only
    assert {"certfile /etc/c.pem", "keyfile /etc/k.pem"} <= set(sections["listener 8883 0.0.0.0"])


def _fleet_password(data_dir: Path) -> str:
    return str(json.loads((data_dir / "mqtt_account.json").read_text())["password"])


def test_only_serve_loads_the_web_app() -> None:
    # Token, roster and rollout commands start without FastAPI and the routers.
    probe = "import sys, fleet.cli; print('fleet.main' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_serve_loads_neither_numpy_nor_the_alarm_engine() -> None:
    # The SL 651 centre carries the engine's level changes, and stays light for it: numpy
    # and the engine load only when a station's rules are run (fleet.sl651_rules).
    probe = (
        "import sys, fleet.cli, fleet.main\n"
        "from alarm_engine import LevelChange\n"
        "from fleet import station_alarms\n"
        "heavy = ('numpy', 'numba', 'alarm_engine.engine', 'alarm_engine.model')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(station_alarms.LevelChange is LevelChange)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


def said(done: subprocess.CompletedProcess[str]) -> str:
    """What the command told the user, without the box it drew round it."""
    return " ".join(done.stderr.replace("│", " ").split())


def test_database_must_be_a_postgresql_url_and_its_password_is_never_shown(
    tmp_path: Path,
) -> None:
    data_dir = ("--data-dir", str(tmp_path))
    done = fleet("ingest", "--mqtt", "mqtt://127.0.0.1:1", *data_dir, "--database", "mysql://a@b/c")
    assert done.returncode == 2
    assert "is not a postgresql:// URL" in said(done)
    done = fleet(
        "ingest", "--mqtt", "mqtt://127.0.0.1:1", *data_dir,
        "--database", "postgresql://fleet:s3cret@db.example:5432",
    )  # fmt: skip
    assert done.returncode == 2
    assert "names no database" in said(done)
    assert "s3cret" not in said(done).replace(" ", "")
    assert "fleet:***@db.example:5432" in said(done)


def test_serve_on_an_unreachable_postgresql_says_so_instead_of_starting(tmp_path: Path) -> None:
    done = fleet(
        "serve", "--data-dir", str(tmp_path),
        "--database", "postgresql://fleet:s3cret@127.0.0.1:9/hazardwatch",
    )  # fmt: skip
    assert done.returncode == 2
    assert "cannot connect" in said(done)
    assert "fleet:***@127.0.0.1:9" in said(done).replace(" ", "")
    assert "s3cret" not in said(done).replace(" ", "")


def test_serve_refuses_a_lease_length_that_is_not_a_bounded_number(tmp_path: Path) -> None:
    # typer's range check lets NaN through (every comparison with it is false).
    for lease_s in ("nan", "inf", "1e9", "0.5"):
        done = subprocess.run(
            [sys.executable, "-m", "fleet.cli", "serve", "--data-dir", str(tmp_path),
             "--lease-s", lease_s],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, (lease_s, done.stderr)
        assert "--lease-s" in said(done), lease_s
