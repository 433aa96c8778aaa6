"""Run every notebook in FULL mode for several seeds and count the claims that held.

    python tools/claims.py [NN ...] [--seeds 0 1 2] [--fast]     (notebooks first: --seeds takes all numbers after it)

Each notebook is executed with papermill (`-p SEED s`) into build/claims/; a claim that fails
stops its notebook with ClaimFailed, which is reported with the claim's sentence. Prints one
line per notebook and seed, then the margin report (tools/claim_margins.py): every claim's
condition is run in a copy whose comparisons also measure how far they were from failing, and
the claims closest to failing over the seeds are listed. Exits 1 if any claim failed, a
notebook raised anything else, or (with several seeds) a claim keeps too small a margin.
`make claims` runs it for seeds 0-2 in FULL mode; `make test-all` runs seed 1 in FAST mode.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import nbformat
import papermill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claim_margins import report, with_margins  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "claims"


def run(path: Path, seed: int, fast: bool) -> tuple[int, int, str | None]:
    """(claims held, claims not checked in FAST mode, the error if the run stopped)."""
    os.environ["SKIPVIZ_FAST"] = "1" if fast else "0"
    os.environ["SKIPVIZ_PROGRESS"] = "0"
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{path.stem}-seed{seed}{'-fast' if fast else ''}.ipynb"
    source = nbformat.read(path, as_version=4)
    for cell in source.cells:
        if cell.cell_type == "code":
            cell.source = with_margins(cell.source)
    measured = OUT / f"{path.stem}-measured.ipynb"
    nbformat.write(source, measured)
    log = log_path(path, seed, fast)
    log.unlink(missing_ok=True)
    os.environ["SKIPVIZ_CLAIMS_LOG"] = str(log)
    error = None
    try:
        papermill.execute_notebook(str(measured), str(out), parameters={"SEED": seed},
                                   kernel_name="python3", cwd=str(path.parent), progress_bar=False)
    except papermill.PapermillExecutionError as err:
        error = f"{err.ename}: {err.evalue}"
    nb = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.get("output_type") == "stream")
    return (len(re.findall(r"^✔ ", text, re.M)), len(re.findall(r"^· not checked in FAST mode", text, re.M)),
            error)


def log_path(path: Path, seed: int, fast: bool) -> Path:
    return OUT / f"{path.stem}-seed{seed}{'-fast' if fast else ''}.margins.jsonl"


def seed_value(text: str) -> int:
    """A seed for --seeds; "08" is refused, since `--seeds 0 1 08` means notebook 08 far more often."""
    if len(text) > 1 and text.startswith("0"):
        raise argparse.ArgumentTypeError(f"{text!r} looks like a notebook prefix: give notebooks before "
                                         f"--seeds (tools/claims.py 08 --seeds 0 1 2)")
    return int(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_value, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fast", action="store_true", help="FAST mode instead of FULL")
    parser.add_argument("notebooks", nargs="*", help="two-digit prefixes (default: all)")
    args = parser.parse_args()
    paths = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
             if not args.notebooks or p.name[:2] in args.notebooks]
    failed = False
    for path in paths:
        for seed in args.seeds:
            held, skipped, error = run(path, seed, args.fast)
            line = f"{path.stem:28s} seed {seed}: {held} claims held"
            if skipped:
                line += f", {skipped} not checked in FAST mode"
            if error:
                failed = True
                line += f"; STOPPED: {error}"
            print(line, flush=True)
    logs = {(p.stem, seed): log_path(p, seed, args.fast) for p in paths for seed in args.seeds}
    lines = report(logs)
    print("\n".join(lines))
    if len(args.seeds) > 1 and " 0 below the margin policy" not in lines[0]:
        print("some claims keep too small a margin over the seeds (marked !): reword them or measure more")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
