"""Hand out the student copies through a JupyterHub with nbgitpuller.

    python tools/hub.py link REPO HUB [--branch main] [--notebook 01_vanishing_gradients.ipynb]
    python tools/hub.py handout REPO_DIR        # commit build/student into a git repository
    python tools/hub.py demo [--port 8000]      # a JupyterHub on this machine, for trying the loop

`link` prints the nbgitpuller link (the one pattern docs/homework.md documents and the hub test opens):
a student who clicks it logs in to the hub, and nbgitpuller clones REPO into their home (or, on
later clicks, merges the lecturer's new commits without touching the student's edits) and opens
JupyterLab there.

`demo` starts a JupyterHub on 127.0.0.1 with DummyAuthenticator (any user name, password
"skipviz"), a local-process spawner (each user's home in build/hub/home/<user>) and
configurable-http-proxy from npm (tools/hub/package.json), serving the student copies from a git
repository on this disk (build/hub/homework); it prints a link to try. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
NPM = ROOT / "tools" / "hub"
PROXY = NPM / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD = "skipviz"
sys.path.insert(0, str(ROOT / "tools"))


def link(repo: str, hub: str, branch: str = "main", notebook: str | None = None) -> str:
    """The nbgitpuller link: clone (or update) `repo` into the user's home, then open JupyterLab in
    it (at `notebook`, if given). nbgitpuller names the folder after the repository address's
    last part, as it is (`.../homework.git` becomes `homework.git`)."""
    folder = repo.rstrip("/").rsplit("/", 1)[-1]
    urlpath = f"lab/tree/{folder}" + (f"/{notebook}" if notebook else "")
    return (f"{hub.rstrip('/')}/hub/user-redirect/git-pull?repo={quote(repo, safe='')}"
            f"&branch={quote(branch, safe='')}&urlpath={quote(urlpath, safe='')}")


def _git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "skipviz", "GIT_AUTHOR_EMAIL": "skipviz@localhost",
           "GIT_COMMITTER_NAME": "skipviz", "GIT_COMMITTER_EMAIL": "skipviz@localhost"}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def handout(repo: Path, student: Path | None = None) -> Path:
    """Commit the student copies (made afresh unless `student` is given) into the bare git
    repository `repo` (created if missing) on branch main; returns `repo`."""
    import homework

    if student is None:
        homework.release()
        student = homework.STUDENT
    if repo.exists() and any(repo.iterdir()) and not (repo / "HEAD").exists():
        raise SystemExit(f"{repo} is not a bare git repository: give a new folder (it is created) or a bare "
                         "repository, then push it where the hub can clone it")
    if not (repo / "HEAD").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git("init", "--bare", "--initial-branch=main", str(repo), cwd=repo.parent)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        _git("clone", str(repo), str(work), cwd=Path(tmp))
        _git("checkout", "-B", "main", cwd=work)
        for old in work.glob("*.ipynb"):
            old.unlink()
        for path in sorted(student.glob("*.ipynb")):
            shutil.copyfile(path, work / path.name)
        (work / "README.md").write_text(
            "# skipviz homework\n\nOpen a notebook, answer the cells marked `YOUR CODE HERE` / `YOUR ANSWER HERE`, "
            "and run the check after each answer: it says what is right or names the mistake.\n")
        _git("add", "-A", cwd=work)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=work, capture_output=True, text=True).stdout
        if status.strip():
            _git("commit", "-m", "Homework: the student copies", cwd=work)
            _git("push", "origin", "main", cwd=work)
    return repo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_proxy() -> Path:
    """configurable-http-proxy from tools/hub (npm ci when missing or older than its lock file)."""
    lock = NPM / "package-lock.json"
    if not PROXY.exists() or PROXY.stat().st_mtime < lock.stat().st_mtime:
        if shutil.which("npm") is None:
            raise SystemExit("the hub needs node and npm (Debian/Ubuntu: sudo apt-get install npm) for "
                             "configurable-http-proxy")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NPM, check=True)
        PROXY.touch()
    return PROXY


CONFIG = '''\
# JupyterHub for trying skipviz's hand-out on one machine (written by tools/hub.py).
c = get_config()
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.pid_file = "{folder}/proxy.pid"
# Any user name logs in with the shared password; a real course uses its own authenticator.
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
# Each user's server runs as this machine's user, in a home of its own.
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{folder}/home/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
'''


@dataclass
class Hub:
    """A running JupyterHub (its own process group) in `folder`."""

    process: subprocess.Popen
    url: str
    folder: Path

    @classmethod
    def start(cls, folder: Path, port: int | None = None, environment: dict | None = None,
              timeout: float = 120) -> Hub:
        folder.mkdir(parents=True, exist_ok=True)
        port = port or _free_port()
        venv_bin = Path(sys.executable).parent
        args = ["--allow-root"] if hasattr(os, "getuid") and os.getuid() == 0 else []
        env_for_users = {"SKIPVIZ_PROGRESS": "0", "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
                         **(environment or {})}
        (folder / "jupyterhub_config.py").write_text(CONFIG.format(
            port=port, hub_port=_free_port(), api_port=_free_port(), proxy=str(ensure_proxy()),
            folder=folder, password=PASSWORD, singleuser=str(venv_bin / "jupyterhub-singleuser"),
            args=args, environment=env_for_users))
        log = open(folder / "jupyterhub.log", "w")
        env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
        process = subprocess.Popen([str(venv_bin / "jupyterhub"), "-f", str(folder / "jupyterhub_config.py")],
                                   cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        hub = cls(process, f"http://127.0.0.1:{port}", folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {process.returncode}; see {folder / 'jupyterhub.log'}")
            try:
                with urllib.request.urlopen(f"{hub.url}/hub/api/", timeout=2):
                    return hub
            except OSError:
                time.sleep(0.5)
        hub.stop()
        raise RuntimeError(f"jupyterhub did not answer within {timeout:.0f} s; see {folder / 'jupyterhub.log'}")

    def stop(self) -> None:
        """Stop the hub, its proxy and every user's server (the whole process group, and the
        servers, which the local-process spawner starts in groups of their own)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-f", f"{self.folder}/home/"], check=False)


def demo(port: int) -> int:
    folder = ROOT / "build" / "hub"
    repo = handout(folder / "homework")
    hub = Hub.start(folder, port=port)
    print(f"JupyterHub at {hub.url}: log in with any user name and the password {PASSWORD!r}.")
    print("The students' link (the homework repository on this disk):")
    print("  " + link(f"file://{repo}", hub.url, notebook="01_vanishing_gradients.ipynb"))
    print("Ctrl-C stops the hub.")
    try:
        hub.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("link", help="print the nbgitpuller link")
    p.add_argument("repo")
    p.add_argument("hub")
    p.add_argument("--branch", default="main")
    p.add_argument("--notebook", default=None)
    p = sub.add_parser("handout", help="commit the student copies into a (bare) git repository")
    p.add_argument("repo", type=Path)
    p = sub.add_parser("demo", help="start a JupyterHub on this machine")
    p.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.command == "link":
        print(link(args.repo, args.hub, args.branch, args.notebook))
        return 0
    if args.command == "handout":
        print(f"committed the student copies to {handout(args.repo.resolve())}")
        return 0
    return demo(args.port)


if __name__ == "__main__":
    sys.exit(main())
