"""CLI start-up: ``signalcast --help`` against ``python -c "import typer, rich.console"``.

The goal (layout issue): ``--help`` at most 3x the bare Typer + rich import, i.e. the CLI
imports no model, data or database library before a command runs. Both commands run in the
same loop, interleaved, so machine noise hits them alike; medians are reported.

    python bench/bench_cli_startup.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    cli = [shutil.which("signalcast") or "signalcast", "--help"]
    reference = [sys.executable, "-c", "import typer, rich.console"]
    wall(cli), wall(reference)  # warm the file cache
    cli_times, ref_times = [], []
    for _ in range(args.runs):
        cli_times.append(wall(cli))
        ref_times.append(wall(reference))
    figures = {"runs": args.runs, "help_median_s": statistics.median(cli_times),
               "reference_median_s": statistics.median(ref_times)}
    figures["ratio"] = figures["help_median_s"] / figures["reference_median_s"]
    print(f"signalcast --help           median {figures['help_median_s']:.3f} s")
    print(f"import typer, rich.console  median {figures['reference_median_s']:.3f} s")
    print(f"ratio {figures['ratio']:.2f}x (goal: at most 3x)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
