"""Export and import of the log: one JSON Lines stream, checked end to end.

The format (``FORMAT``, version ``FORMAT_VERSION``), one JSON object a line:

1. a header: ``{"format": "playthrough-log", "version": 1, "schema_version": S,
   "after": A, "until": U}``: the store's schema version and the range
   ``(A, U]`` of positions the file holds;
2. one line per event, in position order: ``position``, ``type``, ``data`` (the
   event's stored JSON text, byte for byte), ``caused_by``, ``fired_at`` and
   ``links`` (``[state type, state id, coupling group]`` per state touched) and
   ``version`` (the event class's version when it was written; 1 when absent);
3. a trailer: ``{"trailer": true, "count": N, "sha256": H}`` where ``H`` is the
   SHA-256 of the event lines exactly as written (UTF-8, each with its newline).

A file without its trailer is truncated and refused; a count or checksum that
does not match is refused, and since the import reads the file inside the
store's import transaction, a refused file leaves nothing behind. Export reads
through ``Store.read_log``'s pager and import writes batches, so both run in
constant memory. Snapshots are not exported: they are a cache of the log.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol, cast

import attrs

from ._errors import SchemaVersionError, TransferError
from ._model import StateKey
from ._stores import ImportedEvent, Store
from ._stores._base import SCHEMA_VERSION

FORMAT = "playthrough-log"
FORMAT_VERSION = 1
_PAGE = 5000
_GZIP_MAGIC = b"\x1f\x8b"

Progress = Callable[[int, int], None]


class BinaryWriter(Protocol):
    """Where an export goes: anything with ``write(bytes)`` (a file, ``gzip.open(..., "wb")``)."""

    def write(self, data: bytes, /) -> object: ...


@attrs.frozen
class TransferReport:
    """What an export or an import moved: ``count`` events in positions ``(after, until]``.

    ``sha256`` is the checksum the trailer carries. After an import,
    ``verify`` is the report of verify's snapshot check on the store (None
    when the store holds no snapshots, so there was nothing to compare).
    """

    count: int
    after: int
    until: int
    sha256: str
    verify: Any = None  # VerifyReport | None (imported lazily)

    @property
    def ok(self) -> bool:
        return self.verify is None or bool(self.verify.ok)


def export_log(
    store: Store,
    out: BinaryWriter,
    *,
    after: int = 0,
    until: int | None = None,
    progress: Progress | None = None,
) -> TransferReport:
    """Write the events in ``(after, until]`` (default: to the head) to ``out``."""
    with store.reader() as reader:
        head = reader.head()
    until = head if until is None else until
    if not 0 <= after <= until <= head:
        raise ValueError(f"bad export range ({after}, {until}]: the log holds 1..{head}")
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "after": after,
        "until": until,
    }
    out.write(_line(header))
    digest = hashlib.sha256()
    count = 0
    for page in store.read_linked_log(after, until, chunk=_PAGE):
        lines = []
        for event, links in page:
            # By hand, field for field what json.dumps of the dict would give
            # (strings through json's own escaping): twice as fast.
            cause = "null" if event.caused_by is None else str(int(event.caused_by))
            linked = ",".join(
                f"[{_text(link.key.type)},{_text(link.key.id)},{int(link.group)}]" for link in links
            )
            # What the log stores besides the payload, only when there is some
            # (files of logs without it stay as they were).
            extra = ""
            if event.metadata is not None:
                extra += f',"metadata":{_text(event.metadata)}'
            if event.correlation is not None:
                extra += f',"correlation":{_text(event.correlation)}'
            lines.append(
                f'{{"position":{int(event.position)},"type":{_text(event.type)},'
                f'"data":{_text(event.data)},"caused_by":{cause},'
                f'"fired_at":{_text(event.fired_at)},"links":[{linked}],'
                f'"version":{int(event.version)}{extra}}}'
            )
        lines.append("")
        block = "\n".join(lines).encode()
        digest.update(block)
        out.write(block)
        count += len(page)
        if progress is not None:
            progress(count, until - after)
    if count != until - after:
        raise TransferError(
            f"the log changed during the export: {count} events read in ({after}, {until}]"
        )
    checksum = digest.hexdigest()
    out.write(_line({"trailer": True, "count": count, "sha256": checksum}))
    return TransferReport(count, after, until, checksum)


_text: Callable[[str], str] = json.encoder.encode_basestring


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def open_input(source: IO[bytes]) -> IO[bytes]:
    """``source``, decompressed when it starts with gzip's magic bytes."""
    buffered: Any = source if hasattr(source, "peek") else io.BufferedReader(cast(Any, source))
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        # gzip's own readline is slow; a buffer over it gives lines at C speed
        unzipped = gzip.GzipFile(fileobj=buffered, mode="rb")
        return cast(IO[bytes], io.BufferedReader(cast(Any, unzipped), buffer_size=1 << 16))
    return cast(IO[bytes], buffered)


@attrs.define
class _Reader:
    """Streams the events of an export file and checks them as it goes."""

    lines: Iterator[bytes]
    name: str
    header: dict[str, Any] = attrs.field(factory=dict)
    count: int = 0
    sha256: str = ""

    def read_header(self) -> dict[str, Any]:
        first = next(self.lines, b"")
        try:
            header = json.loads(first)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise TransferError(f"{self.name} is not a playthrough log export (no header)")
        if header.get("version") != FORMAT_VERSION:
            raise TransferError(
                f"{self.name} is export format version {header.get('version')}; "
                f"this playthrough reads version {FORMAT_VERSION}"
            )
        if int(header.get("schema_version", 0)) > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.name} was exported from schema version {header['schema_version']}, "
                f"newer than this playthrough's {SCHEMA_VERSION}"
            )
        for field in ("after", "until"):
            if not isinstance(header.get(field), int):
                raise TransferError(f"{self.name}: the header has no {field!r} position")
        self.header = header
        return header

    def events(self, progress: Progress | None) -> Iterator[ImportedEvent]:
        digest = hashlib.sha256()
        total = self.header["until"] - self.header["after"]
        count = 0
        decode = json.JSONDecoder().decode
        for raw in self.lines:
            if raw.startswith(b'{"trailer"'):
                self._check_trailer(raw, count, digest.hexdigest())
                return
            digest.update(raw)
            try:
                row = decode(raw.decode())
                event = ImportedEvent(
                    row["position"],
                    row["type"],
                    row["data"],
                    row["caused_by"],
                    row["fired_at"],
                    tuple((StateKey(t, i), g) for t, i, g in row["links"]),
                    row.get("version", 1),  # files written before schema 3: all version 1
                    row.get("metadata"),
                    row.get("correlation"),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise TransferError(
                    f"{self.name}: line {count + 2} is not an event ({exc!r}); nothing was written"
                ) from None
            count += 1
            yield event
            if progress is not None and count % _PAGE == 0:
                progress(count, total)
        raise TransferError(
            f"{self.name} ends without its trailer after {count} events: the file is "
            "truncated; nothing was written"
        )

    def _check_trailer(self, raw: bytes, count: int, checksum: str) -> None:
        trailer = json.loads(raw)
        if trailer.get("count") != count:
            raise TransferError(
                f"{self.name}: the trailer counts {trailer.get('count')} events, the file "
                f"holds {count}; nothing was written"
            )
        if trailer.get("sha256") != checksum:
            raise TransferError(
                f"{self.name}: checksum mismatch (trailer {trailer.get('sha256')}, "
                f"content {checksum}): the file is damaged; nothing was written"
            )
        if next(self.lines, None) is not None:
            raise TransferError(f"{self.name}: lines after the trailer; nothing was written")
        self.count = count
        self.sha256 = checksum


def import_log(
    store: Store,
    source: IO[bytes],
    *,
    append: bool = False,
    progress: Progress | None = None,
    name: str | None = None,
) -> TransferReport:
    """Import an export file into ``store``, keeping positions; see the module docstring.

    Without ``append`` the store must be empty; with it, the file must
    continue exactly after the store's head. Raises TransferError (nothing
    written) for a damaged file or one that does not fit the store.
    """
    label = name or getattr(source, "name", None) or "the export file"
    reader = _Reader(iter(open_input(source)), str(label))
    header = reader.read_header()
    after = header["after"]
    with store.reader() as r:
        head = r.head()
        has_snapshots = next(r.iter_snapshots(), None) is not None
    if not append and (head or has_snapshots):
        raise TransferError(
            f"{store.url} is not empty (head {head}): import into an empty store, or "
            "continue its log with append=True (--append)"
        )
    if after != head:
        where = "an empty store" if head == 0 else f"a store whose head is {head}"
        raise TransferError(
            f"{label} holds the events after position {after}; it cannot continue "
            f"{where} (positions are kept, the log has no gaps)"
        )
    count = store.import_events(reader.events(progress), after)
    if progress is not None:
        progress(count, header["until"] - after)
    return TransferReport(count, after, after + count, reader.sha256)
