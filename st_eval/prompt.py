"""Judge prompt templates: named, versioned data files rendered into chat messages.

A template is a YAML file with ``name``, ``description``, ``system`` and ``user`` (Jinja2), and
the verdict form it asks for (``kind``):

* ``pairwise`` (default): both answers in one prompt; the judge writes ``[[A]]`` or ``[[B]]``.
* ``rating``: one answer per prompt; the judge's next-token probabilities over the template's
  ``choices`` (e.g. ``{"Yes": 1, "No": 0}``) give the answer a rating, their expected value
  (see ``rating.py``); ``max_response_chars`` / ``max_instruction_chars`` bound what it reads.
* ``choice``: both answers in one prompt; the judge writes nothing: its next-token probabilities
  of the two ``choices`` (``{"A": 1, "B": 0}``: the answer shown first, the one shown second)
  are read in both presentation orders, and their log-odds, averaged over the two orders, decide
  (see ``judge.py``), so a judge's preference for a position cancels. Unlike a rating judge it
  sees the answers side by side; unlike a pairwise judge it generates no reasoning.
* ``score``: one answer per prompt; the judge reasons and writes a rating on the template's
  ``verdict.scale`` (e.g. 1-10) at the end (see ``scores.py``).
* ``kway``: k answers in one prompt (``answers``, named by ``letters``); the judge writes the
  marker of the best one (``[[A]]``..``[[D]]``; see ``kway.py``).

The ``verdict`` field declares the verdict form, so the one parser (``verdict.py``) reads each
template's outputs as that template asked: ``letters`` and ``rule`` (``last-line``, st-eval's, or
``first-listed``, RewardBench's) for pairwise and k-way templates, ``scale`` for score templates.
``verbatim: true`` sends the rendered texts exactly as written (no trimming), for published
prompts whose exact text, leading newline included, is part of the protocol. The system text
is a Jinja2 template too (a published protocol may change it for multi-turn conversations).

Built-in templates live in ``st_eval/templates``; a user may pass the path of their own file.
The template's ``name`` is recorded in every judgment so annotation, training and evaluation
can prove they used the same prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2
import yaml

from st_eval.errors import InputError
from st_eval.pair_files import read_text
from st_eval.records import Message, Pair
from st_eval.verdict import LETTER_RULES, PAIRWISE_LETTERS, ParsedRating, ParsedVerdict, parse_rating, parse_verdict
from st_eval.yaml_text import load_yaml

DEFAULT_TEMPLATE = "pairwise-v1"
TEMPLATE_KINDS = ("pairwise", "rating", "choice", "score", "kway")
#: kinds whose verdict is read from next-token probabilities of the template's choices
PROBABILITY_KINDS = ("rating", "choice")
#: kinds whose judge sees one answer at a time
ONE_ANSWER_KINDS = ("rating", "score")
#: what replaces the middle of a text longer than a template lets the judge read
SHORTENED_MARKER = "\n[...]\n"
_MARKER_IN_RESPONSE = re.compile(r"\[\[\s*([A-Z])\s*\]\]", re.IGNORECASE)
_VERDICT_PHRASE = re.compile(r"(final\s+verdict)", re.IGNORECASE)


@dataclass(frozen=True)
class VerdictForm:
    """What a template asks the judge to write, so the one parser reads it (see ``verdict.py``).

    letters: pairwise (``AB``, plus ``C`` for a tie) and k-way templates: the answers' letters.
    rule: ``last-line`` or ``first-listed`` for letters; ``trailing-integer`` for ratings.
    scale: score templates: the lowest and highest rating.
    """

    letters: str = PAIRWISE_LETTERS
    rule: str = "last-line"
    scale: tuple[int, int] | None = None

    def parse(self, text: str | None, *, allow_tie: bool = False) -> ParsedVerdict:
        """A letter verdict under this form."""
        return parse_verdict(text, allow_tie=allow_tie, letters=self.letters, rule=self.rule)

    def parse_rating(self, text: str | None) -> ParsedRating:
        """A written rating under this form (score templates)."""
        if self.scale is None:
            raise ValueError("this verdict form names letters, not a rating scale")
        return parse_rating(text, self.scale)


@dataclass(frozen=True)
class JudgeTemplate:
    """A named judge prompt: system text plus a Jinja2 user template, and its verdict form.

    kind: ``pairwise`` (one prompt, two answers, a ``[[X]]`` verdict), ``rating`` (one prompt
        per answer, rated from the probabilities of ``choices``), ``choice`` (one prompt, two
        answers, read from the probabilities of ``choices``), ``score`` or ``kway``.
    choices: rating and choice templates only: verdict token -> value (``{"Yes": 1.0, "No": 0.0}``;
        a choice template's higher-valued token names the answer shown first).
    max_response_chars, max_instruction_chars: a template may bound what the judge reads;
        longer texts are shortened from the middle (see :func:`shorten_middle`). 0 = no bound.
    verdict: the verdict form the template asks for.
    verbatim: render system and user texts exactly as written (no trimming).
    """

    name: str
    description: str
    system: str
    user: str
    kind: str = "pairwise"
    choices: dict[str, float] = field(default_factory=dict)
    max_response_chars: int = 0
    max_instruction_chars: int = 0
    verdict: VerdictForm = field(default_factory=VerdictForm)
    verbatim: bool = False

    @property
    def is_rating(self) -> bool:
        """Rates one answer from next-token probabilities."""
        return self.kind == "rating"

    @property
    def is_choice(self) -> bool:
        """Reads which of two answers shown together wins from next-token probabilities."""
        return self.kind == "choice"

    @property
    def reads_probabilities(self) -> bool:
        """The judge writes nothing: its verdict is read from the probabilities of ``choices``
        (rating and choice templates), one prompt per answer or per order."""
        return self.kind in PROBABILITY_KINDS

    def probability_prompts(self, pair: Pair) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The two prompts whose next-token probabilities judge ``pair``: a rating template's
        prompts for answer A and answer B; a choice template's pair shown as given and swapped."""
        if self.is_rating:
            return self.render_rating(pair, "A"), self.render_rating(pair, "B")
        if self.is_choice:
            return self.render(pair), self.render(pair.swapped())
        raise ValueError(f"template {self.name!r} ({self.kind}) does not read probabilities")

    @property
    def is_score(self) -> bool:
        """Rates one answer with a written rating."""
        return self.kind == "score"

    @property
    def is_kway(self) -> bool:
        return self.kind == "kway"

    @property
    def one_answer(self) -> bool:
        """The judge sees one answer per prompt (rating and score templates)."""
        return self.kind in ONE_ANSWER_KINDS

    def _messages(self, context: dict) -> list[dict[str, str]]:
        """System and user messages rendered from ``context`` (trimmed unless ``verbatim``)."""
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=self.verbatim)
        system = env.from_string(self.system).render(**context) if self.system else ""
        user = env.from_string(self.user).render(**context)
        if not self.verbatim:
            system, user = system.strip(), user.strip()
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        return messages

    def render(self, pair: Pair, *, allow_tie: bool = False) -> list[dict[str, str]]:
        """Build the chat messages that ask the judge to compare ``pair``'s two responses."""
        history = [
            {"role": m.role, "content": defang(m.content)} for m in pair.conversation[:-1]
        ]
        limit = self.max_response_chars
        context = {
            "instruction": defang(shorten_middle(pair.instruction, self.max_instruction_chars)),
            "history": history,
            "response_a": defang(shorten_middle(pair.response_a, limit)),
            "response_b": defang(shorten_middle(pair.response_b, limit)),
            "reference": defang(pair.reference) if pair.reference else None,
            "allow_tie": allow_tie,
            "multi_turn": pair.turns_a is not None and pair.turns_b is not None,
            "conversation_a": _interleave(pair, [shorten_middle(t, limit) for t in pair.turns_a]) if pair.turns_a else [],
            "conversation_b": _interleave(pair, [shorten_middle(t, limit) for t in pair.turns_b]) if pair.turns_b else [],
        }
        return self._messages(context)

    def render_rating(self, pair: Pair, side: str) -> list[dict[str, str]]:
        """Chat messages asking the judge to rate one answer of ``pair`` (``side`` "A" or "B") alone."""
        response = pair.response_a if side == "A" else pair.response_b
        turns = pair.turns_a if side == "A" else pair.turns_b
        history = [
            {"role": m.role, "content": defang(m.content)} for m in pair.conversation[:-1]
        ]
        context = {
            "instruction": defang(shorten_middle(pair.instruction, self.max_instruction_chars)),
            "history": history,
            "response": defang(shorten_middle(response, self.max_response_chars)),
            "reference": defang(pair.reference) if pair.reference else None,
            "multi_turn": turns is not None,
            "conversation": _interleave(pair, [shorten_middle(t, self.max_response_chars) for t in turns]) if turns else [],
        }
        return self._messages(context)

    def render_kway(self, conversation: Sequence[Message], answers: Sequence[str], reference: str | None = None) -> list[dict[str, str]]:
        """Chat messages showing a k-way judge the answers to the conversation's last user turn,
        in the order given, named by the template's letters."""
        letters = self.verdict.letters
        if len(answers) != len(letters):
            raise InputError(f"template {self.name!r} shows {len(letters)} answers ({letters}), got {len(answers)}")
        users = [m.content for m in conversation if m.role == "user"]
        context = {
            "instruction": defang(users[-1] if users else ""),
            "history": [{"role": m.role, "content": defang(m.content)} for m in conversation[:-1]],
            "answers": [defang(a) for a in answers],
            "letters": list(letters),
            "reference": defang(reference) if reference else None,
        }
        return self._messages(context)

    def shortens(self, pair: Pair) -> bool:
        """Whether rendering ``pair`` shortens any of its texts (the template's character bounds)."""
        texts = [(pair.instruction, self.max_instruction_chars)]
        texts += [(t, self.max_response_chars) for t in (pair.response_a, pair.response_b, *(pair.turns_a or []), *(pair.turns_b or []))]
        return any(limit and len(text) > limit for text, limit in texts)


def shorten_middle(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters (0: no limit), else its head and tail
    around a visible ``[...]`` marker, ``limit`` characters in all besides the marker.

    Why the middle: a request's task and an answer's opening and conclusion sit at the ends;
    cutting the middle keeps both, and the marker tells the judge that text is missing."""
    if not limit or len(text) <= limit:
        return text
    head = limit // 2
    return text[:head].rstrip() + SHORTENED_MARKER + text[len(text) - (limit - head) :].lstrip()


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


def judge_template(model: str | None) -> str:
    """The template a judge should be run with: the one its judge card names (shipped judges and
    folders written by ``st-eval train``), an embedded judge's own, else the default pairwise
    template."""
    from st_eval.embedded import DEFAULT_MODEL, EMBEDDED_MODELS, judge_card

    card = judge_card(model)
    template = card.get("template") if card else None
    if isinstance(template, str) and template:
        return template
    embedded = EMBEDDED_MODELS.get(model or DEFAULT_MODEL)
    return embedded.template if embedded else DEFAULT_TEMPLATE


def builtin_templates() -> list[str]:
    """Names of the templates shipped with st-eval."""
    folder = resources.files("st_eval") / "templates"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


@lru_cache(maxsize=32)
def load_template(name_or_path: str = DEFAULT_TEMPLATE) -> JudgeTemplate:
    """Load a built-in template by name, or a user's template file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text, source = read_text(path), str(path)
    else:
        resource = resources.files("st_eval") / "templates" / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise InputError(
                f"unknown judge template {name_or_path!r}: use one of "
                f"{', '.join(builtin_templates())} or the path of a .yaml template file"
            )
        text, source = resource.read_text(encoding="utf-8"), f"built-in template {name_or_path}"
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{source}: a template must be a mapping with name, system and user")
    for key in ("name", "user"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise InputError(f"{source}: field {key!r} is missing or empty")
    if data.get("system") is not None and not isinstance(data["system"], str):
        raise InputError(f"{source}: field 'system' must be text")
    kind = data.get("kind", "pairwise")
    if kind not in TEMPLATE_KINDS:
        raise InputError(f"{source}: field 'kind' must be one of {', '.join(TEMPLATE_KINDS)}, got {kind!r}")
    choices = data.get("choices") or {}
    if kind in PROBABILITY_KINDS:
        if (
            not isinstance(choices, dict)
            or len(choices) < 2
            or not all(isinstance(k, str) and k.strip() and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in choices.items())
        ):
            raise InputError(f"{source}: field 'choices' must map at least two verdict tokens to numbers, e.g. {{Yes: 1, No: 0}}")
        if len({k.strip().casefold() for k in choices}) < len(choices):
            raise InputError(f"{source}: field 'choices' names the same token twice (tokens are matched without case)")
        if kind == "choice" and (len(choices) != 2 or len(set(choices.values())) != 2):
            raise InputError(
                f"{source}: field 'choices' of a choice template must map two verdict tokens to two different numbers, "
                "e.g. {A: 1, B: 0} (the higher-valued token names the answer shown first)"
            )
    elif choices:
        raise InputError(f"{source}: field 'choices' is only for templates of kind 'rating' or 'choice'")
    verbatim = data.get("verbatim", False)
    if not isinstance(verbatim, bool):
        raise InputError(f"{source}: field 'verbatim' must be true or false, got {verbatim!r}")
    for key in ("system", "user"):
        if data.get(key):
            try:
                jinja2.Environment().parse(data[key])
            except jinja2.TemplateSyntaxError as exc:
                raise InputError(f"{source}: field {key!r}, line {exc.lineno}: {exc.message}") from exc
    limits = {}
    for key in ("max_response_chars", "max_instruction_chars"):
        value = data.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{source}: field {key!r} must be a whole number >= 0, got {value!r}")
        limits[key] = value
    return JudgeTemplate(
        name=data["name"],
        description=data.get("description", ""),
        system=data.get("system", "") or "",
        user=data["user"],
        kind=kind,
        choices={k: float(v) for k, v in choices.items()},
        **limits,
        verdict=_verdict_form(data.get("verdict"), kind, source),
        verbatim=verbatim,
    )


def _verdict_form(value: object, kind: str, source: str) -> VerdictForm:
    """The template's ``verdict`` field, checked against its kind (defaults: pairwise ``AB``,
    k-way ``ABCD``, both ``last-line``; score templates ``scale: [1, 10]``)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InputError(f"{source}: field 'verdict' must be a mapping (letters, rule, scale)")
    unknown = sorted(set(value) - {"letters", "rule", "scale"})
    if unknown:
        raise InputError(f"{source}: field 'verdict': unknown key(s) {', '.join(unknown)} (use letters, rule, scale)")
    if kind in PROBABILITY_KINDS:
        if value:
            raise InputError(f"{source}: field 'verdict': a {kind!r} template reads probabilities of its choices; it has no written verdict")
        return VerdictForm()
    if kind == "score":
        if "letters" in value:
            raise InputError(f"{source}: field 'verdict.letters': a score template asks for a rating, not a letter")
        scale = value.get("scale", [1, 10])
        if (
            not isinstance(scale, list) or len(scale) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in scale) or scale[0] >= scale[1]
        ):
            raise InputError(f"{source}: field 'verdict.scale' must be [lowest, highest] whole numbers, lowest < highest, got {scale!r}")
        rule = value.get("rule", "trailing-integer")
        if rule != "trailing-integer":
            raise InputError(f"{source}: field 'verdict.rule' of a score template must be 'trailing-integer', got {rule!r}")
        return VerdictForm(letters="", rule=rule, scale=(scale[0], scale[1]))
    if "scale" in value:
        raise InputError(f"{source}: field 'verdict.scale' is only for templates of kind 'score'")
    letters = value.get("letters", PAIRWISE_LETTERS if kind == "pairwise" else "ABCD")
    if not isinstance(letters, str) or not letters.isalpha() or not letters.isupper() or len(set(letters)) != len(letters) or len(letters) < 2:
        raise InputError(f"{source}: field 'verdict.letters' must be two or more distinct capital letters, got {letters!r}")
    if kind == "pairwise" and letters != PAIRWISE_LETTERS:
        raise InputError(f"{source}: field 'verdict.letters' of a pairwise template must be 'AB' ([[C]] is the tie), got {letters!r}")
    rule = value.get("rule", "last-line")
    if rule not in LETTER_RULES:
        raise InputError(f"{source}: field 'verdict.rule' must be one of {', '.join(LETTER_RULES)}, got {rule!r}")
    return VerdictForm(letters=letters, rule=rule)
