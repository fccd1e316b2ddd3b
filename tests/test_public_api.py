"""The public surface is exactly what we mean to export."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings

import pytest

import playthrough
from playthrough import _playing, _reconstitution, _repository, _snapshots, _stores

EXPECTED = {
    # the core a user writes against
    "Engine",
    "Event",
    "State",
    "SingletonState",
    "StaleForgetError",
    "SubjectForgotten",
    "StateKey",
    "state_id",
    "now",
    "event_random",
    "Personal",
    "FORGOTTEN",
    # errors
    "PlaythroughError",
    "EventRejected",
    "ConcurrencyError",
    "HandledElsewhere",
    "CancelRefused",
    "DefinitionError",
    "StoreError",
    "SchemaVersionError",
    "DecodeError",
    "UnknownTypeError",
    "UnknownKeysError",
    "ReconstitutionError",
    "HandlerFailed",
    "StateCompleted",
    "ScheduleNotFound",
    "CommitOutcomeUnknown",
    "DuplicateEvent",
    "StateMutationError",
    "StateTypeError",
    "CorruptionError",
    "NotFoundError",
    "QueryError",
    "FollowerFailed",
    "FollowerBusy",
    # the read side
    "StateInfo",
    "Projection",
    "FollowerTransaction",
    "FollowerStatus",
    "FollowerReport",
    "ConfigurationError",
    "TransferError",
    "ArchivedRangeError",
    # what the engine hands back
    "CommitResult",
    "VerifyReport",
    "ReplayReport",
    "SyncReport",
    "TransferReport",
    "ArchiveReport",
    "OutOfSync",
    "Plan",
    "Completion",
    "ScheduledEvent",
    # opening a store once per process (engines borrow it)
    "connect",
    # a state as JSON (web responses)
    "asdict",
    "is_replaying",
}

# Public before the surface was trimmed: importable, with a DeprecationWarning.
DEPRECATED = {
    "StateRepository": _repository.StateRepository,
    "StateReconstitutor": _reconstitution.StateReconstitutor,
    "StatePlan": _reconstitution.StatePlan,
    "SnapshotCoordinator": _snapshots.SnapshotCoordinator,
    "Replay": _playing.EventPlayer,
    "Store": _stores.Store,
    "SQLiteStore": _stores.SQLiteStore,
    "open_store": _stores.open_store,
}


def test_all_is_exactly_the_intended_surface() -> None:
    assert set(playthrough.__all__) == EXPECTED
    assert len(playthrough.__all__) == len(set(playthrough.__all__))


def test_every_exported_name_exists_and_nothing_else_public_leaks() -> None:
    for name in playthrough.__all__:
        assert getattr(playthrough, name) is not None, name
    public = {
        name
        for name, value in vars(playthrough).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == EXPECTED


def test_public_classes_say_they_are_from_playthrough() -> None:
    classes = {n for n in EXPECTED if isinstance(getattr(playthrough, n), type)}
    assert classes == EXPECTED - {
        "state_id",
        "now",
        "event_random",
        "connect",
        "asdict",
        "is_replaying",
        "Personal",
        "FORGOTTEN",
    }
    assert {n: getattr(playthrough, n).__module__ for n in classes} == dict.fromkeys(
        classes, "playthrough"
    )
    assert repr(playthrough.Engine) == "<class 'playthrough.Engine'>"


@pytest.mark.parametrize("name", sorted(DEPRECATED))
def test_former_public_names_still_import_with_a_deprecation_warning(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=rf"playthrough\.{name} is no longer part"):
        value = getattr(playthrough, name)
    assert value is DEPRECATED[name]
    with pytest.warns(DeprecationWarning):
        exec(f"from playthrough import {name}", {})


def test_unknown_names_are_still_attribute_errors() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute 'MemoryCache'"):
            _ = playthrough.MemoryCache


def test_errors_share_one_base() -> None:
    errors = [
        getattr(playthrough, n)
        for n in EXPECTED
        if n.endswith(("Error", "Rejected", "Failed", "Unknown", "Event"))
        and n not in ("Event", "ScheduledEvent")  # ScheduledEvent: a result, not an error
    ]
    assert errors and all(issubclass(e, playthrough.PlaythroughError) for e in errors)


def test_importing_playthrough_does_not_import_networkx() -> None:
    code = "import playthrough, sys; assert 'networkx' not in sys.modules, 'networkx imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_renamed_attributes_keep_working_with_a_deprecation_warning() -> None:
    from playthrough._snapshots import SnapshotCoordinator
    from playthrough.examples.bank import Account, Deposited

    with playthrough.Engine.open(
        "sqlite://", head_values=False
    ) as engine:  # so the load plays the event
        engine.fire(Deposited(account_id=1, amount=5))
        engine.commit()
        plan = engine.explain(Account, 1)
        with pytest.warns(DeprecationWarning, match="use StatePlan.event_count"):
            old = plan.states[plan.targets[0]].events
        assert old == plan.states[plan.targets[0]].event_count == 1
        with pytest.warns(DeprecationWarning, match="Engine.coordinator"):
            coordinator = engine.snapshots
        assert isinstance(coordinator, SnapshotCoordinator)
        assert coordinator is engine.coordinator
