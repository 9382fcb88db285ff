"""A resumable store of judgments keyed by a content hash, so re-runs only judge what is new.

A key covers everything that can change a judgment: the judge (engine, model, engine options),
the judge configuration and template text, and the pair's texts (not its id: the same answers
under another id reuse the judgment). Rows are appended and flushed one by one, so a crash
loses at most the pair being judged, and a gate over more prompts judges only the added ones.
Several gates may share one store: appends are serialized with a file lock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from st_eval.jsonl import JsonlAppender, read_jsonl
from st_eval.judge import Judge, JudgeConfig
from st_eval.prompt import load_template
from st_eval.records import Judgment, Pair


def judge_fingerprint(identity: str, config: JudgeConfig) -> dict[str, Any]:
    """What identifies a judge for caching: who generates, how, and with which prompt text."""
    template = load_template(config.template)
    return {
        "judge": identity,
        "config": {**asdict(config), "sampling": config.sampling.to_dict()},  # type: ignore[union-attr]
        "template": [template.name, template.system, template.user],
    }


def pair_key(fingerprint: dict[str, Any], pair: Pair) -> str:
    content = {
        "conversation": [[m.role, m.content] for m in pair.conversation],
        "a": pair.response_a,
        "b": pair.response_b,
        "turns_a": pair.turns_a,
        "turns_b": pair.turns_b,
        "reference": pair.reference,
    }
    blob = json.dumps([fingerprint, content], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgmentStore:
    """Judgments on disk (``judgments.jsonl``), looked up by content hash."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock")
        with self._lock:
            self._rows = {row["key"]: row["judgment"] for row in read_jsonl(self.path) if "key" in row}

    def get(self, key: str) -> Judgment | None:
        row = self._rows.get(key)
        return Judgment.from_dict(row) if row is not None else None

    def put_all(self, items: Iterable[tuple[str, Judgment]]) -> Iterator[Judgment]:
        """Append each (key, judgment) as it arrives and pass the judgment on."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            appender = JsonlAppender(self.path)
        try:
            for key, judgment in items:
                row = judgment.to_dict()
                with self._lock:
                    appender.append({"key": key, "judgment": row})
                self._rows[key] = row
                yield judgment
        finally:
            appender.close()


def judge_with_store(
    pairs: Sequence[Pair],
    judge_factory: Callable[[], Judge],
    fingerprint: dict[str, Any],
    store: JudgmentStore | None,
    *,
    progress: bool = False,
    on_cached: Callable[[int, int], None] | None = None,
) -> tuple[list[Judgment], int]:
    """Judgments for all pairs in input order, and how many came from the store.

    The judge is only built when something is left to judge, so a fully cached gate never
    loads a model.
    """
    keys = [pair_key(fingerprint, p) for p in pairs]
    found: dict[int, Judgment] = {}
    if store is not None:
        for index, key in enumerate(keys):
            cached = store.get(key)
            if cached is not None:
                found[index] = _rebind(cached, pairs[index])
    if on_cached:
        on_cached(len(found), len(pairs))
    todo = [i for i in range(len(pairs)) if i not in found]
    if todo:
        judge = judge_factory()
        fresh = judge.iter_judgments([pairs[i] for i in todo], progress=progress)
        keyed = ((keys[i], j) for i, j in zip(todo, fresh))
        stream = store.put_all(keyed) if store is not None else (j for _, j in keyed)
        for index, judgment in zip(todo, stream):
            found[index] = judgment
    return [found[i] for i in range(len(pairs))], len(pairs) - len(todo)


def _rebind(judgment: Judgment, pair: Pair) -> Judgment:
    """A cached judgment made about identical texts, re-labelled with this pair's id and metadata."""
    return replace(judgment, pair_id=pair.id, label=pair.label, metadata=pair.metadata)
