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

Loading is all-or-nothing: a file with any mistake is refused with the line of the mistake, and whoever loads
it (startup, `POST /admin/policy/reload`) keeps the policy it had.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from cairn_core import check_support, split_sentences
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

Action = Literal["pass", "warn", "reject"]
Target = Literal["question", "answer"]
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]

DEFAULT_POLICY = "default-policy.yaml"  # shipped in the package; changes no answer (docs/governance.md)


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


# PII patterns: candidates by regex, then a checksum where the format has one (IBAN mod 97, cards Luhn), so an
# order number or a date range is not taken for a card.
_EMAIL = re.compile(r"\b[\w.%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){2,4}(?!\w)")


def _iban_ok(s: str) -> bool:
    s = s.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    digits = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(digits) % 97 == 1


def _luhn_ok(s: str) -> bool:
    digits = [int(c) for c in s if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _phone_ok(s: str) -> bool:
    # At least 8 digits, and not a date or a plain decimal number.
    return len(re.sub(r"\D", "", s)) >= 8 and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s.strip())


_PII: dict[str, tuple[re.Pattern[str], Callable[[str], bool], str]] = {
    "email": (_EMAIL, lambda s: True, "an e-mail address"),
    "iban": (_IBAN, _iban_ok, "an IBAN"),
    "card": (_CARD, _luhn_ok, "a card number"),
    "phone": (_PHONE, _phone_ok, "a phone number"),
}


def find_pii(text: str, types: Sequence[str]) -> tuple[str, list[str]]:
    """(text with each finding replaced by its type in capitals, the kinds found); cards before phones, since
    a card number also looks like a long phone number."""
    found: list[str] = []
    for kind in ("email", "iban", "card", "phone"):
        if kind not in types:
            continue
        pattern, valid, label = _PII[kind]

        def swap(
            m: re.Match[str], kind: str = kind, valid: Callable[[str], bool] = valid, label: str = label
        ) -> str:
            if not valid(m.group(0)):
                return m.group(0)
            if label not in found:
                found.append(label)
            return f"[{kind.upper()}]"

        text = pattern.sub(swap, text)
    return text, found


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


# --- loading -----------------------------------------------------------------------------------------------


class _Lined(dict[str, Any]):
    """A YAML mapping that remembers its line and each key's line, for error messages."""

    line: int = 0
    key_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Lined:
    for key, _ in node.value:
        # Every key a policy knows is text; `1:`, `null:` or `true:` would otherwise reach the checks below
        # as an int, None or bool, which neither match a key's line nor sort beside text keys.
        if not (
            isinstance(key, yaml.ScalarNode) and key.tag == yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG
        ):
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be text, not {key.value!r}", key.start_mark
            )
    data = _Lined(loader.construct_mapping(node, deep=True))
    data.line = node.start_mark.line + 1
    data.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return data


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_policy(text: str, source: str) -> list[Any]:
    """The rules of a policy file's text; PolicyError naming the line of the first mistake."""
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise PolicyError(source, f"not valid YAML: {exc.problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise PolicyError(source, f"not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise PolicyError(source, "nested too deeply to be a policy") from None
    if doc is None:
        return []
    if not isinstance(doc, _Lined):
        raise PolicyError(source, "the file must be a mapping with a 'rules' list", 1)
    unknown = set(doc) - {"version", "rules"}
    if unknown:
        key = sorted(unknown)[0]
        raise PolicyError(source, f"unknown key {key!r} (expected 'version' and 'rules')", doc.key_lines[key])
    if doc.get("version", 1) != 1:
        raise PolicyError(source, "only 'version: 1' is known", doc.key_lines.get("version"))
    raw = doc.get("rules") or []
    if not isinstance(raw, list):
        raise PolicyError(source, "'rules' must be a list", doc.key_lines.get("rules"))
    rules: list[Any] = []
    names: set[str] = set()
    for item in raw:
        line = item.line if isinstance(item, _Lined) else doc.key_lines.get("rules")
        if not isinstance(item, _Lined):
            raise PolicyError(source, "each rule must be a mapping (name, kind, action, ...)", line)
        rules.append(_rule(item, source))
        if item["name"] in names:
            raise PolicyError(source, f"a second rule named {item['name']!r}", line)
        names.add(item["name"])
    return rules


def _rule(item: _Lined, source: str) -> Any:
    kind = item.get("kind")
    if kind not in KINDS:
        raise PolicyError(
            source,
            f"unknown rule kind {kind!r}; the kinds are {', '.join(KINDS)}",
            item.key_lines.get("kind", item.line),
        )
    try:
        return _RULE.validate_python(dict(item))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"] if p != kind]
        key = loc[0] if loc else None
        line = item.key_lines.get(key, item.line) if key else item.line
        what = f"{key}: " if key else ""
        name = item.get("name")
        rule = f"rule {name!r}" if isinstance(name, str) else "a rule"
        raise PolicyError(source, f"{rule}: {what}{err['msg']}", line) from None


def load_policy(path: str | None) -> Policy:
    """The policy at `path`, or the shipped default; blocking (reads the file, may import the classifier)."""
    if path:
        source = path
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(source, f"cannot be read: {exc}") from None
    else:
        source = f"(default) {DEFAULT_POLICY}"
        text = resources.files("cairn_query.governance").joinpath(DEFAULT_POLICY).read_text(encoding="utf-8")
    rules = parse_policy(text, source)
    toxicity = Toxicity() if any(isinstance(r, ToxicityRule) for r in rules) else None
    return Policy(rules, source, toxicity)
