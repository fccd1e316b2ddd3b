"""Export and import of a store: one JSON Lines stream, checked end to end.

The format (``FORMAT``, version ``FORMAT_VERSION``), one JSON object a line:

1. a header: ``{"format": "playthrough-log", "version": 3, "schema_version": S,
   "after": A, "until": U, "chain": C, "sections": [...]}``: the store's schema
   version, the range ``(A, U]`` of positions the file holds, the log's running
   hash up to ``A`` (see :func:`chain_step`; an append checks it against the
   store it continues) and the sections that follow the events;
2. one line per event, in position order: ``position``, ``type``, ``data`` (the
   event's stored JSON text, byte for byte: personal values stay sealed),
   ``caused_by``, ``fired_at``, ``links`` (``[state type, state id, coupling
   group]`` per state touched, sorted) and ``version`` (the event class's
   version when it was written), then ``metadata`` and ``correlation`` when set;
3. a trailer: ``{"trailer": true, "count": N, "sha256": H, "chain": C'}`` where
   ``H`` is the SHA-256 of the event lines exactly as written (UTF-8, each with
   its newline) and ``C'`` the running hash up to ``U``;
4. one section per name the header lists, in the order of ``SECTIONS``:
   ``{"section": name}``, one JSON array per row, ``{"end": name, "count": N,
   "sha256": H}`` (``H`` over the row lines). The tables (schedule, pending
   handlers, completions, followers; an archive file has none), then in every
   version 3 file ``event_keys`` (``[position, idempotency key]`` of the
   file's events that have one) and ``forgotten`` (``[subject, key id]`` of
   every forget the store saw: the subject and a short hash of the deleted
   key, never personal data), so that a copy deletes a key its source deleted
   even when an older file (an archive written before the forget) brought it;
5. last and optional, the ``subject_keys`` section, the same shape: the key of
   every data subject whose sealed values the events hold (``[subject, base64
   key]``; ``[subject, null]`` for one the source had forgotten). An operator
   may strip it (``--without-keys``); an import then refuses sealed values
   without keys unless told to read them as forgotten.

A file without its trailer or a section's end line is truncated and refused; a
count or checksum that does not match is refused, as is anything the format
does not expect where it is (a TransferError naming it). The import reads the
file inside the store's import transaction, so a refused file leaves nothing
behind. Export reads through a pager and import writes batches, so both run in
constant memory in the log's length. Snapshots are not exported: they are a
cache of the log. Version 1 files (no chain, no sections, personal values in
clear) and version 2 files (no event keys, no forgets: a null key then stands
for a forget) still import; the completions they lack are rebuilt from the log.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import json.scanner
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Protocol, cast

import attrs

from ._errors import SchemaVersionError, TransferError
from ._model import StateKey
from ._personal import MARK, clear_values
from ._stores import ImportPage, SealedEvent, Store, StoreReader, TransferTables
from ._stores._base import (
    ARCHIVED_CHAIN,
    SCHEMA_VERSION,
    Completion,
    FollowerRow,
    Link,
    ScheduleRecord,
    archived_until,
    refuse_archived,
)

FORMAT = "playthrough-log"
FORMAT_VERSION = 3
_READS = (1, 2, 3)
_PAGE = 5000
_GZIP_MAGIC = b"\x1f\x8b"
_MARK_TEXT = f'"{MARK}"'
_WHITESPACE = " \t\n\r"  # what json.loads allows after a value
KEYS = "subject_keys"
#: The tables an export carries by default (followers only when asked, keys apart).
TABLES = ("schedule", "pending_handlers", "completed")
#: What every version 3 file carries after those, archives included: the idempotency
#: keys of its events, and the store's forgets (so a copy never keeps a deleted key).
LOG_SECTIONS = ("event_keys", "forgotten")
#: Every section a file may list in its header, in file order (the keys come last).
SECTIONS = ("schedule", "pending_handlers", "completed", "followers", *LOG_SECTIONS)
#: The running hash of an empty log.
CHAIN_START = "0" * 64

Progress = Callable[[int, int], None]


class BinaryWriter(Protocol):
    """Where an export goes: anything with ``write(bytes)`` (a file, ``gzip.open(..., "wb")``)."""

    def write(self, data: bytes, /) -> object: ...


@attrs.frozen
class TransferReport:
    """What an export or an import moved: ``count`` events in positions ``(after, until]``.

    ``sha256`` is the checksum the trailer carries, ``chain`` the log's running
    hash up to ``until`` (None: unknown, a version 1 file), ``sections`` the
    tables the file carries besides the events (``subject_keys`` included when
    present). After an import, ``verify`` is the report of verify's snapshot
    check on the store (None when the store holds no snapshots).
    """

    count: int
    after: int
    until: int
    sha256: str
    verify: Any = None  # VerifyReport | None (imported lazily)
    chain: str | None = None
    sections: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verify is None or bool(self.verify.ok)


def chain_step(chain: bytes, line: bytes) -> bytes:
    """The running hash after one more event: SHA-256 of the hash so far and the event's line."""
    return sha256(chain + line).digest()


_text: Callable[[str], str] = json.encoder.encode_basestring
sha256 = hashlib.sha256


def event_line(event: SealedEvent, links: Sequence[Link]) -> str:
    """One event's line (without its newline): what json.dumps of the row would give."""
    # By hand, field for field what json.dumps of the dict would give (strings
    # through json's own escaping): twice as fast. Links sorted: the same line
    # from every store, so the running hash is the store's, not the driver's.
    cause = "null" if event.caused_by is None else str(int(event.caused_by))
    rows = [(lk.key.type, lk.key.id, lk.group) for lk in links]
    if len(rows) > 1:
        rows.sort()
    linked = ",".join([f"[{_text(t)},{_text(i)},{int(g)}]" for t, i, g in rows])
    extra = ""
    if event.metadata is not None:
        extra += f',"metadata":{_text(event.metadata)}'
    if event.correlation is not None:
        extra += f',"correlation":{_text(event.correlation)}'
    return (
        f'{{"position":{int(event.position)},"type":{_text(event.type)},'
        f'"data":{_text(event.data)},"caused_by":{cause},'
        f'"fired_at":{_text(event.fired_at)},"links":[{linked}],'
        f'"version":{int(event.version)}{extra}}}'
    )


def sealed_pages(
    store: Store, after: int, until: int, chunk: int = _PAGE
) -> Iterator[list[tuple[SealedEvent, list[Link]]]]:
    """The events in ``(after, until]`` as stored, with their links, one short read a page."""
    position = after
    first = True
    while position < until:
        with store.reader() as reader:
            if first:
                refuse_archived(reader, after, "exporting the log")
                first = False
            page = reader.events_after_sealed(position, min(chunk, until - position))
            if not page or page[0].position != position + 1:
                raise TransferError(
                    f"the log has no event at position {position + 1}: it changed during "
                    "the export, or it is damaged (run verify)"
                )
            links = reader.links_between(position, page[-1].position)
        by_position: dict[int, list[Link]] = {}
        for link in links:
            by_position.setdefault(link.position, []).append(link)
        yield [(e, by_position.get(e.position, [])) for e in page]
        position = page[-1].position


def log_chain(store: Store, until: int) -> str | None:
    """The running hash of the log up to ``until`` (None: the archived part's is unknown)."""
    with store.reader() as reader:
        start = archived_until(reader)
        known = reader.meta(ARCHIVED_CHAIN) if start else CHAIN_START
    if known is None:
        return None
    chain = bytes.fromhex(known)
    for page in sealed_pages(store, start, until):
        for event, links in page:
            chain = chain_step(chain, (event_line(event, links) + "\n").encode())
    return chain.hex()


def _subjects(data: str, into: set[str]) -> None:
    """Add the data subjects of the sealed values in an event's JSON to ``into``."""
    if _MARK_TEXT not in data:
        return
    for value in json.loads(data).values():
        if isinstance(value, dict) and MARK in value:
            into.add(str(value[MARK]["s"]))


def export_log(
    store: Store,
    out: BinaryWriter,
    *,
    after: int = 0,
    until: int | None = None,
    progress: Progress | None = None,
    tables: bool = True,
    with_followers: bool = False,
    keys: bool = True,
) -> TransferReport:
    """Write the events in ``(after, until]`` (default: to the head) to ``out``.

    With ``tables``, the schedule, pending handlers and completions follow
    (and the followers' positions ``with_followers``), as of the head the
    export starts at; with ``keys``, the subject keys section ends the file.
    """
    sections = [*TABLES, "followers"] if with_followers else list(TABLES)
    if not tables:
        sections = []
    sections += LOG_SECTIONS
    with store.reader() as reader:
        head = reader.head()
        until = head if until is None else until
        if not 0 <= after <= until <= head:
            raise ValueError(f"bad export range ({after}, {until}]: the log holds 1..{head}")
        carried = reader.transfer_tables(sections)
        carried = carried._replace(event_keys=tuple(reader.keys_between(after, until)))
    start = log_chain(store, after)
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "after": after,
        "until": until,
        "chain": start,
        "sections": sections,
    }
    out.write(_line(header))
    digest = hashlib.sha256()
    chain = None if start is None else bytes.fromhex(start)
    subjects: set[str] = set()
    count = 0
    for page in sealed_pages(store, after, until):
        lines = []
        for event, links in page:
            line = (event_line(event, links) + "\n").encode()
            if chain is not None:
                chain = sha256(chain + line).digest()  # chain_step, inlined
            if _MARK_TEXT in event.data:
                _subjects(event.data, subjects)
            lines.append(line)
        block = b"".join(lines)
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
    end = None if chain is None else chain.hex()
    out.write(_line({"trailer": True, "count": count, "sha256": checksum, "chain": end}))
    for name in sections:
        _write_section(out, name, _rows_of(carried, name))
    for row in carried.schedule or ():  # scheduled events hold sealed values too
        _subjects(row.data, subjects)
    if keys:
        with store.reader() as reader:
            found = reader.subject_keys(subjects)
        rows = [[s, base64.b64encode(found[s]).decode() if s in found else None] for s in subjects]
        _write_section(out, KEYS, sorted(rows))
        sections.append(KEYS)
    return TransferReport(count, after, until, checksum, chain=end, sections=tuple(sections))


def _rows_of(tables: TransferTables, name: str) -> list[list[Any]]:
    if name == "schedule":
        # A lease is the exporting store's business: the rows travel without one.
        return [list(r._replace(lease_owner=None, lease_until=None)) for r in tables.schedule or ()]
    if name == "pending_handlers":
        return [[p] for p in tables.pending_handlers or ()]
    if name == "completed":
        return [[c.key.type, c.key.id, c.position, c.event_type] for c in tables.completed or ()]
    if name == "event_keys":
        return [[p, k] for p, k in tables.event_keys or ()]
    if name == "forgotten":
        return [[s, k] for s, k in tables.forgotten or ()]
    return [list(f) for f in tables.followers or ()]


def _write_section(out: BinaryWriter, name: str, rows: Sequence[Sequence[Any]]) -> None:
    out.write(_line({"section": name}))
    block = b"".join(
        (json.dumps(list(r), separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        for r in rows
    )
    out.write(block)
    out.write(_line({"end": name, "count": len(rows), "sha256": hashlib.sha256(block).hexdigest()}))


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


def _checked_lines(source: IO[bytes], name: str) -> Iterator[bytes]:
    """The file's lines; a damaged compressed stream is a TransferError, not a raw error."""
    try:
        yield from source
    except (EOFError, OSError, zlib.error) as exc:
        raise TransferError(
            f"{name} cannot be read to its end ({type(exc).__name__}: {exc}): the file is "
            "truncated or damaged; nothing was written"
        ) from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None


@attrs.define
class _Reader:
    """Streams an export file and checks it as it goes."""

    lines: Iterator[bytes]
    name: str
    header: dict[str, Any] = attrs.field(factory=dict)
    count: int = 0
    sha256: str = ""
    chain: str | None = None
    subjects: set[str] = attrs.field(factory=set)
    # state -> (position, type) of the last event touching it, when completions are rebuilt
    last: dict[StateKey, tuple[int, str]] | None = None
    found: list[str] = attrs.field(factory=list)  # the sections read, keys included

    def fail(self, what: str) -> TransferError:
        return TransferError(f"{self.name}: {what}; nothing was written")

    def read_header(self) -> dict[str, Any]:
        header = _json(next(self.lines, b""))
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise TransferError(f"{self.name} is not a playthrough log export (no header)")
        version = header.get("version")
        if version not in _READS:
            raise TransferError(
                f"{self.name} is export format version {version!r}; "
                f"this playthrough reads versions {', '.join(map(str, _READS))}"
            )
        schema = header.get("schema_version", 0)
        if not isinstance(schema, int):
            raise self.fail(f"the header's schema_version is {schema!r}, not a number")
        if schema > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.name} was exported from schema version {schema}, "
                f"newer than this playthrough's {SCHEMA_VERSION}"
            )
        for field in ("after", "until"):
            if not isinstance(header.get(field), int):
                raise TransferError(f"{self.name}: the header has no {field!r} position")
        sections = header.setdefault("sections", [])
        order = list(SECTIONS)
        if (
            not isinstance(sections, list)
            or any(s not in order for s in sections)
            or sorted(sections, key=order.index) != sections
            or len(set(sections)) != len(sections)
        ):
            raise self.fail(f"the header lists unknown or disordered sections {sections!r}")
        chain = header.get("chain")
        if chain is not None and not _is_hash(chain):
            raise self.fail(f"the header's chain {chain!r} is not a SHA-256")
        self.header = header
        return header

    def pages(self, progress: Progress | None) -> Iterator[ImportPage]:
        """The event lines as pages of rows, checked: consecutive positions from the
        header's ``after``, each line's JSON, and at the trailer the count, checksum
        and chain (a TransferError, raised inside the store's transaction)."""
        digest = hashlib.sha256()
        update = digest.update
        total = self.header["until"] - self.header["after"]
        start = self.header.get("chain")
        chain = None if start is None else bytes.fromhex(start)
        expected = self.header["after"] + 1
        count = 0
        # json's C scanner, called directly: json.loads of a line would add three
        # Python calls and two regular expressions to every event
        scan = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))
        last = self.last
        subjects = self.subjects
        events: list[tuple[Any, ...]] = []
        links: list[tuple[Any, ...]] = []
        for raw in self.lines:
            if raw.startswith(b'{"trailer"'):
                if events:
                    yield ImportPage(events, links)
                self._check_trailer(raw, count, digest.hexdigest(), chain)
                return
            update(raw)
            if chain is not None:
                chain = sha256(chain + raw).digest()  # chain_step, inlined
            try:
                text = raw.decode()
                row, end = scan(text, 0)
                if end != len(text) and text[end:].strip(_WHITESPACE):
                    raise ValueError(f"extra data after the JSON object at column {end + 1}")
                position = row["position"]
                data = row["data"]
                events.append(
                    (
                        position,
                        row["type"],
                        data,
                        row["caused_by"],
                        row["fired_at"],
                        row.get("version", 1),  # files written before schema 3: all version 1
                        row.get("metadata"),
                        row.get("correlation"),
                    )
                )
                links.extend([(t, i, position, g) for t, i, g in row["links"]])
                if _MARK_TEXT in data:
                    _subjects(data, subjects)
            except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as exc:
                raise TransferError(
                    f"{self.name}: line {count + 2} is not an event ({exc!r}); nothing was written"
                ) from None
            if position != expected:
                raise TransferError(
                    f"{self.name}: line {count + 2} holds the event at position {position!r} "
                    f"where {expected} was expected (an import continues the log without a "
                    "gap); nothing was written"
                )
            expected += 1
            if last is not None:
                kind = row["type"]
                for t, i, _ in row["links"]:
                    last[StateKey(t, i)] = (position, kind)
            count += 1
            if len(events) >= _PAGE:
                yield ImportPage(events, links)
                events = []
                links = []
                if progress is not None:
                    progress(count, total)
        raise TransferError(
            f"{self.name} ends without its trailer after {count} events: the file is "
            "truncated; nothing was written"
        )

    def _check_trailer(self, raw: bytes, count: int, checksum: str, chain: bytes | None) -> None:
        trailer = _json(raw)
        if not isinstance(trailer, dict):
            raise self.fail(f"the trailer is not a JSON object ({raw[:60]!r})")
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
        if chain is not None and trailer.get("chain") != chain.hex():
            raise self.fail(
                f"the trailer's chain {trailer.get('chain')!r} is not the running hash of "
                "the header's chain and the events: the file is damaged"
            )
        self.count = count
        self.sha256 = checksum
        self.chain = None if chain is None else chain.hex()

    def tables(self) -> tuple[TransferTables, dict[str, str | None]]:
        """The sections after the trailer: the tables the header lists, then the keys if any."""
        expected = [*self.header["sections"], KEYS]
        read: dict[str, list[Any]] = {}
        for raw in self.lines:
            opening = _json(raw)
            name = opening.get("section") if isinstance(opening, dict) else None
            if name is None:
                raise self.fail(f"a line after the trailer is not a section ({raw[:60]!r})")
            if name not in expected:
                raise self.fail(
                    f"section {name!r} where "
                    + (f"{expected[0]!r} was expected" if expected else "the file should end")
                    + " (wrong section order, or an unknown section)"
                )
            missing = expected[: expected.index(name)]
            if missing:
                raise self.fail(
                    f"section {name!r} where {missing[0]!r} was expected (wrong section order)"
                )
            expected = expected[expected.index(name) + 1 :]
            read[name] = self._section(name)
            self.found.append(name)
        lacking = [s for s in expected if s != KEYS]
        if lacking:
            raise self.fail(f"the file ends before its {lacking[0]!r} section: it is truncated")
        return self._convert(read)

    def _section(self, name: str) -> list[Any]:
        digest = hashlib.sha256()
        rows: list[Any] = []
        for raw in self.lines:
            if raw.startswith(b'{"end"'):
                end = _json(raw)
                if not isinstance(end, dict) or end.get("end") != name:
                    raise self.fail(f"section {name!r} ends with {raw[:60]!r}")
                if end.get("count") != len(rows):
                    raise self.fail(
                        f"section {name!r} counts {end.get('count')} rows, the file holds "
                        f"{len(rows)}"
                    )
                if end.get("sha256") != digest.hexdigest():
                    raise self.fail(f"checksum mismatch in section {name!r}: the file is damaged")
                return rows
            digest.update(raw)
            row = _json(raw)
            if not isinstance(row, list):
                raise self.fail(f"a row of section {name!r} is not a JSON array ({raw[:60]!r})")
            rows.append(row)
        raise self.fail(f"section {name!r} has no end line: the file is truncated")

    def _convert(self, read: dict[str, list[Any]]) -> tuple[TransferTables, dict[str, str | None]]:
        try:
            tables = TransferTables(
                schedule=_opt(read, "schedule", lambda r: ScheduleRecord(*r)),
                pending_handlers=_opt(read, "pending_handlers", lambda r: int(r[0])),
                completed=_opt(
                    read,
                    "completed",
                    lambda r: Completion(StateKey(str(r[0]), str(r[1])), int(r[2]), str(r[3])),
                ),
                followers=_opt(
                    read, "followers", lambda r: FollowerRow(str(r[0]), int(r[1]), str(r[2]))
                ),
            )
            keys: dict[str, str | None] = {}
            for subject, key in read.get(KEYS, []):
                if key is not None:
                    base64.b64decode(key, validate=True)
                keys[str(subject)] = key
            if "event_keys" in read:
                tables = tables._replace(
                    event_keys=tuple((int(p), _text_of(k)) for p, k in read["event_keys"])
                )
            # A forget the file names, and a subject whose key the source no longer had.
            forgets = dict.fromkeys(
                (_text_of(s), None if k is None else _text_of(k))
                for s, k in read.get("forgotten", [])
            )
            named = {s for s, _ in forgets}
            nulls = [(s, None) for s, k in keys.items() if k is None and s not in named]
            tables = tables._replace(forgotten=(*forgets, *nulls))
        except (ValueError, TypeError, IndexError) as exc:
            raise self.fail(f"a table row is malformed ({exc})") from None
        if tables.schedule is not None and any(len(r) != 11 for r in read["schedule"]):
            raise self.fail("a schedule row does not have the 11 columns of a scheduled event")
        return tables, keys


def _text_of(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def _opt(read: dict[str, list[Any]], name: str, convert: Callable[[Any], Any]) -> Any:
    return None if name not in read else tuple(convert(r) for r in read[name])


def _is_hash(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def import_log(
    store: Store,
    source: IO[bytes],
    *,
    append: bool = False,
    progress: Progress | None = None,
    name: str | None = None,
    forgotten: bool = False,
    rebuild_completions: bool = True,
) -> TransferReport:
    """Import an export file into ``store``, keeping positions; see the module docstring.

    Without ``append`` the store must be empty; with it, the file must
    continue exactly after the store's head, and the log the file continues
    (its chain) must be the store's. Sealed personal values whose subject has
    no key (the keys section was stripped) are refused, unless ``forgotten``:
    then they read as forgotten. When the file carries no completions (a
    version 1 file) and ``rebuild_completions``, they are rebuilt from the log
    (the state classes must be imported). Raises TransferError (nothing
    written) for a damaged file or one that does not fit the store.
    """
    label = str(name or getattr(source, "name", None) or "the export file")
    try:
        lines = _checked_lines(open_input(source), label)
    except (EOFError, OSError, zlib.error) as exc:
        raise TransferError(f"{label} cannot be read ({exc}); nothing was written") from None
    reader = _Reader(lines, label)
    header = reader.read_header()
    after = header["after"]
    with store.reader() as r:
        head = r.head()
        occupied = next(r.iter_snapshots(), None) is not None
        if not (append or head or occupied):
            # An import replaces these tables: a store holding rows there is not empty.
            occupied = any(r.transfer_rows(t) for t in ("schedule", "followers", KEYS))
    if not append and (head or occupied):
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
    if header.get("chain") is not None:
        ours = log_chain(store, head)
        if ours is not None and ours != header["chain"]:
            raise TransferError(
                f"{label} continues another log: its chain (the running hash of the log up "
                f"to position {after}) is {header['chain'][:16]}…, this store's is "
                f"{ours[:16]}…; nothing was written"
            )
    if rebuild_completions and "completed" not in header["sections"]:
        reader.last = {}

    def finish(tx: StoreReader) -> TransferTables:
        tables, keys = reader.tables()
        for row in tables.schedule or ():
            try:
                _subjects(row.data, reader.subjects)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise reader.fail(
                    f"scheduled event {row.id!r} has malformed data ({exc!r})"
                ) from None
        missing = reader.subjects - set(keys)
        if missing:
            missing -= set(tx.subject_keys(missing))
        if missing and not forgotten:
            shown = ", ".join(repr(s) for s in sorted(missing)[:5])
            raise reader.fail(
                f"sealed personal values of {len(missing)} data subject(s) ({shown}) have no "
                "key in the file or the store (was the keys section stripped?); import with "
                "forgotten=True (--forgotten) to read them as forgotten"
            )
        if reader.last:
            tables = tables._replace(completed=_rebuilt_completions(tx, reader.last))
        return tables._replace(
            subject_keys=tuple((s, k) for s, k in sorted(keys.items()) if k is not None)
        )

    count = store.import_pages(reader.pages(progress), after, finish, reveal=clear_values)
    if progress is not None:
        progress(count, header["until"] - after)
    return TransferReport(
        count, after, after + count, reader.sha256, chain=reader.chain, sections=tuple(reader.found)
    )


def _rebuilt_completions(
    tx: StoreReader, last: dict[StateKey, tuple[int, str]]
) -> tuple[Completion, ...] | None:
    """The completions table after an import that did not carry it (None: nothing to change).

    Every completable state the file touched is rebuilt at the new head; one
    that is complete is recorded as completed by the last event touching it.
    The rows of states the file did not touch stay.
    """
    from ._lifecycle import completable
    from ._reconstitution import StateReconstitutor

    keys = [k for k in last if completable(k)]
    if not keys:
        return None
    head = tx.head()
    rows = {c.key: c for c in tx.transfer_tables(["completed"]).completed or ()}
    rebuild = StateReconstitutor()
    for i in range(0, len(keys), 200):
        part = keys[i : i + 200]
        states, _ = rebuild.reconstitute(tx, part, head)
        for key in part:
            rows.pop(key, None)
            if states[key].is_complete():
                rows[key] = Completion(key, *last[key])
    return tuple(rows.values())
