"""Exit codes of every longteng command (documented in README.md)."""

OK = 0
ERROR = 1  # a fatal problem with an input, model or output named in the message
USAGE = 2  # invalid command line (click's convention)
PARTIAL = 3  # the run finished, but some inputs failed (each reported), or `--strict` found problems
OUTPUT = 74  # results or output could not be written (disk full, read-only, I/O error); rerun to resume
INTERNAL = 70  # a bug: please report it with LONGTENG_DEBUG=1 output
INTERRUPTED = 130
