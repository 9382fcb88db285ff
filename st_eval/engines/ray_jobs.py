"""Run a Ray Data job inside the cluster and stream its finished blocks to the driver.

Ray Data needs its driver inside the cluster: a command that joined by Ray Client
(``--cluster ray://HOST:10001``, from a laptop) cannot iterate a dataset, and Ray Client takes
no streaming task results either. So every job runs in a :class:`JobRunner` actor on the
cluster, which iterates the dataset and queues each finished block; the command takes what
has landed, a second at most after it lands. The same path serves every address, so what is
tested on a local cluster is what runs on a remote one.

The runner is the command's actor: when the command dies (even by ``kill -9``), Ray ends the
runner and the job's replicas with it.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from st_eval import errors
from st_eval.errors import EngineError, StEvalError

#: how long one poll of the runner waits for a block before it answers with none
POLL_SECONDS = 1.0


class JobRunner:
    """One job's driver inside the cluster: runs ``job()`` in a thread and queues what it yields,
    then ``done``, or the error that ended it (by class name and message: an exception object
    of the worker's may not unpickle on the command's machine)."""

    def __init__(self, job: Callable[[], Iterator[Any]]) -> None:
        self._items: queue.Queue[tuple[str, Any]] = queue.Queue()
        threading.Thread(target=self._run, args=(job,), daemon=True).start()

    def _run(self, job: Callable[[], Iterator[Any]]) -> None:
        try:
            for item in job():
                self._items.put(("item", item))
            self._items.put(("done", None))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the command, said in one line
            failure = cluster_error(exc)
            self._items.put(("error", (type(failure).__name__, str(failure))))

    def take(self, wait: float) -> list[tuple[str, Any]]:
        """What has landed since the last call, waiting up to ``wait`` seconds for the first."""
        try:
            taken = [self._items.get(timeout=wait)]
        except queue.Empty:
            return []
        while True:
            try:
                taken.append(self._items.get_nowait())
            except queue.Empty:
                return taken


def stream(ray: Any, job: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """What ``job()`` yields, run by a :class:`JobRunner` on the cluster, as it lands."""
    runner = ray.remote(num_cpus=0, max_restarts=0)(JobRunner).remote(job)
    try:
        while True:
            try:
                taken = ray.get(runner.take.remote(POLL_SECONDS))
            except Exception as exc:  # noqa: BLE001 - the runner died (its node went away): one line
                raise cluster_error(exc) from exc
            for kind, value in taken:
                if kind == "done":
                    return
                if kind == "error":
                    name, message = value
                    raise getattr(errors, name, EngineError)(message)
                yield value
    finally:
        ray.kill(runner)


def cluster_error(exc: BaseException) -> StEvalError:
    """The st-eval error a Ray task raised (Ray's error is an instance of it), else an EngineError
    naming the first exception in Ray's text (the worker's own, before Ray's wrappers)."""
    if isinstance(exc, StEvalError):
        return exc
    found = _RAISED.search(str(exc))
    what = found.group(0).strip() if found else f"{type(exc).__name__}: {exc}".splitlines()[0]
    return EngineError(f"the Ray job failed: {what} (the workers' logs: Ray's session folder, /tmp/ray/session_latest/logs on each node)")


#: the line a Python traceback ends with (``module.Error: message``), Ray's own wrappers excluded
_RAISED = re.compile(r"^(?!ray\.)[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit): .*$", re.MULTILINE)


__all__ = ["JobRunner", "cluster_error", "stream"]
