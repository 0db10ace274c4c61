"""Benchmark scenes with known truth, built from :mod:`siril_denoise.synthetic`.

Every scene is a session: the frames in Siril layout (float32 in data
units, so that no method's output is rounded to 16 bits), the noise-free
truth of frame 0 (the frame every method denoises), the homographies that
map each frame onto frame 0, and the star list in frame-0 pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siril_denoise import synthetic as sy

#: Synthetic scenarios, in the order the benchmark runs them.
SCENARIOS = ("faint_mono", "bright_mono", "rgb_stack", "bayer_session")

#: Dither (px) of the mono sessions; the Bayer preset has its own (6 px).
MONO_DITHER = 5


@dataclass
class BenchScene:
    """One scored scene.

    Attributes:
        name: scenario name.
        description: one line for the table's heading.
        frames: the session, Siril layout ``(H, W)`` or ``(C, H, W)``, float32
            in data units (ADU for raw frames, [0, 1] for the stack).
        truth: noise-free frame 0, same layout and units.
        homographies: ``(N, 3, 3)`` frame → frame-0 maps (full resolution),
            or None for a single image.
        cfa_pattern: Bayer pattern of raw mosaics, else None.
        star_x, star_y: star positions in frame-0 full-resolution pixels.
        fwhm: nominal star FWHM in full-resolution pixels.
        saturation: the clipping level in data units.
        data_range: peak value for the linear PSNR.
    """

    name: str
    description: str
    frames: list[np.ndarray]
    truth: np.ndarray
    homographies: np.ndarray | None
    cfa_pattern: str | None
    star_x: np.ndarray
    star_y: np.ndarray
    fwhm: float
    saturation: float
    data_range: float

    @property
    def noisy(self) -> np.ndarray:
        """Frame 0, the image every method denoises."""
        return self.frames[0]


def make_bench_scene(name: str, size: int = 256, n_frames: int = 8, seed: int = 0) -> BenchScene:
    """Build a scenario by name (one of :data:`SCENARIOS`), seeded and repeatable.

    Mono sessions are dithered by up to :data:`MONO_DITHER` px (integer, known
    shifts); the Bayer session by up to 6 px; ``rgb_stack`` is one stacked
    colour image (16 subs), so it has no session to learn Noise2Noise from.
    """
    shape = (int(size), int(size))
    if name == "faint_mono":
        s = sy.faint_mono(shape, seed, n_frames=n_frames, dither=MONO_DITHER)
        desc = f"faint mono sub, background SNR ~2, {size}×{size}, {n_frames} dithered frames"
        cfa = None
    elif name == "bright_mono":
        s = sy.bright_mono(shape, seed, n_frames=n_frames, dither=MONO_DITHER)
        desc = f"bright mono sub, background SNR ~45, {size}×{size}, {n_frames} dithered frames"
        cfa = None
    elif name == "bayer_session":
        # n2n trains on 96-px crops of the packed (half-size) planes: the mosaic needs >= 192 px
        size = max(int(size), 192)
        shape = (size, size)
        s = sy.bayer_session(shape, seed, n_frames=n_frames)
        desc = (f"raw Bayer {s.camera.bayer} session, sky SNR ~10, hot pixels and cosmic rays, "
                f"{size}×{size}, {n_frames} dithered frames")
        cfa = s.camera.bayer
    elif name == "rgb_stack":
        s = sy.rgb_stack(shape, seed)
        desc = f"stacked RGB float image (16 subs, [0, 1]), {size}×{size}, polish task"
        cfa = None
    else:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    frames = [np.asarray(f, dtype=np.float32) for f in s.frames]
    single = len(frames) == 1
    return BenchScene(
        name=name, description=desc, frames=frames, truth=np.asarray(s.truth[0], dtype=np.float32),
        homographies=None if single else np.asarray(s.homographies, dtype=np.float64),
        cfa_pattern=cfa, star_x=np.asarray(s.stars.x, dtype=np.float64),
        star_y=np.asarray(s.stars.y, dtype=np.float64), fwhm=float(s.sky.fwhm),
        saturation=float(s.saturation), data_range=float(s.data_range),
    )
