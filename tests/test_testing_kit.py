"""The testing kit: the pytest plugin (through its entry point), given/when/then,
the Hypothesis strategies derived from attrs event classes, and the ready
property ``check_reconstitution``.

The plugin tests run a user's test file with ``pytester`` and declare no
plugin there: the fixtures come from the ``pytest11`` entry point.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal, Optional

import attrs
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from playthrough import Engine, Event, State, state_id
from playthrough._serialization import decode, encode_event
from playthrough.errors import EventRejected
from playthrough.examples import bank, game, shop, shop_flawed
from playthrough.examples.tamper import corrupt_snapshot
from playthrough.testing import (
    Scenario,
    assert_reconstitutes,
    check_reconstitution,
    event_strategy,
    histories,
    play_history,
    reference_states,
)

pytest_plugins = ("pytester",)

FAST = settings(max_examples=25, deadline=None, database=None)

# --------------------------------------------------------------------------- the plugin

USER_DOMAIN = """
from __future__ import annotations

import attrs

from playthrough import Engine, Event, SingletonState, State, state_id
from playthrough.errors import EventRejected


@attrs.define
class UserAccount(State, type_name="kit_user.Account"):
    owner: str = ""
    balance: int = 0


@attrs.define
class UserLedger(SingletonState, type_name="kit_user.Ledger"):
    moves: int = 0
    large: list[int] = attrs.field(factory=list)


@attrs.define
class Opened(Event, type_name="kit_user.Opened"):
    account_id: int = state_id(UserAccount)
    owner: str = ""

    def validate(self, account: UserAccount) -> None:
        if account.owner:
            raise EventRejected(f"account {self.account_id} is already open")

    def apply(self, account: UserAccount) -> None:
        account.owner = self.owner


@attrs.define
class Deposited(Event, type_name="kit_user.Deposited"):
    account_id: int = state_id(UserAccount)
    amount: int = 0

    def apply(self, account: UserAccount) -> None:
        account.balance += self.amount


@attrs.define
class Moved(Event, type_name="kit_user.Moved"):
    source_id: int = state_id(UserAccount)
    target_id: int = state_id(UserAccount)
    amount: int = 0

    def validate(self, source: UserAccount) -> None:
        if source.balance < self.amount:
            raise EventRejected(f"insufficient funds: {self.source_id} has {source.balance}")

    def apply(self, source: UserAccount, target: UserAccount, ledger: UserLedger) -> None:
        source.balance -= self.amount
        target.balance += self.amount
        ledger.moves += 1

    def handle(self, engine: Engine) -> None:
        if self.amount >= 50:
            engine.fire(Flagged(move=self.id or 0))


@attrs.define
class Flagged(Event, type_name="kit_user.Flagged"):
    move: int = 0

    def apply(self, ledger: UserLedger) -> None:
        ledger.large.append(self.move)
"""

USER_TESTS = """
from kit_domain import UserAccount, Deposited, Flagged, UserLedger, Moved, Opened
from playthrough.testing import scenario


def test_the_fixture_gives_an_engine(playthrough_engine):
    assert playthrough_engine.head() == 0
    playthrough_engine.fire(Opened(account_id=1, owner="ada"))
    playthrough_engine.commit()
    assert playthrough_engine.load(UserAccount, 1).owner == "ada"


def test_each_test_gets_a_fresh_one(playthrough_engine):
    assert playthrough_engine.head() == 0


def test_given_when_then(playthrough_scenario):
    (
        playthrough_scenario.given(
            Opened(account_id=1, owner="ada"), Deposited(account_id=1, amount=100)
        )
        .when(Moved(source_id=1, target_id=2, amount=30))
        .then({
            (UserAccount, 1): UserAccount(owner="ada", balance=70),
            (UserAccount, 2): UserAccount(balance=30),
            UserLedger: UserLedger(moves=1),
        })
    )


def test_a_rejection(playthrough_scenario):
    error = (
        playthrough_scenario.given(Opened(account_id=1, owner="ada"))
        .when(Moved(source_id=1, target_id=2, amount=5))
        .then_rejected(match="insufficient funds")
    )
    assert "has 0" in str(error)
    assert playthrough_scenario.engine.head() == 1


def test_follow_up_events(playthrough_engine):
    (
        scenario(playthrough_engine)
        .given([Opened(account_id=1, owner="ada"), Deposited(account_id=1, amount=80)])
        .when(Moved(source_id=1, target_id=2, amount=60))
        .then_committed(Moved(source_id=1, target_id=2, amount=60), Flagged(move=3))
        .then({UserLedger: UserLedger(moves=1, large=[3])})
    )
"""

USER_FAILURES = """
from kit_domain import UserAccount, Deposited, Moved, Opened


def test_wrong_balance(playthrough_scenario):
    (
        playthrough_scenario.given(
            Opened(account_id=1, owner="ada"), Deposited(account_id=1, amount=100)
        )
        .when(Moved(source_id=1, target_id=2, amount=30))
        .then({(UserAccount, 1): UserAccount(owner="ada", balance=99)})
    )


def test_expected_a_rejection(playthrough_scenario):
    playthrough_scenario.when(Opened(account_id=1, owner="ada")).then_rejected()


def test_rejected_for_another_reason(playthrough_scenario):
    (
        playthrough_scenario.given(Opened(account_id=1, owner="ada"))
        .when(Opened(account_id=1, owner="bob"))
        .then_rejected(match="insufficient")
    )


def test_states_after_a_rejection(playthrough_scenario):
    (
        playthrough_scenario.given(Opened(account_id=1, owner="ada"))
        .when(Opened(account_id=1, owner="bob"))
        .then({(UserAccount, 1): UserAccount(owner="ada")})
    )


def test_a_given_event_is_rejected(playthrough_scenario):
    playthrough_scenario.given(Opened(account_id=1, owner="a"), Opened(account_id=1, owner="b"))
"""


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(kit_domain=USER_DOMAIN)
    pytester.syspathinsert()
    return pytester


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("playthrough") == "playthrough.testing.plugin"


def test_fixtures_and_helpers_work_in_a_users_test_file(user_project: pytest.Pytester) -> None:
    user_project.makepyfile(test_user=USER_TESTS)
    result = user_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_failing_scenarios_fail_with_useful_messages(user_project: pytest.Pytester) -> None:
    user_project.makepyfile(test_user_failures=USER_FAILURES)
    result = user_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines(
        [
            "*then: states differ from the expected ones*",
            "*balance: expected 99, got 70*",
            "*expected Opened(account_id=1, owner='ada') to raise EventRejected, but it was*",
            "*message 'account 1 is already open' does not match 'insufficient'*",
            "*when: Opened(account_id=1, owner='bob') failed with EventRejected*",
            "*given: Opened(account_id=1, owner='b') was rejected: account 1 is already open*",
        ],
        consecutive=False,
    )


def test_without_the_plugin_the_fixture_is_missing(user_project: pytest.Pytester) -> None:
    user_project.makepyfile(test_user=USER_TESTS)
    result = user_project.runpytest("-p", "no:playthrough", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=5)
    result.stdout.fnmatch_lines(["*fixture 'playthrough_engine' not found*"])


FILE_STORE_TEST = """
def test_a_file_per_test(playthrough_engine, tmp_path):
    assert playthrough_engine.store.url == f"sqlite:///{tmp_path / '%s'}"
    assert playthrough_engine.head() == 0
"""


def test_the_url_option_gives_each_test_a_sqlite_file(user_project: pytest.Pytester) -> None:
    user_project.makepyfile(test_file_store=FILE_STORE_TEST % "chosen.db")
    result = user_project.runpytest("--playthrough-url", "sqlite:///chosen.db")
    result.assert_outcomes(passed=1)


def test_the_environment_names_the_url_too(
    user_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAYTHROUGH_TEST_URL", "sqlite:///from-env.db")
    user_project.makepyfile(test_file_store=FILE_STORE_TEST % "from-env.db")
    result = user_project.runpytest()
    result.assert_outcomes(passed=1)


PG_TEST = """
import os

from kit_domain import UserAccount, Opened


def record(engine):
    with open(os.environ["KIT_SCHEMAS"], "a") as out:
        out.write(engine.store.schema + "\\n")


def test_first(playthrough_engine):
    record(playthrough_engine)
    assert playthrough_engine.head() == 0
    playthrough_engine.fire(Opened(account_id=1, owner="ada"))
    playthrough_engine.commit()
    assert playthrough_engine.head() == 1


def test_second(playthrough_engine):
    record(playthrough_engine)
    assert playthrough_engine.head() == 0
"""


def test_a_postgres_url_gives_each_test_a_schema_dropped_after(
    user_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    import psycopg

    listing = user_project.path / "schemas.txt"
    monkeypatch.setenv("KIT_SCHEMAS", str(listing))
    user_project.makepyfile(test_pg=PG_TEST)
    result = user_project.runpytest("--playthrough-url", pg_url)
    result.assert_outcomes(passed=2)
    schemas = listing.read_text().split()
    assert len(set(schemas)) == 2 and all(s.startswith("pt_test_") for s in schemas)
    with psycopg.connect(pg_url) as conn:
        left = conn.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ANY(%s)",
            (schemas,),
        ).fetchall()
    assert left == []


# --------------------------------------------------------------------------- Scenario, directly


def test_then_catches_a_live_state_the_log_does_not_replay() -> None:
    with Engine.open("sqlite://") as engine:
        story = Scenario(engine).given(
            shop_flawed.OrderOpened(order_id=10, customer=1),
            shop_flawed.ItemAdded(order_id=10, sku="pen", price=Decimal("1.20")),
        )
        story.when(shop_flawed.OrderPlaced(order_id=10, customer_id=1))
        live = engine.load(shop_flawed.Order, 10)
        expected = attrs.evolve(live)
        with pytest.raises(AssertionError, match="the log replays to another one") as caught:
            story.then({(shop_flawed.Order, 10): expected})
        assert "placed_at" in str(caught.value)


def test_the_fixed_twin_passes_the_same_scenario() -> None:
    with Engine.open("sqlite://") as engine:
        story = Scenario(engine).given(
            shop.OrderOpened(order_id=10, customer=1),
            shop.ItemAdded(order_id=10, sku="pen", price=Decimal("1.20")),
        )
        placed = shop.OrderPlaced(order_id=10, customer_id=1)
        story.when(placed)
        order = engine.load(shop.Order, 10)
        assert order.placed_at == placed.fired_at
        story.then(
            {
                (shop.Order, 10): attrs.evolve(order),
                (shop.Customer, 1): shop.Customer(orders_placed=1, spent=Decimal("1.20")),
            }
        )


# --------------------------------------------------------------------------- strategies


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.define
class Inner:
    x: int = 0
    tags: list[str] = attrs.field(factory=list)


@attrs.define
class KitBox(State, type_name="kit_t.Box"):
    seen: int = 0


@attrs.define
class KitShelf(State, type_name="kit_t.Shelf"):
    crates: list[str] = attrs.field(factory=list)


@attrs.define
class KitCrate(State, type_name="kit_t.Crate"):
    shelves: list[str] = attrs.field(factory=list)


@attrs.define
class Everything(Event, type_name="kit_t.Everything"):
    box_id: int = state_id(KitBox)
    count: int = 0
    name: str = ""
    flag: bool = False
    ratio: float = 0.0
    price: Decimal = Decimal(0)
    when: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    day: date = date(2020, 1, 1)
    ref: uuid.UUID = uuid.UUID(int=0)
    colour: Colour = Colour.RED
    items: list[int] = attrs.field(factory=list)
    note: str | None = None
    maybe: Optional[int] = None  # noqa: UP045 - the old spelling is a type users write too
    pair: tuple[int, str] = (0, "")
    counts: dict[str, int] = attrs.field(factory=dict)
    level: Literal["low", "high"] = "low"
    inner: Inner = attrs.field(factory=Inner)

    def apply(self, box: KitBox) -> None:
        box.seen += 1


@attrs.define
class Stacked(Event, type_name="kit_t.Stacked"):
    shelf_id: str = state_id(KitShelf, default="")
    crate_ids: list[uuid.UUID] = state_id(KitCrate, many=True)

    def apply(self, shelf: KitShelf, crates: list[KitCrate]) -> None:
        for crate in crates:
            shelf.crates.append(str(crate.id))
            crate.shelves.append(self.shelf_id)


@FAST
@given(event_strategy(Everything))
def test_field_values_come_from_the_field_types(event: Everything) -> None:
    expected = {
        "count": int, "name": str, "flag": bool, "ratio": float, "price": Decimal,
        "when": datetime, "day": date, "ref": uuid.UUID, "colour": Colour, "items": list,
        "pair": tuple, "counts": dict, "inner": Inner,
    }  # fmt: skip
    for name, kind in expected.items():
        assert isinstance(getattr(event, name), kind), name
    assert type(event.count) is int and type(event.flag) is bool
    assert all(type(i) is int for i in event.items)
    assert event.note is None or isinstance(event.note, str)
    assert event.maybe is None or type(event.maybe) is int
    assert event.level in ("low", "high")
    assert event.when.tzinfo is not None
    assert event.box_id in (1, 2, 3)
    # Every drawn value survives playthrough's JSON unchanged.
    assert decode(Everything, encode_event(event), "a drawn event") == event


@FAST
@given(event_strategy(Stacked, id_pool=2))
def test_state_ids_come_from_a_small_pool_of_the_fields_id_type(event: Stacked) -> None:
    assert event.shelf_id in ("s1", "s2")
    assert 1 <= len(event.crate_ids) <= 2
    assert len(set(event.crate_ids)) == len(event.crate_ids)
    assert set(event.crate_ids) <= {uuid.UUID(int=1), uuid.UUID(int=2)}


@FAST
@given(
    event_strategy(Everything, overrides={"count": st.just(7), (Everything, "name"): st.just("x")})
)
def test_overrides_replace_a_fields_strategy(event: Everything) -> None:
    assert (event.count, event.name) == (7, "x")


def test_histories_collide_on_states() -> None:
    def collide(history: list[Event]) -> bool:
        boxes = [e.box_id for e in history if isinstance(e, Everything)]
        return len(boxes) != len(set(boxes))

    generate_only = settings(FAST, max_examples=200, phases=[Phase.generate])
    example = find(histories([Everything, Stacked], id_pool=2), collide, settings=generate_only)
    assert collide(example)


def test_a_field_of_an_unresolvable_type_keeps_its_default() -> None:
    class Local(enum.Enum):
        ONE = 1

    @attrs.define
    class Odd(Event, type_name="kit_t.Odd"):
        box_id: int = state_id(KitBox)
        local: Local = Local.ONE
        count: int = 0

        def apply(self, box: KitBox) -> None:
            box.seen += self.count

    @FAST
    @given(event_strategy(Odd))
    def check(event: Odd) -> None:
        assert event.local is Local.ONE
        assert type(event.count) is int

    check()


# --------------------------------------------------------------------------- the property


def test_play_history_skips_rejected_events() -> None:
    with Engine.open("sqlite://") as engine:
        committed = play_history(
            engine,
            [
                bank.AccountOpened(account_id=1, owner="ada"),
                bank.Deposited(account_id=1, amount=-5),  # rejected: not positive
                bank.Transferred(source_id=1, target_id=2, amount=10),  # rejected: no funds
                bank.AccountOpened(account_id=1, owner="bob"),  # rejected: already open
                bank.Deposited(account_id=1, amount=1_500),
                bank.Transferred(source_id=1, target_id=2, amount=1_200),
            ],
        )
        assert [type(e).__name__ for e in committed] == [
            "AccountOpened", "Deposited", "Transferred", "TransferFlagged",
        ]  # fmt: skip
        assert engine.load(bank.Account, 1) == bank.Account(owner="ada", balance=300)


def test_the_rejections_to_skip_can_be_widened() -> None:
    class Refused(Exception):
        pass

    with Engine.open("sqlite://") as engine:
        with pytest.raises(EventRejected):
            play_history(engine, [bank.Deposited(account_id=1, amount=0)], rejections=(Refused,))
        assert (
            play_history(
                engine,
                [bank.Deposited(account_id=1, amount=0)],
                rejections=(Refused, EventRejected),
            )
            == []
        )


def test_assert_reconstitutes_passes_for_any_placement_on_a_story() -> None:
    with Engine.open("sqlite://") as engine:
        committed = game.story(engine)
        keys = sorted(reference_states(committed))
        assert_reconstitutes(engine, snapshots=[(6, keys[:1]), (2, keys), (4, keys[1:])])


def test_assert_reconstitutes_catches_a_corrupted_snapshot() -> None:
    with Engine.open("sqlite://", head_values=False) as engine:  # loads go through the snapshot
        bank.story(engine)
        engine.admin.snapshot()
        corrupt_snapshot(engine, bank.Account, 2, changes={"balance": 9_999})
        with pytest.raises(AssertionError) as caught:
            assert_reconstitutes(engine, positions=[])
    message = str(caught.value)
    assert "fresh load of bank.Account(2) at the head (6)" in message
    assert "balance: reference 1500, got 9999" in message


@pytest.mark.parametrize(
    "classes",
    [
        [bank.AccountOpened, bank.Deposited, bank.Transferred, bank.TransferFlagged],
        [game.PlayerJoined, game.ItemGranted, game.PlayerEnabledModifier],
        [shop.CustomerRegistered, shop.OrderOpened, shop.ItemAdded, shop.OrderPlaced,
         shop.OrderTagged],
        [Everything, Stacked],
    ],
    ids=["bank", "game", "shop", "kit"],
)  # fmt: skip
def test_check_reconstitution_holds_for_sound_domains(classes: list[type[Event]]) -> None:
    check_reconstitution(classes, max_examples=15, id_pool=2, max_events=10)


def test_check_reconstitution_fails_for_a_wall_clock_apply() -> None:
    quick = settings(max_examples=10, deadline=None, database=None, phases=[Phase.generate])
    with pytest.raises(AssertionError, match="placed_at"):
        check_reconstitution(
            [shop_flawed.OrderOpened, shop_flawed.ItemAdded, shop_flawed.OrderPlaced],
            id_pool=1,
            settings_=quick,
        )


def test_the_kit_exports_its_names() -> None:
    import playthrough.testing as kit

    for name in kit.__all__:
        assert getattr(kit, name) is not None, name
    with pytest.raises(AttributeError):
        kit.no_such_name  # noqa: B018
    assert Path(kit.__file__).parent.name == "testing"
