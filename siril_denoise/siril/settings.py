"""The Siril scripts' remembered choices, kept in a small JSON file.

The file lives in Siril's configuration folder (``get_siril_configdir()``), as
``siril-denoise.json``. A missing file gives the defaults; an unreadable or
corrupt one gives the defaults too, with a message saying so (the caller logs
it), and is replaced the next time the settings are saved.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..fileutil import write_atomic
from ..usecases import MAX_TILE, MIN_TILE, method_network, single_image_methods
from .jobs import JobOptions

SETTINGS_FILE = "siril-denoise.json"

#: Networks offered for training on a sequence.
TRAIN_NETWORKS = ("unet", "dncnn")

#: The defaults, from the one place that holds them.
_DEFAULT = JobOptions()


@dataclass
class Settings:
    """What the user chose last time, per script family (defaults: :class:`~siril_denoise.usecases.Options`).

    ``choice`` is ``"auto"`` (best matching library model, else the default
    single-image method), a single-image method name (``"zsn2n"``,
    ``"nb2nb"``...), or ``"model:<name>"``. ``strength`` in [0, 1] blends the
    denoised result with the input. ``tile`` and ``overlap`` are in pixels.
    Training is counted in steps (``steps`` for the single-image methods,
    ``train_steps`` for training on a sequence; 0 = the method's default), so
    the result does not depend on how busy the machine is;
    ``time_budget`` / ``train_time_budget`` are an optional cap in seconds
    (0 = none), and a model the cap stops early is flagged as cut short.
    """

    choice: str = _DEFAULT.choice
    strength: float = _DEFAULT.strength
    use_gpu: bool = _DEFAULT.use_gpu
    tile: int = _DEFAULT.tile
    overlap: int = _DEFAULT.tile_overlap()
    time_budget: float = _DEFAULT.time_limit or 0.0
    prefix: str = _DEFAULT.prefix
    load_result: bool = _DEFAULT.load_result
    train_net: str = _DEFAULT.net or method_network(_DEFAULT.train_method)
    train_time_budget: float = _DEFAULT.time_limit or 0.0
    steps: int = _DEFAULT.steps or 0
    train_steps: int = _DEFAULT.steps or 0

    def options(self, job: str) -> JobOptions:
        """These choices as the :class:`JobOptions` of ``job`` ("image", "sequence" or "train")."""
        s = self.normalised()
        opts = JobOptions(choice=s.choice, strength=s.strength, use_gpu=s.use_gpu, tile=s.tile,
                          overlap=s.overlap, prefix=s.prefix, load_result=s.load_result)
        if job == "train":
            opts.net, opts.steps, opts.time_limit = s.train_net, s.train_steps or None, s.train_time_budget or None
        else:
            opts.steps, opts.time_limit = s.steps or None, s.time_budget or None
        return opts

    def normalised(self) -> "Settings":
        """A copy with every value in its valid range (hand-edited files happen)."""
        s = Settings(**asdict(self))
        s.strength = min(max(float(s.strength), 0.0), 1.0)
        s.tile = int(min(max(int(s.tile), MIN_TILE), MAX_TILE))
        s.overlap = int(min(max(int(s.overlap), 0), s.tile // 2))
        s.time_budget = max(float(s.time_budget), 0.0)
        s.train_time_budget = max(float(s.train_time_budget), 0.0)
        s.steps = int(min(max(int(s.steps), 0), 1_000_000))
        s.train_steps = int(min(max(int(s.train_steps), 0), 1_000_000))
        s.prefix = str(s.prefix) or _DEFAULT.prefix
        if s.train_net not in TRAIN_NETWORKS:
            s.train_net = Settings.train_net
        if not (s.choice == "auto" or s.choice in single_image_methods() or s.choice.startswith("model:")):
            s.choice = Settings.choice
        return s


def settings_path(config_dir: str | os.PathLike) -> Path:
    """Where the settings file lives inside Siril's configuration folder."""
    return Path(config_dir) / SETTINGS_FILE


def load_settings(path: str | os.PathLike) -> tuple[Settings, str | None]:
    """Read the settings; returns them and a message when the defaults had to be used."""
    path = Path(path)
    if not path.exists():
        return Settings(), None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        known = {f.name: f.type for f in fields(Settings)}
        defaults = asdict(Settings())
        values = {}
        for key, value in raw.items():
            if key in known:
                expected = type(defaults[key])
                if expected is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                    raise ValueError(f"{key!r} should be {expected.__name__}")
                values[key] = value
        if "steps" not in raw:  # written before training counted steps: its time budgets were no cap
            values.pop("time_budget", None)
            values.pop("train_time_budget", None)
        return Settings(**values).normalised(), None
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        return Settings(), f"Settings file {path} could not be read ({exc}); using the defaults."


def save_settings(settings: Settings, path: str | os.PathLike) -> None:
    """Write the settings atomically (a half-written file would be read as corrupt)."""
    write_atomic(path, json.dumps(asdict(settings.normalised()), indent=2) + "\n")
