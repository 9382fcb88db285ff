"""Errors that st-eval reports to people: each message names what to fix."""


class StEvalError(Exception):
    """Base class: the CLI prints these as one clear line and exits non-zero."""


class InputError(StEvalError):
    """Bad input data or configuration (names the file, line and field where known)."""


class ModelNotFoundError(StEvalError):
    """A model name or path that cannot be resolved to weights."""


class EngineError(StEvalError):
    """An engine that cannot be created or that failed while generating."""
