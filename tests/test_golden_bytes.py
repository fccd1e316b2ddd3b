"""The canonical JSON the codec writes, byte for byte.

Heads values, snapshot fingerprints, ``verify`` digests and export checksums all
hash or compare this text, so a codec change that alters one byte of it (key
order, spacing, escapes, number or time formats, the shape of a sealed personal
value) must be a deliberate, visible decision: these expected strings fail
first.
"""

from __future__ import annotations

import enum
import hashlib
import os
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest

from playthrough import Event, State, state_id
from playthrough._personal import Personal, crypto_available, personal_spec, seal
from playthrough._serialization import decode, dumps, encode_event, encode_state
from playthrough._versions import fingerprint


class GoldenColour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.define
class GoldenInner:
    label: str = ""
    weights: list[float] = attrs.Factory(list)


@attrs.define
class GoldenState(State, type_name="golden.State"):
    count: int = 0
    big: int = 0
    ratio: float = 0.0
    text: str = ""
    flags: set[str] = attrs.Factory(set)
    by_id: dict[int, str] = attrs.Factory(dict)
    nested: dict[str, list[GoldenInner]] = attrs.Factory(dict)
    maybe: str | None = None
    colour: GoldenColour = GoldenColour.RED


@attrs.define
class GoldenHappened(Event, type_name="golden.Happened"):
    state: str = state_id(GoldenState)
    at: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    day: date = date(2000, 1, 1)
    ref: uuid.UUID = uuid.UUID(int=0)
    price: Decimal = Decimal("0")
    values: list[Any] = attrs.Factory(list)
    inner: GoldenInner = attrs.Factory(GoldenInner)
    text: str = ""


@attrs.define
class GoldenPersonal(Event, type_name="golden.Personal"):
    data_subject = "customer"
    customer: str = state_id(GoldenState)
    email: Personal[str] = ""
    note: str = ""


TEXT = 'é€𝄞 "quoted" back\\slash\nnew\ttab\x01\u2028 <>&\''

EVENT = GoldenHappened(
    state="s-1",
    at=datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    day=date(1999, 12, 31),
    ref=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    price=Decimal("1234.5600"),
    values=[
        0,
        -1,
        2**70,
        -(2**64),
        0.1,
        1e300,
        -0.0,
        5.0,
        1.5e-7,
        True,
        None,
        "",
        {"b": 1, "a": [2]},
    ],
    inner=GoldenInner(label="ü", weights=[0.5, 2.0]),
    text=TEXT,
)
EVENT_BYTES = (
    '{"at":"2024-02-29T23:59:58.123456+05:30","day":"1999-12-31","inner":{"label":"ü",'
    '"weights":[0.5,2.0]},"price":"1234.5600","ref":"12345678-1234-5678-1234-567812345678",'
    '"state":"s-1","text":"é€𝄞 \\"quoted\\" back\\\\slash\\nnew\\ttab\\u0001\u2028 <>&\'",'
    '"values":[0,-1,1180591620717411303424,-18446744073709551616,0.1,1e+300,-0.0,5.0,1.5e-07,'
    'true,null,"",{"a":[2],"b":1}]}'
)

STATE_BYTES = (
    '{"big":-1267650600228229401496703205376,"by_id":{"2":"two","10":"ten"},"colour":"blue",'
    '"count":7,"flags":["a","b","é"],"maybe":null,"nested":{"k":[{"label":"x",'
    '"weights":[1.25]}]},"ratio":0.30000000000000004,"text":"é€𝄞 \\"quoted\\" back\\\\slash'
    "\\nnew\\ttab\\u0001\u2028 <>&'\"}"
)


def golden_state() -> GoldenState:
    return GoldenState(
        count=7,
        big=-(2**100),
        ratio=0.1 + 0.2,
        text=TEXT,
        flags={"é", "b", "a"},
        by_id={10: "ten", 2: "two"},
        nested={"k": [GoldenInner(label="x", weights=[1.25])]},
        maybe=None,
        colour=GoldenColour.BLUE,
    )


def test_event_json_is_byte_stable() -> None:
    assert encode_event(EVENT) == EVENT_BYTES


def test_event_json_reads_back_and_encodes_to_the_same_bytes() -> None:
    back = decode(GoldenHappened, EVENT_BYTES, "golden event")
    assert back == EVENT
    assert encode_event(back) == EVENT_BYTES


def test_state_json_is_byte_stable() -> None:
    # int dict keys sort as numbers (2 before 10), then become strings; a declared
    # set[...] field is written as a sorted list
    assert encode_state(golden_state()) == STATE_BYTES
    back = decode(GoldenState, STATE_BYTES, "golden state")
    assert back == golden_state()
    assert encode_state(back) == STATE_BYTES


def test_plain_values_are_byte_stable() -> None:
    value = {"z": [1, 2.5, "ß"], "a": {"y": None, "b": False}, "é": "\x7f\x00"}
    assert dumps(value) == '{"a":{"b":false,"y":null},"z":[1,2.5,"ß"],"é":"\x7f\\u0000"}'
    # the digest over such text is what verify and export compare
    digest = hashlib.sha256(dumps(value).encode()).hexdigest()
    assert (
        digest
        == hashlib.sha256(
            '{"a":{"b":false,"y":null},"z":[1,2.5,"ß"],"é":"\x7f\\u0000"}'.encode()
        ).hexdigest()
    )


def test_class_fingerprints_are_stable() -> None:
    # snapshots and heads values are written with these marks and used only when
    # they match: a change here makes every stored snapshot of the class unusable
    assert fingerprint(GoldenState) == FINGERPRINTS["state"]
    assert fingerprint(GoldenHappened) == FINGERPRINTS["event"]


FINGERPRINTS = {"state": "d21e8faa248e111b", "event": "8a295ab45fd61b22"}


@pytest.mark.skipif(not crypto_available(), reason="needs the crypto extra")
def test_sealed_personal_value_is_byte_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    # a fixed nonce (os.urandom is where sealing draws it) makes the bytes repeatable
    monkeypatch.setattr(os, "urandom", lambda n: bytes(range(n)))
    event = GoldenPersonal(customer="c-1", email="ä@example.org", note="kept")
    spec = personal_spec(GoldenPersonal)
    assert spec is not None
    data = encode_event(event)
    assert data == '{"customer":"c-1","email":"ä@example.org","note":"kept"}'
    sealed = seal(data, "golden.Personal", spec, "c-1", bytes(range(32)))
    assert sealed == SEALED_BYTES


SEALED_BYTES = (
    '{"customer":"c-1","email":{"$pt_personal":{"s":"c-1","t":"a3180be4",'
    '"v":"AAECAwQFBgcICQoLZcFyW6Cdo3b9LfKl3psfT5i7GZssZ0CfA+8UUT6GQZ8="}},"note":"kept"}'
)
