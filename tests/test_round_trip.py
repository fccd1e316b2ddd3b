"""Values that must survive the round trip through the store.

- state ids are keyed by their normalised value: a UUID id given in any
  accepted representation is the same state for a fresh engine (property test);
- ``None`` for an optional ``state_id`` field means "this event does not touch
  that state": no phantom state, no coupling through it;
- every state and event value the library writes reads back equal: dict keys
  that JSON cannot carry are refused when the class is defined, naming the field.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playthrough import Engine, Event, SingletonState, State, state_id
from playthrough._model import key_of
from playthrough.errors import DefinitionError, PlaythroughError
from playthrough.testing import reference_states


@attrs.define
class Wallet(State, type_name="t.rt.Wallet"):
    coins: int = 0
    referrals: int = 0


@attrs.define
class Minted(Event, type_name="t.rt.Minted"):
    wallet_id: uuid.UUID = state_id(Wallet)
    coins: int = 1

    def apply(self, wallet: Wallet) -> None:
        wallet.coins += self.coins


@attrs.define
class Shared(Event, type_name="t.rt.Shared"):
    wallet_ids: list[uuid.UUID] = state_id(Wallet, many=True)

    def apply(self, wallets: list[Wallet]) -> None:
        for wallet in wallets:
            wallet.coins += 10


def _representations(u: uuid.UUID) -> list[object]:
    text = str(u)
    return [u, text, text.upper(), u.hex, "{" + text + "}", u.urn]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ids=st.lists(st.uuids(), min_size=1, max_size=3, unique=True),
    fires=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 5), st.integers(1, 9), st.booleans()),
        min_size=1,
        max_size=12,
    ),
)
def test_every_accepted_uuid_representation_keys_the_same_state(
    tmp_path_factory: pytest.TempPathFactory,
    ids: list[uuid.UUID],
    fires: list[tuple[int, int, int, bool]],
) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('rt') / 'w.db'}"
    with Engine.open(url) as engine:
        for which, form, coins, many in fires:
            u = ids[which % len(ids)]
            rep = _representations(u)[form]
            if many:
                engine.fire(Shared(wallet_ids=[rep]))  # type: ignore[list-item]
            else:
                engine.fire(Minted(wallet_id=rep, coins=coins))  # type: ignore[arg-type]
        live = {u: engine.load(Wallet, u).coins for u in ids}
        committed = engine.commit()
    expected = reference_states(committed)
    with Engine.open(url) as fresh:
        for u in ids:
            loaded = fresh.load(Wallet, u)
            want = expected.get(key_of(Wallet, u))
            assert loaded.coins == live[u] == (want.coins if want else 0)  # type: ignore[attr-defined]
        report = fresh.admin.verify()
        assert report.ok, report.to_text()


# ---------------------------------------------------------------------- None ids


@attrs.define
class Counter(SingletonState, type_name="t.rt.Counter"):
    seen: int = 0


@attrs.define
class Joined(Event, type_name="t.rt.Joined"):
    wallet_id: int = state_id(Wallet)
    referrer_id: int | None = state_id(Wallet, default=None)

    def apply(self, wallet: Wallet, referrer: Wallet | None) -> None:
        wallet.coins += 1
        if referrer is not None:
            referrer.referrals += 1


def test_a_none_state_id_touches_no_state(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    with Engine.open(url) as engine:
        engine.fire(Joined(wallet_id=1))
        engine.fire(Joined(wallet_id=2))  # unrelated to 1: no phantom state couples them
        engine.fire(Joined(wallet_id=3, referrer_id=1))
        engine.commit()
        with engine.store.reader() as reader:
            links = reader.links_between(0, 3)
        assert sorted((link.position, link.key.id) for link in links) == [
            (1, "1"),
            (2, "2"),
            (3, "1"),
            (3, "3"),
        ]
    with Engine.open(url) as fresh:
        one = fresh.load(Wallet, 1)
        assert (one.coins, one.referrals) == (1, 1)
        plan = fresh.explain(Wallet, 2)
        assert set(plan.states) == {key_of(Wallet, 2)}  # nothing pulled in through an empty id
        assert set(plan.positions) <= {2}
        assert fresh.admin.verify().ok


# ---------------------------------------------------------------------- round trip of values


@attrs.define
class Scores(State, type_name="t.rt.Scores"):
    counts: dict[int, int] = attrs.field(factory=dict)
    by_wallet: dict[uuid.UUID, list[int]] = attrs.field(factory=dict)


@attrs.define
class Scored(Event, type_name="t.rt.Scored"):
    scores_id: int = state_id(Scores)
    slot: int = 0
    tally: dict[int, int] = attrs.field(factory=dict)

    def apply(self, scores: Scores) -> None:
        scores.counts[self.slot] = scores.counts.get(self.slot, 0) + 1
        scores.by_wallet.setdefault(uuid.UUID(int=abs(self.slot)), []).append(len(self.tally))


def test_int_and_uuid_dict_keys_survive_snapshots(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dict.db'}"
    with Engine.open(url) as engine:
        engine.fire(Scored(scores_id=1, slot=7, tally={3: 4}))
        engine.fire(Scored(scores_id=1, slot=7))
        engine.fire(Scored(scores_id=1, slot=-2))
        engine.commit()
        engine.admin.snapshot()
    with Engine.open(url) as fresh:
        scores = fresh.load(Scores, 1)  # from the library's own snapshot
        assert scores.counts == {7: 2, -2: 1}
        assert scores.by_wallet[uuid.UUID(int=7)] == [1, 0]
        assert fresh.explain(Scores, 1).events_played == 0
        assert fresh.admin.verify().ok


@pytest.mark.parametrize(
    ("annotation", "field"),
    [
        ("dict[bool, int]", "flags"),
        ("dict[float, int]", "flags"),
        ("list[dict[tuple[int, int], int]]", "flags"),
        ("dict[str, dict[bool, int]] | None", "flags"),
    ],
)
def test_a_dict_key_json_cannot_carry_is_refused_at_definition(annotation: str, field: str) -> None:
    namespace: dict[str, object] = {}
    source = f"""
import attrs
from playthrough import State, Event, state_id

@attrs.define
class BadState(State, type_name="t.rt.bad.{abs(hash(annotation))}"):
    {field}: {annotation} = None
"""
    with pytest.raises(DefinitionError, match=rf"BadState\.{field}.*dict key"):
        exec(compile(source, "<test>", "exec"), namespace)
    source_event = f"""
import attrs
from playthrough import Event

@attrs.define
class BadEvent(Event, type_name="t.rt.badev.{abs(hash(annotation))}"):
    {field}: {annotation} = None
"""
    with pytest.raises(DefinitionError, match=rf"BadEvent\.{field}.*dict key"):
        exec(compile(source_event, "<test>", "exec"), namespace)


@attrs.define
class Loose(State, type_name="t.rt.Loose"):
    anything: Any = None


@attrs.define
class Loosened(Event, type_name="t.rt.Loosened"):
    loose_id: int = state_id(Loose)

    def apply(self, loose: Loose) -> None:
        loose.anything = (1, 2)  # an `Any` field: JSON gives back a list


def test_a_value_that_would_not_read_back_equal_is_never_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loose.db'}"
    with Engine.open(url) as engine:  # the commit writes the heads value: refused first
        engine.fire(Loosened(loose_id=1))
        with pytest.raises(PlaythroughError, match=r"t\.rt\.Loose\(1\).*'anything'.*\[1, 2\]"):
            engine.commit()
        assert engine.head() == 0
    with Engine.open(url, head_values=False) as engine:  # the snapshot is refused
        engine.fire(Loosened(loose_id=1))
        engine.commit()
        with pytest.raises(PlaythroughError, match=r"t\.rt\.Loose\(1\).*'anything'.*\[1, 2\]"):
            engine.admin.snapshot()
        with engine.store.reader() as reader:
            assert list(reader.iter_snapshots()) == []


def test_an_event_field_holding_a_state_is_refused_at_definition() -> None:
    with pytest.raises(DefinitionError, match=r"Carrier\.wallet: holds a State \(Wallet\)"):

        @attrs.define
        class Carrier(Event, type_name="t.rt.Carrier"):
            wallet: Wallet = attrs.field(factory=Wallet)
