"""The one exception family of phasediff.

Anything the user can fix (a bad spec, a missing file, an impossible region) raises `PhasediffError`;
the command line prints its message as one line and exits with status 2.
"""


class PhasediffError(Exception):
    """Bad input or an impossible request, explained in one line."""
