"""`make eval`: how right, and how wrong, the query service's answers are on each evaluation set.

Starts a real gateway and a real query service on a fresh store per set and provider, ingests the set's
documents, asks every question (POST /v1/search top 5, then POST /v1/chat, cache off) and prints, per set:
the targets of issue 9 per provider, then right / wrong-but-shown / not answered by half (tune, heldout)
and question type (issue 22), and the two-turn follow-ups where the set has them (issue 14). docs/eval.md
defines every number and the questions file format.

Sets: `shipped` (services/query/eval, written for Cairn), `pydocs` (Python's Language Reference texts of the
installed Python, not written for Cairn), or your own: --docs DIR --questions FILE.

Usage: python scripts/eval.py [--sets shipped,pydocs,readmes | --docs DIR --questions FILE] [--providers toy,llamacpp]
       [--embed auto|toy|onnx] [--split tune|heldout] [--limit N] [--min-evidence X] [--json FILE]
       [--followup-rewrite auto|model|rules|off] [--followups-only]
The llamacpp provider (Gemma 3 270M) is skipped with a note when the gateway does not have it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evaluation import sets
from evaluation.followups import followup_table
from evaluation.report import halves_table, table
from evaluation.run import evaluate
from evaluation.stack import pick_embedder, provider_available


def chosen_sets(args: argparse.Namespace) -> list[sets.EvalSet]:
    if args.docs or args.questions:
        if not (args.docs and args.questions):
            raise SystemExit("--docs and --questions go together")
        return [sets.folder(args.docs, args.questions)]
    return [sets.named(s.strip()) for s in args.sets.split(",") if s.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="shipped,pydocs,readmes")
    parser.add_argument("--docs", type=Path, help="a folder of .txt, .md, .rst, .html or .pdf files")
    parser.add_argument("--questions", type=Path, help="its questions, JSONL (docs/eval.md)")
    parser.add_argument("--providers", default="toy,llamacpp")
    parser.add_argument("--embed", default="auto", choices=["auto", "toy", "onnx"])
    parser.add_argument("--split", choices=["tune", "heldout"], help="only this half")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--min-evidence", type=float, help="QS_MIN_EVIDENCE for the run (default: QS's)")
    parser.add_argument("--json", type=Path, default=None, help="also write every answer to this file")
    parser.add_argument("--followup-rewrite", default="auto", choices=["auto", "model", "rules", "off"])
    parser.add_argument("--followups-only", action="store_true", help="only the two-turn follow-up cases")
    args = parser.parse_args()
    evalsets = chosen_sets(args)
    embed = pick_embedder(args.embed)
    qs_env = {} if args.min_evidence is None else {"QS_MIN_EVIDENCE": str(args.min_evidence)}
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    everything = []
    for evalset in evalsets:
        results = []
        for provider in providers:
            if not provider_available(provider):
                print(f"(skipped {provider}: the gateway has no such provider yet)\n", flush=True)
                continue
            results.append(
                evaluate(
                    evalset,
                    provider,
                    embed,
                    qs_env=qs_env,
                    limit=args.limit,
                    split=args.split,
                    rewrite=args.followup_rewrite,
                    followups_only=args.followups_only,
                )
            )
        if not results:
            return 1
        print(f"## Set `{evalset.name}`: {evalset.note}\n")
        if main_table := table(results):
            print(main_table + "\n\n" + halves_table(results) + "\n")
        if follow := followup_table(results):
            print(follow + "\n")
        everything += results
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
