"""Generating a model's outputs for a prompt set with any engine, resumably.

Multi-turn prompts are answered turn by turn: the model sees its own earlier answers, as in
MT-Bench. Finished prompts are appended to the outputs file one by one; a re-run keeps those
whose prompt text is unchanged and generates only the rest. The file is an ordinary outputs
file (``{"id", "model", "conversation", "category", "outputs": [...]}`` per line) that
``--candidate``/``--baseline`` accept later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig
from st_eval.gate.outputs import Answer, ModelOutputs, PromptItem
from st_eval.jsonl import JsonlAppender, read_jsonl


def prompt_hash(item: PromptItem) -> str:
    blob = json.dumps([[m.role, m.content] for m in item.conversation], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def outputs_path(folder: Path, engine_identity: str, sampling: SamplingConfig) -> Path:
    """Where one model's generated outputs live: one file per engine, model and decoding."""
    digest = hashlib.sha256(json.dumps([engine_identity, sampling.to_dict()]).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in engine_identity)[-60:]
    return folder / f"{slug}-{digest}.jsonl"


def generate_outputs(
    engine: Engine,
    prompts: Sequence[PromptItem],
    path: Path,
    sampling: SamplingConfig,
    *,
    chunk_size: int = 16,
    progress: bool = False,
) -> ModelOutputs:
    """Answer every prompt (all its user turns) and return the outputs keyed by prompt id."""
    wanted = {p.id: prompt_hash(p) for p in prompts}
    done: dict[str, Answer] = {}
    for number, row in enumerate(read_jsonl(path), start=1):
        if wanted.get(row.get("id")) == row.get("prompt_hash"):
            done[row["id"]] = Answer(row["id"], row["outputs"], f"{path}: line {number}")
    todo = [p for p in prompts if p.id not in done]
    bar = tqdm(total=len(todo), desc=f"generating ({engine.model})", unit="prompt", disable=not progress)
    try:
        with JsonlAppender(path) as appender:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start : start + chunk_size]
                for item, turns in zip(chunk, _answer_chunk(engine, chunk, sampling)):
                    appender.append(
                        {**item.to_row(), "model": engine.model, "engine": engine.name,
                         "prompt_hash": wanted[item.id], "outputs": turns}
                    )
                    done[item.id] = Answer(item.id, turns, str(path))
                    bar.update(1)
    finally:
        bar.close()
    return ModelOutputs(path, {p.id: done[p.id] for p in prompts}, model=engine.model)


def _answer_chunk(engine: Engine, chunk: Sequence[PromptItem], sampling: SamplingConfig) -> list[list[str]]:
    """Answers for a chunk of prompts, one engine call per turn index across the chunk."""
    answers: list[list[str]] = [[] for _ in chunk]
    depth = max(len(item.user_turns) for item in chunk)
    for turn in range(depth):
        active = [i for i, item in enumerate(chunk) if len(item.user_turns) > turn]
        chats = [_chat(chunk[i], answers[i], turn) for i in active]
        for i, samples in zip(active, engine.generate(chats, n=1, sampling=sampling)):
            answers[i].append(samples[0])
    return answers


def _chat(item: PromptItem, earlier: list[str], turn: int) -> ChatPrompt:
    """The messages for ``turn``: system, then each user turn followed by the model's own answer."""
    chat = [{"role": m.role, "content": m.content} for m in item.conversation if m.role == "system"]
    for index, user in enumerate(item.user_turns[: turn + 1]):
        chat.append({"role": "user", "content": user})
        if index < turn:
            chat.append({"role": "assistant", "content": earlier[index]})
    return chat
