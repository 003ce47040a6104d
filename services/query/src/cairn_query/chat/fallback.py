"""The words a user reads when the answer is not the model's: one message per reason code.

A fallback (`status: "fallback"`) shows the search results with one of these instead of an answer; an answer
from the gateway's fallback chain is shown, labelled with `fallback_provider_message`.
"""

from __future__ import annotations

from cairn_core import ReasonCode

NO_CONTEXT_MESSAGE = "I could not find anything about this in your documents."
WEAK_EVIDENCE_MESSAGE = (
    "Your documents may not answer this. These are the closest passages, not an answer: check them yourself."
)
_PASSAGES = "Here are the most relevant passages from your documents."
_WHY_THE_MODEL_FAILED = {
    ReasonCode.PROVIDER_TIMEOUT: "it did not answer in time",
    ReasonCode.QUEUE_FULL: "it is busy with other questions",
    ReasonCode.CIRCUIT_OPEN: "it failed several times in a row",
    ReasonCode.PROVIDER_UNAVAILABLE: "it cannot be reached",
    ReasonCode.INVALID_CITATION: "its answer cited sources that were not retrieved",
    ReasonCode.MISSING_CITATIONS: "its answer cited no sources",
    ReasonCode.MALFORMED_OUTPUT: "its answer could not be read",
}


def fallback_provider_message(provider: str | None, code: ReasonCode | str | None) -> str:
    why = f" ({ReasonCode(code).value})" if code else ""
    if provider == "sources":
        return f"No model answered{why}: this is quoted word for word from the best-matching source."
    return f"The model did not answer{why}; the fallback provider {provider or 'unknown'} did."


def fallback_message(code: ReasonCode, detail: str | None = None) -> str:
    """`detail`: what the user should know beyond the code (the rule's words, the unsupported part)."""
    if code is ReasonCode.NO_CONTEXT:
        return NO_CONTEXT_MESSAGE
    if code is ReasonCode.WEAK_EVIDENCE:
        return WEAK_EVIDENCE_MESSAGE
    if code is ReasonCode.INTERNAL_ERROR and detail:
        return f"{detail} {_PASSAGES}"
    if code is ReasonCode.POLICY_REJECTED:
        because = f": {detail}" if detail else ""
        return f"The answer was withheld by this deployment's policy{because} ({code.value}). {_PASSAGES}"
    if code is ReasonCode.UNSUPPORTED_ANSWER:
        because = f" ({detail})" if detail else ""
        return (
            f"The model's answer was not supported by your documents{because}, so it is not shown "
            f"({code.value}). {_PASSAGES}"
        )
    why = _WHY_THE_MODEL_FAILED.get(code, "it returned an error")
    return f"The model is unavailable right now ({why}; {code.value}). {_PASSAGES}"
