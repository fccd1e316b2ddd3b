"""Class versions, aliases, upcaster chains and class fingerprints, checked at definition.

Imported by ``_model`` while State and Event are being defined, so it imports
nothing of playthrough but the errors. Reading rows is ``_upcasting``'s job.
"""

from __future__ import annotations

import enum
import hashlib
import re
import typing
from collections.abc import Callable
from typing import Any

import attrs

from ._errors import DefinitionError

_UPCASTER = re.compile(r"upcast_v([1-9][0-9]*)")


# --------------------------------------------------------------------------- definition


def class_version(cls: type, given: int | None) -> int:
    """The version declared for ``cls`` (attrs re-creates slotted classes without keywords)."""
    if given is None:
        given = cls.__dict__.get("_pt_version", 1)
    if type(given) is not int or given < 1:
        raise DefinitionError(f"version of {cls.__qualname__} must be an int >= 1, not {given!r}")
    return given


def class_aliases(cls: type, given: typing.Iterable[str] | None, name: str) -> tuple[str, ...]:
    if given is None:
        found: tuple[str, ...] = cls.__dict__.get("_pt_aliases", ())
        return found
    if isinstance(given, str):
        raise DefinitionError(
            f"aliases of {cls.__qualname__} must be a tuple of names, not the string {given!r} "
            f"(write aliases=({given!r},))"
        )
    aliases = tuple(given)
    for alias in aliases:
        if not isinstance(alias, str) or not alias:
            raise DefinitionError(f"aliases of {cls.__qualname__}: {alias!r} is not a type name")
        if alias == name:
            raise DefinitionError(f"{cls.__qualname__}: alias {alias!r} is its own type name")
    if len(set(aliases)) != len(aliases):
        raise DefinitionError(f"{cls.__qualname__}: aliases {aliases!r} name a type twice")
    return aliases


def upcasters(cls: type) -> dict[int, Callable[[dict[str, Any]], Any]]:
    """``{k: upcast_vk}`` for every upcaster ``cls`` defines or inherits."""
    found: dict[int, Callable[[dict[str, Any]], Any]] = {}
    for name in dir(cls):
        if not name.startswith("upcast"):
            continue
        match = _UPCASTER.fullmatch(name)
        if match is None:
            raise DefinitionError(
                f"{cls.__qualname__}.{name}: upcasters are named upcast_vK (K >= 1): "
                "upcast_v1 turns a version-1 payload into a version-2 one"
            )
        fn = getattr(cls, name)
        if not callable(fn):
            raise DefinitionError(f"{cls.__qualname__}.{name} must be a function")
        found[int(match.group(1))] = fn
    return found


def check_upcasters(cls: type, version: int, *, every_step: bool) -> None:
    """Refuse an upcaster chain with a hole, or a step past the declared version.

    ``every_step``: events need ``upcast_v1 .. upcast_v(N-1)``; a state's chain
    may start at any version (older snapshots are then simply not used).
    """
    steps = upcasters(cls)
    kind = "Event" if every_step else "State"
    stale = sorted(k for k in steps if k >= version)
    if stale:
        raise DefinitionError(
            f"{cls.__qualname__} defines upcast_v{stale[0]} but is version {version}: "
            f"upcast_v{stale[0]} turns version {stale[0]} into {stale[0] + 1}; declare "
            f"`class {cls.__name__}({kind}, version={stale[-1] + 1})`"
        )
    first = 1 if every_step else min(steps, default=version)
    missing = [k for k in range(first, version) if k not in steps]
    if missing:
        names = ", ".join(f"upcast_v{k}" for k in missing)
        raise DefinitionError(
            f"{cls.__qualname__} is version {version} but has no {names}: every stored "
            f"version must have a path to version {version} (upcast_vK turns a version-K "
            "payload dict into a version-K+1 one)"
        )


# --------------------------------------------------------------------------- fingerprints

_FINGERPRINTS: dict[type, str] = {}


def fingerprint(cls: type) -> str:
    """A short hash of the class's shape: field names and types, nested classes included."""
    found = _FINGERPRINTS.get(cls)
    if found is None:
        text = _describe(cls, set())
        found = _FINGERPRINTS[cls] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return found


def shape(cls: type) -> str:
    """Like ``fingerprint``, but blind to the class's own (Python) name: an event class
    renamed in the code keeps its stored type name, and its rows read the same."""
    text = _describe(cls, set())
    if text.startswith(cls.__qualname__ + "{"):
        text = text[len(cls.__qualname__) :]
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _describe(tp: Any, seen: set[type]) -> str:
    if isinstance(tp, str):
        return tp.replace(" ", "")
    if isinstance(tp, type) and attrs.has(tp):
        if tp in seen:
            return tp.__qualname__
        seen.add(tp)
        try:
            hints = typing.get_type_hints(tp)
        except Exception:  # noqa: BLE001 - unresolvable names are described by their text
            hints = {}
        parts = [
            f"{a.name}:{_describe(hints.get(a.name, a.type), seen)}"
            for a in attrs.fields(tp)
            if a.init
        ]
        seen.discard(tp)
        return f"{tp.__qualname__}{{{','.join(parts)}}}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"{tp.__qualname__}({','.join(repr(m.value) for m in tp)})"
    origin = typing.get_origin(tp)
    if origin is not None:
        args = ",".join(_describe(a, seen) for a in typing.get_args(tp))
        return f"{_describe(origin, seen)}[{args}]"
    if tp is None or tp is type(None):
        return "None"
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp)
