"""For backend authors: the store interfaces by capability, and the contract tests.

A store has the log and, optionally, the read side, the lifecycle and
maintenance, as pyeventsourcing's recorders add capabilities one above the
other::

    Store = LogRecorder + ReadSideRecorder + LifecycleRecorder + MaintenanceRecorder
    StoreReader = LogReader + ReadSideReader + LifecycleReader + MaintenanceReader

A backend implements the log (``LogRecorder`` and ``LogReader``) and mixes in
a stand-in for each capability it lacks (``NoReadSide``, ``NoLifecycle``,
``NoMaintenance`` on the store, ``NoReadSideReads``, ... on its reader): a
feature that needs it then raises ``playthrough.errors.CapabilityMissing``
naming the capability. The contract is one test mixin per capability
(``LogContract``, ``ReadSideContract``, ``LifecycleContract``,
``MaintenanceContract``; ``StoreContract`` is all four): subclass the ones
your store offers in a ``unittest``/pytest test class and give it a store.

Store URLs are read by :func:`parse_store_url`, the one parser.
"""

from ._stores._base import (
    CommitExtras,
    CommitRecord,
    LifecycleReader,
    LifecycleRecorder,
    Link,
    LogReader,
    LogRecorder,
    MaintenanceReader,
    MaintenanceRecorder,
    NewEvent,
    ReadSideReader,
    ReadSideRecorder,
    SnapshotRecord,
    Store,
    StoredEvent,
    StoreReader,
)
from ._stores._capabilities import (
    CAPABILITIES,
    NoLifecycle,
    NoLifecycleReads,
    NoMaintenance,
    NoMaintenanceReads,
    NoReadSide,
    NoReadSideReads,
    capabilities,
)
from ._urls import StoreURL, parse_store_url
from .testing.store_contract import (
    LifecycleContract,
    LogContract,
    MaintenanceContract,
    ReadSideContract,
    StoreContract,
)

__all__ = [
    "CAPABILITIES",
    "CommitExtras",
    "CommitRecord",
    "LifecycleContract",
    "LifecycleReader",
    "LifecycleRecorder",
    "Link",
    "LogContract",
    "LogReader",
    "LogRecorder",
    "MaintenanceContract",
    "MaintenanceReader",
    "MaintenanceRecorder",
    "NewEvent",
    "NoLifecycle",
    "NoLifecycleReads",
    "NoMaintenance",
    "NoMaintenanceReads",
    "NoReadSide",
    "NoReadSideReads",
    "ReadSideContract",
    "ReadSideReader",
    "ReadSideRecorder",
    "SnapshotRecord",
    "Store",
    "StoreContract",
    "StoreReader",
    "StoreURL",
    "StoredEvent",
    "capabilities",
    "parse_store_url",
]
