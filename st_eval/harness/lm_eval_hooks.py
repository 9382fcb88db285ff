"""Functions the st-eval lm-evaluation-harness task YAMLs call through ``!function``.

The YAMLs hold no prompt or parsing logic: the datasets built here carry the judge prompt
rendered by the judge core (``judge_system`` / ``judge_user``), results are parsed with the core
verdict parser, and the aggregations call the benchmark scoring functions. Task options come
from ``lm_eval --metadata '{...}'``:

* ``data_files``: local file(s) in the hub schema (RewardBench: also an LLMBar folder);
* ``subsets``: RewardBench subsets to keep;
* ``template``: judge template name or path of the prompts the documents carry (default
  ``pairwise-v1``; the ``st-judge`` model judges each pair under its own template unless told);
* ``seed``: seed of the official one-random-order choice (default 0);
* ``allow_tie``: MT-Bench only, default true (the paper's pair prompt allows ties).

Every task also reports ``invalid`` (share of documents whose output has no parseable verdict
or rating), ``forced`` and ``shortened`` (documents the ``st-judge`` model answered with a
verdict its verdict step wrote, or from a shortened pair; 0 for other models), and a run whose
invalid share is above ``summary.INVALID_WARNING_RATE`` logs one warning.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from st_eval.benchmarks.rewardbench import SECTIONS, pair_score, score_rewardbench
from st_eval.benchmarks.runner import official_order
from st_eval.errors import StEvalError
from st_eval.hub import offline_option
from st_eval.judge import build_prompt, order_result, unswap
from st_eval.records import Order, Pair
from st_eval.summary import invalid_warning
from st_eval.voting import combine_orders

log = logging.getLogger(__name__)

#: how lm_eval takes a task's data files: the tasks read them from ``--metadata``
DATA_FILES_OPTION = """--metadata '{"data_files": "path/to/files"}'"""
#: what the st-judge model appends to its answer about how it reached the verdict
_ST_JUDGE_NOTE = re.compile(r"\(st-judge: [^\n]*; forced (\d+); shortened (yes|no)\)")


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Under ``lm_eval``, an st-eval error (a template typo, hub data unreachable offline) ends
    in one line naming the setting instead of a long traceback.

    The error still propagates, so callers of lm_eval's Python API catch it as usual; only if
    nothing catches it does the interpreter's last-resort hook print it, as ``error: ...``.
    """
    try:
        with offline_option(DATA_FILES_OPTION):
            yield
    except StEvalError:
        if not getattr(sys.excepthook, "st_eval_one_line", False):
            sys.excepthook = _one_line_hook(sys.excepthook)
        raise


def _one_line_hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        if isinstance(value, StEvalError):
            print(f"error: {value}", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    hook.st_eval_one_line = True  # type: ignore[attr-defined]
    return hook


def _dataset_function(build: Callable[..., Any]) -> Callable[..., Any]:
    """A task's ``custom_dataset``: its option errors are one line (:func:`one_line_errors`)."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_line_errors():
            _check_templates(kwargs)
            return build(*args, **kwargs)

    return wrapper


def _check_templates(options: dict[str, Any]) -> None:
    """A template named in ``--metadata`` exists, else one line naming the setting."""
    from st_eval.errors import InputError
    from st_eval.prompt import load_template

    for key in ("template", "ties_template"):
        if options.get(key):
            try:
                load_template(options[key])
            except InputError as exc:
                raise InputError(f"--metadata {key!r}: {exc}") from None


def answer_flags(result: str) -> tuple[float, float]:
    """(forced, shortened) of one output: 1.0 when the ``st-judge`` model says its verdict was
    written by the verdict step, or that it read the pair shortened; 0.0 otherwise."""
    note = _ST_JUDGE_NOTE.search(result)
    if not note:
        return 0.0, 0.0
    return float(int(note.group(1)) > 0), float(note.group(2) == "yes")


def invalid_share(items: Iterable[float]) -> float:
    """Share of documents without a parseable verdict, with one warning above the threshold."""
    values = list(items)
    share = sum(values) / len(values) if values else math.nan
    warning = invalid_warning(share if values else None, "documents")
    if warning:
        log.warning(warning)
    return share

#: Pairs behind the documents built in this process, by rendered user prompt. The ``st-judge``
#: model looks requests up here so it can judge the pair itself (both orders, votes).
PROMPTED_PAIRS: dict[str, tuple[Pair, Order]] = {}


def _as_list(value: Any) -> list[str] | None:
    if value is None or value == "":
        return None
    return [value] if isinstance(value, str) else list(value)


def _doc(pair: Pair, order: Order, template: str, allow_tie: bool, **extra: Any) -> dict[str, Any]:
    messages = build_prompt(pair, order, template, allow_tie)
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = messages[-1]["content"]
    PROMPTED_PAIRS[user] = (pair, order)
    shown_label = unswap(pair.label, order) if pair.label else ""
    return {
        "id": pair.id, "order": order, "judge_system": system, "judge_user": user,
        "label": shown_label or "", "allow_tie": allow_tie, "template": template, **extra,
    }


def _interleave_subsets(pairs: list[Pair]) -> list[Pair]:
    """Round-robin over subsets so that ``--limit N`` samples every subset, not just the first."""
    queues: dict[str, list[Pair]] = {}
    for pair in pairs:
        queues.setdefault(pair.metadata["subset"], []).append(pair)
    ordered: list[Pair] = []
    for index in range(max((len(q) for q in queues.values()), default=0)):
        ordered.extend(q[index] for q in queues.values() if index < len(q))
    return ordered


@_dataset_function
def rewardbench_dataset(data_files=None, subsets=None, template: str = "pairwise-v1", seed: int = 0, split: str = "filtered", **_: Any):
    """RewardBench documents, one per pair, each shown in its official random order."""
    import datasets

    from st_eval.benchmarks.rewardbench import load_rewardbench

    pairs = _interleave_subsets(load_rewardbench(_as_list(data_files), split=split, subsets=_as_list(subsets)))
    docs = [
        _doc(p, official_order(p.id, int(seed)), template, False, subset=p.metadata["subset"]) for p in pairs
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


@_dataset_function
def llmbar_dataset(data_files=None, subsets=None, **options: Any):
    """The five LLMBar subsets of Chat Hard (an LLMBar folder or RewardBench-schema files, else the hub)."""
    llmbar = [s for s in SECTIONS["Chat Hard"] if s.startswith("llmbar")]
    return rewardbench_dataset(data_files=data_files, subsets=_as_list(subsets) or llmbar, **options)


def process_rewardbench(doc: dict[str, Any], results: list[str]) -> dict[str, tuple[str, float]]:
    """Parse the judge's output with the core parser; every metric gets (subset, official score)."""
    verdict = order_result(doc["order"], results[:1], template=doc["template"]).verdict
    row = (doc["subset"], pair_score(verdict, "A"))
    forced, shortened = answer_flags(results[0])
    return {**{metric: row for metric in REWARDBENCH_METRICS}, "invalid": float(verdict is None), "forced": forced, "shortened": shortened}


def _section_metric(section: str):
    def aggregate(items: Iterable[tuple[str, float]]) -> float:
        return score_rewardbench(items)["sections"].get(section, math.nan)

    aggregate.__name__ = f"rewardbench_{section.lower().replace(' ', '_')}"
    return aggregate


def rewardbench_score(items: Iterable[tuple[str, float]]) -> float:
    """The official headline: mean of the four sections (of those present, with a warning)."""
    report = score_rewardbench(items)
    if report["missing_sections"]:
        log.warning(
            "rewardbench: sections missing from the data: %s; the headline is the mean of %s only",
            ", ".join(report["missing_sections"]),
            ", ".join(report["sections"]) or "nothing",
        )
    return math.nan if report["headline"] is None else report["headline"]


def rewardbench_accuracy(items: Iterable[tuple[str, float]]) -> float:
    """Plain mean over all judged pairs (not the official number; useful for one subset)."""
    scores = [score for _, score in items]
    return sum(scores) / len(scores) if scores else math.nan


chat = _section_metric("Chat")
chat_hard = _section_metric("Chat Hard")
safety = _section_metric("Safety")
reasoning = _section_metric("Reasoning")
REWARDBENCH_METRICS = ("score", "chat", "chat_hard", "safety", "reasoning", "accuracy")


@_dataset_function
def mtbench_dataset(data_files=None, template: str = "pairwise-v1", allow_tie: bool = True, split: str = "human", **_: Any):
    """MT-Bench human-judgment documents: each (question, model pair, turn) in both orders."""
    import datasets

    from st_eval.benchmarks.mtbench import is_human_judge, load_mtbench_human

    docs = []
    for pair in load_mtbench_human(_as_list(data_files), split=split):
        humans = [v["winner"] for v in pair.metadata["votes"] if is_human_judge(v["judge"])]
        for order in ("given", "swapped"):
            docs.append(_doc(pair, order, template, bool(allow_tie), turn=pair.metadata["turn"], human_winners=humans))
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def process_mtbench(doc: dict[str, Any], results: list[str]) -> dict[str, tuple]:
    """Parse one order's output; the aggregations merge the two orders of a pair (flip = tie)."""
    verdict = order_result(doc["order"], results[:1], doc["allow_tie"], template=doc["template"]).verdict
    row = (doc["id"], doc["order"], verdict, doc["turn"], tuple(doc["human_winners"]))
    forced, shortened = answer_flags(results[0])
    return {**{metric: row for metric in MTBENCH_METRICS}, "invalid": float(verdict is None), "forced": forced, "shortened": shortened}


def _agreement_metric(turn: int, ties: str):
    from st_eval.benchmarks.mtbench import mtbench_agreement
    from st_eval.records import OrderResult

    def aggregate(items: Iterable[tuple]) -> float:
        per_pair: dict[str, dict[str, Any]] = {}
        for pair_id, order, verdict, pair_turn, humans in items:
            entry = per_pair.setdefault(pair_id, {"turn": pair_turn, "humans": humans, "orders": []})
            entry["orders"].append(OrderResult(order, verdict, {}, 0.0, "", []))
        judged = [
            ({"turn": e["turn"], "votes": [{"judge": "expert", "winner": w} for w in e["humans"]]}, combine_orders(e["orders"])[0])
            for e in per_pair.values()
        ]
        value = mtbench_agreement(judged).get(f"turn{turn}", {}).get(ties, {}).get("agreement")
        return math.nan if value is None else value

    aggregate.__name__ = f"mtbench_turn{turn}_{ties}"
    return aggregate


agreement_turn1_tie = _agreement_metric(1, "with_tie")
agreement_turn1_notie = _agreement_metric(1, "without_tie")
agreement_turn2_tie = _agreement_metric(2, "with_tie")
agreement_turn2_notie = _agreement_metric(2, "without_tie")
MTBENCH_METRICS = ("agreement_turn1_tie", "agreement_turn1_notie", "agreement_turn2_tie", "agreement_turn2_notie")


# ----------------------------------------------------------------------------- RewardBench 2


@_dataset_function
def rewardbench2_dataset(
    data_files=None, subsets=None, mode: str = "official", seed: int = 0, template: str | None = None,
    ties_template: str = "rewardbench2-ratings-ties", **_: Any,
):
    """RewardBench 2 documents: one per 4-way judgment (official: the correct answer at its seeded
    position; all-positions: one per position) and one per answer to rate (Ties, or every subset
    with ``mode: ratings``). Each carries its prompt rendered by the core and what scoring needs."""
    import datasets

    from st_eval.benchmarks.rewardbench2 import Protocol, kway_prompt, load_rewardbench2, rating_prompt
    from st_eval.prompt import load_template

    protocol = Protocol.for_mode(mode, template=template, seed=int(seed), ties_template=ties_template)
    queues: dict[str, list[dict[str, Any]]] = {}
    for row in load_rewardbench2(_as_list(data_files), subsets=_as_list(subsets)):
        base = {"id": row.id, "subset": row.subset, "num_correct": row.num_correct, "n_answers": len(row.answers)}
        docs = queues.setdefault(row.subset, [])
        if protocol.uses_ratings(row):
            name = protocol.rating_template(row.subset)
            for index, answer in enumerate(row.answers):
                docs.append(_rb2_doc(rating_prompt(row, answer, load_template(name)), base, name, "rating", -1, index))
        else:
            for position in protocol.positions(row):
                docs.append(_rb2_doc(kway_prompt(row, position, load_template(protocol.kway_template)), base, protocol.kway_template, "kway", position, -1))
    ordered = [q[i] for i in range(max((len(q) for q in queues.values()), default=0)) for q in queues.values() if i < len(q)]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(ordered)})


def _rb2_doc(messages: list[dict[str, str]], base: dict[str, Any], template: str, kind: str, position: int, answer: int) -> dict[str, Any]:
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    return {**base, "judge_system": system, "judge_user": messages[-1]["content"], "template": template, "kind": kind, "position": position, "answer": answer}


def process_rewardbench2(doc: dict[str, Any], results: list[str]) -> dict[str, tuple]:
    """Parse the judge's output with the core (the doc's template declares the verdict form);
    every metric gets one item: (row id, subset, kind, position or answer index, parsed, num_correct, n_answers)."""
    from st_eval.kway import kway_verdict
    from st_eval.prompt import load_template
    from st_eval.scores import written_rating

    template = load_template(doc["template"])
    if doc["kind"] == "kway":
        item = (doc["id"], doc["subset"], "kway", doc["position"], kway_verdict(results[:1], template).verdict, doc["num_correct"], doc["n_answers"])
    else:
        item = (doc["id"], doc["subset"], "rating", doc["answer"], written_rating(results[:1], template).mean, doc["num_correct"], doc["n_answers"])
    return {**{metric: item for metric in REWARDBENCH2_METRICS}, "invalid": float(item[4] is None)}


def _rewardbench2_report(items: Iterable[tuple]) -> dict[str, Any]:
    """Rebuild row results from the documents' items and score them as ``st-eval bench rewardbench2``."""
    from st_eval.benchmarks.rewardbench2 import RowResult, score_rewardbench2

    rows: dict[str, dict[str, Any]] = {}
    for row_id, subset, kind, index, parsed, num_correct, n_answers in items:
        entry = rows.setdefault(row_id, {"subset": subset, "kind": kind, "num_correct": num_correct, "n": n_answers, "parts": {}})
        entry["parts"][index] = parsed
    results = []
    for row_id, e in rows.items():
        if e["kind"] == "kway":
            positions = sorted(e["parts"])
            results.append(RowResult.from_kway(row_id, e["subset"], e["num_correct"], positions, [e["parts"][p] for p in positions]))
        else:
            if len(e["parts"]) < e["n"]:
                log.warning("rewardbench2: row %s has %d of %d answers rated (--limit?); it is left out", row_id, len(e["parts"]), e["n"])
                continue
            ratings = [e["parts"][i] for i in range(e["n"])]
            results.append(RowResult.from_ratings(row_id, e["subset"], e["num_correct"], ratings, sum(r is None for r in ratings)))
    return score_rewardbench2(results)


def rewardbench2_score(items: Iterable[tuple]) -> float:
    """The headline: unweighted mean of the six subsets (of those present, with a warning)."""
    report = _rewardbench2_report(items)
    if report["missing_subsets"]:
        log.warning("rewardbench2: subsets missing or not computable: %s; the headline is the mean of the others", ", ".join(report["missing_subsets"]))
    return math.nan if report["headline"] is None else report["headline"]


def _rb2_subset_metric(subset: str):
    def aggregate(items: Iterable[tuple]) -> float:
        value = _rewardbench2_report(items)["subsets"].get(subset, {}).get("score")
        return math.nan if value is None else value

    aggregate.__name__ = f"rewardbench2_{subset.lower().replace(' ', '_')}"
    return aggregate


factuality = _rb2_subset_metric("Factuality")
precise_if = _rb2_subset_metric("Precise IF")
math_subset = _rb2_subset_metric("Math")
safety_subset = _rb2_subset_metric("Safety")
focus = _rb2_subset_metric("Focus")
ties = _rb2_subset_metric("Ties")
REWARDBENCH2_METRICS = ("score", "factuality", "precise_if", "math", "safety", "focus", "ties")
