"""Personal data and forgetting it: crypto-shredding in an append-only log.

An event field is *personal* when declared ``attrs.field(metadata={"personal":
True})`` or annotated ``Personal[str]``; the event class names the field that
identifies the data subject with ``data_subject = "customer_id"``. When the
event is committed, each personal value is encrypted (AES-GCM, the
``cryptography`` package: ``pip install 'playthrough[crypto]'``) with a
random 256-bit key of that subject, kept in the store's ``pt_subject_keys``
table; the stored JSON holds ``{"$pt_personal": {"s": subject, "v": ...}}`` in
place of the value.

Stores keep and return events as stored, sealed (the format is in
``_sealed``; no store imports this module). The core opens them where it reads
events (:func:`unsealing` wraps a store's reader, :func:`unseal` opens rows),
so every reader of the log (loads, replays, verification, followers) sees the
original JSON, and exports and archives carry the sealed rows. Once
``engine.admin.forget(subject)`` has deleted the key, the value reads as
:data:`FORGOTTEN` everywhere, and the rest of the event is untouched. A sealed
value carries a short id of its key (``"t"``), so values sealed under a key
that was deleted read as FORGOTTEN even after the subject got a new key.
Snapshots and heads values hold values derived from personal data, so
forgetting drops those of the states the subject's events touched (see
``_stores/_forget``); ``event_random`` is seeded without the personal fields,
so forgetting changes nothing but the personal values.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import attrs

from ._canonical import dumps
from ._errors import CorruptionError, DefinitionError, PlaythroughError
from ._keys import encode_id
from ._sealed import FORGOTTEN, MARK, MARK_TEXT, key_id
from ._steps import Steps, call

if TYPE_CHECKING:
    from ._records import EventQuery, StoredEvent

__all__ = [
    "FORGOTTEN",
    "MARK",
    "PERSONAL",
    "Personal",
    "PersonalSpec",
    "clear_values",
    "crypto_available",
    "key_id",
    "new_key",
    "open_sealed",
    "personal_spec",
    "seal",
    "subject_of",
    "unseal",
    "unseal_steps",
    "unsealing",
    "without_personal",
]


class _PersonalMarker:
    def __repr__(self) -> str:
        return "personal"


PERSONAL = _PersonalMarker()
T = TypeVar("T")
#: ``name: Personal[str]``: the same as ``attrs.field(metadata={"personal": True})``.
Personal = Annotated[T, PERSONAL]


@attrs.frozen
class PersonalSpec:
    fields: tuple[str, ...]
    subject: str


_SPECS: dict[type, PersonalSpec | None] = {}


def personal_spec(cls: type) -> PersonalSpec | None:
    """The personal fields of an event class and its subject field (None: it has none)."""
    if cls in _SPECS:
        return _SPECS[cls]
    fields = attrs.fields(typing.cast(Any, cls))
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable hints: metadata markers only
        hints = {}
    personal = []
    for a in fields:
        hint = hints.get(a.name)
        marked = bool(a.metadata.get("personal")) or (
            typing.get_origin(hint) is Annotated and PERSONAL in typing.get_args(hint)[1:]
        )
        if marked:
            personal.append(a.name)
    spec = None
    if personal:
        subject = getattr(cls, "data_subject", None)
        names = {a.name for a in fields}
        where = cls.__qualname__
        if not isinstance(subject, str) or subject not in names:
            raise DefinitionError(
                f"{where} has personal fields ({', '.join(personal)}) but no data_subject: "
                "set data_subject = '<field naming the person>' on the class"
            )
        if subject in personal:
            raise DefinitionError(f"{where}.{subject}: the data subject field cannot be personal")
        if not crypto_available():
            raise DefinitionError(
                f"{where} has personal fields ({', '.join(personal)}), which are stored "
                "encrypted: that needs the cryptography package, "
                "pip install 'playthrough[crypto]'"
            )
        spec = PersonalSpec(tuple(personal), subject)
    _SPECS[cls] = spec
    return spec


def _aad(type_name: str, field: str, subject: str) -> bytes:
    return f"{type_name}\x00{field}\x00{subject}".encode()


def crypto_available() -> bool:
    """Whether the ``cryptography`` package (the ``crypto`` extra) can be imported."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
    except ImportError:
        return False
    return True


def open_sealed(
    sealed: dict[str, Any], type_name: str, field: str, subject: str, key: bytes
) -> tuple[bool, Any]:
    """(True, the clear JSON value) of one sealed value, or (False, None) when ``key``
    is not its key (it was sealed under a key deleted since: it is forgotten)."""
    kid = sealed.get("t")
    if kid is not None and kid != key_id(key):
        return False, None
    from cryptography.exceptions import InvalidTag

    raw = base64.b64decode(sealed["v"])
    try:
        plain = _aesgcm(key).decrypt(raw[:12], raw[12:], _aad(type_name, field, subject))
    except InvalidTag:
        if kid is None:  # sealed before key ids: under an older key of the subject
            return False, None
        raise CorruptionError(
            f"a sealed personal value of {type_name}.{field} does not decrypt under its "
            "key: the stored ciphertext was altered"
        ) from None
    return True, json.loads(plain)


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise PlaythroughError(
            "events with personal fields need the cryptography package: "
            "pip install 'playthrough[crypto]'"
        ) from exc
    return AESGCM(key)


def new_key() -> bytes:
    return os.urandom(32)


def subject_of(event: object, spec: PersonalSpec) -> str:
    return encode_id(getattr(event, spec.subject))


def seal(data: str, type_name: str, spec: PersonalSpec, subject: str, key: bytes) -> str:
    """The event JSON with each personal value encrypted under the subject's key."""
    obj = json.loads(data)
    aes = _aesgcm(key)
    kid = key_id(key)
    for name in spec.fields:
        nonce = os.urandom(12)
        sealed = aes.encrypt(nonce, dumps(obj[name]).encode(), _aad(type_name, name, subject))
        obj[name] = {MARK: {"s": subject, "t": kid, "v": base64.b64encode(nonce + sealed).decode()}}
    return dumps(obj)


Row = TypeVar("Row", bound=tuple[Any, ...])
E = TypeVar("E", bound=tuple[Any, ...])


def _sealed_rows(rows: Sequence[Row], data_index: int) -> list[tuple[int, dict[str, Any]]]:
    """(index, parsed JSON) of the rows holding a sealed value (one substring test each)."""
    return [
        (i, json.loads(r[data_index])) for i, r in enumerate(rows) if MARK_TEXT in r[data_index]
    ]


def _subjects(found: list[tuple[int, dict[str, Any]]]) -> set[str]:
    return {
        v[MARK]["s"] for _, obj in found for v in obj.values() if isinstance(v, dict) and MARK in v
    }


def _opened(
    rows: Sequence[Row],
    found: list[tuple[int, dict[str, Any]]],
    keys: dict[str, bytes],
    data_index: int,
    type_index: int,
) -> list[Row]:
    out = list(rows)
    for i, obj in found:
        type_name = rows[i][type_index]
        for name, value in obj.items():
            if not (isinstance(value, dict) and MARK in value and len(value) == 1):
                continue
            subject = value[MARK]["s"]
            key = keys.get(subject)
            if key is None:
                obj[name] = FORGOTTEN
                continue
            known, clear = open_sealed(value[MARK], type_name, name, subject, key)
            obj[name] = clear if known else FORGOTTEN
        out[i] = rows[i]._replace(**{rows[i]._fields[data_index]: dumps(obj)})  # type: ignore[attr-defined]
    return out


def unseal(
    rows: Sequence[Row],
    load_keys: Callable[[Iterable[str]], dict[str, bytes]],
    data_index: int = 2,
    type_index: int = 1,
) -> list[Row]:
    """Rows with their personal values decrypted, or :data:`FORGOTTEN` where the key is gone.

    ``rows`` are NamedTuples with the JSON text at ``data_index``; rows without
    sealed values are returned as they are (one substring test each), and
    ``load_keys`` is called only when a row holds one.
    """
    found = _sealed_rows(rows, data_index)
    if not found:
        return list(rows)
    return _opened(rows, found, load_keys(_subjects(found)), data_index, type_index)


def unseal_steps(rows: Sequence[Row]) -> Steps[list[Row]]:
    """:func:`unseal` of event rows as reader requests (the I/O-free core's way): one
    ``subject_keys`` request, only when a row holds a sealed value."""
    found = _sealed_rows(rows, 2)
    if not found:
        return list(rows)
    keys: dict[str, bytes] = yield call("subject_keys", _subjects(found))
    return _opened(rows, found, keys, 2, 1)


def _strings(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        if value and value != FORGOTTEN:
            out.add(value)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)


def clear_values(rows: Iterable[tuple[str, str]], subject: str, key: bytes) -> set[str]:
    """The subject's personal string values in these (type, data) event rows, decrypted.

    The :data:`_sealed.Reveal` a store is given to forget a subject: it scrubs
    these values out of what it keeps in clear (archive base snapshots, error texts).
    """
    out: set[str] = set()
    for type_name, data in rows:
        try:
            obj = json.loads(data)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        for name, value in obj.items():
            if isinstance(value, dict) and MARK in value and value[MARK].get("s") == subject:
                known, clear = open_sealed(value[MARK], type_name, name, subject, key)
                if known:
                    _strings(clear, out)
    return out


_CHUNK = 500  # rows opened together: one read of their subjects' keys


def _unsealed(
    rows: Iterable[E], load_keys: Callable[[Iterable[str]], dict[str, bytes]]
) -> Iterator[E]:
    """``rows`` opened lazily, :data:`_CHUNK` at a time."""
    for chunk in chunked(rows):
        yield from unseal(chunk, load_keys)


def chunked(rows: Iterable[E], size: int = _CHUNK) -> Iterator[list[E]]:
    """``rows`` in lists of ``size`` (the last one shorter), read lazily."""
    it = iter(rows)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class _Unsealing:
    """A store's reader whose event reads come back opened: personal values in clear,
    or FORGOTTEN where the key is gone. Every other call goes to the reader as it is."""

    __slots__ = ("reader",)

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)

    def _keys(self, subjects: Iterable[str]) -> dict[str, bytes]:
        # Looked up only when a row holds a sealed value: a log-only reader has no keys.
        return self.reader.subject_keys(subjects)  # type: ignore[no-any-return]

    def events(self, positions: Sequence[int]) -> Iterator[StoredEvent]:
        return _unsealed(self.reader.events(positions), self._keys)

    def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        return unseal(self.reader.events_after(after, limit), self._keys)

    def iter_events(
        self, after: int = 0, until: int | None = None, chunk: int = 1000
    ) -> Iterator[StoredEvent]:
        return _unsealed(self.reader.iter_events(after, until, chunk), self._keys)

    def find_events(self, query: EventQuery, limit: int) -> list[StoredEvent]:
        return unseal(self.reader.find_events(query, limit), self._keys)


R = TypeVar("R")


def unsealing(reader: R) -> R:
    """``reader`` with its event reads (``events``, ``events_after``, ``iter_events``,
    ``find_events``) opened; the keys are read through the same reader, in its
    transaction. Stores return events sealed: the core reads through this."""
    if isinstance(reader, _Unsealing):
        return reader
    return typing.cast(R, _Unsealing(reader))


def without_personal(cls: type, data: str) -> str:
    """The JSON minus the personal fields (what ``event_random`` is seeded with)."""
    spec = personal_spec(cls)
    if spec is None:
        return data
    obj = json.loads(data)
    for name in spec.fields:
        obj.pop(name, None)
    return dumps(obj)
