"""The async engine's file work: ``log.export``, ``admin.import_log`` and ``admin.archive``
give what the sync engine's give, on both stores."""

from __future__ import annotations

import asyncio
import gzip
import io
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

import playthrough.aio
from playthrough import Engine
from playthrough.aio import AsyncStore
from playthrough.errors import ArchivedRangeError, PlaythroughError, TransferError
from playthrough.examples.bank import Account, Deposited, Transferred

T = TypeVar("T")


def run(body: Callable[[AsyncStore], Coroutine[Any, Any, T]], url: str) -> T:
    async def main() -> T:
        store = await playthrough.aio.connect(url)
        try:
            return await asyncio.wait_for(body(store), 60)
        finally:
            await store.close()

    return asyncio.run(main())


def _history(engine: Engine) -> None:
    """Nine events over three accounts (transfers couple two of them)."""
    for n in range(1, 4):
        engine.fire(Deposited(account_id=n, amount=10 * n))
        engine.commit()
    for n in range(6):
        engine.fire(Transferred(source_id=1 + n % 3, target_id=1 + (n + 1) % 3, amount=1 + n))
        engine.commit()


def _balances(engine: Engine) -> list[int]:
    return [engine.load(Account, n).balance for n in (1, 2, 3)]


def test_export_and_import_on_the_async_engine_are_the_sync_ones(
    any_url: str, tmp_path: Path
) -> None:
    """A log written by the sync engine, exported and imported into an empty store by the
    async engine, and exported again by it: the same bytes as the sync export, the same
    states; a damaged file writes nothing."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with Engine.open(source) as engine:
        _history(engine)
        engine.admin.snapshot()
        expected = _balances(engine)
        sync_out = io.BytesIO()
        sync_report = engine.log.export(sync_out)

    async def export_source(store: AsyncStore) -> tuple[bytes, Any]:
        out = io.BytesIO()
        async with store.engine() as engine:
            report = await engine.log.export(out)
        return out.getvalue(), report

    data, report = run(export_source, source)
    assert data == sync_out.getvalue()
    assert (report.count, report.until, report.sha256) == (9, 9, sync_report.sha256)

    seen: list[tuple[int, int]] = []

    async def import_target(store: AsyncStore) -> tuple[Any, list[int], bytes]:
        async with store.engine() as engine:
            damaged = data[: len(data) // 2]
            with pytest.raises(TransferError):
                await engine.admin.import_log(io.BytesIO(damaged))
            assert await engine.head() == 0  # nothing written
            await engine.fire(Deposited(account_id=1, amount=1))
            with pytest.raises(PlaythroughError, match="pending events before an import"):
                await engine.admin.import_log(io.BytesIO(data))
            engine.discard()
            imported = await engine.admin.import_log(
                io.BytesIO(data), progress=lambda done, total: seen.append((done, total))
            )
            balances = [(await engine.load(Account, n)).balance for n in (1, 2, 3)]
            again = io.BytesIO()
            with gzip.open(again, "wb") as zipped:
                await engine.log.export(zipped)
        return imported, balances, gzip.decompress(again.getvalue())

    imported, balances, exported = run(import_target, any_url)
    assert (imported.count, imported.until, imported.sha256) == (9, 9, sync_report.sha256)
    assert imported.verify is None  # an export carries no snapshots: none to check
    assert seen and seen[-1][0] == 9
    assert balances == expected
    assert exported == data
    with Engine.open(any_url) as engine:
        assert _balances(engine) == expected


def test_archive_on_the_async_engine_is_the_sync_one(any_url: str, tmp_path: Path) -> None:
    """The async engine archives as the sync one does: the same report and file, loads at
    and after the cut unchanged, before it ArchivedRangeError, and the file read back by a
    sync engine opened with ``archive=``."""
    with Engine.open(any_url) as engine:
        _history(engine)
        expected = _balances(engine)
        at_five = [engine.load(Account, n, at=5).balance for n in (1, 2, 3)]
    archive = tmp_path / "old.jsonl.gz"
    stages: list[str] = []

    async def body(store: AsyncStore) -> Any:
        async with store.engine() as engine:
            await engine.fire(Deposited(account_id=1, amount=1))
            with pytest.raises(PlaythroughError, match="pending events before archiving"):
                await engine.admin.archive(before=7, to=archive)
            engine.discard()
            report = await engine.admin.archive(
                before=7, to=archive, progress=lambda stage, done, total: stages.append(stage)
            )
            assert [(await engine.load(Account, n)).balance for n in (1, 2, 3)] == expected
            with pytest.raises(ArchivedRangeError, match=r"positions 1\.\.6 were archived"):
                await engine.load(Account, 1, at=5)
            await engine.fire(Deposited(account_id=2, amount=100))
        return report

    report = run(body, any_url)
    assert (report.after, report.until, report.events) == (0, 6, 6)
    assert report.states == 4  # a base snapshot of each account and of the ledger
    assert Path(report.path) == archive and archive.exists() and stages
    with Engine.open(any_url, archive=archive) as engine:
        assert [engine.load(Account, n, at=5).balance for n in (1, 2, 3)] == at_five
        assert _balances(engine) == [expected[0], expected[1] + 100, expected[2]]
