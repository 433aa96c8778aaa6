"""Claims: a sentence of a notebook's text, checked by the run that prints the numbers behind it.

    claim("the residual net trains to a lower loss than the plain one", res_loss < plain_loss)

prints `✔ the residual net trains ...` when it holds and raises ClaimFailed naming the sentence
when it does not, so a run (any seed, any machine) in which the text would be wrong stops there.
A claim about fully trained models is marked `full_only=True`: in FAST mode, where training is
shortened, it is listed as not checked instead. The printed line holds no measured digits, so a
cell of claims prints the same on every machine and can be compared by nbval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import fast_mode


class ClaimFailed(AssertionError):
    """A claim of the notebook's text does not hold for this run."""


@dataclass
class Tally:
    """How many claims this process checked, found to hold, and left unchecked (FAST mode)."""

    held: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: 'N claims held, M not checked in FAST mode'."""
        text = f"{len(self.held)} claims held"
        return text + (f", {len(self.skipped)} not checked in FAST mode" if self.skipped else "")


TALLY = Tally()


def claim(statement: str, holds: bool, *, full_only: bool = False, detail: str = "") -> bool:
    """Check one sentence of the text: print '✔ statement', or raise ClaimFailed.

    statement: the claim in words, as the text makes it. holds: whether this run's numbers bear
    it out (a bool, or anything with a truth value such as a 0-d tensor). full_only: the claim
    is about FULL-mode training; in FAST mode it is reported as not checked. detail: shown only
    when the claim fails (the measured numbers), so that the printed success line is the same on
    every machine. Returns True when it was checked and held, False when skipped.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"statement must be a non-empty string; got {statement!r}")
    if full_only and fast_mode():
        TALLY.skipped.append(statement)
        print(f"· not checked in FAST mode: {statement}")
        return False
    try:
        ok = bool(holds)
    except Exception as err:  # e.g. a tensor with several elements
        raise ValueError(f"holds must be a single truth value; got {type(holds).__name__} ({err})") from None
    if not ok:
        raise ClaimFailed(f"the notebook's claim does not hold for this run: {statement}"
                          + (f" ({detail})" if detail else ""))
    TALLY.held.append(statement)
    print(f"✔ {statement}")
    return True
