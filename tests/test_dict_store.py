"""A log-only store in dicts passes the log's contract and the README tour; the
capabilities it lacks fail at once, naming themselves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from playthrough import Engine
from playthrough._errors import CapabilityMissing
from playthrough._stores._base import CommitExtras, Store
from playthrough._stores._capabilities import CAPABILITIES, capabilities
from playthrough._stores.sqlite import SQLiteStore
from playthrough.testing.store_contract import A1, LogContract, ev

from .dict_store import DictStore

# the tour defines classes with short names: they leave the registry after each test
pytestmark = pytest.mark.usefixtures("isolated_registry")

README = Path(__file__).resolve().parent.parent / "README.md"


class TestDictStore(LogContract):
    def make_store(self) -> Store:
        return DictStore()


def test_the_readme_tour_runs_on_the_dict_store() -> None:
    [tour] = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[:1]
    opened = 'with Engine.open("sqlite:///bank.db") as engine:'
    assert opened in tour
    namespace: dict[str, object] = {"__name__": "readme_tour", "DictStore": DictStore}
    exec(
        compile(tour.replace(opened, "with Engine(DictStore()) as engine:"), "README", "exec"),
        namespace,
    )
    committed = namespace["committed"]
    assert isinstance(committed, list) and [e.id for e in committed] == [1, 2]


def test_a_store_names_its_capabilities() -> None:
    assert capabilities(DictStore()) == ("log",)
    assert capabilities(DictStore) == ("log",)
    assert capabilities(SQLiteStore()) == CAPABILITIES


@pytest.mark.parametrize(
    ("call", "capability", "method"),
    [
        (lambda s: s.claim_due("2026", "2027", "me", 1), "lifecycle", "claim_due"),
        (lambda s: s.ensure_subject_keys({"ada": b"k"}), "lifecycle", "ensure_subject_keys"),
        (lambda s: s.archive(1, [], None, lambda r: None), "maintenance", "archive"),
        (lambda s: s.rebuild_heads(), "maintenance", "rebuild_heads"),
        (lambda s: s.follow("f", 10).__enter__(), "read side", "follow"),
    ],
)
def test_a_missing_capability_is_a_clear_error(call: object, capability: str, method: str) -> None:
    store = DictStore()
    with pytest.raises(
        CapabilityMissing, match=f"DictStore has no {capability} capability: {method}"
    ) as caught:
        call(store)  # type: ignore[operator]
    assert (caught.value.capability, caught.value.method) == (capability, method)


def test_a_missing_read_capability_is_a_clear_error() -> None:
    store = DictStore()
    with store.reader() as reader:
        with pytest.raises(CapabilityMissing, match="no lifecycle capability: completions"):
            reader.completions([A1])
        with pytest.raises(CapabilityMissing, match="no read side capability: followers"):
            reader.followers()
        assert reader.head() == 0


def test_a_commit_needing_the_lifecycle_is_refused_and_writes_nothing() -> None:
    store = DictStore()
    extras = CommitExtras(reopened=(A1,))
    with pytest.raises(CapabilityMissing, match=r"no lifecycle capability.*nothing was written"):
        store.append([ev((A1, 0))], {A1: None}, extras=extras)
    with store.reader() as reader:
        assert reader.head() == 0


def test_an_engine_feature_that_needs_a_missing_capability_names_it() -> None:
    with Engine(DictStore()) as engine:
        with pytest.raises(CapabilityMissing, match="no read side capability"):
            engine.followers()
