"""Loads agree with the log where features meet: metadata in cold loads, snapshot rows
without a position, replay of handle hooks, refused fires, and the types a commit writes.

Each test runs on SQLite and on PostgreSQL (a schema of its own) where both apply.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from playthrough import Engine, Event, State, state_id


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'exact.db'}"
    pg_url: str = request.getfixturevalue("pg_url")
    schema: str = request.getfixturevalue("pg_schema")
    return f"{pg_url}?schema={schema}"


# ---------------------------------------------------------------- metadata in every load


@attrs.define
class Audited(State, type_name="exact.Audited"):
    by: list[str] = attrs.field(factory=list)
    total: int = 0


@attrs.define
class AuditedChange(Event, type_name="exact.AuditedChange"):
    audited_id: int = state_id(Audited)
    amount: int = 0

    def apply(self, audited: Audited) -> None:
        audited.by.append(f"{self.metadata.get('user', '?')}/{self.correlation is not None}")
        audited.total += self.amount


def _audit_story(engine: Engine) -> list[str]:
    engine.fire(AuditedChange(audited_id=1, amount=2), metadata={"user": "ada"})
    engine.commit()
    with engine.metadata(user="grace"):
        engine.fire(AuditedChange(audited_id=1, amount=3))
    engine.commit()
    engine.fire(AuditedChange(audited_id=1, amount=5), metadata={"user": "alan"})
    engine.commit()
    return list(engine.load(Audited, 1).by)


def test_apply_reading_metadata_loads_the_same_cold_at_and_after_replay(url: str) -> None:
    with Engine.open(url) as engine:
        live = _audit_story(engine)
        assert live == ["ada/True", "grace/True", "alan/True"]
        head = engine.head()
    # A cold load that plays the log (no heads values, no snapshots).
    with Engine.open(url, head_values=False) as cold:
        cold.store.drop_snapshots(None)
        assert cold.load(Audited, 1).by == live
        assert cold.load(Audited, 1, at=head).by == live
        assert cold.load(Audited, 1, at=head - 1).by == live[:2]
    with Engine.open(url) as replayed:
        replayed.replay()
        assert replayed.load(Audited, 1).by == live
    with Engine.open(url, head_values=False) as again:
        again.store.drop_snapshots(None)
        assert again.load(Audited, 1).by == live
