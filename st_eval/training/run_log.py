"""What a training run shows on the terminal, and what goes to its log file.

``st-eval train`` prints one line per stage (what ran, counts, seconds) and one progress bar per
long piece of work (per item, per training step with its loss). The libraries underneath
(transformers, datasets, trl, peft, accelerate) log warnings, print a dict per training step and
draw their own bars (loading weights, tokenizing); inside :func:`library_logs` their warnings
and errors go to ``train.log`` in the run folder instead, with every stage line and every
training step's metrics. ``--verbose``
shows the libraries' own output on the terminal as well.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

LOG_NAME = "train.log"
LIBRARIES = ("transformers", "datasets", "trl", "peft", "accelerate", "torch", "huggingface_hub", "py.warnings")
log = logging.getLogger("st_eval.training")
_state = {"verbose": True}


@contextmanager
def library_logs(run_dir: Path, verbose: bool = False) -> Iterator[Path]:
    """Route the libraries' logs (and Python warnings) to ``run_dir/train.log`` for the block;
    unless ``verbose``, also hide their terminal output and progress bars."""
    import datasets
    import transformers

    path = Path(run_dir) / LOG_NAME
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in (*LIBRARIES, "st_eval")]
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    transformers_level = transformers.utils.logging.get_verbosity()
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if logger.name == "st_eval" else logging.WARNING)
    logging.captureWarnings(True)
    transformers.utils.logging.set_verbosity_warning()
    _state["verbose"] = verbose
    if not verbose:
        transformers.utils.logging.disable_default_handler()
        transformers.utils.logging.disable_progress_bar()
        datasets.utils.disable_progress_bars()
        for logger in loggers:
            logger.propagate = False
    try:
        yield path
    finally:
        _state["verbose"] = True
        logging.captureWarnings(False)
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        transformers.utils.logging.set_verbosity(transformers_level)
        transformers.utils.logging.enable_default_handler()
        transformers.utils.logging.enable_progress_bar()
        datasets.utils.enable_progress_bars()
        handler.close()


def quiet_trainer(trainer: Any, desc: str) -> None:
    """Unless verbose: replace a Trainer's own bar and per-step printing with one bar per step
    (loss shown) and the step metrics in the log file."""
    if _state["verbose"]:
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_step_bar_callback(desc))


def _step_bar_callback(desc: str) -> Any:
    from transformers import TrainerCallback

    class StepBar(TrainerCallback):
        """One bar over the training steps, the latest loss beside it; metrics to the log."""

        bar: Any = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, desc=desc, unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs:
                return
            log.info("%s step %d: %s", desc, state.global_step, json.dumps(logs, default=str))
            if self.bar is not None and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return StepBar()


def stage_line(name: str, stats: dict[str, Any], reused: bool) -> None:
    """One line for a finished stage: its counts and seconds (``reused``: done by an earlier run)."""
    counts = ", ".join(f"{k} {_short(v)}" for k, v in stats.items() if k != "seconds" and _short(v))
    when = "done earlier, reused" if reused else f"{stats.get('seconds', 0.0):.0f} s"
    say(f"stage {name}: {counts} ({when})" if counts else f"stage {name} ({when})")


def say(text: str) -> None:
    """One line on the terminal (above any progress bar) and in the run's log."""
    tqdm.write(text, file=sys.stderr)
    log.info(text)


def _short(value: Any) -> str:
    """Numbers and short words only: a stage's counts, not its nested details."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, str) and len(value) <= 24:
        return value
    return ""


__all__ = ["LOG_NAME", "library_logs", "quiet_trainer", "say", "stage_line"]
