"""playthrough: event sourcing where every read of a state is a playthrough of one ordered log.

Layout: the public names are re-exported here; everything else is private.

- ``_model``: State, SingletonState, Event, ``state_id`` and the type registry
- ``_serialization``: JSON through cattrs (no pickle)
- ``_repository``: StateRepository, the identity map, and its cache layers
- ``_replay``: Replay, the one way events are played (live, reconstitution, replay)
- ``_reconstitution``: StateReconstitutor, which plans loads over the state-event links
- ``_snapshots``: SnapshotCoordinator, aligned snapshot sets and full replay
- ``_engine``: Engine, which ties them together
- ``_verify``: ``engine.verify()`` / ``playthrough verify``: snapshots vs the log, determinism
- ``_stores``: the store contract and its SQLite and PostgreSQL implementations
"""

from ._engine import Engine
from ._errors import (
    CommitOutcomeUnknown,
    ConcurrencyError,
    DecodeError,
    DefinitionError,
    DuplicateEvent,
    EventRejected,
    HandlerFailed,
    PlaythroughError,
    ReconstitutionError,
    SchemaVersionError,
    StateMutationError,
    StoreError,
    UnknownTypeError,
)
from ._model import Event, SingletonState, State, StateKey, state_id
from ._reconstitution import Plan, StatePlan, StateReconstitutor
from ._replay import Replay, event_random, now
from ._repository import MemoryCache, ReadOnlyCache, StateCache, StateRepository, WriteOnlyCache
from ._snapshots import OutOfSync, ReplayReport, SnapshotCoordinator, SyncReport
from ._stores import SQLiteStore, Store, open_store
from ._verify import VerifyReport

__all__ = [
    "CommitOutcomeUnknown",
    "ConcurrencyError",
    "DecodeError",
    "DefinitionError",
    "DuplicateEvent",
    "Engine",
    "Event",
    "EventRejected",
    "HandlerFailed",
    "MemoryCache",
    "OutOfSync",
    "Plan",
    "PlaythroughError",
    "ReadOnlyCache",
    "ReconstitutionError",
    "Replay",
    "ReplayReport",
    "SQLiteStore",
    "SchemaVersionError",
    "SingletonState",
    "SnapshotCoordinator",
    "State",
    "StateCache",
    "StateMutationError",
    "StateKey",
    "StatePlan",
    "StateReconstitutor",
    "StateRepository",
    "Store",
    "StoreError",
    "SyncReport",
    "UnknownTypeError",
    "VerifyReport",
    "WriteOnlyCache",
    "event_random",
    "now",
    "open_store",
    "state_id",
]
