"""Signed documents: one envelope for site configurations and release manifests.

The fleet signs the exact UTF-8 bytes of a compact JSON body with its Ed25519 key; the
envelope carries those bytes as a string, so nothing is re-serialised before checking.
A gateway accepts a document only when the signature verifies against the trust anchor
it pinned at enrollment, the document is of the expected kind, names this gateway, and
its version is newer than the installed one. Every refusal carries a specific reason.

Envelope (JSON)::

    {"format": "hazardwatch-signed/1", "key_id": "…", "body": "{…}", "signature": "…"}

Body: ``kind``, ``version`` (integer, increasing per kind and gateway), ``target``
(``{"gateways": [...], "group": name or null}``), ``issued_at`` (Unix seconds),
``revert`` (an explicit revert to older content, issued under a newer version) and
``payload`` (an object whose meaning depends on ``kind``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "hazardwatch-signed/1"


class DocumentKind(enum.StrEnum):
    """What a signed document carries."""

    CONFIG = "config"  # payload: {"site_toml": "..."}
    RELEASE = "release"  # payload: a release manifest


class Refusal(enum.StrEnum):
    """Why a gateway refused a document; stable codes the fleet shows and counts."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_KIND = "wrong_kind"
    WRONG_TARGET = "wrong_target"
    STALE_VERSION = "stale_version"


class DocumentRefusedError(Exception):
    """A document was refused; ``code`` says which check failed, the message how."""

    def __init__(self, code: Refusal, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.reason = message


class Signer(Protocol):
    """What can sign a body: the fleet's signing key."""

    @property
    def public_key_b64(self) -> str:
        """The raw public key as base64."""
        ...

    def sign(self, message: bytes) -> str:
        """The base64 signature of ``message``."""
        ...


@dataclass(frozen=True)
class Target:
    """Who a document is for: the listed gateways (a group is only a label)."""

    gateways: tuple[str, ...]
    group: str | None = None

    def includes(self, gateway_id: str) -> bool:
        """Return True when ``gateway_id`` is one of the addressed gateways."""
        return gateway_id in self.gateways

    def describe(self) -> str:
        """``gateways gw-1, gw-2 (group 'north')``, for messages; long lists are cut."""
        shown = ", ".join(self.gateways[:5]) or "no gateway"
        if len(self.gateways) > 5:
            shown += f" and {len(self.gateways) - 5} more"
        return f"{shown} (group {self.group!r})" if self.group else shown


@dataclass(frozen=True)
class Document:
    """The verified content of a signed document."""

    kind: DocumentKind
    version: int
    target: Target
    issued_at: float
    payload: dict[str, Any] = field(default_factory=dict)
    revert: bool = False

    def body_bytes(self) -> bytes:
        """The compact JSON body that is signed."""
        body = {
            "kind": self.kind.value,
            "version": self.version,
            "target": {"gateways": list(self.target.gateways), "group": self.target.group},
            "issued_at": self.issued_at,
            "revert": self.revert,
            "payload": self.payload,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def key_id(public_key_b64: str) -> str:
    """A short fingerprint of a raw Ed25519 public key (first 16 hex digits of its sha256)."""
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
    except binascii.Error:
        raw = public_key_b64.encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_document(document: Document, signer: Signer) -> bytes:
    """The envelope of ``document`` signed by ``signer``, as JSON bytes."""
    body = document.body_bytes()
    envelope = {
        "format": FORMAT,
        "key_id": key_id(signer.public_key_b64),
        "body": body.decode(),
        "signature": signer.sign(body),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def verify_signature(public_key_b64: str, message: bytes, signature_b64: str) -> bool:
    """Return True when ``signature_b64`` is a valid Ed25519 signature of ``message``."""
    try:
        raw_key = base64.b64decode(public_key_b64, validate=True)
        signature = base64.b64decode(signature_b64, validate=True)
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, message)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def _refuse(code: Refusal, message: str) -> DocumentRefusedError:
    return DocumentRefusedError(code, message)


def _envelope(data: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(data)
    # A nesting too deep for the parser is as malformed as a missing brace.
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _refuse(Refusal.MALFORMED, f"not a JSON document: {exc}") from None
    if not isinstance(envelope, dict):
        raise _refuse(Refusal.MALFORMED, "not a JSON object")
    if envelope.get("format") != FORMAT:
        raise _refuse(
            Refusal.MALFORMED, f"format is {envelope.get('format')!r}, expected {FORMAT!r}"
        )
    body = envelope.get("body")
    if not isinstance(body, str):
        raise _refuse(Refusal.MALFORMED, "'body' is missing or not a string")
    try:
        body.encode()
    except UnicodeEncodeError:  # JSON may spell a lone surrogate; no UTF-8 bytes carry one
        raise _refuse(Refusal.MALFORMED, "'body' is not valid Unicode") from None
    return envelope


def _check_signature(envelope: dict[str, Any], trust_anchor_b64: str) -> bytes:
    body = str(envelope["body"]).encode()
    signature = envelope.get("signature")
    if not signature:
        raise _refuse(Refusal.UNSIGNED, "the document carries no signature")
    if not isinstance(signature, str):
        raise _refuse(Refusal.MALFORMED, "'signature' is not a string")
    expected = key_id(trust_anchor_b64)
    claimed = envelope.get("key_id")
    if verify_signature(trust_anchor_b64, body, signature):
        return body
    if claimed is not None and claimed != expected:
        raise _refuse(
            Refusal.UNKNOWN_KEY,
            f"signed by key {claimed}, not by this fleet's key {expected}",
        )
    raise _refuse(
        Refusal.BAD_SIGNATURE,
        f"signature does not match the content for key {expected} (altered in transit?)",
    )


def _require(ok: bool, problem: str) -> None:
    if not ok:
        raise TypeError(problem)


def _parse_body(body: bytes) -> Document:
    try:
        data = json.loads(body)
        target = data["target"]
        gateways = target["gateways"]
        _require(
            isinstance(gateways, list) and all(isinstance(g, str) for g in gateways),
            "target.gateways must be a list of gateway ids",
        )
        version = data["version"]
        _require(
            isinstance(version, int) and not isinstance(version, bool) and version >= 1,
            f"version must be a positive integer, got {version!r}",
        )
        payload = data["payload"]
        _require(isinstance(payload, dict), "payload must be an object")
        return Document(
            kind=DocumentKind(data["kind"]),
            version=version,
            target=Target(tuple(gateways), target.get("group")),
            issued_at=float(data["issued_at"]),
            payload=payload,
            revert=bool(data.get("revert", False)),
        )
    # OverflowError: an integer time too large for a float; RecursionError: nesting too deep.
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        raise _refuse(Refusal.MALFORMED, f"signed body is incomplete: {exc}") from None


def read_unverified(data: bytes) -> Document:
    """Parse a document without checking anything; for display and logs only."""
    return _parse_body(str(_envelope(data)["body"]).encode())


def claimed_version(data: bytes) -> int:
    """The version a document says it has, unverified (0 when it cannot be read).

    Used to recognise the retained copy of a document already dealt with, and to name a
    refused document in its report.
    """
    try:
        return read_unverified(data).version
    except DocumentRefusedError:
        return 0


def digest(data: bytes) -> str:
    """A document's sha256, to report a refused (retained) document only once."""
    return hashlib.sha256(data).hexdigest()


def verify_document(
    data: bytes,
    trust_anchor_b64: str,
    gateway_id: str,
    kind: DocumentKind,
    installed_version: int,
) -> Document:
    """Verify ``data`` for this gateway and return its document, or raise a refusal.

    Checks, in order: the envelope, the signature against ``trust_anchor_b64``, the kind,
    the target and anti-rollback (``version`` must exceed ``installed_version``; an
    explicit revert is simply a newer version whose payload is older content).
    """
    envelope = _envelope(data)
    document = _parse_body(_check_signature(envelope, trust_anchor_b64))
    if document.kind is not kind:
        raise _refuse(
            Refusal.WRONG_KIND, f"a {document.kind.value} document where {kind.value} expected"
        )
    if not document.target.includes(gateway_id):
        raise _refuse(
            Refusal.WRONG_TARGET,
            f"addressed to {document.target.describe()}, not to {gateway_id}",
        )
    if document.version <= installed_version:
        raise _refuse(
            Refusal.STALE_VERSION,
            f"version {document.version} is not newer than the installed version "
            f"{installed_version}",
        )
    return document
