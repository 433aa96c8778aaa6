"""The locked environment: constraints.txt pins the exact version of every package that `make lab`,
`make test` and `make bench` install, so that the stored outputs and the tests see the libraries
they were made with. pyproject.toml keeps ranges, for people who install skipviz elsewhere.

    python tools/lock.py check            # every requirement of pyproject.toml pinned, in range
    python tools/lock.py write VENV       # print a new constraints.txt from VENV's packages

torch is not pinned here: the Makefile's TORCH_SPEC chooses its build (CPU by default, CUDA by
override), and a pin would make pip replace a GPU build the user asked for.
Runs on the Python of the venv, with nothing installed but pip (whose vendored copies of
packaging and tomli stand in when the real ones are missing).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:  # a fresh venv: only pip is there
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import Version
try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
UNPINNED = {"torch"}  # chosen by TORCH_SPEC in the Makefile
HEADER = """\
# Exact versions of everything `make lab`, `make test` and `make bench` install (pip -c).
# Written by `make lock` from a fresh venv; do not edit by hand. torch is chosen by TORCH_SPEC.
"""


def requirements() -> list[Requirement]:
    """Every requirement of pyproject.toml: the run dependencies and every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def pins(path: Path) -> dict[str, Version]:
    """{canonical name: version} of the `name==version` lines of a constraints file."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            found[canonicalize_name(m.group(1))] = Version(m.group(2))
        elif line:
            raise ValueError(f"{path.name}: not a `name==version` line: {line!r}")
    return found


def problems(path: Path | None = None) -> list[str]:
    """What is wrong with the constraints file against pyproject.toml (empty when it is current)."""
    path = CONSTRAINTS if path is None else path
    if not path.exists():
        return [f"{path.name} is missing"]
    try:
        pinned = pins(path)
    except ValueError as err:
        return [str(err)]
    out = []
    for req in requirements():
        name = canonicalize_name(req.name)
        if name in UNPINNED:
            if name in pinned:
                out.append(f"{req.name} is pinned, but TORCH_SPEC chooses it")
            continue
        if name not in pinned:
            out.append(f"{req.name} is not pinned")
        elif not req.specifier.contains(pinned[name], prereleases=True):
            out.append(f"{req.name}=={pinned[name]} is outside pyproject.toml's {req.specifier}")
    return out


def write(venv: Path) -> str:
    """A new constraints file from what `venv` holds (pip freeze, less skipviz and torch)."""
    frozen = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude-editable"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    lines = []
    for line in frozen:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m and canonicalize_name(m.group(1)) not in UNPINNED | {"skipviz"}:
            lines.append(f"{m.group(1)}=={m.group(2)}")
    return HEADER + "\n".join(sorted(lines, key=str.lower)) + "\n"


def main(argv: list[str], path: Path | None = None) -> int:
    if argv[:1] == ["check"] and len(argv) == 1:
        found = problems(path)
        if found:
            print(f"constraints.txt is out of date with pyproject.toml ({'; '.join(found)}): "
                  "run `make lock`", file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["write"] and len(argv) == 2:
        sys.stdout.write(write(Path(argv[1])))
        return 0
    print("usage: python tools/lock.py check | write VENV", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
