"""The compiled encoder of classes whose fields are all ``int``, ``str`` or ``bool``.

It must write, for every value, the bytes the general path writes (cattrs'
unstructure, then the canonical ``json`` encoder): heads values, fingerprints,
verify digests and export checksums hash them. Values it cannot take (a bool in
an int field, a float, an int past the str conversion limit) go the general
path, which stays the one that refuses bad values.
"""

from __future__ import annotations

import sys

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playthrough import Event, State, state_id
from playthrough._personal import Personal
from playthrough._serialization import (
    _FLAT,
    _flat,
    converter,
    dumps,
    encode_event,
    encode_state,
)


@attrs.define
class Flat(State, type_name="t.flat.Flat"):
    zeta: int = 0
    alpha: str = ""
    mid: bool = False
    b_2: int = 0


@attrs.define
class FlatHappened(Event, type_name="t.flat.Happened"):
    flat_id: str = state_id(Flat)
    n: int = 0
    ok: bool = True
    note: str = ""


@attrs.define
class NotFlat(State, type_name="t.flat.NotFlat"):
    n: int = 0
    ratio: float = 0.0


@attrs.define
class Maybe(State, type_name="t.flat.Maybe"):
    n: int | None = None


@attrs.define
class Secret(Event, type_name="t.flat.Secret"):
    data_subject = "who"
    who: str = ""
    name: Personal[str] = ""


def general(obj: object) -> str:
    return dumps(converter.unstructure(obj))


# Every code point, lone surrogates and control characters included.
texts = st.text(st.characters(min_codepoint=0, max_codepoint=sys.maxunicode), max_size=40)
ints = st.one_of(st.integers(), st.integers(min_value=-(10**60), max_value=10**60))
# Wrong types too: they must fall back, never be written another way.
anything = st.one_of(ints, texts, st.booleans(), st.floats(allow_nan=False), st.none())


@settings(max_examples=400, deadline=None)
@given(zeta=ints, alpha=texts, mid=st.booleans(), b_2=ints)
def test_a_flat_state_is_written_as_the_general_path_writes_it(
    zeta: int, alpha: str, mid: bool, b_2: int
) -> None:
    state = Flat(zeta=zeta, alpha=alpha, mid=mid, b_2=b_2)
    assert _flat(state) == general(state)
    assert encode_state(state) == general(state)


@settings(max_examples=400, deadline=None)
@given(flat_id=texts, n=anything, ok=anything, note=anything)
def test_an_event_with_values_of_other_types_takes_the_general_path(
    flat_id: str, n: object, ok: object, note: object
) -> None:
    event = FlatHappened(flat_id=flat_id, n=n, ok=ok, note=note)  # type: ignore[arg-type]
    fast = _flat(event)
    exact = type(n) is int and type(ok) is bool and type(note) is str
    try:
        expected = general(event)
    except (TypeError, ValueError):
        assert fast is None
        return
    assert fast == (expected if exact else None)
    assert encode_event(event) == expected


def test_known_bytes() -> None:
    state = Flat(zeta=-3, alpha='a"\\\n\x00é\U0001f600', mid=True, b_2=10**30)
    assert encode_state(state) == (
        '{"alpha":"a\\"\\\\\\n\\u0000é\U0001f600","b_2":1000000000000000000000000000000,'
        '"mid":true,"zeta":-3}'
    )
    assert encode_event(FlatHappened(flat_id="x", n=True)) == (
        '{"flat_id":"x","n":true,"note":"","ok":true}'  # a bool in an int field: general
    )


def test_an_int_past_the_conversion_limit_is_refused_by_the_general_path() -> None:
    if not hasattr(sys, "get_int_max_str_digits"):
        pytest.skip("no int conversion limit in this Python")
    huge = 10 ** (sys.get_int_max_str_digits() + 10)
    with pytest.raises(Exception, match="cannot encode state"):
        encode_state(Flat(zeta=huge))


def test_only_flat_classes_get_an_encoder() -> None:
    for obj in (Flat(), FlatHappened(flat_id="f"), NotFlat(), Maybe(), Secret(who="w")):
        _flat(obj)
    assert _FLAT[Flat] is not None
    assert _FLAT[FlatHappened] is not None
    assert _FLAT[NotFlat] is None  # a float field
    assert _FLAT[Maybe] is None  # an optional field
    assert _FLAT[Secret] is None  # a personal field is sealed after encoding
