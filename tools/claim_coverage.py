"""List the sentences of a notebook's results text that no claim(...) backs.

    python tools/claim_coverage.py [NN ...]        (two-digit prefixes; default: all notebooks)

Results text is what a reader checks against the printed numbers: every markdown cell that
follows a code cell with outputs and sits outside the theory (a "What to see" paragraph, the
discussion under a table, the Summary); model answers are left out (they describe a run the
student makes). In it, an outcome sentence states a number, an ordering or a quantifier
("more", "below", "every", "never", "most", "grows" ...). It is backed when a claim of the
notebook shares enough of its key words (numbers, and words of five letters or more that are
not common): every number of the sentence is stated by a claim, and the three claims closest to
it share a third of its key words. A sentence that
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
NUMBER = re.compile(r"(?<![\w^_{+\-])\d+(?:[.,]\d+)*(?:\s*%)?|[×x]\s*\d|10\^\{?-?\d+")
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
    text = re.sub(r"\\(?:mathrm|mathbb|mathcal|text|operatorname|sqrt|frac|left|right|big|Big|lVert|rVert|cdot|times|approx|ln)\b", " ", text)
    # references to other parts ("exercise 4", "section 2", "notebook 02") are not outcomes
    text = re.sub(r"\b(exercises?|sections?|notebooks?|figures?|equations?|eq\.|cells?) \d+(\s*(–|and|or)\s*\d+)?",
                  r"\1", text, flags=re.I)
    return text.replace("**", "").replace("*", "").replace("`", "").replace("$", "")


def sentences(markdown: str) -> list[str]:
    """The sentences of a markdown cell that read results, one per item of a list: up to the first
    heading or topic title, questions to the reader left out."""
    out = []
    for number, block in enumerate(re.split(r"\n\s*\n|\n(?=\s*[-*] )", markdown)):
        head = block.lstrip()
        if number == 0 and re.match(r"#+ Summary", head):
            continue   # the Summary's own heading; its items are read
        if head.startswith("#") or (re.match(r"\*\*[^*]+\.\*\*", head) and not head.startswith("**What to see")):
            break      # a heading or a new topic ("**A curvature map.**"): the rest is setup and theory
        if head.startswith("*Question.*"):
            continue   # a question put to the reader
        block = " ".join(block.split())
        for short in ("eq.", "Eq.", "e.g.", "i.e.", "et al.", "Fig.", "vs."):   # not the end of a sentence
            block = block.replace(short + " ", short.replace(".", "\u2024") + " ")
        # split after . ! ? ; followed by a space and a capital, a digit or an opening bracket
        out += [s.strip().replace("\u2024", ".") for s in re.split(r"(?<=[.!?;:])[)*]*\s+(?=[A-Z(\d—*])", block) if s.strip()]
    return out


def is_outcome(sentence: str) -> bool:
    text = _plain(sentence)
    if sentence.rstrip(" *)_").endswith("?") or PAPER in sentence:
        return False
    return bool(NUMBER.search(text) or OUTCOME_WORDS.search(text))


def key_words(text: str) -> tuple[set[str], set[str]]:
    """(the words of five letters or more that are not common, the numbers) of a text; powers of
    ten written 10^{-5}, 10⁻⁵ or 1e-5 become one number, 1e-5."""
    text = _plain(text).lower().replace("'s", "")
    text = re.sub(r"10\s*\^\s*\{?\s*([-−]?)\s*(\d+)\s*\}?", lambda m: f" 1e{'-' if m.group(1) else ''}{m.group(2)} ", text)
    text = re.sub(r"(\d)\s*[-–]\s*(\d)", r"\1 \2", text.replace("−", "-"))   # ranges: 5–7, 5-7
    numbers = set(re.findall(r"(?<![\w.])\d+e-?\d+|(?<![\w.e-])\d+(?:\.\d+)?", text.replace(",", "")))
    words = {w for w in re.findall(r"[a-zα-ω_][\w']{4,}", text.replace("-", " ")) if w not in COMMON}
    words = {w[:-1] if w.endswith("s") and len(w) > 5 else w for w in words}   # "slices" and "slice" alike
    return words, numbers


def backed(sentence: str, claims: list[str]) -> bool:
    """Every number of the sentence is stated by a claim, and the (at most) three claims closest
    to it share a third of its key words (at least one): a long sentence may gather several."""
    words, numbers = key_words(sentence)
    if not words and not numbers:
        return True
    keys = [key_words(c) for c in claims]
    stated = set().union(*(n for _, n in keys)) if keys else set()
    closest = sorted((w & words for w, _ in keys), key=len, reverse=True)[:3]
    shared = set().union(*closest) if closest else set()
    return numbers <= stated and len(shared) >= max(1, -(-len(words) // 3))


def results_cells(nb) -> list[int]:
    """The markdown cells that read results: right after a code cell with outputs, or a "What to
    see" paragraph, and not opening a section or a topic; plus the Summary. Not the exercises,
    references or model answers."""
    cells, done = [], False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        source = cell.source.lstrip()
        if re.match(r"#+ (Exercises|References)", source):
            done = True
        if re.match(r"#+ Summary", source) and not done:
            cells.append(i)
            continue
        if done or source.startswith("*Model answer"):
            continue
        if source.startswith("#") or (re.match(r"\*\*[^*]+\.\*\*", source) and not source.startswith("**What to see")):
            continue   # a new section or topic: setup and theory, not a reading of results
        previous = nb.cells[i - 1] if i else None
        after_output = previous is not None and previous.cell_type == "code" and bool(previous.get("outputs"))
        if after_output or source.startswith("**What to see"):
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
