"""The public surface is exactly what we mean to export."""

from __future__ import annotations

import types

import playthrough

EXPECTED = {
    # the core a user writes against
    "Engine",
    "Event",
    "State",
    "SingletonState",
    "state_id",
    "now",
    "event_random",
    # errors
    "PlaythroughError",
    "EventRejected",
    "ConcurrencyError",
    "DefinitionError",
    "StoreError",
    "SchemaVersionError",
    "DecodeError",
    "UnknownTypeError",
    "VerifyReport",
    "ReconstitutionError",
    "HandlerFailed",
    "CommitOutcomeUnknown",
    "DuplicateEvent",
    "StateMutationError",
    # the architecture's components, for users who compose their own
    "StateRepository",
    "StateCache",
    "MemoryCache",
    "ReadOnlyCache",
    "WriteOnlyCache",
    "StateReconstitutor",
    "Plan",
    "StatePlan",
    "Replay",
    "ReplayReport",
    "SnapshotCoordinator",
    "SyncReport",
    "OutOfSync",
    "StateKey",
    # stores
    "Store",
    "SQLiteStore",
    "open_store",
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


def test_errors_share_one_base() -> None:
    errors = [
        getattr(playthrough, n)
        for n in EXPECTED
        if n.endswith(("Error", "Rejected", "Failed", "Unknown", "Event")) and n != "Event"
    ]
    assert errors and all(issubclass(e, playthrough.PlaythroughError) for e in errors)
