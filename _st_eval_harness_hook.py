"""Makes a plain ``lm_eval`` run find st-eval's tasks and its ``st-judge`` model.

lm-evaluation-harness 0.4.x has no plugin entry points for tasks or models (the groups
``lm_eval.tasks`` / ``lm_eval.models`` that st-eval also declares are not read yet). This module
is imported at interpreter start by ``st_eval_harness_hook.pth`` and stays cheap: it imports
nothing from lm_eval or st_eval, it only installs an import hook. When lm_eval's task manager
module is imported, ``TaskManager`` gets st-eval's task folder added to its ``include_path``;
when ``lm_eval.models`` is imported, ``st-judge`` is registered (lazily, by import path).

Every step is guarded: if lm_eval changes shape, the hook does nothing (and says so once on
stderr) instead of breaking lm_eval; ``lm_eval --include_path <folder>`` is then the fallback.
Set ``ST_EVAL_LM_EVAL_HOOK=0`` to turn the hook off.
"""

from __future__ import annotations

import os
import sys
from importlib.abc import Loader, MetaPathFinder

_PATCHED = "_st_eval_tasks_added"


def task_folder() -> str | None:
    """st-eval's lm-eval task folder, located without importing st_eval."""
    from importlib.util import find_spec

    spec = find_spec("st_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "harness", "lm_eval_tasks")
    return folder if os.path.isdir(folder) else None


def _warn(what: str, exc: BaseException) -> None:
    print(f"st-eval: could not {what} ({type(exc).__name__}: {exc}); use lm_eval --include_path", file=sys.stderr)


def _add_task_folder(module) -> None:
    import functools
    import inspect

    manager = getattr(module, "TaskManager", None)
    if manager is None or getattr(manager, _PATCHED, False):
        return
    original = manager.__init__
    signature = inspect.signature(original)
    if "include_path" not in signature.parameters:
        return

    @functools.wraps(original)
    def __init__(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        folder = task_folder()
        if folder is not None:
            given = bound.arguments.get("include_path")
            paths = [] if not given else list(given) if isinstance(given, (list, tuple)) else [given]
            if all(os.path.realpath(str(p)) != os.path.realpath(folder) for p in paths):
                # ours first: a user's own --include_path can still override a task of the same name
                bound.arguments["include_path"] = [folder, *paths]
        return original(*bound.args, **bound.kwargs)

    manager.__init__ = __init__
    setattr(manager, _PATCHED, True)


def _register_model(module) -> None:
    from lm_eval.api import registry

    target = "st_eval.harness.lm_eval_model:StJudgeLM"
    model_registry = getattr(registry, "model_registry", None)
    if model_registry is not None and hasattr(model_registry, "register"):
        if "st-judge" not in model_registry:
            model_registry.register("st-judge", target=target)
    else:  # older 0.4.x: a plain dict filled by decorators at import
        import importlib

        importlib.import_module(target.split(":")[0])


_ACTIONS = {
    "lm_eval.tasks": ("add st-eval's tasks", _add_task_folder),
    "lm_eval.tasks.manager": ("add st-eval's tasks", _add_task_folder),
    "lm_eval.models": ("register the st-judge model", _register_model),
}


class _ThenPatch(Loader):
    """Wraps lm_eval's own loader; runs our action right after the module executes."""

    def __init__(self, inner: Loader, name: str) -> None:
        self._inner = inner
        self._name = name

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        self._inner.exec_module(module)
        what, action = _ACTIONS[self._name]
        try:
            action(module)
        except Exception as exc:  # never break lm_eval
            _warn(what, exc)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _Finder(MetaPathFinder):
    st_eval_hook = True

    def find_spec(self, fullname, path, target=None):
        if fullname not in _ACTIONS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenPatch(spec.loader, fullname)
                return spec
        return None


def install() -> None:
    """Put the import hook in place once (no-op when disabled or already installed)."""
    if os.environ.get("ST_EVAL_LM_EVAL_HOOK", "1").lower() in ("0", "false", "no", "off"):
        return
    if any(getattr(f, "st_eval_hook", False) for f in sys.meta_path):
        return
    already = [name for name in _ACTIONS if name in sys.modules]
    for name in already:  # lm_eval imported before us (e.g. the hook installed by hand)
        what, action = _ACTIONS[name]
        try:
            action(sys.modules[name])
        except Exception as exc:
            _warn(what, exc)
    sys.meta_path.insert(0, _Finder())


install()
