"""Static reveal.js slides of every notebook, from its stored FULL outputs (nothing is executed).

    python tools/slides.py [--out build/slides]

Writes build/slides/NN_name.slides.html with `jupyter nbconvert --to slides`'s exporter: the cells'
`slideshow.slide_type` metadata makes the slides, fragments and speaker notes; code tagged
`hide-input` (the plotting code) is hidden. Each widget panel becomes a kernel-free panel whose
controls switch between its pre-rendered states (tools/static_panels.py; the notebooks are run
once to render them when the states in build/site-states are older than the notebooks). reveal.js, require.js, jQuery and MathJax 2 come from the npm packages pinned in tools/slides/package.json
(`npm ci` into tools/slides/node_modules) and are copied to build/slides/lib/, so the folder works
with no network: open an .html file, or put the whole folder on a course page.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import static_panels
from nbconvert.exporters import SlidesExporter
from nbconvert.preprocessors import TagRemovePreprocessor
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[1]
NPM = ROOT / "tools" / "slides"
MODULES = NPM / "node_modules"
# What the slides load, relative to their folder, and where each comes from in node_modules.
ASSETS = {
    "lib/reveal.js/dist": "reveal.js/dist",
    "lib/reveal.js/plugin/notes": "reveal.js/plugin/notes",
    "lib/jquery.min.js": "jquery/dist/jquery.min.js",
    "lib/require.js": "requirejs/require.js",
    "lib/mathjax/MathJax.js": "mathjax/MathJax.js",
    "lib/mathjax/config": "mathjax/config",
    "lib/mathjax/extensions": "mathjax/extensions",
    "lib/mathjax/jax/input/TeX": "mathjax/jax/input/TeX",
    "lib/mathjax/jax/output/CommonHTML": "mathjax/jax/output/CommonHTML",
    "lib/mathjax/jax/element": "mathjax/jax/element",
    "lib/mathjax/fonts/HTML-CSS/TeX/woff": "mathjax/fonts/HTML-CSS/TeX/woff",
    "lib/mathjax/localization/en": "mathjax/localization/en",
}


def install_assets(out: Path) -> None:
    """npm ci (when node_modules is missing or older than the lock file), then copy into out/lib."""
    lock = NPM / "package-lock.json"
    stamp = MODULES / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        if shutil.which("npm") is None:
            raise SystemExit("make slides needs npm (Debian/Ubuntu: sudo apt-get install npm) to fetch reveal.js")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                       cwd=NPM, check=True)
    for target, source in ASSETS.items():
        src, dst = MODULES / source, out / target
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def exporter() -> SlidesExporter:
    c = Config()
    c.SlidesExporter.reveal_url_prefix = "lib/reveal.js"
    c.SlidesExporter.reveal_scroll = True
    c.SlidesExporter.reveal_theme = "white"  # its fonts ship with reveal.js (the default theme loads web fonts)
    c.SlidesExporter.require_js_url = "lib/require.js"
    c.SlidesExporter.jquery_url = "lib/jquery.min.js"
    c.SlidesExporter.mathjax_url = "lib/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    c.SlidesExporter.extra_template_basedirs = [str(NPM / "template")]
    c.SlidesExporter.template_name = "skipviz"
    c.TagRemovePreprocessor.remove_input_tags = {"hide-input"}
    c.TagRemovePreprocessor.enabled = True
    exp = SlidesExporter(config=c)
    exp.register_preprocessor(TagRemovePreprocessor(config=c), enabled=True)
    return exp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides")
    parser.add_argument("--states", type=Path, default=ROOT / "build" / "site-states",
                        help="the panels' pre-rendered states (made by running the notebooks if stale)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    install_assets(args.out)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    static_panels.ensure_states(notebooks, args.states)
    shutil.rmtree(args.out / "states", ignore_errors=True)
    shutil.copytree(args.states, args.out / "states", ignore=shutil.ignore_patterns("rendered.json"))
    static_panels.copy_assets(args.out / "lib")
    exp = exporter()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        # Kernel-free panels in place of the widgets: pictures switched by lib/skipviz-panels.js.
        static_panels.replace_panels(nb, args.states / path.stem, image_base=f"states/{path.stem}")
        nb.metadata.pop("widgets", None)  # no widget view is left for a renderer to draw
        body, _ = exp.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        body = body.replace("</body>", '<link rel="stylesheet" href="lib/skipviz-panels.css">\n'
                                       '<script src="lib/skipviz-panels.js"></script>\n</body>', 1)
        target = args.out / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} "
              f"({target.stat().st_size / 1e6:.1f} MB)", flush=True)
    print(f"make slides: {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
