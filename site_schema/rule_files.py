"""Where rule files are: the shipped county tables, and the file an include names.

A site file's ``[[include]] rules = NAME`` names a shipped table (a file of
``site_schema/rule_tables`` by its stem) or, for a local site file only, a path
relative to it. This module only finds the file; it never reads it and never decides
whether an include is allowed (``site_schema.rule_includes`` does).
"""

from __future__ import annotations

from pathlib import Path

#: The shipped rule tables, included by their name (the file's stem).
SHIPPED_DIR = Path(__file__).parent / "rule_tables"


def shipped_rule_files() -> dict[str, Path]:
    """The shipped rule tables by name."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.toml"))}


def rule_file_path(ref: str, base_dir: Path | None) -> Path | None:
    """The file ``ref`` names: a shipped table, else (with ``base_dir``) a path from there.

    None when ``ref`` is no shipped table and there is no ``base_dir`` to look in. The
    path returned for a local reference may not exist; the caller says so.
    """
    shipped = shipped_rule_files()
    if ref in shipped:
        return shipped[ref]
    if base_dir is None:
        return None
    return Path(ref) if Path(ref).is_absolute() else base_dir / ref
