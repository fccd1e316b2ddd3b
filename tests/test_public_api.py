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
    "StateKey",
    "state_id",
    "now",
    "event_random",
    "Personal",
    "FORGOTTEN",
    "SubjectForgotten",
    # the read side
    "StateInfo",
    "Projection",
    "FollowerTransaction",
    "FollowerStatus",
    "FollowerReport",
    # what the engine takes and hands back
    "CommitResult",
    "VerifyOptions",
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
    "Connection",
    # a state as JSON (web responses)
    "asdict",
    "is_replaying",
}

# The errors, in playthrough.errors (drawn as a tree in its docstring).
ERRORS = {
    "ArchivedRangeError",
    "CancelRefused",
    "CapabilityMissing",
    "CommitOutcomeUnknown",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptionError",
    "DecodeError",
    "DefinitionError",
    "DuplicateEvent",
    "EventRejected",
    "FollowerBusy",
    "FollowerFailed",
    "HandledElsewhere",
    "HandlerFailed",
    "NotFoundError",
    "PlaythroughError",
    "QueryError",
    "ReconstitutionError",
    "ScheduleNotFound",
    "SchemaVersionError",
    "StaleForgetError",
    "StateCompleted",
    "StateMutationError",
    "StateTypeError",
    "StoreError",
    "TransferError",
    "UnknownKeysError",
    "UnknownTypeError",
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


def _isort(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions, each alphabetical."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_exactly_the_intended_surface() -> None:
    assert set(playthrough.__all__) == EXPECTED
    assert playthrough.__all__ == sorted(EXPECTED, key=_isort)  # as ruff's RUF022 keeps it
    assert playthrough.errors.__all__ == sorted(ERRORS, key=_isort)


def test_the_errors_docstring_draws_the_real_hierarchy() -> None:
    """Each line of the tree names a class whose parent is the line it hangs from."""
    import re

    from playthrough import errors

    lines = [x for x in (errors.__doc__ or "").splitlines() if re.search(r"[├└]── |^    \w", x)]
    parents: list[tuple[int, str]] = []
    drawn = set()
    for line in lines:
        name = re.search(r"(\w+)", line.replace("├── ", "").replace("└── ", ""))
        assert name is not None
        depth = (len(line) - len(line.lstrip(" │├└─"))) // 4
        while parents and parents[-1][0] >= depth:
            parents.pop()
        cls = getattr(errors, name.group(1))
        if parents:
            assert getattr(errors, parents[-1][1]) in cls.__bases__, name.group(1)
        parents.append((depth, name.group(1)))
        drawn.add(name.group(1))
    assert drawn == ERRORS


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_old_top_level_error_names_warn_with_their_removal_version(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=rf"playthrough\.errors\.{name}; .* 0\.3\.0"):
        value = getattr(playthrough, name)
    assert value is getattr(playthrough.errors, name)
    assert value.__module__ == "playthrough.errors"


def test_the_backend_authors_module_offers_interfaces_and_contracts() -> None:
    import playthrough.stores as stores

    assert stores.__all__ == sorted(stores.__all__, key=_isort)
    for name in ("Store", "StoreReader", "LogRecorder", "LogContract", "StoreContract"):
        assert name in stores.__all__
    assert issubclass(stores.Store, stores.LogRecorder)


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
    with pytest.warns(DeprecationWarning, match=rf"playthrough\.{name} is no longer part.*0\.3\.0"):
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
    found = [getattr(playthrough.errors, n) for n in ERRORS]
    assert all(issubclass(e, playthrough.errors.PlaythroughError) for e in found)


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
