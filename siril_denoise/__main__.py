"""``python -m siril_denoise``: the same as the ``siril-denoise`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
