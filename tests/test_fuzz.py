"""The error contract, fuzzed: every public callable of skipviz (from the modules' __all__), called
with one or two of its arguments replaced by odd values, returns or raises a SkipvizError naming
an argument, and changes nothing it was given (tests/fuzz_contract.py has the harness, tests/fuzz_values.py the values).

`make test` runs a fixed, small number of examples per callable (profile "ci": derandomized, so
every run draws the same cases); `make fuzz` runs many more, random, and keeps what fails in
hypothesis' example database (.hypothesis/), which replays it first next time. REGRESSIONS holds
one case per distinct failure the contract must keep refusing (callable, kind, line), so that
none comes back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from fuzz_contract import (
    EXEMPT,
    MODULES,
    ODD,
    parameters,
    public_callables,
    run_case,
    valid_arguments,
    variations,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    max_examples=int(os.environ.get("SKIPVIZ_FUZZ_EXAMPLES", "80")),
    suppress_health_check=list(HealthCheck))
settings.register_profile(
    "fuzz", deadline=None, print_blob=True, max_examples=int(os.environ.get("SKIPVIZ_FUZZ_EXAMPLES", "300")),
    suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("SKIPVIZ_FUZZ_PROFILE", "ci"))

CALLABLES = {name: fn for name, fn in public_callables().items() if name not in EXEMPT}


def options_for(qualname: str, fn, name: str) -> dict[str, object]:
    """{label: factory} of the odd values for argument `name` of fn."""
    valid = valid_arguments(qualname, fn)
    param = next(p for p in parameters(fn) if p.name == name)
    base = valid.get(name, param.default)
    return dict(ODD + variations(base))


def check(qualname: str, labels: dict[str, str]) -> None:
    fn = CALLABLES[qualname]
    replaced = {}
    for name, label in labels.items():
        replaced[name] = (label, options_for(qualname, fn, name)[label]())
    failure = run_case(qualname, fn, replaced)
    assert failure is None, str(failure)


def test_every_public_module_has_an_all():
    """A module is public unless fuzz_contract.INTERNAL says why not; a public one lists its API."""
    import importlib

    for name in MODULES:
        assert hasattr(importlib.import_module(f"skipviz.{name}"), "__all__"), f"skipviz.{name} has no __all__"


def test_every_public_callable_has_a_valid_call():
    """A new public function is fuzzed as soon as it is in __all__: this fails until it has a
    valid call (VALID or OVERRIDES in fuzz_contract) or an entry in EXEMPT saying why not."""
    assert len(CALLABLES) > 80
    for qualname, fn in CALLABLES.items():
        args = valid_arguments(qualname, fn)
        assert run_case(qualname, fn, {}) is None, f"{qualname}'s valid call fails: {args}"


@pytest.mark.parametrize("qualname", sorted(CALLABLES))
def test_contract(qualname):
    fn = CALLABLES[qualname]
    names = [p.name for p in parameters(fn)]
    if not names:
        return  # nothing to pass wrong (settings.fast_mode() and the like)
    labels = {name: sorted(options_for(qualname, fn, name)) for name in names}

    @given(st.data())
    def one_case(data):
        chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True),
                           label="arguments")
        check(qualname, {name: data.draw(st.sampled_from(labels[name]), label=name) for name in chosen})

    torch.manual_seed(0)  # the harness's own draws (a user's model) start from one place
    one_case()


# One case per distinct failure the contract must keep refusing: callable, kind of failure and the
# line that raised, with what the code did wrong there.
REGRESSIONS = json.loads((Path(__file__).parent / "fuzz_regressions.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", REGRESSIONS, ids=[
    f"{c['callable']}({', '.join(f'{k}={v}' for k, v in c['arguments'].items())})" for c in REGRESSIONS])
def test_regression(case):
    torch.manual_seed(0)
    check(case["callable"], case["arguments"])
