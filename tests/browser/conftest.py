"""Shared by the browser tests: `import lab` works, and the fixtures `server` (a JupyterLab
started by `make lab`), `browser` (Debian's chromium, headless), `file_browser` (the same, reading local files) and
`page` (a fresh tab)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so the tests can `import lab`


@pytest.fixture(scope="module")
def server():
    from lab import LabServer

    lab = LabServer.start(fast=True)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def browser():
    from lab import launch_browser
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_browser(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def file_browser():
    """`browser` allowed to read local files from a file:// page (the static slides and site)."""
    from lab import launch_browser
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_browser(p, ("--allow-file-access-from-files",))
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()
