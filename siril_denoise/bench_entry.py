"""``siril-denoise [-q] [-v] bench ...``: the benchmark's arguments go to it untouched.

The benchmark (:mod:`siril_denoise.bench`) has its own parser and needs the
``[bench]`` extra; without it the command says how to install it and exits 1.
"""

from __future__ import annotations

import sys
from typing import Sequence

from .console import setup_logging


def _is_global(token: str) -> bool:
    """-q/--quiet or -v/-vv.../--verbose: the options accepted before ``bench``."""
    return token in ("-q", "--quiet", "--verbose") or (token.startswith("-v") and set(token[1:]) == {"v"})


def bench_command(argv: Sequence[str]) -> bool:
    """True when the command line is ``[global options] bench ...``."""
    for token in argv:
        if not _is_global(token):
            return token == "bench"
    return False


def run_bench(argv: Sequence[str]) -> int:
    """Run ``siril_denoise.bench.main`` on what follows ``bench``, logging as the global options say.

    Returns the benchmark's exit code, or 1 with a message when it is not installed.
    """
    argv = list(argv)
    k = argv.index("bench")
    before, rest = argv[:k], argv[k + 1:]
    quiet = any(a in ("-q", "--quiet") for a in before)
    verbose = sum(a.count("v") for a in before if a.startswith("-v")) + before.count("--verbose")
    setup_logging(quiet, verbose)
    try:
        from . import bench
        bench_main = bench.main
    except (ImportError, AttributeError) as exc:
        print(f"error: the benchmark is not available in this installation ({exc}). Install from a source "
              "checkout with the bench extra: pip install -e '.[bench]'.", file=sys.stderr)
        return 1
    return int(bench_main(rest) or 0)
