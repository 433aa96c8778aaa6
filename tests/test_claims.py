"""skipviz.claims: a claim prints one machine-independent line when it holds and stops the run,
quoting the sentence, when it does not; FULL-only claims are listed, not checked, in FAST mode."""

import pytest
import torch

from skipviz import claims
from skipviz.claims import ClaimFailed, claim


def test_a_claim_that_holds_prints_only_its_sentence(capsys, monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "0")
    assert claim("the loss falls", 0.1 < 0.5, detail="0.1 against 0.5") is True
    assert capsys.readouterr().out == "✔ the loss falls\n"
    assert claim("a 0-d tensor works", torch.tensor(True))


def test_a_claim_that_fails_names_the_sentence_and_the_numbers(monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "0")
    with pytest.raises(ClaimFailed, match=r"does not hold for this run: V1 trails V2 \(0.42 against 0.19\)"):
        claim("V1 trails V2", False, detail="0.42 against 0.19")
    with pytest.raises(AssertionError):  # a ClaimFailed is an AssertionError, as a test expects
        claim("never", False)


def test_full_only_claims_are_listed_in_fast_mode_and_checked_in_full(capsys, monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "1")
    before = len(claims.TALLY.skipped)
    assert claim("trained to 97%", False, full_only=True) is False
    assert capsys.readouterr().out == "· not checked in FAST mode: trained to 97%\n"
    assert len(claims.TALLY.skipped) == before + 1 and "not checked in FAST mode" in claims.TALLY.summary()
    monkeypatch.setenv("SKIPVIZ_FAST", "0")
    with pytest.raises(ClaimFailed):
        claim("trained to 97%", False, full_only=True)


def test_claims_that_hold_in_fast_mode_are_checked_there(monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "1")
    with pytest.raises(ClaimFailed):
        claim("checked in every mode", False)
