"""A persistent generation cache, so a rerun never regenerates an output it already has.

Judging, benchmarks, gates and training all produce judge outputs through an engine. Wrapping
that engine in :class:`CachedEngine` stores every raw output in one SQLite file, keyed by what
determines it:

* the engine identity (engine name, model and its revision, settings that change outputs such
  as dtype; see ``Engine.identity``),
* the rendered prompt messages (the template text is inside them, so a changed template is a
  different key),
* the sampling parameters that matter (for greedy decoding: only ``max_new_tokens`` and ``stop``;
  greedy samples are identical, so every sample index shares the entry of index 0),
* the sample index.

SQLite in WAL mode gives what several processes judging into one cache need: many readers and
writers at once (writers wait on each other via ``busy_timeout``), and atomic transactions, so a
process killed mid-write leaves either its whole batch or nothing, never a torn entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from st_eval.embedded import st_eval_home
from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig

#: bump when the key layout changes, so old entries are never read under a new meaning.
KEY_VERSION = 1
_SQL_CHUNK = 500
_MIB = 1 << 20
_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    engine TEXT NOT NULL,
    output TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    """``$ST_EVAL_HOME/cache/generations.sqlite`` (``~/.cache/st-eval/...`` by default)."""
    return st_eval_home() / "cache" / "generations.sqlite"


def model_revision(model: str) -> str:
    """A short fingerprint of the weights behind ``model``, for cache keys.

    A local folder is fingerprinted by the content of its small files (config, tokenizer, chat
    template) and, for each weight file, its size plus three 1 MiB samples (start, middle,
    end): cheap even for 100 GB checkpoints, yet a fine-tuned copy of the same architecture
    gets a new revision. A hub id gives its resolved commit hash when the files are in the
    local hub cache, else the id itself.
    """
    folder = Path(model).expanduser()
    digest = hashlib.sha256()
    if folder.is_dir():
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(folder)).encode())
            size = file.stat().st_size
            digest.update(str(size).encode())
            with file.open("rb") as handle:
                if size <= 8 * _MIB:
                    digest.update(handle.read())
                    continue
                for offset in (0, size // 2, size - _MIB):
                    handle.seek(offset)
                    digest.update(handle.read(_MIB))
        return digest.hexdigest()[:16]
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
        if isinstance(found, str):
            return Path(found).parent.name[:16]  # snapshots/<commit>/config.json
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        pass
    return model


def sampling_key(sampling: SamplingConfig) -> dict[str, Any]:
    """The sampling parameters that can change an output.

    Greedy decoding ignores seed and top_p, so they are left out: a greedy rerun with another
    seed still hits.
    """
    if sampling.greedy:
        return {"temperature": 0.0, "max_new_tokens": sampling.max_new_tokens, "stop": list(sampling.stop)}
    return sampling.to_dict()


def generation_key(identity: str, prompt: ChatPrompt, sampling: SamplingConfig, index: int) -> str:
    """SHA-256 of the canonical JSON of everything that determines one output."""
    payload = {
        "v": KEY_VERSION,
        "engine": identity,
        "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
        "sampling": sampling_key(sampling),
        "index": 0 if sampling.greedy else index,
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def logprobs_key(identity: str, prompt: ChatPrompt, top_k: int, include: Sequence[str] = ()) -> str:
    """SHA-256 of what determines one prompt's top next-token log-probabilities (``include``
    only where given, so entries written before it existed keep their keys)."""
    payload: dict[str, Any] = {
        "v": KEY_VERSION,
        "engine": identity,
        "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
        "top_logprobs": top_k,
    }
    if include:
        payload["include"] = sorted(include)
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch the file to WAL mode, waiting out other processes that are opening it too.

    The mode is stored in the file, so only its first opener changes it; but SQLite answers a
    mode change on a file another connection holds with "database is locked" at once, without
    its busy handler, so several processes creating the cache together must retry here.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(0.5, delay * 2)


class GenerationCache:
    """Raw engine outputs in one SQLite file, safe for concurrent processes and crashes.

    Each process (and each fork) opens its own connection lazily; within a process a lock
    serialises use of that connection, so one cache object may be shared by threads.
    """

    def __init__(self, path: str | Path | None = None, *, timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            # WAL: readers never block writers; a crash mid-transaction rolls back on next open.
            _enable_wal(conn, self.timeout)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The cached outputs among ``keys`` (missing keys are absent from the result)."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._connection()
            for start in range(0, len(unique), _SQL_CHUNK):
                chunk = unique[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key, output FROM generations WHERE key IN ({marks})", chunk)
                found.update(rows.fetchall())
        return found

    def get(self, key: str) -> str | None:
        return self.get_many([key]).get(key)

    def put_many(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """Store ``(key, engine identity, output)`` entries in one atomic transaction.

        An existing key keeps its first value (``INSERT OR IGNORE``): when two processes race
        on the same entry, both outputs are valid and the first one written wins.
        """
        now = time.time()
        rows = [(key, identity, output, now) for key, identity, output in entries]
        if not rows:
            return
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO generations (key, engine, output, created) VALUES (?, ?, ?, ?)", rows
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def stats(self) -> dict[str, int]:
        """Number of entries per engine identity."""
        with self._lock:
            rows = self._connection().execute("SELECT engine, COUNT(*) FROM generations GROUP BY engine")
            return dict(rows.fetchall())

    def clear(self, engine: str | None = None) -> int:
        """Delete all entries, or those of one engine identity; returns how many were deleted."""
        with self._lock:
            conn = self._connection()
            if engine is None:
                cursor = conn.execute("DELETE FROM generations")
            else:
                cursor = conn.execute("DELETE FROM generations WHERE engine = ?", (engine,))
            return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __getstate__(self) -> dict[str, Any]:
        # A connection cannot cross a process boundary; the receiving process opens its own.
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], timeout=state["timeout"])  # type: ignore[misc]


class CachedEngine(Engine):
    """An engine that answers from the cache and generates only the missing samples.

    For each prompt, the samples already cached are reused; the missing ones are generated in
    groups (prompts needing the same sample indices go to the wrapped engine together, so it
    still batches), written to the cache after each group of ``write_every`` prompts (or each
    block of finished work, for an engine that yields blocks as they land: ``generate_blocks``), and
    merged back in prompt order. When sample ``k > 0`` onwards is missing, the seed is shifted
    by ``k`` so new samples are not copies of the cached ones.

    Attributes other than ``generate`` (``tokenizer``, ``render``, ...) pass through to the
    wrapped engine.
    """

    def __init__(self, engine: Engine, cache: GenerationCache | None = None, *, write_every: int = 256) -> None:
        self.inner = engine
        self.cache = cache if cache is not None else GenerationCache()
        # an engine that wants larger calls (a cluster job per call) gets them: its blocks are then the unit of writes
        self.write_every = max(1, write_every, engine.call_size or 0)
        self.name = engine.name
        self.model = engine.model
        self.hits = 0
        self.misses = 0

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def context_window(self) -> int | None:
        return self.inner.context_window

    @property
    def call_size(self) -> int | None:  # type: ignore[override]
        return self.inner.call_size

    @property
    def dtype(self) -> str | None:
        return self.inner.dtype

    @property
    def reads_any_token(self) -> bool:  # type: ignore[override]
        return self.inner.reads_any_token

    def prompt_tokens(self, prompts):
        return self.inner.prompt_tokens(prompts)

    def __getattr__(self, attr: str) -> Any:
        # Only reached for attributes not set on the wrapper itself.
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def generate(
        self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None
    ) -> list[list[str]]:
        sampling = sampling or SamplingConfig()
        identity = self.identity
        keys = [[generation_key(identity, p, sampling, i) for i in range(n)] for p in prompts]
        cached = self.cache.get_many([k for row in keys for k in row])
        outputs: list[list[str | None]] = [[cached.get(k) for k in row] for row in keys]
        # Group prompts by their first missing sample index: they need samples first..n-1.
        groups: dict[int, list[int]] = {}
        for p, row in enumerate(outputs):
            first = next((i for i, text in enumerate(row) if text is None), None)
            if first is not None:
                groups.setdefault(first, []).append(p)
        missing = sum(n - first for first, members in groups.items() for _ in members)
        self.misses += missing
        self.hits += n * len(prompts) - missing
        for first, members in sorted(groups.items()):
            group_sampling = sampling if first == 0 else replace(sampling, seed=sampling.seed + first)
            for start in range(0, len(members), self.write_every):
                part = members[start : start + self.write_every]
                for indices, fresh in self.inner.generate_blocks([prompts[p] for p in part], n=n - first, sampling=group_sampling):
                    entries = []
                    for p, samples in zip((part[i] for i in indices), fresh):
                        for offset, text in enumerate(samples):
                            if outputs[p][first + offset] is None:
                                outputs[p][first + offset] = text
                                entries.append((keys[p][first + offset], identity, text))
                    self.cache.put_many(entries)
        return [[text if text is not None else "" for text in row] for row in outputs]

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], top_k: int = 20, include: Sequence[str] = ()) -> list[dict[str, float]]:
        """Cached top next-token log-probabilities; only missing prompts reach the engine, once
        each (a prompt repeated in one call is computed once). ``include`` is part of the key
        only for an engine that reads it (:attr:`reads_any_token`): for the others it changes
        nothing, and their entries stay shared."""
        identity = self.identity
        include = tuple(include) if self.inner.reads_any_token else ()
        keys = [logprobs_key(identity, p, top_k, include) for p in prompts]
        found = {k: json.loads(v) for k, v in self.cache.get_many(keys).items()}
        missing = list({k: i for i, k in reversed(list(enumerate(keys))) if k not in found}.items())
        self.misses += len(missing)
        self.hits += len(prompts) - len(missing)
        for start in range(0, len(missing), self.write_every):
            part = missing[start : start + self.write_every]
            for indices, fresh in self.inner.logprob_blocks([prompts[i] for _, i in part], top_k, include):
                done = [(part[i][0], top) for i, top in zip(indices, fresh)]
                found.update(done)
                self.cache.put_many((key, identity, json.dumps(top, ensure_ascii=False)) for key, top in done)
        return [found[k] for k in keys]

    def close(self) -> None:
        self.inner.close()
        self.cache.close()
