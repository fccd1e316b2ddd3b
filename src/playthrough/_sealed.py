"""The sealed-value format, as stores see it: no crypto here.

A personal value is stored as ``{"$pt_personal": {"s": subject, "t": key id,
"v": ciphertext}}`` (see ``_personal``, which seals and opens them). Stores
keep such rows as they are: they index the subjects (``pt_subject_events``),
keep the rows an archive takes away (``pt_archived_personal``) and record the
id of a deleted key (``pt_forgotten``), all from this format alone. Opening a
value needs the key and the crypto: that is the core's work, handed to a store
as a :data:`Reveal` where a store must know clear values (to scrub them out of
snapshots and error texts when a subject is forgotten).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

#: What a personal value reads as once its subject was forgotten.
FORGOTTEN = "[forgotten]"

#: The key of a sealed value's object in the stored JSON.
MARK = "$pt_personal"
#: ``MARK`` as it appears in JSON text: a row without it holds no sealed value.
MARK_TEXT = '"$pt_personal"'

#: ``reveal(rows, subject, key)``: the subject's personal string values in these
#: (event type, event JSON) rows, opened with its key (``_personal.clear_values``).
Reveal = Callable[[Iterable[tuple[str, str]], str, bytes], set[str]]


def key_id(key: bytes) -> str:
    """A short id of a key (not the key: 8 hex digits of a hash of it)."""
    return hashlib.sha256(b"playthrough key id\x00" + key).hexdigest()[:8]
