"""The set-up: environment.yml, binder/environment.yml and pyproject.toml list the same
dependencies; constraints.txt pins them all; the Makefile installs what each target needs."""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()
    name = CONDA_NAMES.get(name.lower(), name.lower()).replace("_", "-")
    return name, spec.replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["lab"]
    return dict(split(r) for r in reqs)


def conda_requirements(path: Path) -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge"]
    reqs, pip_lines = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_lines = dep["pip"]
            reqs.update(split(r) for r in pip_lines if not r.startswith("-"))
        else:
            name, spec = split(dep)
            if name not in NOT_PACKAGES:
                reqs[name] = spec
    return reqs, pip_lines


def test_environment_yml_matches_pyproject():
    reqs, pip_lines = conda_requirements(ROOT / "environment.yml")
    assert reqs == pyproject_requirements()
    assert "-e ." in pip_lines


def test_binder_environment_matches_pyproject():
    reqs, pip_lines = conda_requirements(ROOT / "binder" / "environment.yml")
    assert reqs == pyproject_requirements()
    assert "-e ." not in pip_lines
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post_build


def test_torch_is_a_range_and_make_pins_a_cpu_build():
    assert pyproject_requirements()["torch"].startswith(">=")
    assert "TORCH_SPEC ?= torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_package_never_imports_the_benchmark_peers():
    """loss-landscapes, PyHessian and scipy are in the `bench` extra only, for `make bench`."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("loss-landscapes==") for r in extras["bench"])
    for path in (ROOT / "skipviz").glob("*.py"):
        text = path.read_text()
        for name in ("loss_landscapes", "pyhessian", "scipy"):
            assert f"import {name}" not in text and f"from {name}" not in text, (path.name, name)


# The locked environment and the Makefile's set-up.
sys.path.insert(0, str(ROOT / "tools"))
import lock  # noqa: E402


def test_constraints_pin_every_requirement_within_its_range():
    assert lock.problems() == [], "run `make lock`"
    pinned = lock.pins(lock.CONSTRAINTS)
    for req in lock.requirements():
        name = lock.canonicalize_name(req.name)
        assert (name in pinned) != (name in lock.UNPINNED), name


def test_this_environment_has_the_pinned_versions():
    """What `make test` installed is what constraints.txt says (pip honoured the pins)."""
    wrong = {}
    for name, version in lock.pins(lock.CONSTRAINTS).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra this target does not install (e.g. bench)
        if lock.Version(installed) != version:
            wrong[name] = (installed, str(version))
    assert not wrong


def test_an_out_of_date_lock_names_make_lock(tmp_path, capsys):
    stale = tmp_path / "constraints.txt"
    kept = [line for line in lock.CONSTRAINTS.read_text().splitlines() if not line.startswith("numpy==")]
    stale.write_text("\n".join(kept + ["matplotlib==3.0.0"]) + "\n")
    assert lock.main(["check"], stale) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "run `make lock`" in message
    assert "numpy is not pinned" in message and "matplotlib==3.0.0 is outside" in message
    stale.write_text("numpy>=1\n")
    assert lock.main(["check"], stale) == 1
    assert "not a `name==version` line" in capsys.readouterr().err


def make_dry_run(*args: str) -> str:
    """The commands `make` would run for a fresh venv (-B: as if nothing were installed)."""
    return subprocess.run(["make", "-n", "-B", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_torch_spec_override_reaches_pip_as_separate_words():
    spec = "torch --index-url https://download.pytorch.org/whl/cu124"
    out = make_dry_run("setup", f"TORCH_SPEC={spec}")
    assert f"pip install --quiet {spec} ||" in out  # not one quoted (invalid) requirement
    assert f'"{spec}"' not in out


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_installs_no_test_tools_and_make_test_does():
    lab = make_dry_run("setup")
    assert '-c constraints.txt -e ".[lab]"' in lab and "test]" not in lab
    test = make_dry_run("setup-test")
    assert '-c constraints.txt -e ".[lab,test,cluster]"' in test


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_python_without_venv_gets_one_line_saying_what_to_install(tmp_path):
    fake = tmp_path / "python-without-venv"
    fake.write_text(f'#!/bin/sh\ncase "$*" in *"import venv"*) exit 1;; esac\nexec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    run = subprocess.run(["make", "-s", f"PYTHON={fake}", f"VENV={venv}", f"{venv}/bin/python"],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "MAKEFLAGS": ""})
    assert run.returncode != 0 and not venv.exists()
    lines = [line for line in run.stderr.splitlines() if not line.startswith("make")]
    assert lines == [f"{fake} cannot make a virtual environment: install its venv module "
                     "(Debian/Ubuntu: sudo apt-get install python3-venv)"]
