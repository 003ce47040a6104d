"""Follow-up questions made standalone before retrieval: "and for Corvale?" after "What is Brindlewick's
mileage rate?" is searched as "What is Corvale's mileage rate?".

Retrieval and evidence selection read one question; a follow-up alone names the new party but not the topic
(or the topic but not the party), and finds the wrong documents. So before retrieval the last user message
is rewritten with what it leaves out, in one of two ways (`QS_FOLLOWUP_REWRITE`):

- **rules** (deterministic, no model): only for a message that looks like a follow-up (it opens with "and",
  "what about", …, is three words or fewer, or is up to eight words and refers back with "it"/"its"/"their"
  …). The names it brings (capitalised words) replace the names of the previous question ("Corvale's?" →
  that question about Corvale); a new topic without a name is asked about the previous question's names ("And the night-shift
  bonus?" → "The night-shift bonus for Corvale?", "How long does it run?" → "How long does Kestrel run?");
  anything else ("And elsewhere?") is searched together with the previous question. Earlier follow-ups are resolved the same
  way first, so a chain of them keeps its topic.
- **model**: the gateway's model writes the standalone question (few-shot, at most `MAX_TOKENS` tokens, one
  line). Its text is used only when it is a short question that keeps the follow-up's own words and names
  and has no content word the conversation does not have; otherwise, or when the gateway fails or is slow,
  the rules answer. `auto` asks the model only where the rules could not resolve the follow-up (they would
  search it together with the previous question) and while the gateway's circuit is closed: a rewrite costs
  a generation (1-3 s on Gemma 3 270M with 2 cores), and on the evaluation set that model mostly copies the
  earlier question (docs/eval.md). `model` asks it for every message after the first; `off` searches the
  last user message as it is.

The conversation still goes to the model (within the prompt's budget, prompt_budget.py); the rewrite is what
QS searches and picks evidence with. Both questions are logged (`followup_rewrite`).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import structlog
from cairn_core import ChatMessage, GenerateRequest, UpstreamError, content_words

from cairn_query.clients.gateway import GatewayClient
from cairn_query.schemas import MAX_QUESTION_CHARS
from cairn_query.settings import QuerySettings

log = structlog.get_logger("followup")

# Longest openers first: "and what about" before "and".
OPENERS = (
    "and what about",
    "and how about",
    "what about",
    "how about",
    "what of",
    "same question for",
    "same for",
    "and",
    "also",
    "or",
)
# Words that point back at something named earlier ("this"/"that"/"there" are too common to say so).
PRONOUNS = {"it": "", "they": "", "them": "", "he": "", "she": "", "him": "", "its": "'s", "their": "'s"}
# Words after an "it" that refers to nothing ("is it possible", "does it take", "it is required").
EXPLETIVE = frozenset(
    "possible allowed ok okay necessary required mandatory true worth take takes fine normal legal".split()  # noqa: SIM905
)
# A follow-up that starts with one of these asks about a new topic ("And the night-shift bonus?", "And how
# long is the probation period?"); otherwise it narrows the previous one ("And elsewhere?", "And on Saturdays?").
NEW_TOPIC = frozenset(
    "the a an what how when where which who why is are does do can must will".split()  # noqa: SIM905
)
PREPOSITIONS = frozenset({"for", "at", "in", "on", "of", "from", "with", "by", "about", "to"})
SHORT_WORDS = 3  # a message this short continues the conversation
REFERRING_WORDS = 8  # a pronoun in a message up to this long refers back; longer ones stand on their own
MAX_TOKENS = 48  # the model's rewrite: one question
MAX_REWRITE_CHARS = 300
_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ0-9][\w'’-]*")
_CALENDAR = frozenset(
    {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february"}
    | {"march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}
)


def _stem(word: str) -> str | None:
    """The word as content_words stems it; None for a stopword."""
    stems = content_words(word)
    return next(iter(stems)) if stems else None


@dataclass(frozen=True, slots=True)
class Name:
    """A run of capitalised words ("Corvale Foods"), without a possessive ending."""

    start: int
    end: int
    text: str


def names(text: str, lower: set[str]) -> list[Name]:
    """Runs of capitalised words that are names: not a stopword, weekday or month, and not a sentence's first
    word unless it is possessive ("Corvale's …"), or the message is a few words ("Corvale?") and the word is
    never written in lower case in `lower` (stems of the conversation's lower-case words)."""
    words = list(_WORD.finditer(text))
    short = len(words) <= SHORT_WORDS
    out: list[Name] = []
    run: list[re.Match[str]] = []

    def flush() -> None:
        if run:
            last = run[-1]
            end = last.end() - (2 if last.group(0).endswith(("'s", "’s")) else 0)
            out.append(Name(run[0].start(), end, text[run[0].start() : end]))
            run.clear()

    previous_end = 0
    for i, m in enumerate(words):
        between = text[previous_end : m.start()]
        if between.strip():  # punctuation ends a run of names
            flush()
        first = i == 0 or bool(re.search(r"[.!?:]", between))
        w = m.group(0)
        stem = _stem(w)
        possessive = w.endswith(("'s", "’s"))
        is_name = w[0].isupper() and stem is not None and stem not in _CALENDAR
        if is_name and first:
            is_name = possessive or (short and stem not in lower)
        if is_name:
            run.append(m)
        if not is_name or possessive:
            flush()
        previous_end = m.end()
    flush()
    return out


def _strip_opener(question: str) -> tuple[str, bool]:
    text = question.strip()
    low = text.lower()
    for opener in OPENERS:
        if low.startswith(opener) and (len(low) == len(opener) or not low[len(opener)].isalnum()):
            return text[len(opener) :].lstrip(" ,;:-"), True
    return text, False


def _pronouns(text: str) -> list[re.Match[str]]:
    """The pronouns that refer back; not the "it" of "is it possible …" or "how long does it take …"."""
    words = list(_WORD.finditer(text))
    out = []
    for i, m in enumerate(words):
        w = m.group(0).lower()
        after = {x.group(0).lower() for x in words[i + 1 : i + 3]}
        if w in PRONOUNS and not (w == "it" and after & EXPLETIVE):
            out.append(m)
    return out


def looks_like_followup(question: str) -> bool:
    _, opened = _strip_opener(question)
    n = len(_WORD.findall(question))
    return opened or n <= SHORT_WORDS or (n <= REFERRING_WORDS and bool(_pronouns(question)))


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _as_question(text: str) -> str:
    return text.rstrip(" ?.!") + "?"


def rewrite_rules(previous: str, question: str, lower: set[str]) -> str:
    """`question` made standalone with what `previous` (itself standalone) said; unchanged when it does
    not look like a follow-up."""
    return _rules(previous, question, lower)[0]


def _rules(previous: str, question: str, lower: set[str]) -> tuple[str, bool]:
    """The rules' rewrite, and whether they resolved the follow-up (False: it is only searched together
    with the previous question, where the model may do better). At most MAX_QUESTION_CHARS, as any question
    QS is asked: each unresolved follow-up carries the one before, so a chain of long ones grew without
    bound (8 of 4,000 characters made a 31,895-character search). The end is kept: the newest words."""
    text, resolved = _resolve(previous, question, lower)
    if len(text) > MAX_QUESTION_CHARS:
        cut = text[-MAX_QUESTION_CHARS:]
        text = cut.split(" ", 1)[1] if " " in cut[:100] else cut  # from a whole word on
    return text, resolved


def _resolve(previous: str, question: str, lower: set[str]) -> tuple[str, bool]:
    question = " ".join(question.split())
    if not looks_like_followup(question):
        return question, True
    rest, _ = _strip_opener(question)
    new = names(rest, lower)
    old = names(previous, lower)
    name_stems = {s for n in new for s in content_words(n.text)}
    topic = content_words(rest) - name_stems - {"one", "too", "either", "instead", "please"}
    if new and not topic:
        if not old:  # the previous question names nobody: ask it about the new names
            phrase = rest.rstrip(" ?.!")
            first = phrase.split(" ", 1)[0].lower()
            if first not in PREPOSITIONS:
                phrase = "for " + " and ".join(n.text for n in new)
            return f"{previous.rstrip(' ?.!')} {phrase}?", True
        out, extra = previous, [n.text for n in new[len(old) :]]
        for o, n in reversed(list(zip(old, new, strict=False))):
            tail = out[o.end :]
            if n.text.endswith("s") and tail.startswith(("'s", "’s")):
                tail = tail[0] + tail[2:]  # "Corvale Foods'", not "Corvale Foods's"
            out = out[: o.start] + n.text + tail
        return (
            _as_question(out.rstrip(" ?.!") + "".join(f" and {e}" for e in extra)) if extra else out
        ), True
    if topic and not new and old:
        refs = _pronouns(rest)
        if refs:
            main = old[0].text
            for m in reversed(refs):
                rest = rest[: m.start()] + main + PRONOUNS[m.group(0).lower()] + rest[m.end() :]
            return _as_question(_capitalised(rest)), True
        if rest.split(" ", 1)[0].lower() in NEW_TOPIC:
            names_of = " and ".join(n.text for n in old)
            return _as_question(_capitalised(rest).rstrip(" ?.!") + " for " + names_of), True
    if topic and new and not _pronouns(rest):
        return _as_question(_capitalised(rest)), True  # its own party and topic: standalone already
    return f"{previous} {_capitalised(rest) if rest else question}", False


def standalone_by_rules(messages: list[ChatMessage]) -> tuple[str, str | None]:
    """The last user message, and the previous user question made standalone (None when there is none);
    each earlier follow-up is resolved first, so that a chain keeps its topic."""
    asked = [" ".join(m.content.split()) for m in messages if m.role == "user" and m.content.strip()]
    lower = lower_words(messages)
    previous: str | None = None
    for q in asked[:-1]:
        previous = q if previous is None else rewrite_rules(previous, q, lower)
    return asked[-1], previous


def lower_words(messages: list[ChatMessage]) -> set[str]:
    """Stems of the words written in lower case anywhere in the conversation: those are no names."""
    return {
        s
        for m in messages
        for w in _WORD.findall(m.content)
        if w[0].islower() and (s := _stem(w)) is not None
    }


# --- the model's rewrite -----------------------------------------------------------------------------------

# Few-shot, in fictional names that appear in no document: a small base model follows examples far better
# than instructions, and the validation below rejects a rewrite that copies them.
INSTRUCTION = (
    "Rewrite the follow-up as one question that can be understood alone. Take the missing name or topic from "
    "the earlier question and keep the words of the follow-up."
)
EXAMPLES = (
    (
        "How long is the warranty on the Osprey drone?",
        "And for the Plover scanner?",
        "How long is the warranty on the Plover scanner?",
    ),
    (
        "How many days of holiday does Alder Bank give?",
        "What about the notice period?",
        "What is the notice period at Alder Bank?",
    ),
    (
        "When was the Osprey drone launched?",
        "How much does it weigh?",
        "How much does the Osprey drone weigh?",
    ),
)


def _prompt(previous: str, question: str) -> list[ChatMessage]:
    out = [ChatMessage(role="system", content=INSTRUCTION)]
    for earlier, follow, standalone in EXAMPLES:
        out.append(ChatMessage(role="user", content=f"Earlier question: {earlier} Follow-up: {follow}"))
        out.append(ChatMessage(role="assistant", content=standalone))
    out.append(ChatMessage(role="user", content=f"Earlier question: {previous} Follow-up: {question}"))
    return out


def check_model_rewrite(text: str, question: str, said: set[str], lower: set[str]) -> str | None:
    """Why the model's rewrite cannot be used (None: it can); `said` holds the conversation's content words."""
    if not text:
        return "empty"
    if len(text) > MAX_REWRITE_CHARS:
        return "too long"
    if not text.endswith("?"):
        return "not a question"
    rest, _ = _strip_opener(question)
    have = content_words(text)
    lost = [n.text for n in names(rest, lower) if not content_words(n.text) <= have]
    if lost:
        return f"drops {', '.join(lost)}"
    # A small model copies the earlier question: the follow-up's own words must be there too.
    dropped = content_words(rest) - have
    if dropped:
        return f"drops {', '.join(sorted(dropped)[:3])}"
    invented = have - said
    if invented:
        return f"adds {', '.join(sorted(invented)[:3])}"
    return None


def _clean(text: str) -> str:
    line = text.strip().split("\n", 1)[0].strip()
    for prefix in ("A:", "Standalone question:", "Question:"):
        line = line.removeprefix(prefix).strip()
    return line.strip("\"'` ")


class Followups:
    """Makes the last user message of a conversation standalone (module docstring)."""

    def __init__(self, settings: QuerySettings, gateway: GatewayClient) -> None:
        self.settings = settings
        self.gateway = gateway

    async def standalone(self, messages: list[ChatMessage]) -> str:
        """What QS searches with: the last user message, made standalone when the setting says so."""
        question, previous = standalone_by_rules(messages)
        mode = self.settings.followup_rewrite
        if previous is None or mode == "off":
            return question
        lower = lower_words(messages)
        rewritten, resolved = _rules(previous, question, lower)
        by, why = "rules", None
        ask = mode == "model" or (mode == "auto" and not resolved and not self.gateway.circuit_open)
        if ask:
            said = {w for m in messages for w in content_words(m.content)} | content_words(previous)
            text, why = await self._ask_model(previous, question, said, lower)
            if text is not None:
                rewritten, by = text, "model"
        if rewritten != question or why is not None:
            log.info("followup_rewrite", question=question, rewritten=rewritten, by=by, model_rejected=why)
        return rewritten

    async def _ask_model(
        self, previous: str, question: str, said: set[str], lower: set[str]
    ) -> tuple[str | None, str | None]:
        """The model's rewrite, or None and why it was not used."""
        req = GenerateRequest(
            messages=_prompt(previous, question),
            model=self.settings.model,
            max_tokens=MAX_TOKENS,
            temperature=0.0,
            stop=["\n"],
            timeout_ms=self.settings.followup_timeout_ms,
        )
        try:
            async with asyncio.timeout(self.settings.followup_timeout_ms / 1000):
                resp = await self.gateway.generate(req)
        except TimeoutError:
            return None, "timeout"
        except UpstreamError as exc:
            return None, exc.reason_code.value
        if resp.status != "ok" or resp.answered_by not in (None, "model"):
            return None, (resp.reason_code.value if resp.reason_code else "not answered by the model")
        text = _clean(resp.text or resp.answer or "")
        why = check_model_rewrite(text, question, said, lower)
        return (None, why) if why else (text, None)
