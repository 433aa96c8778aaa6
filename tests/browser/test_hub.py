"""The hand-out through a real JupyterHub (`make hub-demo`'s hub: DummyAuthenticator, a
local-process spawner, configurable-http-proxy from npm) in a temporary folder: the student copies
are committed to a bare git repository on this disk, the homework guide's nbgitpuller link (`make
hub-link`) is opened in Chromium by two students after logging in, the notebooks land in each
student's home, and one student runs the notebook and sees the check's "not done yet".
Skipped with a message only when node/npm or chromium is missing, never when
SKIPVIZ_REQUIRE_BROWSER=1 (CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import lab
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import hub  # noqa: E402

lab.require_chromium(pytest)
if shutil.which("node") is None or shutil.which("npm") is None:
    if os.environ.get("SKIPVIZ_REQUIRE_BROWSER") == "1":
        raise RuntimeError("the hub test needs node and npm (configurable-http-proxy)")
    pytest.skip("node/npm are not installed: the hub test needs configurable-http-proxy", allow_module_level=True)

NOTEBOOK = "01_vanishing_gradients.ipynb"
NAMES = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    from skipviz import settings

    folder = tmp_path_factory.mktemp("hub")
    student = folder / "student"
    subprocess.run([sys.executable, str(ROOT / "tools" / "student.py"), "--out", str(student)], check=True,
                   capture_output=True)
    repo = hub.handout(folder / "homework", student=student)
    running = hub.Hub.start(folder, environment={"SKIPVIZ_FAST": "1", "SKIPVIZ_CACHE": str(settings.cache_dir())})
    try:
        yield running, repo
    finally:
        running.stop()


def test_make_hub_link_prints_the_pattern_the_guide_documents():
    run = subprocess.run(["make", "-s", "--no-print-directory", "hub-link", "REPO=https://github.com/me/homework",
                          "HUB=https://hub.example.edu"], cwd=ROOT, capture_output=True, text=True, check=True)
    printed = run.stdout.strip().splitlines()[-1]
    assert printed == hub.link("https://github.com/me/homework", "https://hub.example.edu")
    assert printed == ("https://hub.example.edu/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fme%2F"
                       "homework&branch=main&urlpath=lab%2Ftree%2Fhomework")
    guide = (ROOT / "docs" / "homework.md").read_text(encoding="utf-8")
    assert "/hub/user-redirect/git-pull?repo=" in guide and "make hub-link" in guide


def login(page, url: str, user: str) -> None:
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.PASSWORD)
    page.click("#login_submit")
    page.wait_for_url("**/user/**", timeout=120_000)


def run_all_and_find(page, text: str, server: hub.Hub) -> None:
    """Run the open notebook (menu Run > Run All Cells, once its kernel is idle) and wait for
    `text` in an output; on failure, a screenshot and the hub's log."""
    lab.BUILD.mkdir(parents=True, exist_ok=True)
    try:
        page.locator(".jp-Notebook .jp-Cell").first.click()   # the notebook is the current widget
        page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=120_000)
        started = ("() => Array.from(document.querySelectorAll('.jp-InputPrompt'))"
                   ".some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))")
        for attempt in range(3):   # a click while JupyterLab is still settling can be lost: check it ran
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            try:
                page.wait_for_function(started, timeout=30_000)
                break
            except Exception:
                if attempt == 2:
                    raise
                page.keyboard.press("Escape")
        # attached, not visible: JupyterLab draws only the cells in view
        page.get_by_text(text).first.wait_for(state="attached", timeout=240_000)
        page.screenshot(path=str(lab.BUILD / "hub-not-done-yet.png"))
    except Exception as err:
        page.screenshot(path=str(lab.BUILD / "hub-failure.png"))
        log = (server.folder / "jupyterhub.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{text!r} did not appear ({err}); screenshot build/browser/hub-failure.png; "
                             f"hub log:\n{log}") from err


def test_two_students_get_the_homework_and_one_runs_a_check(running, browser):
    server, repo = running
    url = hub.link(f"file://{repo}", server.url, notebook=NOTEBOOK)
    for user in ("ada", "bob"):
        context = browser.new_context()
        page = context.new_page()
        try:
            login(page, server.url, user)
            page.goto(url)
            page.wait_for_url(f"**/user/{user}/lab/tree/homework/{NOTEBOOK}**", timeout=120_000)
            home = server.folder / "home" / user / "homework"
            assert sorted(p.name for p in home.glob("*.ipynb")) == NAMES
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
            if user == "ada":
                run_all_and_find(page, "not done yet", server)
        finally:
            context.close()
