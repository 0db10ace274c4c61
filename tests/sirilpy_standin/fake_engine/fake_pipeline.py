"""A quick fake of ``siril_denoise.pipeline`` for script-mechanics tests.

``denoise_image`` and ``apply_model`` return a 3x3 box-smoothed copy in the
same dtype and layout, report progress and honour ``should_cancel``, in
milliseconds. Tests of the real engine do not use it.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Report:
    warnings: list = field(default_factory=list)

    def as_text(self) -> str:
        return "fake report: noise reduced"


@dataclass
class _Result:
    data: np.ndarray
    report: _Report = field(default_factory=_Report)
    model_metadata: dict = field(default_factory=dict)
    model_path: object = None


def _smooth(data, progress=None, should_cancel=None, **_):
    work = data.astype(np.float64)
    planes = work[None] if work.ndim == 2 else work
    out = np.empty_like(planes)
    for c, plane in enumerate(planes):
        if should_cancel is not None and should_cancel():
            from siril_denoise.errors import Cancelled

            raise Cancelled()
        padded = np.pad(plane, 1, mode="edge")
        out[c] = sum(padded[dy:dy + plane.shape[0], dx:dx + plane.shape[1]]
                     for dy in range(3) for dx in range(3)) / 9.0
        if progress is not None:
            progress((c + 1) / len(planes), "fake denoise")
    out = out[0] if data.ndim == 2 else out
    if data.dtype == np.uint16:
        return np.clip(np.round(out), 0, 65535).astype(np.uint16)
    return out.astype(data.dtype)


def denoise_image(data, *, method="zsn2n", **kw):
    _record_cfa(kw)
    return _Result(_smooth(data, **kw))


def apply_model(data, model, **kw):
    _record_cfa(kw)
    return _Result(_smooth(data, **kw), model_path=model)


def _record_cfa(kw):
    """Appends the Bayer pattern each denoise call got to ``denoise_calls.jsonl``."""
    import json
    import os
    from pathlib import Path

    session = os.environ.get("SIRILPY_STANDIN_STATE")
    if session:
        with open(Path(session) / "denoise_calls.jsonl", "a") as f:
            f.write(json.dumps({"cfa_pattern": kw.get("cfa_pattern")}) + "\n")


def train_on_frames(frames, **kw):
    """Records what it was given (``train_call.json`` in the stand-in session), then refuses."""
    import json
    import os
    from pathlib import Path

    session = os.environ.get("SIRILPY_STANDIN_STATE")
    if session:
        homs = kw.get("homographies")
        call = {"frames": len(frames), "shapes": [list(f.shape) for f in frames],
                "dtypes": [str(f.dtype) for f in frames], "cfa_pattern": kw.get("cfa_pattern"),
                "homographies": None if homs is None else [np.asarray(h).tolist() for h in homs]}
        (Path(session) / "train_call.json").write_text(json.dumps(call))
    raise RuntimeError("the fake engine does not train")

