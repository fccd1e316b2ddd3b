"""The determinism check's second replay, run in a subprocess with another ``PYTHONHASHSEED``.

Hooks that depend on the iteration order of sets or dicts of strings give the
same result on every replay in one process; only a process hashing with
another seed shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

from .._model import StateKey
from .._reconstitution import StateReconstitutor
from .._stores import open_store
from .rebuild import Progress, replay_encodings


class SubprocessFailed(Exception):
    """The subprocess exited with an error; the message is its last line of stderr."""


def other_hash_seed() -> str:
    """A PYTHONHASHSEED that differs from this process's."""
    current = os.environ.get("PYTHONHASHSEED", "")
    if current.isdigit():
        return str((int(current) + 1) % 4_294_967_296)
    return "0"  # this process hashes with a random seed (or one it was not told)


def replay_in_subprocess(
    url: str,
    apps: Sequence[str],
    seed: str,
    keys: list[StateKey] | None,
    start: int,
    end: int,
    *,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> dict[StateKey, str]:
    """``replay_encodings`` of the store at ``url``, in a subprocess importing ``apps``.

    Raises :class:`SubprocessFailed` when the subprocess fails and
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="playthrough-verify-") as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "states.jsonl"
        spec.write_text(
            json.dumps(
                {
                    "url": url,
                    "apps": list(apps),
                    "start": start,
                    "end": end,
                    "keys": None if keys is None else [list(k) for k in keys],
                    "out": str(out),
                }
            ),
            encoding="utf-8",
        )
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = seed
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        if progress is not None:
            progress("determinism", 0, end)
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(spec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or "").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise SubprocessFailed(tail[0])
        found: dict[StateKey, str] = {}
        with out.open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                found[StateKey(row["type"], row["id"])] = row["data"]
        if progress is not None:
            progress("determinism", end, end)
        return found


_CHILD = (
    "import sys; from playthrough._verify.subprocess_replay import child_main; "
    "sys.exit(child_main(sys.argv[1]))"
)


def child_main(spec_path: str) -> int:
    """Entry point of the subprocess that runs the second replay."""
    import importlib

    try:
        spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        for module in spec["apps"]:
            importlib.import_module(module)
        keys = None if spec["keys"] is None else [StateKey(t, i) for t, i in spec["keys"]]
        store = open_store(spec["url"], create=False)  # a reader: never creates or migrates
        try:
            found = replay_encodings(
                store, StateReconstitutor(), start=spec["start"], end=spec["end"], keys=keys
            )
        finally:
            store.close()
        with open(spec["out"], "w", encoding="utf-8") as out:
            for key, data in found.items():
                out.write(json.dumps({"type": key.type, "id": key.id, "data": data}) + "\n")
    except Exception:  # noqa: BLE001 - the parent reports the last line
        traceback.print_exc()
        return 3
    return 0
