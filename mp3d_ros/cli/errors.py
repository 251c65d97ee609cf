"""How the console scripts end on bad input: one line ``PROG: error: ...`` on stderr, exit status 2.

That is argparse's convention (``parser.error``), without the usage text: the arguments parsed, but
a file or value they name is bad. A traceback is left for bugs only.
"""

from __future__ import annotations

import sys

__all__ = ["BAD_INPUT", "EXIT_BAD_INPUT", "report_bad_input"]

EXIT_BAD_INPUT = 2
# What library functions raise for bad input: ValueError (ModelFileError, ConfigError, malformed
# datasets) and OSError (missing, unreadable files).
BAD_INPUT = (ValueError, OSError)


def report_bad_input(prog: str, error: BaseException) -> int:
    """Print ``error`` as one ``PROG: error: ...`` line on stderr; returns :data:`EXIT_BAD_INPUT`."""
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
