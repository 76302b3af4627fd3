"""The 叫应 roster and policy: bad input is refused by line and field; roles see what they may.

A CSV import refuses a bad row naming its line and field; over REST a viewer never sees a
phone number in clear; policies and the escalation file are checked at the door.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fleet.escalation_config import load_escalation_settings
from fleet.main import create_app
from fleet.repository import Role
from fleet.roster import RosterError, parse_roster_csv
from fleet.settings import FleetSettings
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.mosquitto import auth
from protocol.contacts import mask_phone

MOBILE = "+8613812345678"
HEADER = "site_id,tier,name,role,mobile,email,webhook\n"
GOOD = (
    HEADER
    + f"creek-village,village,王建国,群测群防员,{MOBILE},wang@village.example.cn,\n"
    + "creek-village,township,李敏,乡镇值班,+8613900000002,,https://qyapi.example.cn/robot?key=s3cret\n"
)


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("creek-village,village,王,r,13812345678,,", "line 3: mobile: not an E.164 number"),
        ("creek-village,mayor,王,r,+8613812345678,,", "line 3: tier: 'mayor' is not one of"),
        ("creek-village,village,,r,+8613812345678,,", "line 3: name: give the person's name"),
        ("creek-village,village,王,r,,wang-at-example,", "line 3: email: not an e-mail address"),
        ("creek-village,village,王,r,,,ftp://x", "line 3: webhook: not an http(s) URL"),
        ("creek-village,village,王,r,,,", "line 3: mobile, email, webhook: give at least one"),
        ("Creek Village,village,王,r,+8613812345678,,", "line 3: site_id: 'Creek Village'"),
        ("creek-village,village,王", "line 3: expected 7 fields"),
    ],
)
def test_a_bad_row_is_refused_with_its_line_and_field(row: str, expected: str) -> None:
    text = HEADER + f"creek-village,village,张,r,{MOBILE},,\n" + row + "\n"
    with pytest.raises(RosterError) as refused:
        parse_roster_csv(text)
    assert str(refused.value).startswith(expected)
    assert "13812345678" not in str(refused.value)  # the bad number is not echoed


def test_the_cli_imports_a_roster_and_refuses_a_file_with_a_bad_row_whole(tmp_path: Path) -> None:
    good = tmp_path / "roster.csv"
    good.write_text(GOOD, encoding="utf-8")
    done = fleet("roster", "import", str(good), "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "creek-village: 2 person(s)\n"
    shown = fleet("roster", "show", "creek-village", "--data-dir", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert MOBILE not in shown.stdout
    assert mask_phone(MOBILE) in shown.stdout
    assert "s3cret" not in shown.stdout
    assert (
        MOBILE
        in fleet(
            "roster", "show", "creek-village", "--unmasked", "--data-dir", str(tmp_path)
        ).stdout
    )

    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD.replace("乡镇值班,+8613900000002", "乡镇值班,0139-0000-0002"), "utf-8")
    refused = fleet("roster", "import", str(bad), "--data-dir", str(tmp_path))
    assert refused.returncode == 2
    assert "line 3: mobile: not an E.164 number" in refused.stderr
    assert "nothing was imported" in refused.stderr
    repository = SQLiteRepository(tmp_path / "fleet.sqlite")
    try:  # the earlier roster is intact: nothing of the bad file was stored
        assert [p.name for p in repository.escalation.roster("creek-village")] == ["王建国", "李敏"]
    finally:
        repository.close()


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[Role, str]]]:
    settings = FleetSettings(
        data_dir=tmp_path, broker="external", mqtt_url="mqtt://127.0.0.1:9", ingest=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        repository: SQLiteRepository = app.state.repository
        now = time.time()
        tokens = {role: repository.create_api_token(role.value, role, now)[1] for role in Role}
        repository.create_enrollment_token("creek-village", now + 60, None, None, now)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as client:
            yield client, tokens


async def test_roles_see_the_roster_as_they_may(
    http: tuple[httpx.AsyncClient, dict[Role, str]],
) -> None:
    client, tokens = http
    url = "/api/v1/sites/creek-village/roster"
    person = {
        "tier": "village",
        "name": "王建国",
        "role": "群测群防员",
        "mobile": MOBILE,
        "email": "wang@village.example.cn",
        "webhook": "https://qyapi.example.cn/robot?key=s3cret",
    }
    for role in (Role.VIEWER, Role.OPERATOR, Role.CONFIGURATOR):
        refused = await client.post(url, json=person, headers=auth(tokens[role]))
        assert refused.status_code == 403, role
    added = await client.post(url, json=person, headers=auth(tokens[Role.ADMIN]))
    assert added.status_code == 201, added.text

    viewer = await client.get(url, headers=auth(tokens[Role.VIEWER]))
    assert viewer.status_code == 200
    assert MOBILE not in viewer.text
    assert MOBILE[1:] not in viewer.text
    assert "wang@village" not in viewer.text
    assert "s3cret" not in viewer.text
    assert viewer.json()[0]["mobile"] == "+861********78"
    assert viewer.json()[0]["masked"] is True
    operator = (await client.get(url, headers=auth(tokens[Role.OPERATOR]))).json()[0]
    assert (operator["mobile"], operator["email"]) == (MOBILE, "wang@village.example.cn")
    assert "s3cret" not in operator["webhook"]
    admin = (await client.get(url, headers=auth(tokens[Role.ADMIN]))).json()[0]
    assert admin["webhook"] == person["webhook"]

    bad = await client.post(
        url, json={**person, "mobile": "13812345678"}, headers=auth(tokens[Role.ADMIN])
    )
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("mobile: not an E.164 number")
    assert "13812345678" not in bad.text

    unknown = await client.get(
        "/api/v1/sites/creek-vilage/roster", headers=auth(tokens[Role.VIEWER])
    )
    assert (unknown.status_code, unknown.json()["detail"]) == (
        404,
        "no site 'creek-vilage': no gateway, enrollment token or roster names it",
    )


async def test_a_site_policy_overrides_the_default_and_a_bad_one_is_refused(
    http: tuple[httpx.AsyncClient, dict[Role, str]],
) -> None:
    client, tokens = http
    url = "/api/v1/sites/creek-village/escalation-policy"
    default = (await client.get(url, headers=auth(tokens[Role.VIEWER]))).json()
    assert default["source"] == "default"
    assert default["policy"]["levels"]["red"]["tiers"] == [
        {"tier": "village", "deadline_s": 300.0},
        {"tier": "township", "deadline_s": 600.0},
        {"tier": "county", "deadline_s": 900.0},
    ]
    assert default["policy"]["levels"]["red"]["repeat_s"] == 120.0
    assert [t["tier"] for t in default["policy"]["levels"]["orange"]["tiers"]] == [
        "village",
        "township",
    ]
    own = {
        "levels": {
            "red": {
                "tiers": [
                    {"tier": "village", "deadline_s": 120},
                    {"tier": "county", "deadline_s": 300},
                ],
                "repeat_s": 60,
            }
        }
    }
    refused = await client.put(url, json=own, headers=auth(tokens[Role.OPERATOR]))
    assert refused.status_code == 403
    stored = await client.put(url, json=own, headers=auth(tokens[Role.CONFIGURATOR]))
    assert stored.status_code == 200, stored.text
    now = (await client.get(url, headers=auth(tokens[Role.VIEWER]))).json()
    assert now["source"] == "site"
    assert now["policy"]["levels"]["red"]["required_tier"] == "village"
    assert "orange" not in now["policy"]["levels"]

    backwards = {
        "levels": {
            "red": {
                "tiers": [
                    {"tier": "county", "deadline_s": 60},
                    {"tier": "village", "deadline_s": 60},
                ],
                "repeat_s": 60,
            }
        }
    }
    bad = await client.put(url, json=backwards, headers=auth(tokens[Role.CONFIGURATOR]))
    assert (bad.status_code, bad.json()["detail"]) == (
        422,
        "levels.red.tiers[1].tier: tiers go up the chain (village, township, county)",
    )
    too_fast = {
        "levels": {"red": {"tiers": [{"tier": "village", "deadline_s": 60}], "repeat_s": 1}}
    }
    bad = await client.put(url, json=too_fast, headers=auth(tokens[Role.CONFIGURATOR]))
    assert bad.json()["detail"] == "levels.red.repeat_s: between 10 and 86400 s"
    gone = await client.delete(url, headers=auth(tokens[Role.CONFIGURATOR]))
    assert gone.json()["source"] == "default"


def test_the_escalation_file_is_checked_and_names_the_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "escalation.toml"
    path.write_text(
        '[kannel]\nsendsms_url = "http://x"\nusername = "u"\npassword = "p"\nsender = "10086"\n'
    )
    with pytest.raises(ValueError, match=r"\[kannel\] needs sms_callback_key"):
        load_escalation_settings(path)
    path.write_text(
        'sms_callback_key = "0123456789abcdef"\n[smtp]\nhost = "h"\nport = 25\n'
        'sender = "a@b.cn"\nsmarthost = "x"\n'
    )
    with pytest.raises(ValueError, match=r"\[smtp\]: unknown key\(s\) smarthost"):
        load_escalation_settings(path)
    path.write_text(
        'sms_callback_key = "0123456789abcdef"\n[smtp]\nhost = "h"\nport = 25\n'
        'sender = "a@b.cn"\n[policy.levels.red]\nrepeat_s = 60\n'
        'tiers = [{tier = "village", deadline_s = 300}]\n'
    )
    settings = load_escalation_settings(path)
    assert settings.smtp is not None
    assert settings.smtp.port == 25
    assert list(settings.policy.levels) == [4]
    kannel = (
        'sms_callback_key = "0123456789abcdef"\n[kannel]\nsendsms_url = "http://x"\n'
        'username = "u"\npassword = "p"\nsender = "10086"\ncountry_code = '
    )
    path.write_text(kannel + '"86"\n')
    settings = load_escalation_settings(path)
    assert settings.kannel is not None
    assert settings.kannel.country_code == "86"
    path.write_text(kannel + '"+86"\n')
    with pytest.raises(ValueError, match=r"\[kannel\] country_code: a country calling code"):
        load_escalation_settings(path)
