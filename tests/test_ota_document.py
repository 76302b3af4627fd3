"""Signed documents: each kind of bad document is refused with its own reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.signing import SigningKey
from ota.document import (
    Document,
    DocumentKind,
    DocumentRefusedError,
    Refusal,
    Target,
    key_id,
    read_unverified,
    sign_document,
    verify_document,
)

GATEWAY = "gw-creek-1"


@pytest.fixture
def fleet_key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "fleet")


def _doc(version: int = 5, gateways: tuple[str, ...] = (GATEWAY,)) -> Document:
    return Document(
        kind=DocumentKind.CONFIG,
        version=version,
        target=Target(gateways, "creek"),
        issued_at=1_790_000_000.0,
        payload={"site_toml": "[site]\nid = 'creek'\n"},
    )


def _verify(data: bytes, key: SigningKey, installed: int = 4) -> Document:
    return verify_document(data, key.public_key_b64, GATEWAY, DocumentKind.CONFIG, installed)


def _refusal(data: bytes, key: SigningKey, installed: int = 4) -> DocumentRefusedError:
    with pytest.raises(DocumentRefusedError) as caught:
        _verify(data, key, installed)
    return caught.value


def test_a_signed_document_for_this_gateway_verifies(fleet_key: SigningKey) -> None:
    document = _verify(sign_document(_doc(), fleet_key), fleet_key)
    assert document == _doc()


def test_a_tampered_body_is_refused(fleet_key: SigningKey) -> None:
    envelope = json.loads(sign_document(_doc(), fleet_key))
    envelope["body"] = envelope["body"].replace("creek'", "slope'")
    refusal = _refusal(json.dumps(envelope).encode(), fleet_key)
    assert refusal.code is Refusal.BAD_SIGNATURE
    assert "does not match the content" in str(refusal)


def test_an_unsigned_document_is_refused(fleet_key: SigningKey) -> None:
    envelope = json.loads(sign_document(_doc(), fleet_key))
    del envelope["signature"]
    assert _refusal(json.dumps(envelope).encode(), fleet_key).code is Refusal.UNSIGNED


def test_another_key_is_refused_and_named(fleet_key: SigningKey, tmp_path: Path) -> None:
    other = SigningKey.load_or_create(tmp_path / "other")
    refusal = _refusal(sign_document(_doc(), other), fleet_key)
    assert refusal.code is Refusal.UNKNOWN_KEY
    assert key_id(other.public_key_b64) in str(refusal)
    assert key_id(fleet_key.public_key_b64) in str(refusal)


def test_another_key_claiming_our_key_id_is_a_bad_signature(
    fleet_key: SigningKey, tmp_path: Path
) -> None:
    other = SigningKey.load_or_create(tmp_path / "other")
    envelope = json.loads(sign_document(_doc(), other))
    envelope["key_id"] = key_id(fleet_key.public_key_b64)
    refusal = _refusal(json.dumps(envelope).encode(), fleet_key)
    assert refusal.code is Refusal.BAD_SIGNATURE


def test_a_document_for_another_gateway_is_refused(fleet_key: SigningKey) -> None:
    refusal = _refusal(sign_document(_doc(gateways=("gw-slope-2",)), fleet_key), fleet_key)
    assert refusal.code is Refusal.WRONG_TARGET
    assert "gw-slope-2" in str(refusal)
    assert GATEWAY in str(refusal)


@pytest.mark.parametrize("installed", [5, 9])
def test_a_version_not_newer_than_installed_is_refused(
    fleet_key: SigningKey, installed: int
) -> None:
    refusal = _refusal(sign_document(_doc(version=5), fleet_key), fleet_key, installed)
    assert refusal.code is Refusal.STALE_VERSION
    assert f"installed version {installed}" in str(refusal)


def test_a_release_is_not_accepted_as_a_config(fleet_key: SigningKey) -> None:
    release = Document(DocumentKind.RELEASE, 7, Target((GATEWAY,)), 1.0, {"version": "0.2.0"})
    assert _refusal(sign_document(release, fleet_key), fleet_key).code is Refusal.WRONG_KIND


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe",
        b"[]",
        b'{"format": "other/1", "body": "{}"}',
        b'{"format": "hazardwatch-signed/1"}',
    ],
)
def test_malformed_envelopes_are_refused(fleet_key: SigningKey, data: bytes) -> None:
    assert _refusal(data, fleet_key).code is Refusal.MALFORMED


def test_a_signed_but_incomplete_body_is_malformed(fleet_key: SigningKey) -> None:
    body = json.dumps({"kind": "config", "version": 0}).encode()
    envelope = {
        "format": "hazardwatch-signed/1",
        "key_id": key_id(fleet_key.public_key_b64),
        "body": body.decode(),
        "signature": fleet_key.sign(body),
    }
    refusal = _refusal(json.dumps(envelope).encode(), fleet_key)
    assert refusal.code is Refusal.MALFORMED


def test_read_unverified_shows_content_without_trusting_it(fleet_key: SigningKey) -> None:
    assert read_unverified(sign_document(_doc(), fleet_key)).version == 5
