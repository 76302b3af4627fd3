"""Pydantic schemas for the tables of our TOML files, and the one formatter of their errors.

A table is declared as a ``TomlTable``: unknown keys are refused (``extra="forbid"``), types
are strict (``true`` is not a number, ``"5"`` not an integer, 5 is a number), numbers are
finite and bounds are ``Field`` constraints. ``table_problem`` words the first error the
way a technician reads it: "'unit_id' = 300 is outside 1..247", "unknown key(s): baud
(allowed: ...)", "missing 'device'"; the caller adds the file and the item. Never fills in
a value the file does not give and the model does not default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import annotated_types as at
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a finite number",
    "float_parsing": "a finite number",
    "string_type": "a string",
    "string_too_short": "a non-empty string",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


class TomlTable(BaseModel):
    """One table of a TOML file: unknown keys refused, strict types, frozen once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _nested(model: type[BaseModel], part: int | str) -> type[BaseModel]:
    """The model of the table at key ``part`` of ``model``."""
    annotation = model.model_fields[str(part)].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return model


def _integer_range(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[Any, Any]:
    """The inclusive ``(low, high)`` of an integer field bounded on both sides, else Nones."""
    *path, last = loc
    for part in path:
        model = _nested(model, part)
    field = model.model_fields.get(str(last))
    if field is None or field.annotation not in (int, int | None):
        return None, None
    lows = [m.ge for m in field.metadata if isinstance(m, at.Ge)]
    highs = [m.le for m in field.metadata if isinstance(m, at.Le)]
    return (lows[0], highs[0]) if lows and highs else (None, None)


_BOUND_WORDS = {
    "greater_than": ("gt", "above"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "below"),
    "less_than_equal": ("le", "at most"),
}


def _key(loc: tuple[int | str, ...]) -> str:
    """``("windows", "1h")`` -> ``windows.1h``; list indexes as ``[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _word(error: ErrorDetails, model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    key, kind, value = _key(loc), error["type"], error["input"]
    if kind == "missing":
        return f"missing '{key}'"
    if kind in _TYPE_WORDS:
        return f"'{key}' must be {_TYPE_WORDS[kind]}, got {value!r}"
    if kind in _BOUND_WORDS:
        low, high = _integer_range(model, loc)
        if low is not None:
            return f"'{key}' = {value} is outside {low}..{high}"
        name, words = _BOUND_WORDS[kind]
        return f"'{key}' = {value} must be {words} {error.get('ctx', {}).get(name):g}"
    if kind == "literal_error":
        return f"'{key}' must be {error.get('ctx', {}).get('expected')}, got {value!r}"
    if kind == "too_short":
        return f"'{key}' needs at least {error.get('ctx', {}).get('min_length')} item(s)"
    return f"'{key}': {error['msg']}"


def _one_of(choices: Sequence[str]) -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    return " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 1 else choices)


#: A table's schema: one model, or one model per value of its ``kind`` key.
Schema = type[BaseModel] | Mapping[str, type[BaseModel]]


def table_problem(exc: ValidationError, schema: Schema, within: str | None = None) -> str:
    """The first problem of a failed validation against ``schema``, in the words above.

    Unknown keys come first, all named at once with the keys the table allows, as a
    misspelt key is the likeliest mistake and explains the errors after it; a required key
    missing beside them is named too, since a misspelling is both. ``within`` names the
    table in that message when the caller's item does not ("[device.serial]").
    """
    errors = exc.errors(include_url=False)

    def split(loc: tuple[int | str, ...]) -> tuple[type[BaseModel], tuple[int | str, ...]]:
        if isinstance(schema, type):
            return schema, loc
        return schema[str(loc[0])], loc[1:]

    extras = [e for e in errors if e["type"] == "extra_forbidden"]
    if extras:
        model, loc = split(tuple(extras[0]["loc"]))
        *path, _ = loc
        for part in path:  # a nested table, such as a profile's [device.serial]
            model = _nested(model, part)
        if within and path:
            within = f"{within.removesuffix(']')}.{'.'.join(map(str, path))}]"
        unknown = sorted(str(e["loc"][-1]) for e in extras)
        allowed = sorted(f.alias or name for name, f in model.model_fields.items())
        where = f" in {within}" if within else ""
        problem = f"unknown key(s){where}: {', '.join(unknown)} (allowed: {', '.join(allowed)})"
        missing = [
            _word(e, model, split(tuple(e["loc"]))[1]) for e in errors if e["type"] == "missing"
        ]
        return "; ".join([*missing, problem])
    first = errors[0]
    loc = tuple(first["loc"])
    if first["type"] in ("union_tag_invalid", "union_tag_not_found") and isinstance(
        schema, Mapping
    ):
        kinds = [repr(tag) for tag in schema]
        got = first["input"].get("kind") if isinstance(first["input"], dict) else None
        return f"'kind' must be {_one_of(kinds)}, got {got!r}"
    if first["type"] in ("model_type", "model_attributes_type", "dict_type") and not loc:
        return "must be a table"
    model, loc = split(loc)
    return _word(first, model, loc)
