"""Config mistakes as one sentence that names the section, the key, the value and what is expected.

pydantic's own messages ("Input should be a valid integer, unable to parse string as
an integer [type=int_parsing, ...]") are for programmers; :func:`explain` rebuilds the
sentence from the model's field (its annotation and bounds) instead, and suggests the
closest valid key for an unknown one ("did you mean `n_lambdas`?").

:func:`check_value` and :func:`check_keys` do the same for keyword tables whose keys and
types come from a function signature (loader, planter and model parameters).
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from typing import Any, Iterable, Literal, Union

from pydantic import BaseModel, TypeAdapter, ValidationError

from debuggable.errors import DebuggableError

_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid key most like ``name`` (difflib ratio >= 0.6), or None."""
    match = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_key_sentence(where: str, key: str, choices: Iterable[str]) -> str:
    """``"{where}: 'n_lambda' is not a setting here; did you mean `n_lambdas`?"`` (or the valid keys)."""
    choices = list(choices)
    guess = closest(key, choices)
    tail = f"did you mean `{guess}`?" if guess else f"expected one of {sorted(choices)}."
    return f"{where}: {key!r} is not a setting here; {tail}"


def _strip_optional(ann: Any) -> Any:
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def describe_type(ann: Any) -> str:
    """An annotation in words: ``int`` -> "an integer", ``list[str]`` -> "a list of strings"."""
    ann = _strip_optional(ann)
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return describe_type(typing.get_args(ann)[0])
    if origin in (Union, types.UnionType):
        parts = [describe_type(a) for a in typing.get_args(ann) if a is not type(None)]
        return " or ".join(dict.fromkeys(parts))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    if origin in (list, tuple, set, typing.Sequence, getattr(__import__("collections.abc").abc, "Sequence")):
        args = typing.get_args(ann)
        inner = describe_type(args[0]) if args else ""
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings",
                  "true or false": "booleans", "a table": "tables"}.get(inner)
        return f"a list of {plural}" if plural else "a list"
    if origin in (dict, typing.Mapping) or ann is dict:
        return "a table"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a table"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(ann, "a valid value")


def _bounds(field: Any) -> str:
    out = []
    for meta in getattr(field, "metadata", ()):
        for attr, sym in _BOUNDS:
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sym} {value}")
    return " and ".join(out)


def _field_at(model: type[BaseModel], loc: tuple) -> tuple[list[str], Any, type[BaseModel] | None, Any]:
    """Walk ``loc`` through nested models: (path of keys, field info, owning model, the rest of loc)."""
    path: list[str] = []
    owner: type[BaseModel] | None = model
    field = None
    rest = list(loc)
    while rest and owner is not None:
        key = rest.pop(0)
        if not isinstance(key, str) or key not in owner.model_fields:
            rest.insert(0, key)
            break
        field = owner.model_fields[key]
        path.append(key)
        ann = _strip_optional(field.annotation)
        origin = typing.get_origin(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            owner = ann
        elif origin is list and rest and isinstance(rest[0], int):
            item = _strip_optional(typing.get_args(ann)[0]) if typing.get_args(ann) else None
            path[-1] = f"{key}[{rest.pop(0)}]"
            owner = item if isinstance(item, type) and issubclass(item, BaseModel) else None
            if owner is None:
                rest.insert(0, "[item]")  # the error is about one entry of a list of plain values
                break
        else:
            owner = None
    return path, field, owner, rest


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def explain(exc: ValidationError, model: type[BaseModel], where: str, section: str | None = None) -> str:
    """The first error of ``exc`` as one sentence.

    Args:
        exc: pydantic's error for ``model.model_validate``.
        model: the model validated.
        where: what was read, e.g. ``"run.toml"``.
        section: the name of the table ``model`` stands for (e.g. ``"model.train"``);
            ``None`` for the top level.
    """
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        path, _, owner, rest = _field_at(model, loc[:-1])
        table = ".".join(p for p in ([section] if section else []) + path)
        choices = list((owner or model).model_fields) if not rest else []
        return unknown_key_sentence(f"{where} [{table}]" if table else where, str(loc[-1]), choices)
    path, field, owner, rest = _field_at(model, loc)
    table = ".".join(([section] if section else []) + path[:-1])
    key = path[-1] if path else ".".join(map(str, loc))
    prefix = f"{where} [{table}]" if table else where
    if err["type"] == "missing":
        return f"{prefix}: {key!r} is required; add `{key} = ...`."
    if field is None:
        return f"{prefix}: {key!r} has an invalid value {_shown(err.get('input'))}."
    ann = _strip_optional(field.annotation)
    if rest and rest[0] == "[item]" and typing.get_args(ann):
        ann = typing.get_args(ann)[0]  # one entry of a list
    expected = describe_type(ann)
    bounds = _bounds(field)
    if bounds and (not rest or rest[0] != "[item]"):
        expected = f"{expected} {bounds}" if expected in ("an integer", "a number") else f"{expected} ({bounds})"
    value = err.get("input")
    guess = None
    if typing.get_origin(_strip_optional(ann)) is Literal and isinstance(value, str):
        guess = closest(value, [str(a) for a in typing.get_args(_strip_optional(ann))])
    tail = f"; did you mean {guess!r}?" if guess else "."
    return f"{prefix}: {key} = {_shown(value)} is not valid; expected {expected}{tail}"


def _hints(func: Any) -> dict[str, Any]:
    target = func.__init__ if inspect.isclass(func) else func
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no type checks
        return {}


def check_values(where: str, func: Any, params: dict[str, Any]) -> None:
    """Raise one sentence for the first value of ``params`` whose type does not fit
    ``func``'s annotation for it (keys must already be valid). Annotations pydantic
    cannot check are skipped."""
    hints = _hints(func)
    for name, value in params.items():
        ann = hints.get(name)
        if ann is None or ann is Any:
            continue
        try:
            adapter = TypeAdapter(ann)
        except Exception:  # noqa: BLE001 - e.g. an arbitrary class
            continue
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError:
            raise DebuggableError(f"{where}: {name} = {_shown(value)} is not valid; expected {describe_type(ann)}.") from None
        except Exception:  # noqa: BLE001 - the adapter cannot judge this value
            continue
