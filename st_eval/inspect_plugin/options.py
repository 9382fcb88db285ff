"""Task and scorer options under ``inspect eval``: a bad one ends in one line, not a traceback.

Inspect prints a ``PrerequisiteError`` as its message alone; any other exception raised while
a task is built comes with a traceback of dozens of lines. :func:`one_line_options` makes the
st-eval errors of a task or scorer function (a template typo, hub data out of reach offline, a
bad mode) such one-liners, naming the ``-T``/``-S`` setting, while they stay ``InputError``s
for Python callers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from inspect_ai._util.error import PrerequisiteError

from st_eval.errors import InputError, StEvalError
from st_eval.hub import offline_option

F = TypeVar("F", bound=Callable[..., Any])
#: options that name a judge template
TEMPLATE_OPTIONS = ("template", "ties_template")


class OptionError(InputError, PrerequisiteError):
    """An st-eval error Inspect shows as one line (its message)."""

    def __init__(self, message: str) -> None:
        InputError.__init__(self, message)
        self.message = message


def one_line_options(flag: str) -> Callable[[F], F]:
    """Wrap a task (``flag="-T"``) or scorer (``"-S"``) function: templates named in its options
    are checked first (the message names the option), the offline hint names ``-T data_files``,
    and st-eval errors become :class:`OptionError`."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                with offline_option("-T data_files=PATH"):
                    _check_templates(kwargs, flag)
                    return function(*args, **kwargs)
            except OptionError:
                raise
            except StEvalError as exc:
                raise OptionError(str(exc)) from exc

        return wrapper  # type: ignore[return-value]

    return decorate


def _check_templates(options: dict[str, Any], flag: str) -> None:
    from st_eval.prompt import load_template

    for key in TEMPLATE_OPTIONS:
        if options.get(key):
            try:
                load_template(options[key])
            except InputError as exc:
                raise OptionError(f"{flag} {key}: {exc}") from None


__all__ = ["OptionError", "one_line_options"]
