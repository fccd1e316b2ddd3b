"""playthrough: event sourcing where every read of a state is a playthrough of one ordered log.

Layout: the public names are re-exported here; everything else is private.

- ``_model``: State, SingletonState, Event, ``state_id`` and the type registry
- ``_serialization``: JSON through cattrs (no pickle)
- ``_repository``: StateRepository, the identity map
- ``_playing``: EventPlayer, the one way events are played (live, reconstitution, replay)
- ``_replay``: the full replay (``Engine.replay()``)
- ``_reconstitution``: StateReconstitutor, which plans loads over the state-event links
- ``_snapshots``: SnapshotCoordinator, aligned snapshot sets and the sync check
- ``_engine``: Engine, which ties them together
- ``_verify``: ``engine.verify()`` / ``playthrough verify``: snapshots vs the log, determinism
- ``_stores``: the store contract and its SQLite and PostgreSQL implementations
"""

from ._engine import Engine
from ._errors import (
    ConcurrencyError,
    DecodeError,
    DefinitionError,
    EventRejected,
    HandlerFailed,
    PlaythroughError,
    ReconstitutionError,
    SchemaVersionError,
    StoreError,
    UnknownTypeError,
)
from ._model import Event, SingletonState, State, StateKey, state_id
from ._playing import event_random, now
from ._reconstitution import Plan, StatePlan, StateReconstitutor
from ._replay import Replay
from ._repository import StateRepository
from ._snapshots import OutOfSync, ReplayReport, SnapshotCoordinator, SyncReport
from ._stores import SQLiteStore, Store, open_store
from ._verify import VerifyReport

__all__ = [
    "ConcurrencyError",
    "DecodeError",
    "DefinitionError",
    "Engine",
    "Event",
    "EventRejected",
    "HandlerFailed",
    "OutOfSync",
    "Plan",
    "PlaythroughError",
    "ReconstitutionError",
    "Replay",
    "ReplayReport",
    "SQLiteStore",
    "SchemaVersionError",
    "SingletonState",
    "SnapshotCoordinator",
    "State",
    "StateKey",
    "StatePlan",
    "StateReconstitutor",
    "StateRepository",
    "Store",
    "StoreError",
    "SyncReport",
    "UnknownTypeError",
    "VerifyReport",
    "event_random",
    "now",
    "open_store",
    "state_id",
]
