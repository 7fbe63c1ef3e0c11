"""Progress bars on stderr that ``--quiet`` silences."""

from __future__ import annotations

from tqdm.auto import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def progress(iterable=None, **kwargs):
    """tqdm on stderr, disabled under --quiet."""
    return tqdm(iterable, disable=_quiet, leave=False, dynamic_ncols=True, **kwargs)
