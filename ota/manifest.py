"""Release manifests: what an agent release is made of, file by file.

A release bundle is a directory holding ``manifest.json`` and the wheels it lists: the
project's own wheel and every dependency wheel. The manifest travels to gateways as the
payload of a signed ``release`` document (see ``ota.document``), so every file's sha256
is covered by the fleet's signature; the gateway downloads a file only when its wheel
cache lacks that hash, and installs only after every hash matched.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, field_validator

MANIFEST_FILE = "manifest.json"
DIST_NAME = "hazardwatch"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\.whl$")


class ReleaseFile(BaseModel):
    """One wheel of a release."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(max_length=200)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0)]

    @field_validator("name")
    @classmethod
    def _plain_wheel_name(cls, name: str) -> str:
        if not _SAFE_NAME.fullmatch(name):
            msg = f"{name!r} is not a plain wheel file name"
            raise ValueError(msg)
        return name


class ReleaseManifest(BaseModel):
    """An agent release: its version, the oldest version it upgrades from, its wheels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dist: str = DIST_NAME
    version: str
    min_upgrade_from: str
    python_requires: str = ">=3.11"
    created_at: float
    files: Annotated[tuple[ReleaseFile, ...], Field(min_length=1)]

    @field_validator("version", "min_upgrade_from")
    @classmethod
    def _pep440(cls, value: str) -> str:
        try:
            Version(value)
        except InvalidVersion:
            msg = f"{value!r} is not a PEP 440 version"
            raise ValueError(msg) from None
        return value

    @property
    def total_size(self) -> int:
        """Bytes of all files together: the full bundle size."""
        return sum(f.size for f in self.files)

    def payload(self) -> dict[str, Any]:
        """The manifest as the payload of a signed release document."""
        return self.model_dump(mode="json")
