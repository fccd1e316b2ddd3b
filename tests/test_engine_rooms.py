"""The engine's rooms: ``engine.log``, ``engine.states``, ``engine.scheduler``,
``engine.followers`` and ``engine.admin``, and the unit of work they share.

The rooms are built from the store, the reconstitutor and the unit of work,
never from the Engine: the tests below build them that way, with no Engine at
all, and check that the engine's rooms and its old methods answer alike.
"""

from __future__ import annotations

import ast
import io
import warnings
from datetime import timedelta
from pathlib import Path

import pytest

import playthrough
from playthrough import Engine
from playthrough._followers import Projection
from playthrough._lifecycle import Completions
from playthrough._model import key_of
from playthrough._reconstitution import StateReconstitutor
from playthrough._repository import StateRepository
from playthrough._rooms import Admin, Followers, Log, States
from playthrough._scheduling import ScheduleQueue
from playthrough._snapshots import SnapshotCoordinator
from playthrough._stores import FollowerTransaction, SQLiteStore
from playthrough._work import UnitOfWork
from playthrough.errors import NotFoundError, PlaythroughError
from playthrough.testing import ManualClock

from .domain import Bump, Copy, Node

SRC = Path(playthrough.__file__).parent


def _filled_store() -> SQLiteStore:
    store = SQLiteStore()
    with Engine(store) as engine:
        for n in range(3):
            engine.fire(Bump(node_id=n, amount=n + 1))
        engine.fire(Copy(src_id=0, dst_id=1))
    return store


def test_the_read_rooms_work_with_no_engine() -> None:
    store = _filled_store()
    reconstitutor = StateReconstitutor()
    work = UnitOfWork()
    log = Log(store, reconstitutor, None)
    states = States(store, reconstitutor, work)
    assert [type(e).__name__ for e in log.events()] == ["Bump", "Bump", "Bump", "Copy"]
    assert type(log.event(4)).__name__ == "Copy"
    assert [e.position for e in log.history(Node, 1).entries] == [2, 4]
    assert log.causes(4) == [] and log.effects(1) == []
    assert states.count(Node) == 3
    found = {n.id: n.value for n in states.find(Node, value__gt=1)}
    assert found == {1: 2 * 3 + 1 + 1, 2: 3}
    # find put the stored states in the unit of work's identity map, as the engine's does
    assert work.repository.get(key_of(Node, 2)) is not None
    assert states.info(Node, 1).events == 2
    out = io.BytesIO()
    assert log.export(out).count == 4


def test_the_admin_and_followers_rooms_work_with_no_engine() -> None:
    store = _filled_store()
    reconstitutor = StateReconstitutor()
    work = UnitOfWork()
    coordinator = SnapshotCoordinator(store, reconstitutor, work)
    engine = Engine(store)  # only for its handlers stage; the room never sees it
    admin = Admin(store, reconstitutor, work, coordinator, engine.admin._handlers)
    assert admin.snapshot([(Node, 0), (Node, 1)]) == 4
    assert admin.drop_snapshots() == 2
    assert admin.replay().played == 4
    assert admin.verify(subprocess_replay=False).ok
    assert admin.run_pending_handlers() == []

    class Seen(Projection):
        name = "seen"

        def __init__(self) -> None:
            self.positions: list[int] = []

        def on_Bump(self, event: Bump, tx: FollowerTransaction) -> None:
            assert event.id is not None
            self.positions.append(event.id)

    followers = Followers(store)
    seen = Seen()
    assert followers.run(seen, until_idle=True).processed == 3
    assert seen.positions == [1, 2, 3]
    assert [(f.name, f.position, f.lag) for f in followers()] == [("seen", 4, 0)]
    followers.reset("seen")
    assert followers()[0].position == 0


def test_the_engine_exposes_its_rooms() -> None:
    engine = Engine(_filled_store())
    assert isinstance(engine.log, Log)
    assert isinstance(engine.states, States)
    assert isinstance(engine.followers, Followers)
    assert isinstance(engine.admin, Admin)
    assert engine.log.event(1).id == 1
    assert engine.states.count(Node, value__gte=2) == 2
    assert engine.followers() == []
    assert repr(engine.log) == f"<Log of {engine.store.url}>"


def test_a_room_first_used_late_is_one_object_over_the_engines_unit_of_work() -> None:
    """Rooms are built when first used: one per engine, over the same unit of work."""
    engine = Engine(_filled_store())
    engine.fire(Bump(node_id=1))
    assert engine.admin is engine.admin and engine.log is engine.log
    assert engine.states is engine.states and engine.followers is engine.followers
    with pytest.raises(PlaythroughError, match="commit or discard pending events"):
        engine.admin.replay()
    engine.commit()
    assert isinstance(engine.log.event(engine.head()), Bump)


def test_the_scheduler_room_fires_through_the_commit_stages() -> None:
    clock = ManualClock()
    engine = Engine(SQLiteStore(), clock=clock)
    scheduler = engine.scheduler
    schedule_id = scheduler.schedule(Bump(node_id=7, amount=5), after=timedelta(minutes=1))
    assert scheduler.scheduled(schedule_id).status == "pending"
    assert scheduler.run_due() == []
    clock.advance(minutes=2)
    [done] = scheduler.run_due()
    assert (done.status, done.position) == ("fired", 1)
    assert engine.load(Node, 7).value == 5
    other = scheduler.schedule(Bump(node_id=7), after=timedelta(minutes=1))
    assert scheduler.cancel(other)
    assert scheduler.scheduled(other).status == "cancelled"


def test_a_setting_given_to_the_engine_reaches_the_rooms() -> None:
    engine = Engine(SQLiteStore())
    clock = ManualClock()
    engine.clock = clock  # as Scenario does
    schedule_id = engine.scheduler.schedule(Bump(node_id=1), after=timedelta(minutes=1))
    assert engine.scheduler.scheduled(schedule_id).due_at == clock.now() + timedelta(minutes=1)


def test_the_unit_of_work_takes_the_extras_from_its_participants() -> None:
    store = SQLiteStore()
    queue = ScheduleQueue()
    work = UnitOfWork([Completions(store), queue])
    assert not work.has_queued() and work.extras([]).empty
    queue.cancelled.append("some-id")
    assert work.has_queued()
    mark = work.mark()
    queue.cancelled.append("another")
    work.rollback(mark, {})
    assert queue.cancelled == ["some-id"]
    assert work.extras([]).cancel == ("some-id",)
    assert not work.has_queued()  # taken


def test_the_unit_of_work_refuses_a_swap_of_repositories_with_events_pending() -> None:
    engine = Engine(SQLiteStore())
    engine.fire(Bump(node_id=1))
    with pytest.raises(PlaythroughError, match="before swapping repositories"):
        with engine.use_repository(StateRepository()):
            pass
    engine.discard()


def test_the_old_engine_methods_warn_and_answer_as_the_rooms_do() -> None:
    engine = Engine(_filled_store())
    moved = "is deprecated \\(removed in 0.4.0\\): use engine"
    with pytest.warns(DeprecationWarning, match=f"Engine.count {moved}.states.count$"):
        assert engine.count(Node) == engine.states.count(Node)  # type: ignore[deprecated]
    with pytest.warns(DeprecationWarning, match=f"Engine.events {moved}.log.events$"):
        old = [e.id for e in engine.events()]  # type: ignore[deprecated]
    assert old == [e.id for e in engine.log.events()]
    with pytest.warns(DeprecationWarning, match=f"Engine.reset_follower {moved}.followers.reset"):
        with pytest.raises(NotFoundError):
            engine.reset_follower("nobody")  # type: ignore[deprecated]
    with pytest.warns(DeprecationWarning, match=f"Engine.run_due {moved}.scheduler.run_due"):
        assert engine.run_due() == []  # type: ignore[deprecated]


def test_every_moved_method_names_its_new_call_and_the_removal_version() -> None:
    """Each forwarder's new call exists, and its warning names it; the version is one."""
    from playthrough import _moved

    engine = Engine(SQLiteStore())
    names = [n for n in vars(_moved.MovedMethods) if not n.startswith("_")]
    assert len(names) == 28
    for name in names:
        forwarder = getattr(_moved.MovedMethods, name)
        doc = forwarder.__doc__
        room, new = doc.split("``engine.")[1].rstrip("`.").split(".")
        assert callable(getattr(getattr(engine, room), new)), name
    assert _moved.REMOVAL == "0.4.0"


def test_normal_use_warns_nothing() -> None:
    """The library's own paths use the new names: a tour of them raises no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = Engine(_filled_store())
        engine.states.find(Node, value__gt=0)
        engine.admin.snapshot()
        engine.admin.verify(subprocess_replay=False)
        engine.scheduler.run_due()
        engine.admin.run_pending_handlers()
        engine.fire(Bump(node_id=1))
        engine.commit()
        engine.close()


def _engine_calls(path: Path) -> set[str]:
    """The attributes read from a name ``engine`` or ``self._engine`` in a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "engine") or (
                isinstance(owner, ast.Attribute) and owner.attr == "_engine"
            ):
                found.add(node.attr)
    return found


@pytest.mark.parametrize(
    "module",
    [
        "_handlers.py",
        "_scheduling.py",
        "_followers.py",
        "_rooms.py",
        "_work.py",
        "_loading.py",
        "_firing.py",
        "_append.py",
        "_query.py",
        "_log.py",
        "_history.py",
    ],
)
def test_no_collaborator_calls_a_private_engine_method(module: str) -> None:
    private = {name for name in _engine_calls(SRC / module) if name.startswith("_")}
    assert private == set(), f"{module} reaches into the Engine: {sorted(private)}"


@pytest.mark.parametrize("module", ["_rooms.py", "_work.py", "_loading.py", "_firing.py"])
def test_the_rooms_and_stages_do_not_import_the_engine(module: str) -> None:
    tree = ast.parse((SRC / module).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "_engine" not in imported
