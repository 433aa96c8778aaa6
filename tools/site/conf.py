"""Sphinx configuration of the course site (`make site`, tools/course_site.py): MyST-NB pages from the
notebooks' stored outputs, sphinx-book-theme, and nothing fetched from the network — MathJax and
every script come from this folder's _static (copied there by tools/course_site.py)."""

import json
from pathlib import Path

_settings = json.loads((Path(__file__).parent / "site.json").read_text(encoding="utf-8"))

project = "skipviz"
author = "the skipviz authors"
copyright = "the skipviz authors, MIT licence"
extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"

# Pages are the notebooks as stored (FULL run); nothing is executed here.
nb_execution_mode = "off"
nb_merge_streams = True
# The kernel-free panels replace every widget view, so no widget renderer is loaded.
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "skipviz — skip connections, measured"
html_static_path = ["_static"]
html_extra_path = ["_extra"]
html_css_files = ["skipviz-site.css", "skipviz-panels.css"]
html_js_files = ["skipviz-panels.js", "skipviz-site.js"]
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
# Snippets under search results need the pages fetched, which a page opened from disk cannot do.
html_show_search_summary = False
# A fixed starting mode: the theme logs a console error when it finds none stored.
html_context = {"default_mode": "light"}
html_theme_options = {
    "repository_url": _settings["repository"],
    "use_repository_button": False,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "show_toc_level": 2,
    "navigation_with_keys": True,
    "home_page_in_toc": True,
}
# MathJax 2 from _static (npm's mathjax, pinned in tools/slides/package.json), not a CDN.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"
# MyST-NB marks notebook text "tex2jax_ignore" and its math "math": process only the latter.
mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                               "processEscapes": True, "ignoreClass": "document",
                               "processClass": "math|output_area"}}
