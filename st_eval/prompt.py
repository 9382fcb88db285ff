"""Judge prompt templates: named, versioned data files rendered into chat messages.

A template is a YAML file with ``name``, ``description``, ``system`` and ``user`` (Jinja2).
Built-in templates live in ``st_eval/templates``; a user may pass the path of their own file.
The template's ``name`` is recorded in every judgment so annotation, training and evaluation
can prove they used the same prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2
import yaml

from st_eval.errors import InputError
from st_eval.records import Pair

DEFAULT_TEMPLATE = "pairwise-v1"
_MARKER_IN_RESPONSE = re.compile(r"\[\[\s*([ABC])\s*\]\]", re.IGNORECASE)
_VERDICT_PHRASE = re.compile(r"(final\s+verdict)", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeTemplate:
    """A named judge prompt: system text plus a Jinja2 user template."""

    name: str
    description: str
    system: str
    user: str

    def render(self, pair: Pair, *, allow_tie: bool = False) -> list[dict[str, str]]:
        """Build the chat messages that ask the judge to compare ``pair``'s two responses."""
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
        history = [
            {"role": m.role, "content": defang(m.content)} for m in pair.conversation[:-1]
        ]
        context = {
            "instruction": defang(pair.instruction),
            "history": history,
            "response_a": defang(pair.response_a),
            "response_b": defang(pair.response_b),
            "reference": defang(pair.reference) if pair.reference else None,
            "allow_tie": allow_tie,
            "multi_turn": pair.turns_a is not None and pair.turns_b is not None,
            "conversation_a": _interleave(pair, pair.turns_a) if pair.turns_a else [],
            "conversation_b": _interleave(pair, pair.turns_b) if pair.turns_b else [],
        }
        user = env.from_string(self.user).render(**context).strip()
        messages = [{"role": "system", "content": self.system.strip()}] if self.system else []
        messages.append({"role": "user", "content": user})
        return messages


def defang(text: str) -> str:
    """Neutralise verdict markers inside material under judgment.

    A response that contains ``[[A]]`` or "Final verdict" must not be able to plant a verdict the
    judge might copy, so ``[[A]]`` becomes ``[A]`` and the phrase loses its exact wording.
    """
    text = _MARKER_IN_RESPONSE.sub(lambda m: f"[{m.group(1)}]", text)
    return _VERDICT_PHRASE.sub(lambda m: m.group(1).replace(" ", "-"), text)


def _interleave(pair: Pair, answers: list[str]) -> list[dict[str, str]]:
    """Rebuild one assistant's conversation: each user turn followed by its answer."""
    users = [m for m in pair.conversation if m.role == "user"]
    system = [m for m in pair.conversation if m.role == "system"]
    turns = [{"role": "system", "content": defang(m.content)} for m in system]
    for user, answer in zip(users, answers):
        turns.append({"role": "user", "content": defang(user.content)})
        turns.append({"role": "assistant", "content": defang(answer)})
    return turns


def builtin_templates() -> list[str]:
    """Names of the templates shipped with st-eval."""
    folder = resources.files("st_eval") / "templates"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


@lru_cache(maxsize=32)
def load_template(name_or_path: str = DEFAULT_TEMPLATE) -> JudgeTemplate:
    """Load a built-in template by name, or a user's template file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        resource = resources.files("st_eval") / "templates" / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise InputError(
                f"unknown judge template {name_or_path!r}: use one of "
                f"{', '.join(builtin_templates())} or the path of a .yaml template file"
            )
        text, source = resource.read_text(encoding="utf-8"), f"built-in template {name_or_path}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{source}: a template must be a mapping with name, system and user")
    for key in ("name", "user"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise InputError(f"{source}: field {key!r} is missing or empty")
    try:
        jinja2.Environment().parse(data["user"])
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"{source}: field 'user', line {exc.lineno}: {exc.message}") from exc
    return JudgeTemplate(
        name=data["name"],
        description=data.get("description", ""),
        system=data.get("system", "") or "",
        user=data["user"],
    )
