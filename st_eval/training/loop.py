"""The self-taught loop: pool -> selection -> pairs -> (annotate -> fine-tune -> evaluate) x K -> report.

Run directory layout (every final artifact is written atomically; ``*.partial.jsonl`` files
hold finished chunks of an unfinished stage and are only used to skip work on ``--resume``)::

    recipe.json                      the validated recipe this run uses
    pool.jsonl, pool.json            stage 1: instructions, counts
    selected.jsonl, selection.json   stage 2: tagged and kept instructions, counts
    pairs.train.jsonl, pairs.heldout.jsonl, synthesis.json   stage 3
    iter-00/eval.json                the seed judge's scores (the "before")
    iter-NN/annotation.jsonl, annotation.json, sft_data.jsonl   stage 4
    iter-NN/judge/                   stage 5: merged model folder + training.json + card.json/.md
    iter-NN/eval.json                stage 6
    best.json, report.{json,md,png}  stage 7
    jobs/                            training jobs published for worker machines (train.launcher: accelerate)
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import random
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from st_eval.embedded import resolve_model
from st_eval.engines import Engine, make_engine
from st_eval.errors import InputError
from st_eval.jsonl import read_jsonl, write_json, write_jsonl
from st_eval.native_dtype import default_device, resolve_dtype
from st_eval.training.annotation import annotate, select_examples
from st_eval.training.artifacts import read_json
from st_eval.training.config import Recipe, recipe_from_dict
from st_eval.training.evaluation import evaluate, evaluation_judge, load_benchmarks
from st_eval.training.instruction_pool import Instruction, build_pool
from st_eval.training.judge_card import card_data, source_revision, write_card
from st_eval.training.report import gains_over_seed, write_report
from st_eval.prompt import load_template
from st_eval.training.selection import select_instructions
from st_eval.training.retrieval_neighbour import synthesize_neighbour_pairs
from st_eval.training.run_log import library_logs, stage_line
from st_eval.training.similar_instruction import pair_from_dict, synthesize_pairs


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    best_iteration: int
    best_judge: str
    card: Path | None
    report: dict[str, Path]
    summary: dict[str, Any]


class EngineCache:
    """The engine of the model a stage needs, created on demand. One at a time: asking for
    another model's engine releases the one held (a generator's vLLM must not hold the GPUs
    when the judge's starts), and training releases it before it needs the device. With the
    recipe's ``cluster`` block the engine runs as replicas on that Ray cluster."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self._engines: dict[str, Engine] = {}

    def get(self, model: str) -> Engine:
        if model not in self._engines:
            self.release()
            options = dict(self.recipe.engine_options)
            if self.recipe.engine == "hf":
                options.setdefault("progress", False)
                options["dtype"] = run_dtype(self.recipe, options)
            if self.recipe.cluster is not None:
                from st_eval.engines.ray_data import EngineSpec, RayEngine

                engine: Engine = RayEngine(EngineSpec(self.recipe.engine, model, options), self.recipe.cluster)
            else:
                engine = make_engine(self.recipe.engine, model, **options)
            if self.recipe.cache:
                from st_eval.cache import CachedEngine

                engine = CachedEngine(engine)
            self._engines[model] = engine
        return self._engines[model]

    def release(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def run_dtype(recipe: Recipe, options: dict[str, Any], flags: Collection[str] | None = None) -> str:
    """The one dtype every hf engine of a run computes in: the engine option where it names one,
    else (``auto``) the dtype the run's trained judge will compute in, so that the seed and every
    iteration's judge are measured alike. A LoRA merged into the weights stays float32 on CPU
    (``native_dtype``), as does a fully fine-tuned rating judge (``reward``), so on a CPU with native bfloat16 the seed is measured in float32 too
    instead of bfloat16 (there bfloat16 moved the seed's LLMBar and PandaLM scores by -0.5 and
    +4.2 points, which a gain over the seed would otherwise include). ``flags``: the CPU's, for tests."""
    if recipe.cluster is not None:
        device = "cuda" if recipe.cluster.gpus_per_replica > 0 else "cpu"
    else:
        device = options.get("device") or default_device()
    pinned = "float32" if recipe.train.method == "lora" or load_template(recipe.template).reads_probabilities else None
    return resolve_dtype(options.get("dtype", "auto"), device, flags, pinned=pinned)


#: recipe fields a resumed run may change: more iterations, another cluster (same greedy outputs)
NOT_COMPARED = ("iterations", "cluster")
#: recipe sections that shape only the iterations run under them (how pairs are annotated or
#: chosen, how the judge trains): a resumed run may change them once every iteration it has
#: started is finished, and the new values apply from the next one (``recipe.changes.json``)
PER_ITERATION = ("annotation", "train", "dpo", "grpo")


def _stage(stats_path: Path, timings: dict[str, float], name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a stage unless its stats file (written last, atomically) says it is done."""
    reused = stats_path.exists()
    if reused:
        stats = read_json(stats_path)
    else:
        start = time.time()
        stats = fn()
        stats["seconds"] = round(time.time() - start, 1)
        write_json(stats_path, stats)
    timings[name] = stats.get("seconds", 0.0)
    stage_line(name, stats, reused)
    return stats


def prepare_run_dir(recipe: Recipe, run_dir: Path, resume: bool) -> None:
    """Create the run dir, or check that a resumed one was made by the same recipe, up to the
    fields a resumed run may change (:data:`NOT_COMPARED`, and :data:`PER_ITERATION` for the
    iterations not yet started, recorded in ``recipe.changes.json``)."""
    stored = run_dir / "recipe.json"
    current = {k: v for k, v in recipe.to_dict().items() if k not in NOT_COMPARED}
    if stored.exists():
        if not resume:
            raise InputError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --run-dir")
        # read back through the recipe schema: fields newer than the stored run compare at their defaults
        before = recipe_from_dict(read_json(stored), where=str(stored))
        previous = {k: v for k, v in before.to_dict().items() if k not in NOT_COMPARED}
        for key in current:
            if previous.get(key) != current[key] and key not in PER_ITERATION:
                raise InputError(f"{run_dir}: recipe field {key!r} differs from the run being resumed; use a new --run-dir")
        changed = _changed_fields({k: previous.get(k) for k in PER_ITERATION}, {k: current[k] for k in PER_ITERATION})
        if changed:
            _record_iteration_changes(before, recipe, run_dir, changed)
    write_json(stored, recipe.to_dict())


def _changed_fields(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    """``section.field`` -> [old, new] for every leaf that differs."""
    changed: dict[str, list[Any]] = {}
    for key in sorted(set(old) | set(new)):
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            changed.update(_changed_fields(a, b, f"{name}."))
        elif a != b:
            changed[name] = [a, b]
    return changed


def _record_iteration_changes(before: Recipe, recipe: Recipe, run_dir: Path, changed: dict[str, list[Any]]) -> None:
    """Accept changes to :data:`PER_ITERATION` fields for the iterations not yet started, or say
    why not: an iteration started and unfinished would mix the two recipes, and a change to
    ``annotation.hard_negatives`` after synthesis would leave the pairs it chooses among made for
    the old value (synthesis makes that many neighbour pairs per request)."""
    started = sorted(int(p.name[5:]) for p in run_dir.glob("iter-[0-9][0-9]") if p.is_dir() and int(p.name[5:]) > 0)
    unfinished = [k for k in started if not (run_dir / f"iter-{k:02d}" / "eval.json").exists()]
    fields = ", ".join(changed)
    if unfinished:
        raise InputError(
            f"{run_dir}: recipe field(s) {fields} differ from the run being resumed, and iteration {unfinished[0]} was started "
            "under the old values: resume it with the old recipe first (the new values may then apply from the next iteration), or use a new --run-dir"
        )
    if "annotation.hard_negatives" in changed and (run_dir / "synthesis.json").exists() and recipe.synthesis.from_answers:
        made = max(before.annotation.hard_negatives or 0, before.synthesis.neighbours)
        wanted = max(recipe.annotation.hard_negatives or 0, recipe.synthesis.neighbours)
        if made != wanted:
            raise InputError(
                f"{run_dir}: recipe field 'annotation.hard_negatives' ({recipe.annotation.hard_negatives}) asks for {wanted} neighbour "
                f"pairs per request to choose among, and this run's synthesis (done) made {made}: set synthesis.neighbours "
                f"to {wanted} from the start in a new --run-dir, or keep hard_negatives at most {made}"
                + (" (every other pair source's pairs are candidates either way)" if recipe.synthesis.method == "pair_sources" else "")
            )
    history_path = run_dir / "recipe.changes.json"
    history = read_json(history_path) if history_path.exists() else []
    history.append({"from_iteration": (started[-1] if started else 0) + 1, "changed": changed})
    write_json(history_path, history)
    print(f"recipe changes from iteration {history[-1]['from_iteration']} on: {fields}", file=sys.stderr)


def token_counter(engine: Engine, model: str) -> Callable[[str], int] | None:
    """Count tokens with the generator's tokenizer, to detect responses cut by the budget."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
        except Exception:  # a served model may have no local tokenizer; truncation is then not checked
            return None
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


def run(recipe: Recipe, run_dir: str | Path, *, resume: bool = False, verbose: bool = False) -> RunResult:
    """Run (or resume) the whole loop for ``recipe.iterations`` iterations; the libraries' logs go
    to ``train.log`` in the run folder (also to the terminal when ``verbose``).

    Before anything starts, the recipe is checked for combinations known to fail on GPUs and for
    the libraries its stages need (``preflight.py``), so a run does not stop at its first
    training stage after hours of generation. With ``train.launcher: accelerate`` the run's
    training jobs are published for worker machines (``jobs.job_queue``). With a ``cluster``
    block, every replica node must see the run folder, checked here before any stage runs."""
    from st_eval.training.jobs import job_queue
    from st_eval.training.preflight import refuse_known_failures

    refuse_known_failures(recipe)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare_run_dir(recipe, run_dir, resume)
    if recipe.cluster is not None:  # each iteration's judge is saved here for the replicas to load
        from st_eval.cluster import check_shared_folder

        check_shared_folder(run_dir.resolve(), recipe.cluster, "run folder")
    queue = job_queue(run_dir) if recipe.train.launcher == "accelerate" else contextlib.nullcontext()
    with library_logs(run_dir, verbose), queue:
        return _run(recipe, run_dir)


def _run(recipe: Recipe, run_dir: Path) -> RunResult:
    timings: dict[str, float] = {}
    commit = source_revision()  # the code that runs now, even if the checkout changes during a long run
    engines = EngineCache(recipe)
    seed_path = resolve_model(recipe.seed_model)
    benchmarks, skipped = load_benchmarks(recipe)  # fail fast
    try:
        stages, train_pairs, heldout = _data_stages(recipe, run_dir, engines, timings)
        eval_sets = {"synthetic": heldout, **benchmarks} if heldout else dict(benchmarks)
        iterations = [_evaluate_iteration(recipe, run_dir / "iter-00", 0, seed_path, eval_sets, engines, timings)]
        iterations[0].update(judge=None, trained=None)
        previous_judge = seed_path
        for k in range(1, recipe.iterations + 1):
            info = _iteration(
                recipe, run_dir, k, seed_path, previous_judge, iterations[-1]["eval"], train_pairs, eval_sets, engines, timings, stages,
                seed_eval=iterations[0], commit=commit,
            )
            iterations.append(info)
            previous_judge = info["judge"] or previous_judge
    finally:
        engines.release()
    best = _select_best(recipe, iterations, seed_path)
    write_json(run_dir / "best.json", best)
    summary = {
        "recipe": recipe.name,
        "seed": recipe.seed,
        "commit": commit,
        "seed_model": recipe.seed_model,
        "template": recipe.template,
        "select_on": recipe.evaluation.select_on,
        "benchmarks": list(benchmarks),
        "skipped_benchmarks": skipped,
        "stages": stages,
        "recipe_changes": read_json(run_dir / "recipe.changes.json") if (run_dir / "recipe.changes.json").exists() else [],
        "iterations": iterations,
        "timings": timings,
        "best": best,
    }
    report = write_report(run_dir, summary)
    card = Path(best["path"]) / "card.md" if best["iteration"] else None
    return RunResult(run_dir, best["iteration"], best["path"], card, report, summary)


def _data_stages(recipe: Recipe, run_dir: Path, engines: EngineCache, timings: dict[str, float]):
    """Stages 1-3, done once per run: pool, selection, synthetic pairs (train + held-out split)."""

    def pool_stage() -> dict[str, Any]:
        pool, stats = build_pool(recipe)
        write_jsonl(run_dir / "pool.jsonl", (i.to_dict() for i in pool))
        return stats

    pool_stats = _stage(run_dir / "pool.json", timings, "pool", pool_stage)
    pool = [Instruction.from_dict(r) for r in read_jsonl(run_dir / "pool.jsonl")]

    def selection_stage() -> dict[str, Any]:
        engine = engines.get(recipe.generator)
        kept, stats = select_instructions(
            pool, engine, recipe.selection, seed=recipe.seed, partial=run_dir / "selection.partial.jsonl",
            batch=_batch(recipe),
        )
        write_jsonl(run_dir / "selected.jsonl", (i.to_dict() for i in kept))
        return stats

    selection_stats = _stage(run_dir / "selection.json", timings, "selection", selection_stage)
    selected = [Instruction.from_dict(r) for r in read_jsonl(run_dir / "selected.jsonl")]
    if not selected:
        raise InputError("selection kept no instruction: widen selection.categories/complexity or set keep_untagged")

    def synthesis_stage() -> dict[str, Any]:
        if recipe.synthesis.from_answers:
            train, held, stats = synthesize_neighbour_pairs(
                selected, lambda: engines.get(recipe.generator), recipe.synthesis, seed=recipe.seed,
                partial=run_dir / "synthesis.partial.jsonl",
                count_tokens=lambda: token_counter(engines.get(recipe.generator), recipe.generator), batch=_batch(recipe),
                candidates=recipe.annotation.hard_negatives,
            )
            if not train:
                raise InputError(f"synthesis made no training pair from {len(selected)} instructions: the pool needs more instructions")
            write_jsonl(run_dir / "pairs.heldout.jsonl", (p.to_dict() for p in held))
            write_jsonl(run_dir / "pairs.train.jsonl", (p.to_dict() for p in train))
            return {**stats, "train": len(train), "heldout": len(held)}
        engine = engines.get(recipe.generator)
        pairs, stats = synthesize_pairs(
            selected, engine, recipe.synthesis, seed=recipe.seed, partial=run_dir / "synthesis.partial.jsonl",
            count_tokens=token_counter(engine, recipe.generator), batch=_batch(recipe),
        )
        if len(pairs) < 2:
            raise InputError(f"synthesis kept {len(pairs)} pair(s) of {len(selected)} instructions: too few to train and hold out")
        random.Random(recipe.seed).shuffle(pairs)
        heldout = min(recipe.synthesis.heldout, len(pairs) // 2)
        write_jsonl(run_dir / "pairs.heldout.jsonl", (p.to_dict() for p in pairs[:heldout]))
        write_jsonl(run_dir / "pairs.train.jsonl", (p.to_dict() for p in pairs[heldout:]))
        return {**stats, "train": len(pairs) - heldout, "heldout": heldout}

    synthesis_stats = _stage(run_dir / "synthesis.json", timings, "synthesis", synthesis_stage)
    train = [pair_from_dict(r) for r in read_jsonl(run_dir / "pairs.train.jsonl")]
    heldout = [pair_from_dict(r) for r in read_jsonl(run_dir / "pairs.heldout.jsonl")]
    stages = {"pool": _sizes(pool_stats), "selection": _sizes(selection_stats), "synthesis": _sizes(synthesis_stats)}
    return stages, train, heldout


def _iteration(
    recipe: Recipe, run_dir: Path, k: int, seed_path: str, previous_judge: str, previous_eval: dict[str, Any],
    train_pairs, eval_sets, engines: EngineCache, timings: dict[str, float], stages: dict[str, Any],
    *, seed_eval: dict[str, Any], commit: str,
) -> dict[str, Any]:
    folder = run_dir / f"iter-{k:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    if load_template(recipe.template).reads_probabilities:
        annotation, training = _rating_iteration(recipe, folder, k, seed_path, previous_judge, train_pairs, engines, timings)
    else:
        annotation, training = _pairwise_iteration(recipe, folder, k, seed_path, previous_judge, train_pairs, engines, timings)
    if training is None:
        training = {"trained": False, "reason": "annotation kept no judgment; the judge is unchanged"}
        # Same judge, same greedy decoding: its scores are the previous iteration's.
        return {"iteration": k, "eval": previous_eval, "judge": None, "trained": False, "annotation": annotation, "training": training}
    judge = training["judge"]
    info = _evaluate_iteration(recipe, folder, k, judge, eval_sets, engines, timings)
    info.update(judge=judge, trained=True, annotation=annotation, training=training)
    if not (Path(judge) / "card.json").exists():  # written once: a resumed run may have changed the recipe since
        sizes = {**stages, "annotation": _sizes(annotation)}
        trained = training.get("grpo") or training.get("sft") or training.get("reward") or {}
        gains = gains_over_seed([seed_eval, info], seed=recipe.seed).get(str(k))
        card = card_data(
            recipe, k, sizes, info["eval"], {"examples": trained.get("examples"), "steps": trained.get("steps"), "train_loss": trained.get("train_loss")},
            gains=gains, commit=commit,
        )
        write_card(Path(judge), card)
    return info


def _pairwise_iteration(
    recipe: Recipe, folder: Path, k: int, seed_path: str, previous_judge: str, train_pairs, engines: EngineCache,
    timings: dict[str, float],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Stages 4-5 for a pairwise judge: rejection-sampled judgments, then SFT (and DPO, GRPO)."""
    judge_dir = folder / "judge"

    def annotation_stage() -> dict[str, Any]:
        rows = annotate(
            train_pairs, engines.get(previous_judge), recipe.annotation, template=recipe.template,
            seed=recipe.seed + k, partial=folder / "annotation.partial.jsonl", batch=_batch(recipe), desc=f"annotation it{k}",
            verdict_step=recipe.verdict_step,
        )
        examples, stats = select_examples(rows, train_pairs, template=recipe.template, balance=recipe.annotation.balance, seed=recipe.seed + k)
        write_jsonl(folder / "annotation.jsonl", rows)
        write_jsonl(folder / "examples.jsonl", (dataclasses.asdict(e) for e in examples))
        write_jsonl(folder / "sft_data.jsonl", (e.sft_row() for e in examples))
        return {**stats, "annotator": previous_judge}

    annotation = _stage(folder / "annotation.json", timings, f"annotation it{k}", annotation_stage)
    grpo_alone = recipe.grpo.enabled and not recipe.grpo.after_sft
    if not annotation["examples"] and not grpo_alone:
        return annotation, None

    def training_stage() -> dict[str, Any]:
        from st_eval.training.annotation import Example
        from st_eval.training.dpo import train_dpo
        from st_eval.training.jobs import TrainJob, launch

        engines.release()
        base = seed_path if recipe.train.init == "seed" else previous_judge
        result: dict[str, Any] = {"judge": base}
        if not grpo_alone:
            # a judge folder's training.json is written last: a resumed run keeps a finished SFT
            # judge and goes on with the stages after it (DPO, GRPO)
            finished = judge_dir / "training.json"
            if finished.exists():
                result.update(sft=read_json(finished), judge=str(judge_dir))
            else:
                job = TrainJob("sft", base, str(folder / "sft_data.jsonl"), str(judge_dir), recipe.train, None, recipe.seed + k)
                result.update(sft=launch(job, folder / "sft_job.json"), judge=str(judge_dir))
        if recipe.dpo.enabled and not grpo_alone:
            examples = [Example(**row) for row in read_jsonl(folder / "examples.jsonl")]
            dpo = train_dpo(recipe, str(judge_dir), examples, folder)
            result["dpo"] = dpo
            if dpo is not None:
                result["judge"] = str(folder / "judge-dpo")
        if recipe.grpo.enabled:
            from st_eval.training.grpo import train_grpo

            grpo_dir = folder / "judge-grpo"
            result["grpo"] = train_grpo(result["judge"], train_pairs, recipe.template, grpo_dir, recipe.grpo, recipe.train, seed=recipe.seed + k)
            result["judge"] = str(grpo_dir)
        return result

    return annotation, _stage(folder / "train.json", timings, f"training it{k}", training_stage)


def _rating_iteration(
    recipe: Recipe, folder: Path, k: int, seed_path: str, previous_judge: str, train_pairs, engines: EngineCache,
    timings: dict[str, float],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Stages 4-5 for a rating or choice judge: the pairs this iteration trains on
    (``rating_pairs.py``), then Bradley-Terry training of the judge's verdict log-odds (``reward.py``)."""
    from st_eval.training.rating_pairs import hardest_pairs, nearest_pairs, preference_row

    template = load_template(recipe.template)
    judge_dir = folder / "judge"
    per_instruction = recipe.synthesis.neighbours

    def annotation_stage() -> dict[str, Any]:
        if k > 1 and recipe.annotation.hard_negatives:
            chosen, stats = hardest_pairs(
                train_pairs, engines.get(previous_judge), recipe.template, per_instruction=per_instruction,
                candidates=recipe.annotation.hard_negatives, partial=folder / "mining.partial.jsonl", batch=_batch(recipe),
                desc=f"hard negatives it{k}",
            )
            stats["chooser"] = previous_judge
        else:
            chosen = nearest_pairs(train_pairs, per_instruction) if recipe.synthesis.from_answers else list(train_pairs)
            stats = {"chooser": f"every source's pairs (neighbour: the {per_instruction} nearest)" if recipe.synthesis.from_answers else "all pairs"}
        write_jsonl(folder / "preferences.jsonl", (preference_row(p, template) for p in chosen))
        return {**stats, "pairs": len(chosen), "examples": len(chosen), "annotator": "known winner (rating judge: no sampling)"}

    annotation = _stage(folder / "annotation.json", timings, f"annotation it{k}", annotation_stage)
    if not annotation["examples"]:
        return annotation, None

    def training_stage() -> dict[str, Any]:
        from st_eval.training.reward import train_rating_judge

        engines.release()
        rows = list(read_jsonl(folder / "preferences.jsonl"))
        previous_adapter = Path(previous_judge) / "adapter"
        if recipe.train.method == "full":  # continues the previous judge itself, or the seed
            base, adapter = (previous_judge if recipe.train.init == "previous" else seed_path), None
        else:  # always the seed, continuing the previous adapter or a new one
            base, adapter = seed_path, (previous_adapter if recipe.train.init == "previous" and previous_adapter.is_dir() else None)
        metrics = train_rating_judge(
            base, [(r["chosen"], r["rejected"]) for r in rows], template.choices, judge_dir, recipe.train,
            seed=recipe.seed + k, adapter=adapter,
        )
        return {"reward": metrics, "judge": str(judge_dir)}

    return annotation, _stage(folder / "train.json", timings, f"training it{k}", training_stage)


def _evaluate_iteration(
    recipe: Recipe, folder: Path, k: int, model: str, eval_sets, engines: EngineCache, timings: dict[str, float],
) -> dict[str, Any]:
    """Score ``model`` on every evaluation set (stage 6); resumable per set."""

    def eval_stage() -> dict[str, Any]:
        judge = evaluation_judge(engines.get(model), recipe)
        return {
            name: evaluate(judge, pairs, partial=folder / f"eval.{name}.partial.jsonl", desc=f"eval it{k} {name}", batch=_batch(recipe))
            for name, pairs in eval_sets.items()
        }

    results = _stage(folder / "eval.json", timings, f"evaluation it{k}", eval_stage)
    results.pop("seconds", None)
    return {"iteration": k, "eval": results}


def _select_best(recipe: Recipe, iterations: list[dict[str, Any]], seed_path: str) -> dict[str, Any]:
    """The best iteration on the selection set: highest accuracy, then position consistency,
    then the lowest forced rate (a judge that concludes on its own); the earlier one wins ties.

    Small selection sets tie often, and a small judge's accuracy can sit at 0 while its
    consistency and format improve, so the later criteria decide between such judges.
    """
    name = recipe.evaluation.select_on

    def score(it: dict[str, Any]) -> tuple[float, float, float, int]:
        m = it["eval"].get(name) or {}

        def value(key: str, missing: float) -> float:
            return missing if m.get(key) is None else m[key]

        return (value("accuracy", -1.0), value("consistency", -1.0), -value("forced_rate", 1.0), -it["iteration"])

    best = max(iterations, key=score)
    path = best.get("judge") or seed_path
    return {"iteration": best["iteration"], "path": path, "selected_on": name, "accuracy": (best["eval"].get(name) or {}).get("accuracy")}


def _batch(recipe: Recipe) -> int:
    return recipe.prompts_per_call


def _sizes(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k not in ("seconds", "annotator")}
