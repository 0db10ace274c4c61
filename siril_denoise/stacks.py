"""Is this image a stack? Decided here, once, for every reader and the model library.

A stack of N subs has about 1/√N of a sub's noise, so a model trained on subs
under-denoises a stack and one trained on a stack over-smooths a sub: the
readers (:mod:`siril_denoise.io`, :mod:`siril_denoise.siril.adapter`), the
engine's model metadata and the library's matching all ask
:func:`stack_state`. No imports beyond the standard library.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

#: LIVETIME / EXPTIME at or above which an image counts as a stack of round(ratio) subs.
LIVETIME_RATIO = 1.5


def _get(meta: Any, key: str) -> Any:
    if meta is None:
        return None
    if isinstance(meta, Mapping):
        return meta.get(key)
    return getattr(meta, key, None)


def _positive(value: Any) -> float | None:
    """``value`` as a float when it is a finite positive number (not a bool, not text), else None."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if is_number and math.isfinite(value) and value > 0 else None


def stack_state(meta: Any) -> tuple[bool | None, int | None]:
    """(is it a stack?, how many subs) from ``meta``'s keywords.

    ``meta`` is an :class:`~siril_denoise.io.ImageMeta`, a mapping with the
    same keys, or None. Evidence, strongest first: ``is_stack`` True or
    ``stackcnt`` (STACKCNT/NCOMBINE) above 1 says stack; ``livetime`` /
    ``exposure`` ≥ :data:`LIVETIME_RATIO` says a stack of round(ratio) subs;
    ``is_stack`` False, ``stackcnt`` = 1 or a smaller ratio says single sub.
    The count is None when unknown. Returns ``(None, None)`` when nothing
    tells.
    """
    count = _positive(_get(meta, "stackcnt"))
    count = int(count) if count is not None else None
    livetime, exposure = _positive(_get(meta, "livetime")), _positive(_get(meta, "exposure"))
    ratio = livetime / exposure if livetime and exposure else None
    if count is None and ratio is not None and ratio >= LIVETIME_RATIO:
        count = int(round(ratio))
    flag = _get(meta, "is_stack")
    if flag is True or (count is not None and count > 1):
        return True, count if count and count > 1 else None
    if flag is False or count == 1 or (ratio is not None and ratio < LIVETIME_RATIO):
        return False, None
    return None, None


def is_stack(meta: Any) -> bool:
    """True when :func:`stack_state` says ``meta`` describes a stack (unknown counts as a sub)."""
    return stack_state(meta)[0] is True
