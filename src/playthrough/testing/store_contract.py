"""The store contract: the test cases every store must pass, for pytest, by capability.

A store proves itself by subclassing :class:`StoreContract` (every
capability) or the mixins of the capabilities it has (:class:`LogContract`
always; :class:`ReadSideContract`, :class:`LifecycleContract`,
:class:`MaintenanceContract`) in a ``Test*`` class and providing
``make_store`` (a fresh, empty, isolated store) and, where it can,
``reopen_store`` (a second, independent handle on the same data) and
``bump_schema_version``::

    class TestMyStore(StoreContract):
        def make_store(self) -> Store:
            return MyStore(...)

Pytest fixtures of the subclass (autouse ones, say a temporary directory) have
run by the time a case first asks for ``self.store``. The modules import
nothing from pytest at import, so ``playthrough.testing`` works without it.
"""

from __future__ import annotations

from ._contract_base import A1, A2, HUB, ContractBase, ev, raises_exactly
from ._contract_lifecycle import LifecycleContract
from ._contract_log import LogContract
from ._contract_maintenance import MaintenanceContract
from ._contract_read_side import ReadSideContract

__all__ = [
    "A1",
    "A2",
    "HUB",
    "ContractBase",
    "LifecycleContract",
    "LogContract",
    "MaintenanceContract",
    "ReadSideContract",
    "StoreContract",
    "ev",
    "raises_exactly",
]


class StoreContract(LogContract, ReadSideContract, LifecycleContract, MaintenanceContract):
    """The cases every :class:`~playthrough._stores.Store` with every capability must pass."""
