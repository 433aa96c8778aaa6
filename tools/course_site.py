"""The course site: `make site` writes build/site/, a static website of every notebook.

    python tools/course_site.py [--out build/site]

Pages come from the notebooks' stored FULL outputs (Sphinx + MyST-NB + sphinx-book-theme; nothing
is fetched from the network, so it builds offline). Every page has "Run it" links (Binder, the
local commands) and downloads: the notebook, its student copy (`make student`) and its slide deck
(`make slides`, copied whole with its scripts). The guides are the files of docs/ and
CONTRIBUTING.md, so there is one text to keep current. The interactive figures stay interactive without a kernel:
tools/static_panels.py renders the states each panel declares and puts a kernel-free panel in
place of the widget.

The repository address (Binder, the clone command, nbgitpuller links) is one setting:
`Repository` under `[project.urls]` in pyproject.toml.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import nbformat

try:
    import tomllib
except ImportError:  # Python 3.10: pip's vendored copy
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "tools" / "site"
BUILD = ROOT / "build"
sys.path.insert(0, str(ROOT / "tools"))
import slides  # noqa: E402
import static_panels  # noqa: E402

# The guides in docs/ (and CONTRIBUTING.md), each one page of the site: (page, source file).
DOC_PAGES = [("presenting", "docs/presenting.md"), ("homework", "docs/homework.md"),
             ("package", "docs/package.md"), ("benchmarks", "docs/benchmarks.md"),
             ("contributing", "CONTRIBUTING.md")]
# MathJax 2's files that the pages load (a subset of the npm package, as the slides use).
MATHJAX = ["MathJax.js", "config/TeX-AMS_CHTML.js", "extensions", "jax/input/TeX",
           "jax/output/CommonHTML", "jax/element", "fonts/HTML-CSS/TeX/woff", "localization/en"]


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def settings() -> dict[str, str]:
    """The repository address and the links made from it."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    repository = meta["project"]["urls"]["Repository"].rstrip("/")
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", repository)
    if match is None:
        raise SystemExit(f"[project.urls] Repository must be a https://github.com/owner/name address; "
                         f"got {repository!r}")
    owner, name = match.groups()
    binder = f"https://mybinder.org/v2/gh/{owner}/{name}/HEAD"
    return {"repository": repository, "repository_name": name, "binder": binder,
            "repository_quoted": quote(repository, safe=""),
            "binder_lab": f"{binder}?urlpath=lab/tree/notebooks"}


def doc_page(source: str) -> str:
    """A guide as a page of the site: links into the repository become links to its pages."""
    body = (ROOT / source).read_text(encoding="utf-8")
    body = re.sub(r"\]\((?:\.\./)?notebooks/(\d\d_\w+)\.ipynb\)", r"](\1.ipynb)", body)
    body = re.sub(r"\]\(docs/(\w+)\.md\)", r"](\1.md)", body)
    return re.sub(r"\]\((?:\.\./)?CONTRIBUTING\.md\)", "](contributing.md)", body)


def title(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    return first.source.splitlines()[0].lstrip("# ").strip()


def run_it_cell(path: Path, s: dict[str, str]) -> nbformat.NotebookNode:
    """The markdown cell put at the top of a notebook's page: run it, download it."""
    stem = path.stem
    binder = f"{s['binder']}?urlpath={quote(f'lab/tree/notebooks/{path.name}', safe='')}"
    text = (f"```{{admonition}} Run it, download it\n:class: tip skipviz-run-it\n"
            f"**Run it:** [on Binder]({binder}) (nothing to install) · on your machine: "
            f"`git clone {s['repository']}`, then `make lab`.  \n"
            # Plain HTML links: files copied beside the pages, not documents of the site.
            f'**Download:** <a href="downloads/notebooks/{path.name}" download>the notebook</a> · '
            f'<a href="downloads/student/{path.name}" download>the student copy</a> (exercises without '
            f'solutions) · <a href="slides/{stem}.slides.html">the slides</a> (work offline)\n```')
    return nbformat.v4.new_markdown_cell(text, metadata={"skipviz": {"site": "run-it"}})


def page(path: Path, s: dict[str, str], states: Path, image_base: str) -> nbformat.NotebookNode:
    """The notebook as its page shows it: the run-it cell first, kernel-free panels in place of
    the widgets, no widget state left for a renderer to look for."""
    nb = nbformat.read(path, as_version=4)
    title_cell = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown")
    nb.cells.insert(title_cell + 1, run_it_cell(path, s))
    readings = {i: reading_after(nb, i) for i in range(len(nb.cells))}
    static_panels.replace_panels(nb, states / path.stem, image_base=f"{image_base}/{path.stem}",
                                 readings=readings)
    nb.metadata.pop("widgets", None)
    for cell, alt in figure_alts(nb).items():
        nb.cells[cell].metadata.setdefault("mystnb", {})["image"] = {"alt": alt}
    return nb


def figure_alts(nb: nbformat.NotebookNode) -> dict[int, str]:
    """{cell: alternative text} for every code cell that shows a figure: what it plots (the
    description `skipviz.plots` stored with the image) and the reading under it ("What to
    see ..."), as plain text."""
    alts = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        plotted = [o.get("metadata", {}).get("image/png", {}).get("alt", "") for o in cell.get("outputs", [])
                   if "image/png" in o.get("data", {})]
        if not plotted:
            continue
        alts[i] = " ".join(t for t in (*plotted, reading_after(nb, i)) if t) or "A figure of this notebook."
    return alts


def reading_after(nb: nbformat.NotebookNode, i: int) -> str:
    """The "What to see" reading between cell i and the next code cell, as plain text, or ''."""
    for later in nb.cells[i + 1:]:
        if later.cell_type == "code":
            return ""
        if later.source.lstrip().startswith("**What to see"):
            return plain(later.source)
    return ""


def plain(markdown: str) -> str:
    """Markdown as one line of plain text for an alt attribute (emphasis, code and math marks off)."""
    text = re.sub(r"\$+([^$]*)\$+", r"\1", markdown)
    text = re.sub(r"[*_`]", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return " ".join(text.split())


def copy_tree(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def downloads(extra: Path, states: Path) -> None:
    """The notebooks, their student copies (`make student`) and slide decks (`make slides`, with
    the same kernel-free panels), made afresh and put under the site's root."""
    for path in notebooks():
        copy_tree(path, extra / "downloads" / "notebooks" / path.name)
    student = BUILD / "student"
    subprocess.run([sys.executable, str(ROOT / "tools" / "student.py"), "--out", str(student)], check=True)
    for path in notebooks():
        copy_tree(student / path.name, extra / "downloads" / "student" / path.name)
    decks = BUILD / "slides"
    assert slides.main(["--out", str(decks), "--states", str(states)]) == 0
    copy_tree(decks, extra / "slides")


def build(out: Path, reuse_states: bool = False) -> float:
    """Write the site to `out`; return the seconds it took. reuse_states: take the panels' states
    from the last build instead of running the notebooks again (while editing the site's text)."""
    start = time.perf_counter()
    s = settings()
    src = BUILD / "site-src"
    shutil.rmtree(src, ignore_errors=True)
    (src / "_static").mkdir(parents=True)
    shutil.copy2(TEMPLATE / "conf.py", src / "conf.py")
    (src / "site.json").write_text(json.dumps(s), encoding="utf-8")
    for asset in [*TEMPLATE.glob("*.css"), TEMPLATE / "skipviz-site.js"]:
        shutil.copy2(asset, src / "_static" / asset.name)
    static_panels.copy_assets(src / "_static")
    slides.install_assets(BUILD / "slides")  # npm ci when needed: MathJax comes from there
    for part in MATHJAX:
        copy_tree(slides.MODULES / "mathjax" / part, src / "_static" / "mathjax" / part)
    states = BUILD / "site-states"
    if not reuse_states or not states.exists():
        static_panels.ensure_states(notebooks(), states)
    downloads(src / "_extra", states)
    # The pages show the panels' pictures from the slide decks' copy: one copy in the site.
    for path in notebooks():
        nbformat.write(page(path, s, states, "slides/states"), src / path.name)

    index = (TEMPLATE / "index.md").read_text(encoding="utf-8")
    listing = "\n".join(f"- [{title(p)}]({p.name})" for p in notebooks())
    fields = dict(s, notebook_list=listing, toctree_notebooks="\n".join(p.stem for p in notebooks()))
    for key, value in fields.items():  # not str.format: the page's MyST directives use braces
        index = index.replace("{" + key + "}", value)
    (src / "index.md").write_text(index, encoding="utf-8")
    for name, source in DOC_PAGES:
        (src / f"{name}.md").write_text(doc_page(source), encoding="utf-8")
    publishing = (TEMPLATE / "publishing.md").read_text(encoding="utf-8")
    for key, value in s.items():
        publishing = publishing.replace("{" + key + "}", value)
    (src / "publishing.md").write_text(publishing, encoding="utf-8")

    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "2", str(src), str(out)],
                   check=True)
    return time.perf_counter() - start


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUILD / "site")
    parser.add_argument("--reuse-states", action="store_true",
                        help="the panels' states of the last build (no notebook is run)")
    args = parser.parse_args(argv)
    seconds = build(args.out, args.reuse_states)
    print(f"{args.out}: {size_mb(args.out):.1f} MB, built in {seconds:.0f} s; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
