"""environment.yml, binder/environment.yml and pyproject.toml must list the same dependencies."""

import re
import sys
from pathlib import Path

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
