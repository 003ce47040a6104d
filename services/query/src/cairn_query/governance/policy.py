"""Governance rules on every answer: one YAML file (`QS_POLICY_FILE`), each rule `pass`, `warn` or `reject`.

A rule has a name, a kind, its parameters and an action (docs/governance.md):
- `pass` runs the rule and records what it found in the audit log, and changes nothing for the user;
- `warn` keeps the answer and adds `{rule, message}` to its `warnings` (a `warning` SSE event before `done`);
- `reject` withholds the answer: the user gets the usual fallback with the search results, reason code
  `POLICY_REJECTED` and the rule's name. A rejected question is never sent to the model.
Every rule runs, so the audit log shows each finding; a reject outranks any warning.

Kinds: `length`, `toxicity` (alt-profanity-check, a classifier shipped in its wheel: no download), `support`
(cairn_core's check_support, the same check that guards grounded answers), `relevance` (embedding cosine of
answer and question), `pii` (e-mail, phone, IBAN, card numbers; optionally redacted) and `blocked_terms`.

Loading is all-or-nothing (policy_file.py): a file with any mistake is refused with the line of the mistake,
and whoever loads it (startup, `POST /admin/policy/reload`) keeps the policy it had. PII patterns: pii.py.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from cairn_core import check_support, split_sentences
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from cairn_query.governance.pii import find_pii

Action = Literal["pass", "warn", "reject"]
Target = Literal["question", "answer"]
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


class PolicyError(Exception):
    """A policy file that cannot be used; `line` is 1-based, None when the mistake has no single line."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        where = f"{source}, line {line}" if line else source
        super().__init__(f"{where}: {message}")
        self.line = line


# --- the rules ---------------------------------------------------------------------------------------------


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    action: Action
    applies_to: tuple[Target, ...] = ("answer",)
    message: str | None = Field(None, max_length=500)  # shown to the user instead of the rule's own words


class LengthRule(_Rule):
    kind: Literal["length"]
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=1)
    min_sentences: int | None = Field(None, ge=0)
    max_sentences: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> LengthRule:
        limits = (self.min_chars, self.max_chars, self.min_sentences, self.max_sentences)
        if all(v is None for v in limits):
            raise ValueError("a length rule needs min_chars, max_chars, min_sentences or max_sentences")
        for low, high, what in (
            (self.min_chars, self.max_chars, "chars"),
            (self.min_sentences, self.max_sentences, "sentences"),
        ):
            if low is not None and high is not None and low > high:
                raise ValueError(f"min_{what} ({low}) is above max_{what} ({high})")
        return self


class ToxicityRule(_Rule):
    kind: Literal["toxicity"]
    applies_to: tuple[Target, ...] = ("question", "answer")
    threshold: float = Field(0.8, gt=0.0, le=1.0)  # the classifier's probability of offensive language


class SupportRule(_Rule):
    kind: Literal["support"]
    min_overlap: float = Field(0.6, ge=0.0, le=1.0)  # share of a sentence's content words in its sources


class RelevanceRule(_Rule):
    kind: Literal["relevance"]
    min_similarity: float = Field(ge=-1.0, le=1.0)  # cosine of the answer's and the question's embeddings


PiiType = Literal["email", "phone", "iban", "card"]


class PiiRule(_Rule):
    kind: Literal["pii"]
    applies_to: tuple[Target, ...] = ("question", "answer")
    types: tuple[PiiType, ...] = ("email", "phone", "iban", "card")
    redact: bool = False  # replace each finding by [EMAIL] / [PHONE] / [IBAN] / [CARD]


class BlockedTermsRule(_Rule):
    kind: Literal["blocked_terms"]
    applies_to: tuple[Target, ...] = ("question", "answer")
    terms: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(min_length=1)


Rule = Annotated[
    LengthRule | ToxicityRule | SupportRule | RelevanceRule | PiiRule | BlockedTermsRule,
    Field(discriminator="kind"),
]
KINDS = ("length", "toxicity", "support", "relevance", "pii", "blocked_terms")
_RULE = TypeAdapter(Rule)


# --- what a rule finds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    rule: str
    kind: str
    action: Action
    target: Target
    message: str

    @property
    def detail(self) -> str:
        """Why an answer was withheld, for the fallback message."""
        return f"rule '{self.rule}': {self.message}"

    def public(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message}

    def record(self) -> dict[str, str]:
        return {"rule": self.rule, "kind": self.kind, "action": self.action, "target": self.target}


@dataclass
class Verdict:
    text: str  # the checked text, with PII redacted where a rule says so
    findings: list[Finding] = field(default_factory=list)

    @property
    def rejected(self) -> Finding | None:
        return next((f for f in self.findings if f.action == "reject"), None)

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.action == "warn"]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class Toxicity:
    """alt-profanity-check's classifier, imported once (about 2 s: scikit-learn) when a policy needs it."""

    def __init__(self) -> None:
        try:
            from profanity_check import predict_prob
        except ImportError:  # pragma: no cover - the `toxicity` extra is installed by `make setup`
            raise RuntimeError(
                "a toxicity rule needs alt-profanity-check: install cairn-query[toxicity]"
            ) from None
        self._predict = predict_prob

    def score(self, text: str) -> float:
        return float(self._predict([text])[0])


@dataclass
class Policy:
    """A loaded, valid policy. Immutable: a reload builds a new one and swaps it in whole."""

    rules: list[Any]
    source: str
    toxicity: Toxicity | None = None

    @property
    def needs_embeddings(self) -> bool:
        return any(isinstance(r, RelevanceRule) for r in self.rules)

    @property
    def needs_sources(self) -> bool:
        return any(isinstance(r, SupportRule) and "answer" in r.applies_to for r in self.rules)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rules": [{"name": r.name, "kind": r.kind, "action": r.action} for r in self.rules],
        }

    async def check_question(self, question: str) -> Verdict:
        verdict = Verdict(question)
        for rule in self.rules:
            if "question" in rule.applies_to and not isinstance(rule, SupportRule | RelevanceRule):
                await self._apply(rule, "question", verdict)
        return verdict

    async def check_answer(
        self, question: str, answer: str, sources: Sequence[str], embed: Embed | None = None
    ) -> Verdict:
        """`sources`: the texts of the cited chunks (of every chunk sent when the answer cites none)."""
        verdict = Verdict(answer)
        for rule in self.rules:
            if "answer" in rule.applies_to:
                await self._apply(rule, "answer", verdict, question=question, sources=sources, embed=embed)
        return verdict

    async def _apply(
        self,
        rule: Any,
        target: Target,
        verdict: Verdict,
        *,
        question: str = "",
        sources: Sequence[str] = (),
        embed: Embed | None = None,
    ) -> None:
        problem = await self._problem(rule, target, verdict, question, sources, embed)
        if problem is not None:
            verdict.findings.append(
                Finding(rule.name, rule.kind, rule.action, target, rule.message or problem)
            )

    async def _problem(
        self,
        rule: Any,
        target: Target,
        verdict: Verdict,
        question: str,
        sources: Sequence[str],
        embed: Embed | None,
    ) -> str | None:
        """What the rule finds wrong with `verdict.text`, in words for the user; None when nothing."""
        text = verdict.text
        the = f"The {target}"
        if isinstance(rule, LengthRule):
            chars, sentences = len(text.strip()), len(split_sentences(text))
            if rule.min_chars is not None and chars < rule.min_chars:
                return f"{the} is shorter than {rule.min_chars} characters."
            if rule.max_chars is not None and chars > rule.max_chars:
                return f"{the} is longer than {rule.max_chars} characters."
            if rule.min_sentences is not None and sentences < rule.min_sentences:
                return f"{the} has fewer than {rule.min_sentences} sentences."
            if rule.max_sentences is not None and sentences > rule.max_sentences:
                return f"{the} has more than {rule.max_sentences} sentences."
            return None
        if isinstance(rule, ToxicityRule):
            assert self.toxicity is not None, "load_policy builds the classifier for toxicity rules"
            score = await asyncio.to_thread(self.toxicity.score, text)
            return f"{the} looks offensive (score {score:.2f})." if score >= rule.threshold else None
        if isinstance(rule, SupportRule):
            verdict_ = check_support(text, list(sources), rule.min_overlap)
            return None if verdict_ else f"{the} is not supported by its sources: {verdict_.reason}."
        if isinstance(rule, RelevanceRule):
            if embed is None:
                return None  # no embedder: the rule cannot judge, and says nothing rather than guess
            vectors = await embed([question, text])
            similarity = _cosine(vectors[0], vectors[1])
            if similarity < rule.min_similarity:
                return f"{the} does not seem to be about the question (similarity {similarity:.2f})."
            return None
        if isinstance(rule, PiiRule):
            redacted, found = find_pii(text, rule.types)
            if rule.redact:
                verdict.text = redacted
            if not found:
                return None
            done = " (redacted)" if rule.redact else ""
            return f"{the} contains {' and '.join(found)}{done}."
        if isinstance(rule, BlockedTermsRule):
            hits = [t for t in rule.terms if re.search(rf"(?<!\w){re.escape(t)}(?!\w)", text, re.IGNORECASE)]
            return f"{the} contains a blocked term: {', '.join(hits)}." if hits else None
        raise AssertionError(f"unknown rule {rule!r}")  # the loader admits only the kinds above
