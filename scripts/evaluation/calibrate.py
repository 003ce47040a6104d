"""`make calibrate`: choose QS_MIN_EVIDENCE on the tune half of a set, check it on the held-out half.

QS answers only when the name-masked cosine of its best evidence (evidence.py, logged as `match`) reaches
QS_MIN_EVIDENCE, and says NO_CONTEXT below it. Nothing else depends on the threshold, so one run with the
gate open (QS_MIN_EVIDENCE=-2) gives, for every question, its match and the answer QS would show: at any
threshold t, a question with match < t is refused and every other keeps its answer. The sweep is computed
from that run; the chosen value maximises right - cost x wrong-shown on the tune half (ties: the middle of
the tied range), and the held-out half is then asked again of a QS gated at the chosen value, on the same
store, as a check that the replay is exact.
"""

from __future__ import annotations

from html import escape
from typing import Any

from .score import group, groups

OPEN_GATE = -2.0  # QS_MIN_EVIDENCE's lowest value: every question with evidence goes to the model


def thresholds(low: float, high: float, step: float) -> list[float]:
    n = round((high - low) / step)
    return [round(low + i * step, 4) for i in range(n + 1)]


def sweep(rows: list[dict[str, Any]], values: list[float]) -> list[dict[str, Any]]:
    return [{"threshold": t, **group(rows, t)} for t in values]


def choose(points: list[dict[str, Any]], wrong_cost: float) -> dict[str, Any]:
    def score(p: dict[str, Any]) -> float:
        return float(p["right"] - wrong_cost * p["wrong"])

    best = max(score(p) for p in points)
    tied = [i for i, p in enumerate(points) if score(p) == best]
    # The first run of consecutive best values, and its middle: the value furthest from a worse one.
    run = [tied[0]]
    for i in tied[1:]:
        if i != run[-1] + 1:
            break
        run.append(i)
    return points[run[len(run) // 2]]


def held_out(rows: list[dict[str, Any]], threshold: float) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in groups(rows, threshold).items() if k.startswith("heldout/")}


COLOURS = {"right": "#2a7d2e", "wrong": "#c62828", "declined": "#757575"}
LABELS = {
    "right": "right: the fact, or an unanswerable question refused",
    "wrong": "wrong, shown as an answer",
    "declined": "not answered: a refusal of an answerable question, or another fallback",
}


def svg(points: list[dict[str, Any]], marks: dict[str, float]) -> str:
    """Shares of the tune half against the threshold, as an inline SVG line chart."""
    w, h, left, right, top, bottom = 760, 380, 56, 20, 16, 44
    lo, hi = points[0]["threshold"], points[-1]["threshold"]

    def x(t: float) -> float:
        return left + (t - lo) / ((hi - lo) or 1) * (w - left - right)

    def y(share: float) -> float:
        return top + (1 - share) * (h - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">'
    ]
    for pct in range(0, 101, 20):
        yy = y(pct / 100)
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{pct} %</text>')
    step = max(1, len(points) // 10)
    for p in points[::step]:
        xx = x(p["threshold"])
        parts.append(
            f'<text x="{xx:.1f}" y="{h - bottom + 16}" text-anchor="middle">{p["threshold"]:.2f}</text>'
        )
    parts.append(
        f'<text x="{(left + w - right) / 2}" y="{h - 6}" text-anchor="middle">QS_MIN_EVIDENCE</text>'
    )
    for key, colour in COLOURS.items():
        line = " ".join(f"{x(p['threshold']):.1f},{y(p[key + '_rate']):.1f}" for p in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>')
    for i, (label, t) in enumerate(marks.items()):
        xx = x(t)
        parts.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top}" y2="{h - bottom}" stroke="#1565c0" stroke-dasharray="{"6,3" if i else "none"}"/>'
        )
        parts.append(f'<text x="{xx + 4:.1f}" y="{top + 12 + 14 * i}" fill="#1565c0">{label} {t:.2f}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def html(title: str, points: list[dict[str, Any]], marks: dict[str, float], notes: list[str]) -> str:
    legend = "".join(f'<li><span style="color:{COLOURS[k]}">━━</span> {LABELS[k]}</li>' for k in COLOURS)
    rows = "".join(
        f"<tr><td>{p['threshold']:.2f}</td><td>{p['right']}</td><td>{p['wrong']}</td><td>{p['declined']}</td></tr>"
        for p in points
    )
    items = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return (
        f"<!doctype html><meta charset='utf-8'><title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:820px;margin:2em auto}td{padding:0 1em;text-align:right}</style>"
        f"<h1>{escape(title)}</h1><ul>{items}</ul>{svg(points, marks)}<ul>{legend}</ul>"
        "<table><tr><th>threshold</th><th>right</th><th>wrong shown</th><th>not answered</th></tr>"
        f"{rows}</table>"
    )
