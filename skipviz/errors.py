"""The errors skipviz raises when it refuses an argument. Each is a ValueError or a TypeError, so
`except ValueError` keeps working; `except SkipvizError` catches exactly skipviz's refusals.

The message names the argument, what was given and what is allowed, e.g.
    SkipvizValueError: steps must be an integer >= 1; got 0
"""

from __future__ import annotations

__all__ = ["SkipvizError", "SkipvizTypeError", "SkipvizValueError"]


class SkipvizError(Exception):
    """Base class: skipviz refused an argument (see the message for which and why)."""


class SkipvizValueError(SkipvizError, ValueError):
    """An argument of the right kind with a value that is not allowed (or of the wrong kind:
    skipviz's older checks say "must be an integer" with a ValueError, which `except ValueError`
    in existing code relies on)."""


class SkipvizTypeError(SkipvizError, TypeError):
    """An argument of a kind the function cannot use at all (a class where an instance belongs, a
    list where a callable belongs)."""
