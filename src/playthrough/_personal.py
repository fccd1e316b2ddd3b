"""Personal data and forgetting it: crypto-shredding in an append-only log.

An event field is *personal* when declared ``attrs.field(metadata={"personal":
True})`` or annotated ``Personal[str]``; the event class names the field that
identifies the data subject with ``data_subject = "customer_id"``. When the
event is committed, each personal value is encrypted (AES-GCM, the
``cryptography`` package: ``pip install 'playthrough[crypto]'``) with a
random 256-bit key of that subject, kept in the store's ``pt_subject_keys``
table; the stored JSON holds ``{"$pt_personal": {"s": subject, "v": ...}}`` in
place of the value.

Stores decrypt when they read events (:func:`unseal`), so every reader of the
log (loads, replays, verification, exports) sees the original JSON. Once
``Engine.forget(subject)`` has deleted the key, the value reads as
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
import hashlib
import json
import os
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, TypeVar

import attrs

from ._errors import CorruptionError, DefinitionError, PlaythroughError

#: What a personal value reads as once its subject was forgotten.
FORGOTTEN = "[forgotten]"

MARK = "$pt_personal"
_MARK_TEXT = '"$pt_personal"'


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


def key_id(key: bytes) -> str:
    """A short id of a key (not the key: 8 hex digits of a hash of it)."""
    return hashlib.sha256(b"playthrough key id\x00" + key).hexdigest()[:8]


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
    from ._model import encode_id

    return encode_id(getattr(event, spec.subject))


def seal(data: str, type_name: str, spec: PersonalSpec, subject: str, key: bytes) -> str:
    """The event JSON with each personal value encrypted under the subject's key."""
    from ._serialization import dumps

    obj = json.loads(data)
    aes = _aesgcm(key)
    kid = key_id(key)
    for name in spec.fields:
        nonce = os.urandom(12)
        sealed = aes.encrypt(nonce, dumps(obj[name]).encode(), _aad(type_name, name, subject))
        obj[name] = {MARK: {"s": subject, "t": kid, "v": base64.b64encode(nonce + sealed).decode()}}
    return dumps(obj)


Row = TypeVar("Row", bound=tuple[Any, ...])


def unseal(
    rows: Sequence[Row],
    load_keys: Callable[[Iterable[str]], dict[str, bytes]],
    data_index: int = 2,
    type_index: int = 1,
) -> list[Row]:
    """Rows with their personal values decrypted, or :data:`FORGOTTEN` where the key is gone.

    ``rows`` are NamedTuples with the JSON text at ``data_index``; rows without
    sealed values are returned as they are (one substring test each).
    """
    from ._serialization import dumps

    found = [
        (i, json.loads(r[data_index])) for i, r in enumerate(rows) if _MARK_TEXT in r[data_index]
    ]
    if not found:
        return list(rows)
    subjects = {
        v[MARK]["s"] for _, obj in found for v in obj.values() if isinstance(v, dict) and MARK in v
    }
    keys = load_keys(subjects)
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


def without_personal(cls: type, data: str) -> str:
    """The JSON minus the personal fields (what ``event_random`` is seeded with)."""
    spec = personal_spec(cls)
    if spec is None:
        return data
    from ._serialization import dumps

    obj = json.loads(data)
    for name in spec.fields:
        obj.pop(name, None)
    return dumps(obj)
