"""Run every bench/bench_*.py (one subprocess each, one after another), then write bench/results/SUMMARY.md.

The summary has one section per benchmark, built from its JSON file in bench/results/: the scalar
settings on one line, then a table for each list of rows (nested values flattened as `a.b`). A
benchmark that failed keeps its previous JSON out of the summary and is reported as failed.

    .venv/bin/python bench/run_all.py [--only e2e,http] [--skip e2e] [--summary-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
MAX_ROWS = 24  # per table: per-round raw rows stay in the JSON


def benchmarks() -> list[Path]:
    return sorted(BENCH.glob("bench_*.py"))


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif not isinstance(value, list):
            out[name] = value
        elif all(not isinstance(v, dict | list) for v in value):
            out[name] = " / ".join(cell(v) for v in value)
    return out


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def table(rows: list[dict[str, Any]]) -> list[str]:
    flat = [flatten(r) for r in rows]
    columns: list[str] = []
    for r in flat:
        columns += [c for c in r if c not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in flat]
    return lines


def section(name: str, data: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", ""]
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    if scalars:
        lines += [", ".join(f"{k}: {cell(v)}" for k, v in scalars.items()), ""]
    for key, value in data.items():
        rows: list[dict[str, Any]] = []
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            rows = value
        elif isinstance(value, dict) and value and all(isinstance(r, dict) for r in value.values()):
            rows = [{"case": k, **r} for k, r in value.items()]
        elif isinstance(value, dict) and value:
            lines += [f"{key}: " + ", ".join(f"{k}={cell(v)}" for k, v in flatten(value).items()), ""]
            continue
        if rows:
            shown = rows[:MAX_ROWS]
            extra = len(rows) - len(shown)
            more = [f"({extra} more rows in the JSON file)", ""] if extra else []
            lines += [f"**{key}**", "", *table(shown), "", *more]
    return lines


def write_summary(outcomes: dict[str, str]) -> Path:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}. Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        "by `bench/run_all.py` (`make bench`).",
        "",
    ]
    if outcomes:
        lines += ["| benchmark | run |", "|---|---|"]
        lines += [f"| {name} | {result} |" for name, result in outcomes.items()]
        lines.append("")
    for script in benchmarks():
        name = script.stem
        path = RESULTS / f"{name}.json"
        if outcomes.get(name, "ok").startswith("failed") or not path.exists():
            lines += [f"## {name}", "", "no results (failed or not run)", ""]
            continue
        lines += section(name, json.loads(path.read_text()))
    out = RESULTS / "SUMMARY.md"
    out.write_text("\n".join(lines))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated names (e2e or bench_e2e, ...)")
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    parser.add_argument("--summary-only", action="store_true", help="just rebuild SUMMARY.md")
    args = parser.parse_args()

    def names(text: str) -> set[str]:
        return {n if n.startswith("bench_") else f"bench_{n}" for n in filter(None, text.split(","))}

    only, skip = names(args.only), names(args.skip)
    outcomes: dict[str, str] = {}
    if not args.summary_only:
        for script in benchmarks():
            if (only and script.stem not in only) or script.stem in skip:
                continue
            print(f"== {script.stem}", flush=True)
            started = time.monotonic()
            code = subprocess.run([sys.executable, str(script)], cwd=ROOT, check=False).returncode
            took = time.monotonic() - started
            outcomes[script.stem] = f"ok ({took:.0f} s)" if code == 0 else f"failed (exit {code})"
            print(f"== {script.stem}: {outcomes[script.stem]}\n", flush=True)
    out = write_summary(outcomes)
    print(f"wrote {out.relative_to(ROOT)}")
    return 1 if any(v.startswith("failed") for v in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
