"""A request cache on disk: one JSON file per request, keyed by a hash of the full request.

The key is the SHA-256 of the request serialised as canonical JSON (sorted keys, no spaces):
the backend's identity (kind, endpoint, model, weights fingerprint), the operation, the messages
and every sampling argument (``n``, temperature, max tokens, seed, stop strings). Each entry is
written atomically (a temporary file renamed into place), so an interrupted run never leaves a
half-written entry, and it stores the request beside the answer, so a hash collision or a
changed key format reads as a miss, never as a wrong answer. JSON only: nothing is unpickled.
Only successful answers are stored; a malformed answer or an error is never cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from prefkit._atomic import atomic_write_text

FORMAT = "prefkit.llm.cache/1"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def request_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(key).encode("utf-8")).hexdigest()


class RequestCache:
    """``get(key) -> value | None`` and ``put(key, value)`` for JSON-safe dicts, under ``directory``
    (``directory/ab/abcdef....json``). ``hits``/``misses`` count lookups."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0

    def path(self, key: dict[str, Any]) -> Path:
        digest = request_hash(key)
        return self.directory / digest[:2] / f"{digest}.json"

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        path = self.path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.misses += 1
            return None
        if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("request") != json.loads(
            canonical_json(key)
        ):
            self.misses += 1
            return None
        self.hits += 1
        return entry.get("response")

    def put(self, key: dict[str, Any], value: dict[str, Any]) -> None:
        entry = {"format": FORMAT, "request": key, "response": value}
        atomic_write_text(self.path(key), canonical_json(entry))

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json")) if self.directory.exists() else 0
