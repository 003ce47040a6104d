"""`make calibrate`: sweep the answer threshold on the tune half of a set, report the held-out half at the choice.

One run of the whole set with the gate open (every answer QS could give, and each question's evidence
match), a sweep of the threshold over the tune half, the value that maximises right - cost x wrong-shown,
a plot (self-contained HTML with an inline SVG) and the numbers, then the held-out half asked again of a
QS gated at the chosen value (same store, no second ingest). Writes CALIBRATION.json (the chosen value and
the sweep) and CALIBRATION.html.

Usage: python scripts/calibrate.py [--set pydocs|shipped | --docs DIR --questions FILE] [--provider toy]
       [--embed auto|toy|onnx] [--wrong-cost 1] [--range 0.2,0.7,0.01] [--out .run/eval] [--no-verify]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

from evaluation import calibrate as cal
from evaluation import sets
from evaluation.run import ask_all, session
from evaluation.score import groups, outcome
from evaluation.stack import pick_embedder

# QS_ANSWER_EVIDENCE's default (services/query settings.py): from here up QS answers. The replay treats it as a
# single threshold, so it leaves out the one rule that answers lower (a quote holding every word and number of
# the question is answered from QS_MIN_EVIDENCE, 0.41); the chosen value is applied to both settings, where
# that rule changes nothing.
DEFAULT = 0.60


def outcomes_table(columns: dict[str, dict[str, dict[str, object]]]) -> str:
    names = list(columns)
    lines = [
        "| half/type | n | " + " | ".join(f"{c}: right | wrong shown | not answered" for c in names) + " |",
        "|---|---|" + "---|---|---|" * len(names),
    ]
    first = columns[names[0]]
    for key, g in first.items():
        cells = []
        for c in names:
            x = columns[c].get(key)
            cells.append(
                "– | – | –"
                if not x
                else f"{x['right_rate']:.1%} | **{x['wrong_rate']:.1%}** | {x['declined_rate']:.1%}"
            )
        lines.append(f"| {key} | {g['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="pydocs")
    parser.add_argument("--docs", type=Path)
    parser.add_argument("--questions", type=Path)
    parser.add_argument("--provider", default="toy")
    parser.add_argument("--embed", default="auto", choices=["auto", "toy", "onnx"])
    parser.add_argument(
        "--wrong-cost", type=float, default=1.0, help="a wrong answer shown, in right answers"
    )
    parser.add_argument("--range", default="0.2,0.7,0.01", help="low,high,step")
    parser.add_argument("--out", type=Path, default=Path(".run/eval"))
    parser.add_argument("--no-verify", action="store_true", help="skip the real held-out run")
    args = parser.parse_args()
    if args.docs or args.questions:
        if not (args.docs and args.questions):
            raise SystemExit("--docs and --questions go together")
        evalset = sets.folder(args.docs, args.questions)
    else:
        evalset = sets.named(args.set)
    embed = pick_embedder(args.embed)
    if embed != "onnx":
        print("note: the toy embedder's cosines mean nothing; calibrate with the ONNX embedder\n")
    low, high, step = (float(v) for v in args.range.split(","))
    # Both thresholds at one value: no middle band (WEAK_EVIDENCE), whatever .env says, so a question is
    # answered at or above the threshold and not answered below it; that is what the replay assumes.
    env = {"QS_MIN_EVIDENCE": str(cal.OPEN_GATE), "QS_ANSWER_EVIDENCE": str(cal.OPEN_GATE)}
    verified, differ = None, []
    with session(evalset, args.provider, embed, env) as stack:
        rows = ask_all(stack, evalset.questions)
        tune = [r for r in rows if r["split"] == "tune"]
        points = cal.sweep(tune, cal.thresholds(low, high, step))
        chosen = cal.choose(points, args.wrong_cost)["threshold"]
        if not args.no_verify:
            # The same store and gateway, a QS gated at the chosen value: the held-out half for real.
            stack.restart_query({"QS_MIN_EVIDENCE": str(chosen), "QS_ANSWER_EVIDENCE": str(chosen)})
            heldout = [q for q in evalset.questions if q["split"] == "heldout"]
            measured = ask_all(stack, heldout)
            verified = {k: v for k, v in groups(measured).items() if k.startswith("heldout/")}
            replayed = {r["question"]: outcome(r, chosen) for r in rows}
            differ = [r["question"] for r in measured if outcome(r) != replayed[r["question"]]]

    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = f"{platform.node()}, Python {platform.python_version()}"
    title = f"The answer threshold on set {evalset.name}, tune half ({len(tune)} questions)"
    notes = [
        evalset.note,
        f"provider {args.provider}, embedder {embed}, {when}, {where}",
        f"chosen {chosen:.2f}: the most right answers less {args.wrong_cost:g} x wrong answers shown",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    marks = {"chosen": chosen, "default": DEFAULT}
    (args.out / "CALIBRATION.html").write_text(cal.html(title, points, marks, notes))
    (args.out / "CALIBRATION.json").write_text(
        json.dumps(
            {
                "QS_MIN_EVIDENCE": chosen,
                "QS_ANSWER_EVIDENCE": chosen,
                "set": evalset.name,
                "provider": args.provider,
                "embed": embed,
                "wrong_cost": args.wrong_cost,
                "when": when,
                "where": where,
                "sweep_tune": points,
                "heldout_replayed": cal.held_out(rows, chosen),
                "heldout_measured": verified,
                "heldout_replay_differs": differ,
                "rows": rows,  # the open-gate run: replay any threshold with evaluation.score.groups
            },
            indent=2,
        )
    )
    print(f"## {title}\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    print("| threshold | right | wrong shown | not answered |\n|---|---|---|---|")
    for p in points[:: max(1, round(0.02 / step))]:
        print(f"| {p['threshold']:.2f} | {p['right']} | {p['wrong']} | {p['declined']} |")
    columns = {
        f"default {DEFAULT:.2f}": groups(rows, DEFAULT),
        f"chosen {chosen:.2f}": groups(rows, chosen),
    }
    if verified:
        columns[f"chosen {chosen:.2f}, run"] = verified
    print(
        f"\n### Both halves, replayed; the held-out half also run at the chosen value\n\n{outcomes_table(columns)}\n"
    )
    if verified is not None:
        print(f"Replay check: {len(differ)} held-out question(s) ended otherwise when run: {differ}\n")
    # Both settings, as the held-out check ran: with only QS_MIN_EVIDENCE set, the default QS_ANSWER_EVIDENCE
    # (0.60) would still hold back every answer below it as the closest passages.
    print(
        f"QS_MIN_EVIDENCE={chosen:.2f}\nQS_ANSWER_EVIDENCE={chosen:.2f}\n"
        f"(put both in .env; written to {args.out}/CALIBRATION.json, plot: CALIBRATION.html)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
