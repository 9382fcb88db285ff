"""MT-Bench human agreement (lmsys/mt_bench_human_judgments, split ``human``).

The agreement is computed as FastChat's ``fastchat/llm_judge/compute_agreement.py`` computes
it for the MT-Bench paper (Zheng et al. 2023, Table 2 "pair judge vs human"):

* votes are keyed per turn by ``(question_id, model_1, model_2)`` with the two model names
  sorted; a vote cast with the models in the other order has its winner flipped;
* only judges named ``expert_*`` are the human side (``author_*`` votes are ignored);
* every human vote is compared on its own with the judge's single verdict for that key;
* any label containing "tie" (``tie``, ``tie (bothbad)``) is a tie and equals any other tie;
* "with ties" counts every comparison (3-way agreement); "without ties" drops a comparison when
  either side is a tie, and drops the key entirely when the judge said tie;
* an unparseable judge output is the winner ``error``: never equal to a human vote, never a tie.

Published anchors (turn 1): GPT-4 pair judge 66% with ties / 85% without; human-human 63% / 81%.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from st_eval.errors import InputError
from st_eval.pair_files import read_rows
from st_eval.records import Message, Pair, Verdict

HUB_DATASET = "lmsys/mt_bench_human_judgments"
_FIELDS = ("question_id", "model_a", "model_b", "winner", "judge", "conversation_a", "conversation_b", "turn")
_FLIP = {"model_a": "model_b", "model_b": "model_a"}


def is_human_judge(judge: Any) -> bool:
    """FastChat counts only ``expert_*`` judges as the human side."""
    return isinstance(judge, str) and judge.startswith("expert")


def load_mtbench_human(data_files: str | Path | Sequence[str | Path] | None = None, *, split: str = "human") -> list[Pair]:
    """One pair per ``(question_id, model_1, model_2, turn)`` with at least one expert vote.

    Model names are sorted inside each key, so ``response_a`` / ``turns_a`` is always the model
    that sorts first (``metadata['model_a']``) and verdict ``A`` means that model won. Both
    conversations are given as ``turns_a``/``turns_b`` (the assistant answers up to the judged
    turn) so the judge gets the multi-turn prompt. ``metadata['votes']`` holds every vote for
    the key as ``{judge, winner}`` with the winner already in the sorted orientation.
    """
    if data_files is None:
        from st_eval.hub import load_hub_split

        dataset = load_hub_split(HUB_DATASET, split)
        rows: Iterable[tuple[str, dict[str, Any]]] = (
            (f"{HUB_DATASET}[{split}] row {i}", row) for i, row in enumerate(dataset)
        )
    else:
        files = [data_files] if isinstance(data_files, (str, Path)) else list(data_files)
        rows = ((f"{path}: line {n}", row) for path in files for n, row in read_rows(path))
    grouped: dict[tuple[int, str, str, int], dict[str, Any]] = {}
    for where, row in rows:
        _check(row, where)
        turn = int(row["turn"])
        first_is_a = row["model_a"] < row["model_b"]
        models = (row["model_a"], row["model_b"]) if first_is_a else (row["model_b"], row["model_a"])
        conversations = (row["conversation_a"], row["conversation_b"])
        if not first_is_a:
            conversations = conversations[::-1]
        key = (row["question_id"], *models, turn)
        entry = grouped.setdefault(key, {"conversations": conversations, "where": where, "votes": []})
        winner = row["winner"] if first_is_a else _FLIP.get(row["winner"], row["winner"])
        entry["votes"].append({"judge": row["judge"], "winner": winner})
    pairs = [
        _pair(key, entry)
        for key, entry in sorted(grouped.items(), key=lambda kv: (kv[0][3], str(kv[0][0]), kv[0][1], kv[0][2]))
        if any(is_human_judge(v["judge"]) for v in entry["votes"])
    ]
    if not pairs:
        raise InputError("no MT-Bench comparison with an expert_* vote found")
    return pairs


def _check(row: dict[str, Any], where: str) -> None:
    for field in _FIELDS:
        if row.get(field) is None:
            raise InputError(f"{where}: field {field!r} is missing")
    if row["turn"] not in (1, 2):
        raise InputError(f"{where}: field 'turn' must be 1 or 2, got {row['turn']!r}")
    for field in ("conversation_a", "conversation_b"):
        turns = row[field]
        if not isinstance(turns, list) or not all(isinstance(t, dict) and "role" in t and "content" in t for t in turns):
            raise InputError(f"{where}: field {field!r} must be a list of {{role, content}}")


def _pair(key: tuple[int, str, str, int], entry: dict[str, Any]) -> Pair:
    question_id, model_a, model_b, turn = key
    conv_a, conv_b = entry["conversations"]
    users = [m["content"] for m in conv_a if m["role"] == "user"][:turn]
    answers_a = [m["content"] for m in conv_a if m["role"] == "assistant"][:turn]
    answers_b = [m["content"] for m in conv_b if m["role"] == "assistant"][:turn]
    if len(users) < turn or len(answers_a) < turn or len(answers_b) < turn:
        raise InputError(f"{entry['where']}: conversations have fewer than {turn} user/assistant turns")
    return Pair(
        id=f"{question_id}-{model_a}-{model_b}-turn{turn}",
        conversation=[Message("user", text) for text in users],
        response_a=answers_a[-1],
        response_b=answers_b[-1],
        turns_a=answers_a,
        turns_b=answers_b,
        metadata={"question_id": question_id, "model_a": model_a, "model_b": model_b, "turn": turn, "votes": entry["votes"]},
    )


def judge_winner(verdict: Verdict | str | None) -> str:
    """A judge verdict about a loaded pair as a FastChat winner label."""
    return {"A": "model_a", "B": "model_b", "tie": "tie"}.get(verdict or "", "error")


def _is_tie(vote: str) -> bool:
    return "tie" in vote


def _equal(vote1: str, vote2: str) -> bool:
    return (_is_tie(vote1) and _is_tie(vote2)) or vote1 == vote2


def mtbench_agreement(judged: Iterable[tuple[Mapping[str, Any], Verdict | str | None]]) -> dict[str, Any]:
    """Judge-human (and human-human) agreement per turn, with and without ties.

    judged: ``(pair.metadata, verdict)`` for pairs from :func:`load_mtbench_human`; the verdict
        is in the pair's labels (``A``, ``B``, ``tie``) or None when unparseable.
    Returns ``{"turn1": {"with_tie": {agree, total, agreement}, "without_tie": ...,
    "human_human": {...}}, "turn2": ...}`` for each turn present. ``agreement`` is None when
    nothing was compared.
    """
    by_turn: dict[int, list[tuple[str, list[str]]]] = {}
    for metadata, verdict in judged:
        humans = [v["winner"] for v in metadata["votes"] if is_human_judge(v["judge"])]
        if humans:
            by_turn.setdefault(int(metadata["turn"]), []).append((judge_winner(verdict), humans))
    report: dict[str, Any] = {}
    for turn in sorted(by_turn):
        keys = by_turn[turn]
        report[f"turn{turn}"] = {
            "with_tie": _ratio(_judge_vs_humans(keys, ban_ties=False)),
            "without_tie": _ratio(_judge_vs_humans(keys, ban_ties=True)),
            "human_human": {
                "with_tie": _ratio(_human_vs_human(keys, ban_ties=False)),
                "without_tie": _ratio(_human_vs_human(keys, ban_ties=True)),
            },
        }
    return report


def _judge_vs_humans(keys: list[tuple[str, list[str]]], ban_ties: bool) -> tuple[int, int]:
    agree = total = 0
    for judge, humans in keys:
        if ban_ties and _is_tie(judge):
            continue
        for human in humans:
            if ban_ties and _is_tie(human):
                continue
            total += 1
            agree += _equal(judge, human)
    return agree, total


def _human_vs_human(keys: list[tuple[str, list[str]]], ban_ties: bool) -> tuple[int, int]:
    agree = total = 0
    for _, humans in keys:
        for i in range(len(humans) - 1):
            for j in range(i + 1, len(humans)):
                if ban_ties and (_is_tie(humans[i]) or _is_tie(humans[j])):
                    continue
                total += 1
                agree += _equal(humans[i], humans[j])
    return agree, total


def _ratio(counts: tuple[int, int]) -> dict[str, Any]:
    agree, total = counts
    return {"agree": agree, "total": total, "agreement": agree / total if total else None}


__all__ = ["is_human_judge", "judge_winner", "load_mtbench_human", "mtbench_agreement"]
