"""skipviz.claims: a claim prints one machine-independent line when it holds and stops the run,
quoting the sentence, when it does not; FULL-only claims are listed, not checked, in FAST mode."""

import pytest
import torch

from skipviz import claims
from skipviz.claims import ClaimFailed, claim


def test_a_claim_that_holds_prints_only_its_sentence(capsys, monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "0")
    before = len(claims.TALLY.held)
    assert claim("the loss falls", 0.1 < 0.5, detail="0.1 against 0.5") is None   # no "True" under the line
    assert capsys.readouterr().out == "✔ the loss falls\n"
    claim("a 0-d tensor works", torch.tensor(True))
    assert claims.TALLY.held[before:] == ["the loss falls", "a 0-d tensor works"]


def test_a_claim_that_fails_names_the_sentence_and_the_numbers(monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "0")
    with pytest.raises(ClaimFailed, match=r"does not hold for this run: V1 trails V2 \(0.42 against 0.19\)"):
        claim("V1 trails V2", False, detail="0.42 against 0.19")
    with pytest.raises(AssertionError):  # a ClaimFailed is an AssertionError, as a test expects
        claim("never", False)


def test_full_only_claims_are_listed_in_fast_mode_and_checked_in_full(capsys, monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "1")
    before = len(claims.TALLY.skipped)
    assert claim("trained to 97%", False, full_only=True) is None
    assert capsys.readouterr().out == "· not checked in FAST mode: trained to 97%\n"
    assert len(claims.TALLY.skipped) == before + 1 and "not checked in FAST mode" in claims.TALLY.summary()
    monkeypatch.setenv("SKIPVIZ_FAST", "0")
    with pytest.raises(ClaimFailed):
        claim("trained to 97%", False, full_only=True)


def test_claims_that_hold_in_fast_mode_are_checked_there(monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "1")
    with pytest.raises(ClaimFailed):
        claim("checked in every mode", False)


# ---------------------------------------------------------------------------- margins (make claims)


def _run_with_margins(source, namespace):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from claim_margins import with_margins

    exec(with_margins(source), namespace)


def test_margins_keep_the_truth_and_measure_the_slack(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "0")
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("SKIPVIZ_CLAIMS_LOG", str(log))
    namespace = {"claim": claim, "start": 1.5, "tame": {1: 3.0, 2: 9.0}, "t": torch.tensor([1.0, 2.0]),
                 "n": 3}
    _run_with_margins('claim("flat", 0.5 < start < 2 and all(0.1 < r < 10 for r in tame.values()))\n'
                      'claim("tensor", bool((t[1:] > t[:-1]).all()))\n'
                      'claim("exact", n == 3)', namespace)
    import json

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["statement"] for e in entries] == ["flat", "tensor", "exact"]
    assert entries[0]["slack"] == pytest.approx(min((2 - 1.5) / 2, (10 - 9) / 10))
    assert entries[1]["slack"] is None and entries[2]["slack"] is None
    with pytest.raises(ClaimFailed):
        _run_with_margins('claim("too far", 3 < start)', namespace)
    assert json.loads(log.read_text().splitlines()[-1])["slack"] == pytest.approx((1.5 - 3) / 3)


def test_the_margin_report_puts_the_claims_closest_to_failing_first(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from claim_margins import report

    logs = {}
    for seed, (safe, close) in enumerate([(0.9, 0.05), (0.8, 0.02), (0.85, 0.08)]):
        path = tmp_path / f"{seed}.jsonl"
        path.write_text("\n".join(json.dumps({"statement": s, "slack": v})
                                  for s, v in [("safe", safe), ("close", close)]) + "\n")
        logs[("01_x", seed)] = path
    lines = report(logs)
    assert "close" in lines[1] and "safe" in lines[2] and "slack  0.020" in lines[1]


def test_the_margin_policy_flags_unsteady_claims():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from claim_margins import fragile

    assert fragile([0.9, 0.1, 0.85])             # z about 1.7
    assert not fragile([0.04, 0.06, 0.05])       # thin but steady: z 5
    assert not fragile([0.008, 0.0081, 0.0079])
    assert not fragile([0.3, 0.3])               # the same for every seed: exact
    assert fragile([-0.1, 0.5, 0.5])             # failed once
