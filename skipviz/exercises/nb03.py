"""Checks for notebook 03 (unraveled ensembles): counting the paths through blocks with two
branches (exercise 1) and Kendall's τ of a nearly sorted order (exercise 2). Neither is a
function the package provides: the notebook derives the one-branch count and computes τ by
brute force, the exercises ask for the next step."""

from __future__ import annotations

import math
from collections.abc import Callable

from .._validation import check_int
from .feedback import CheckResult, call_number, exercise_check


def _first_wrong(got: dict, right: Callable, cases) -> tuple | None:
    return next((c for c in cases if not math.isclose(got[c], right(*c), rel_tol=1e-6, abs_tol=1e-9)), None)


def _answers(fn: object, name: str, cases) -> tuple[dict | None, CheckResult | None]:
    """({case: fn(*case)}, None), or (None, the verdict for the first call that fails)."""
    got = {}
    for case in cases:
        out, problem = call_number(fn, name, f"{name}({', '.join(map(str, case))})", *case)
        if problem is not None:
            return None, problem
        got[case] = out
    return got, None


def _named_mistake(got: dict, wrong: dict[str, Callable], cases) -> str | None:
    """The hint of the first typical mistake that matches the answers in every case, or None."""
    return next((hint for hint, f in wrong.items() if _first_wrong(got, f, cases) is None), None)


@exercise_check
def check_two_branch_paths(fn: object, largest: int = 12) -> CheckResult:
    """Your count_paths(n, k): the number of paths of length k through n blocks, each block holding
    two parallel branches beside its skip, y = x + f(x) + g(x) (notebook 03, exercise 1). Tested
    for 0 <= k <= n <= `largest` (at most 60) and n = 54."""
    largest = check_int("largest", largest, minimum=1, maximum=60)
    cases = [(n, k) for n in range(largest + 1) for k in range(n + 1)] + [(54, 5), (54, 27)]

    def right(n, k):
        return math.comb(n, k) * 2 ** k

    wrong: dict[str, Callable[[int, int], float]] = {
        "that is C(n, k), the count for blocks with one branch: each of the k blocks a path goes "
        "through offers two branches to choose from": lambda n, k: math.comb(n, k),
        "that is 3^n, the number of all paths; the question asks for those of length k":
            lambda n, k: 3 ** n,
        "you doubled the count once, C(n, k)·2; the choice of branch is made in each of the k blocks":
            lambda n, k: 2 * math.comb(n, k),
        "that is C(2n, k): it treats the 2n branches as independent, but a path can take at most one "
        "branch per block": lambda n, k: math.comb(2 * n, k),
        "your counts are off by one in k: a path of length k takes a branch in k of the n blocks":
            lambda n, k: math.comb(n, k - 1) * 2 ** (k - 1) if k else 0,
        "that is the fraction of the paths, C(n, k) 2^k / 3^n; the question asks for their number":
            lambda n, k: math.comb(n, k) * 2 ** k / 3 ** n,
        "you counted ordered choices (n!/(n-k)!); the order of the blocks is fixed":
            lambda n, k: math.perm(n, k) * 2 ** k,
        "the two choices of branch belong to the blocks the path goes through, not to those it skips":
            lambda n, k: math.comb(n, k) * 2 ** (n - k),
    }
    got, problem = _answers(fn, "count_paths", cases)
    if problem is not None:
        return problem
    if _first_wrong(got, right, cases) is None:
        return CheckResult(True, f"correct: your counts match for every n up to {largest} and for n = 54.")
    hint = _named_mistake(got, wrong, cases)
    if hint:
        return CheckResult(False, hint)
    n, k = _first_wrong(got, right, cases)
    if n == 54 and all(math.isclose(got[c], right(*c)) for c in cases if c[0] <= largest):
        return CheckResult(False, f"count_paths(54, {k}) is wrong although every count up to n = {largest} is right: does "
                                  "your arithmetic overflow (a numpy or torch int64 holds numbers below 9.2e18)? Use "
                                  "Python ints, math.comb and 2 ** k")
    if n <= largest and all(sum(got[m, j] for j in range(m + 1)) == 3 ** m for m in range(largest + 1)):
        return CheckResult(False, "your counts add up to 3^n paths but are split wrongly over the lengths: "
                                  "count the ways to pick which blocks a path of length k goes through, "
                                  "then the ways to go through each of them")
    return CheckResult(False, f"count_paths({n}, {k}) is wrong (the first case that fails); count the "
                              f"paths of length {k} through n = {n} blocks by hand")


@exercise_check
def check_tau_after_swaps(fn: object) -> CheckResult:
    """Your tau_after_swaps(n, s): Kendall's τ between 0..n-1 and the order made from it by s swaps
    of neighbours that share no block, (0 1)(2 3)... (notebook 03, exercise 2). Tested for n up to
    60 and every s <= n/2."""
    cases = [(n, s) for n in (2, 3, 4, 5, 8, 11, 20, 54, 60) for s in range(n // 2 + 1)]

    def right(n, s):
        return 1 - 4 * s / (n * (n - 1))

    wrong = {
        "you did not subtract the discordant pairs, τ = (concordant - discordant) / pairs; or you "
        "counted n(n-1) pairs, forgetting that each pair is counted once":
            lambda n, s: (n * (n - 1) / 2 - s) / (n * (n - 1) / 2),
        "you counted n(n+1)/2 pairs; n items form n(n-1)/2 pairs":
            lambda n, s: (n * (n + 1) / 2 - 2 * s) / (n * (n + 1) / 2),
        "you counted n²/2 pairs; n items form n(n-1)/2 pairs":
            lambda n, s: (n ** 2 / 2 - 2 * s) / (n ** 2 / 2),
        "you divided by n² instead of by the number of pairs n(n-1)/2":
            lambda n, s: (n * (n - 1) / 2 - 2 * s) / n ** 2,
        "you return concordant - discordant without dividing by the number of pairs n(n-1)/2":
            lambda n, s: n * (n - 1) / 2 - 2 * s,
        "the sign is flipped: an unchanged order (s = 0) must give +1": lambda n, s: -right(n, s),
        "you counted each swap as moving one block past all the others; a swap of neighbours changes "
        "the order of one pair only": lambda n, s: 1 - 4 * s * (n - 1) / (n * (n - 1)),
    }
    got, problem = _answers(fn, "tau_after_swaps", cases)
    if problem is not None:
        return problem
    if _first_wrong(got, right, cases) is None:
        return CheckResult(True, "correct: your τ matches for every n and number of swaps tested.")
    hint = _named_mistake(got, wrong, cases)
    if hint:
        return CheckResult(False, hint)
    if len(set(got.values())) == 1:
        return CheckResult(False, f"your function returns {next(iter(got.values()))!r} whatever n and s are: "
                                  "τ falls as the swaps add discordant pairs")
    if all(float(v).is_integer() for v in got.values()) and any(
            not right(*c).is_integer() for c in cases):
        return CheckResult(False, "every value you return is a whole number: integer division (//) "
                                  "rounds the ratio; divide with /")
    if any(got[n, 0] != 1 for n, _ in cases):
        return CheckResult(False, "with no swap (s = 0) the order is unchanged and τ must be 1")
    n, s = _first_wrong(got, right, cases)
    return CheckResult(False, f"tau_after_swaps({n}, {s}) is wrong (the first case that fails): count the "
                              "discordant pairs one swap of neighbours makes")
