"""List the sentences of a notebook's results text that no claim(...) backs.

    python tools/claim_coverage.py [NN ...]        (two-digit prefixes; default: all notebooks)

Results text is what a reader checks against the printed numbers: every markdown cell that
follows a code cell with outputs and sits outside the theory (a "What to see" paragraph, the
discussion under a table, the Summary); model answers are left out (they describe a run the
student makes). In it, an outcome sentence states a number, an ordering or a quantifier
("more", "below", "every", "never", "most", "grows" ...). It is backed when a claim of the
notebook shares enough of its key words (numbers, and words of five letters or more that are
not common): at least two, or half of the sentence's, whichever is fewer. A sentence that
reports a paper's number rather than this run's ends with the marker `<!-- paper -->` (invisible
when rendered); nothing else silences the list.

Prints one line per unbacked sentence and exits 1 if there is any. `make test` runs it through
tests/test_claim_coverage.py.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
PAPER = "<!-- paper -->"
OUTCOME_WORDS = re.compile(
    r"\b(more|less|fewer|higher|lower|larger|smaller|above|below|every|never|always|most|least|"
    r"grows?|falls?|rises?|drops?|shrinks?|stays?|beats?|trails?|ahead|behind|faster|slower|"
    r"within|exceeds?|peaks?|reaches|same|equal|differ|times|orders? of magnitude|twice|half|"
    r"better|worse|best|worst|all)\b", re.I)
NUMBER = re.compile(r"(?<![\w^_{])\d+(?:[.,]\d+)*(?:\s*%)?|[×x]\s*\d|10\^\{?-?\d+")
COMMON = set("""about above after again against along already although another anything around
because before being below between beyond cannot could doesn does every first following further
having these those their there through under until where which while whose would should other
others still since shows shown small large smaller larger higher lower often rather really
themselves therefore number numbers printed printing measure measured network networks
without within""".split())


@dataclass
class Sentence:
    notebook: str
    cell: int
    text: str


def _plain(markdown: str) -> str:
    """Markdown without code spans' backticks, LaTeX delimiters, emphasis and links."""
    text = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.S)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return text.replace("**", "").replace("*", "").replace("`", "").replace("$", "")


def sentences(markdown: str) -> list[str]:
    """The sentences of a markdown cell, one per item of a list; headings dropped."""
    out = []
    for block in re.split(r"\n\s*\n|\n(?=\s*[-*] )", markdown):
        head = block.lstrip()
        if head.startswith(("#", "*Question.*")) or (re.match(r"\*\*[^*]+\.\*\*", head)
                                                      and not head.startswith("**What to see")):
            continue   # headings, questions to the reader, and new topics ("**A curvature map.**")
        block = " ".join(block.split())
        # split after . ! ? ; followed by a space and a capital, a digit or an opening bracket
        out += [s.strip() for s in re.split(r"(?<=[.!?;:])\s+(?=[A-Z(\d—])", block) if s.strip()]
    return out


def is_outcome(sentence: str) -> bool:
    text = _plain(sentence)
    if sentence.rstrip().endswith("?") or PAPER in sentence:
        return False
    return bool(NUMBER.search(text) or OUTCOME_WORDS.search(text))


def key_words(text: str) -> set[str]:
    text = _plain(text).lower()
    words = {w for w in re.findall(r"[a-zα-ω_][\w'-]{4,}", text) if w not in COMMON}
    numbers = {n.replace(",", "") for n in re.findall(r"\d+(?:[.,]\d+)?", text)}
    return words | numbers


def backed(sentence: str, claims: list[str]) -> bool:
    keys = key_words(sentence)
    if not keys:
        return True
    need = min(2, max(1, len(keys) // 2))
    return any(len(keys & key_words(c)) >= need for c in claims)


def results_cells(nb) -> list[int]:
    """The markdown cells that read results: right after a code cell with outputs, a "What to
    see" paragraph, or the Summary; not the exercises, references or model answers."""
    cells, done = [], False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        source = cell.source.lstrip()
        if re.match(r"#+ (Exercises|References)", source):
            done = True
        if done or source.startswith("*Model answer"):
            continue
        previous = nb.cells[i - 1] if i else None
        after_output = previous is not None and previous.cell_type == "code" and bool(previous.get("outputs"))
        if after_output or source.startswith("**What to see") or source.startswith("## Summary"):
            cells.append(i)
    return cells


def claims_of(nb) -> list[str]:
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    found = []
    for m in re.finditer(r"claim\(\s*(f?)((?:\"[^\"]*\"\s*)+)", text):
        found.append(" ".join(re.findall(r"\"([^\"]*)\"", m.group(2))))
    return found


def unbacked(path: Path) -> list[Sentence]:
    nb = nbformat.read(path, as_version=4)
    claims = claims_of(nb)
    missing = []
    for i in results_cells(nb):
        for s in sentences(nb.cells[i].source):
            if is_outcome(s) and not backed(s, claims):
                missing.append(Sentence(path.stem, i, s))
    return missing


def main() -> int:
    wanted = sys.argv[1:]
    paths = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) if not wanted or p.name[:2] in wanted]
    missing = [s for p in paths for s in unbacked(p)]
    for s in missing:
        print(f"{s.notebook} cell {s.cell}: {s.text}")
    print(f"{len(missing)} outcome sentences without a claim in {len(paths)} notebooks")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
