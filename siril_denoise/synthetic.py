"""Synthetic astro frames with known truth: a camera simulator and sky scenes.

Used by ``siril-denoise demo``, the test suite and the benchmark. Everything is
seeded and repeatable.

Conventions
-----------
* Pixel coordinates are numpy's: ``x`` is the column, ``y`` the row, and the
  centre of pixel ``[0, 0]`` is ``(x, y) = (0, 0)``.
* A sky is rendered as *expected electrons per pixel* (float64, >= 0): ``(H, W)``
  for a mono sky, ``(3, H, W)`` (R, G, B) for a colour sky.
* The camera turns expected electrons into a raw uint16 frame in ADU:
  Poisson shot noise, Gaussian read noise (e-), division by the gain (e-/ADU),
  a pedestal (ADU), rounding, clipping to ``[0, adu_max]``.
* "Truth" in data units is the noise-free reading: ``truth_e / gain +
  pedestal``, clipped at ``adu_max`` (mosaicked for a Bayer camera). It excludes
  camera defects (hot pixels, cosmic rays), which are not sky.

Example
-------
>>> s = faint_mono((64, 64), seed=1, n_frames=3, dither=2)
>>> s.frames.shape, s.frames.dtype, s.truth.dtype
((3, 64, 64), dtype('uint16'), dtype('float32'))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

BAYER_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
_CHANNEL_INDEX = {"R": 0, "G": 1, "B": 2}


# --------------------------------------------------------------------------
# Bayer mosaic
# --------------------------------------------------------------------------

def bayer_channels(shape: tuple[int, int], pattern: str) -> np.ndarray:
    """Colour index (0=R, 1=G, 2=B) of every photosite of a CFA sensor.

    The pixel at row ``r``, column ``c`` has the colour named by
    ``pattern[(r % 2) * 2 + (c % 2)]``. Returns an int8 array of ``shape``.
    """
    pattern = pattern.upper()
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"Bayer pattern must be one of {BAYER_PATTERNS}, not {pattern!r}")
    h, w = shape
    cell = np.array([_CHANNEL_INDEX[ch] for ch in pattern], dtype=np.int8).reshape(2, 2)
    return np.tile(cell, ((h + 1) // 2, (w + 1) // 2))[:h, :w]


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a colour image ``(3, H, W)`` through a Bayer filter into one ``(H, W)`` plane.

    Values and dtype are kept; each pixel takes the channel its filter passes.
    """
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"mosaic needs a (3, H, W) colour image, got shape {rgb.shape}")
    idx = bayer_channels(rgb.shape[1:], pattern)
    return np.take_along_axis(rgb, idx[None].astype(np.intp), axis=0)[0]


# --------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Camera:
    """A CMOS/CCD camera: converts expected electrons into a raw uint16 frame.

    gain: electrons per ADU. read_noise: electrons rms. pedestal: ADU added to
    every pixel (bias offset). bayer: CFA pattern (``'RGGB'``, ``'GRBG'``,
    ``'GBRG'``, ``'BGGR'``) or None for mono. hot_pixel_fraction: fraction of
    photosites that are hot; each gets a fixed extra signal, log-uniform
    around ``hot_pixel_e`` electrons per exposure, at positions fixed by
    ``seed`` (the same in every frame of this camera). cosmic_rays: expected
    hits per megapixel per frame, each a short track of a few thousand
    electrons, different in every frame.
    """

    gain: float = 1.0
    read_noise: float = 3.0
    pedestal: float = 500.0
    bayer: str | None = None
    hot_pixel_fraction: float = 0.0
    hot_pixel_e: float = 3000.0
    cosmic_rays: float = 0.0
    seed: int = 0
    adu_max: int = 65535

    @property
    def saturation_e(self) -> float:
        """Expected electrons at which a pixel reads ``adu_max``."""
        return (self.adu_max - self.pedestal) * self.gain

    def to_adu(self, electrons: np.ndarray) -> np.ndarray:
        """Noise-free reading in ADU (float32): ``e / gain + pedestal``, clipped to ``[0, adu_max]``."""
        adu = np.asarray(electrons, dtype=np.float64) / self.gain + self.pedestal
        return np.clip(adu, 0.0, self.adu_max).astype(np.float32)

    def hot_pixels(self, shape: tuple[int, int]) -> np.ndarray:
        """Extra expected electrons per exposure from hot pixels, ``(H, W)`` float64.

        Depends only on ``seed``, ``shape`` and the hot-pixel settings, so
        every frame from this camera has the same hot pixels.
        """
        out = np.zeros(shape, dtype=np.float64)
        n = int(round(self.hot_pixel_fraction * shape[0] * shape[1]))
        if n == 0:
            return out
        rng = np.random.default_rng([self.seed, 0x407])
        flat = rng.choice(out.size, size=n, replace=False)
        out.flat[flat] = self.hot_pixel_e * np.exp(rng.uniform(np.log(0.2), np.log(5.0), n))
        return out

    def cosmic_ray_hits(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Electrons deposited by cosmic rays in one exposure, ``(H, W)`` float64."""
        out = np.zeros(shape, dtype=np.float64)
        h, w = shape
        n = rng.poisson(self.cosmic_rays * h * w / 1e6)
        for _ in range(n):
            length = rng.integers(1, 5)
            angle = rng.uniform(0.0, np.pi)
            y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
            t = np.arange(length)
            ys = np.clip(np.round(y0 + t * np.sin(angle)).astype(int), 0, h - 1)
            xs = np.clip(np.round(x0 + t * np.cos(angle)).astype(int), 0, w - 1)
            np.add.at(out, (ys, xs), rng.uniform(1000.0, 8000.0, length))
        return out

    def expose(self, expected_e: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One raw frame from expected electrons per pixel.

        ``expected_e``: ``(H, W)``, or ``(3, H, W)`` for a Bayer camera (the
        colour image is mosaicked first). Returns uint16 ``(H, W)`` in ADU.
        """
        e = np.asarray(expected_e, dtype=np.float64)
        if e.ndim == 3:
            if self.bayer is None:
                raise ValueError("a colour (3, H, W) scene needs a camera with a Bayer pattern")
            e = mosaic(e, self.bayer)
        e = np.maximum(e + self.hot_pixels(e.shape), 0.0)
        electrons = rng.poisson(e).astype(np.float64)
        electrons += rng.normal(0.0, self.read_noise, e.shape)
        if self.cosmic_rays > 0:
            electrons += self.cosmic_ray_hits(e.shape, rng)
        adu = np.rint(electrons / self.gain + self.pedestal)
        return np.clip(adu, 0, self.adu_max).astype(np.uint16)

    def truth(self, expected_e: np.ndarray) -> np.ndarray:
        """Noise-free reading in ADU of the sky, mosaicked for a Bayer camera (float32)."""
        e = np.asarray(expected_e)
        if e.ndim == 3 and self.bayer is not None:
            e = mosaic(e, self.bayer)
        return self.to_adu(e)


# --------------------------------------------------------------------------
# Sky model
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Stars:
    """A star list in pixel coordinates of the reference frame.

    x, y: positions (px). flux_e: total expected electrons of each star,
    ``(N,)`` for a mono sky or ``(N, 3)`` (per channel) for a colour sky.
    fwhm: Moffat full width at half maximum (px), ``(N,)``.
    """

    x: np.ndarray
    y: np.ndarray
    flux_e: np.ndarray
    fwhm: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


def moffat_alpha(fwhm: float, beta: float) -> float:
    """Moffat core width alpha (px) for a given FWHM (px) and beta."""
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _subpixel_box(x: float, y: float, r: float, shape: tuple[int, int], sub: np.ndarray):
    """The pixels within ``r`` of ``(x, y)`` (clipped to ``shape``) and their sub-pixel sample offsets.

    Returns ``((y0, y1, x0, x1), px, py)`` with ``px``, ``py`` of shape ``(rows, cols, n, n)``: the
    x and y distances (px) from ``(x, y)`` of each pixel's ``n × n`` samples at offsets ``sub``;
    None when the box lies outside the image.
    """
    h, w = shape
    x0, x1 = max(int(np.floor(x - r)), 0), min(int(np.ceil(x + r)) + 1, w)
    y0, y1 = max(int(np.floor(y - r)), 0), min(int(np.ceil(y + r)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    px = np.arange(x0, x1)[None, :, None, None] + sub[None, None, None, :] - x
    py = np.arange(y0, y1)[:, None, None, None] + sub[None, None, :, None] - y
    return (y0, y1, x0, x1), px, py


def _sersic_b(n: np.ndarray) -> np.ndarray:
    return 2.0 * n - 1.0 / 3.0 + 0.009876 / n


@dataclass(frozen=True)
class SkyModel:
    """A noise-free sky that can be rendered at any shift, seeing and transparency.

    All positions are in reference-frame pixels; stars and galaxies may lie
    up to ``margin`` px outside the frame so that shifted frames see them.
    ``fwhm``: nominal seeing (px), which also blurs the galaxies.
    ``sky_e``: background electrons per pixel per channel at the frame centre;
    ``gradient``: fractional change of the background across the frame in x
    and y (tied to the frame, like light pollution seen by the camera).
    """

    shape: tuple[int, int]
    channels: int
    sky_e: np.ndarray
    gradient: tuple[float, float]
    stars: Stars
    fwhm: float
    beta: float
    galaxies: dict[str, np.ndarray]
    nebula: np.ndarray
    nebula_colour: np.ndarray
    margin: int

    def render(
        self,
        *,
        shift: tuple[float, float] = (0.0, 0.0),
        fwhm_scale: float = 1.0,
        sky_scale: float = 1.0,
        transparency: float = 1.0,
    ) -> np.ndarray:
        """Expected electrons per pixel of a frame whose pixel ``(x, y)`` sees reference ``(x + dx, y + dy)``.

        ``fwhm_scale`` scales every star's FWHM (seeing), ``sky_scale`` the
        background, ``transparency`` every astronomical source. Returns float64
        ``(H, W)`` (mono) or ``(3, H, W)`` (colour).
        """
        dx, dy = float(shift[0]), float(shift[1])
        h, w = self.shape
        c = self.channels
        img = np.zeros((c, h, w), dtype=np.float64)

        # sky background with a gentle gradient, in frame coordinates
        yy, xx = np.mgrid[0:h, 0:w]
        gx, gy = self.gradient
        ramp = 1.0 + gx * (xx / max(w - 1, 1) - 0.5) + gy * (yy / max(h - 1, 1) - 0.5)
        img += (sky_scale * self.sky_e)[:, None, None] * ramp[None]

        # nebulosity: a smooth field sampled at the shifted position
        m = self.margin
        if dx == int(dx) and dy == int(dy):
            neb = self.nebula[m + int(dy): m + int(dy) + h, m + int(dx): m + int(dx) + w]
        else:
            neb = ndimage.map_coordinates(
                self.nebula, [yy + dy + m, xx + dx + m], order=3, mode="nearest"
            )
        astro = self.nebula_colour[:, None, None] * np.maximum(neb, 0.0)[None]

        # galaxies, blurred by the seeing; rendered with a border so the blur
        # near the edges is the same whatever the shift
        seeing_sigma = fwhm_scale * self.fwhm / 2.3548
        pad = int(np.ceil(4.0 * seeing_sigma)) + 1
        gal = self._render_galaxies(dx - pad, dy - pad, (h + 2 * pad, w + 2 * pad))
        if gal.any():
            gal = ndimage.gaussian_filter(gal, seeing_sigma)[pad:-pad, pad:-pad]
            astro += gal[None] * self.galaxies["colour"][:, None, None]

        astro += self._render_stars(dx, dy, fwhm_scale)
        img += transparency * astro
        return img[0] if c == 1 else img

    def _render_stars(self, dx: float, dy: float, fwhm_scale: float) -> np.ndarray:
        h, w = self.shape
        c = self.channels
        out = np.zeros((c, h, w), dtype=np.float64)
        st = self.stars
        if len(st) == 0:
            return out
        flux = np.asarray(st.flux_e, dtype=np.float64).reshape(len(st), -1)
        sub = (np.arange(3) - 1.0) / 3.0  # 3x3 sub-pixel samples per pixel
        for i in range(len(st)):
            x, y = st.x[i] - dx, st.y[i] - dy
            alpha = moffat_alpha(st.fwhm[i] * fwhm_scale, self.beta)
            total = float(flux[i].sum())
            peak = total * (self.beta - 1.0) / (np.pi * alpha**2)
            # box out to where the profile drops below 0.01 e-
            r = alpha * np.sqrt(max((peak / 0.01) ** (1.0 / self.beta) - 1.0, 9.0))
            r = min(r, 30.0 * alpha, float(max(h, w)))
            box = _subpixel_box(x, y, r, (h, w), sub)
            if box is None:
                continue
            (y0, y1, x0, x1), px, py = box
            prof = (1.0 + (px**2 + py**2) / alpha**2) ** (-self.beta)
            prof = prof.mean(axis=(2, 3)) * (self.beta - 1.0) / (np.pi * alpha**2)
            out[:, y0:y1, x0:x1] += flux[i][:, None, None] * prof[None]
        return out

    def _render_galaxies(self, dx: float, dy: float, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        out = np.zeros((h, w), dtype=np.float64)
        g = self.galaxies
        sub = np.array([-0.25, 0.25])
        for i in range(len(g["x"])):
            x, y = g["x"][i] - dx, g["y"][i] - dy
            re, n, q, th = g["r_e"][i], g["n"][i], g["q"][i], g["theta"][i]
            box = _subpixel_box(x, y, 8.0 * re, (h, w), sub)
            if box is None:
                continue
            (y0, y1, x0, x1), px, py = box
            u = px * np.cos(th) + py * np.sin(th)
            v = (-px * np.sin(th) + py * np.cos(th)) / q
            rr = np.sqrt(u**2 + v**2) / re
            b = _sersic_b(n)
            prof = np.exp(-b * (rr ** (1.0 / n) - 1.0)).mean(axis=(2, 3))
            norm = re**2 * q * 2.0 * np.pi * n * np.exp(b) * special.gamma(2.0 * n) / b ** (2.0 * n)
            out[y0:y1, x0:x1] += g["flux_e"][i] * prof / norm
        return out


def make_sky(
    shape: tuple[int, int],
    *,
    rng: np.random.Generator,
    channels: int = 1,
    sky_e: float = 1000.0,
    read_noise: float = 3.0,
    saturation_e: float = 65000.0,
    fwhm: float = 2.5,
    beta: float = 3.0,
    stars_per_megapixel: float = 1500.0,
    faint_peak_sigma: float = 0.5,
    decades: float = 4.0,
    n_saturated: int | None = None,
    galaxies_per_megapixel: float = 80.0,
    nebula_sigma: float = 2.0,
    gradient: float = 0.05,
    margin: int = 0,
) -> SkyModel:
    """A random astro sky with known content.

    * background ``sky_e`` electrons per pixel (colour skies get a warm tint)
      with a linear gradient of up to ``gradient`` (fraction) across the frame;
    * faint nebulosity: smoothed random field peaking at ``nebula_sigma`` times
      the sky's per-pixel noise ``sqrt(sky_e + read_noise**2)``;
    * Sersic galaxies (index 1..2.5, effective radius 2..10 px);
    * Moffat stars (``beta``, ``fwhm`` px) at a density of
      ``stars_per_megapixel``, peak brightness log-uniform over ``decades``
      decades upward from ``faint_peak_sigma`` times the sky noise, plus
      ``n_saturated`` stars (default: one per 16k pixels, at least 1) whose
      peaks reach 1.5 to 6 times ``saturation_e``.

    ``margin`` px of sky outside the frame are populated too, for dithered
    sessions.
    """
    h, w = shape
    m = int(margin)
    area = (h + 2 * m) * (w + 2 * m)
    sky_noise = np.sqrt(sky_e + read_noise**2)
    tint = np.array([1.15, 1.0, 0.8]) if channels == 3 else np.ones(1)

    def positions(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.uniform(-m, w - 1 + m, n), rng.uniform(-m, h - 1 + m, n)

    # stars: flux from peak, peak log-uniform
    n_stars = max(int(round(stars_per_megapixel * area / 1e6)), 1)
    if n_saturated is None:
        n_saturated = max(int(round(h * w / 16384)), 1)
    peaks = faint_peak_sigma * sky_noise * 10.0 ** rng.uniform(0.0, decades, n_stars)
    peaks = np.concatenate([peaks, saturation_e * np.exp(rng.uniform(np.log(1.5), np.log(6.0), n_saturated))])
    n_all = len(peaks)
    x, y = positions(n_all)
    fwhms = np.full(n_all, float(fwhm))
    alpha = moffat_alpha(fwhm, beta)
    flux = peaks * np.pi * alpha**2 / (beta - 1.0)
    if channels == 3:
        # warm/cool star colours: per-channel weights with mean 1
        t = rng.uniform(-1.0, 1.0, n_all)
        wts = np.stack([1.0 + 0.3 * t, np.ones(n_all), 1.0 - 0.3 * t], axis=1)
        flux = flux[:, None] * wts / wts.mean(axis=1, keepdims=True)
    stars = Stars(x=x, y=y, flux_e=flux, fwhm=fwhms)

    # galaxies: surface brightness at r_e of a few sky sigmas
    n_gal = int(rng.poisson(galaxies_per_megapixel * area / 1e6))
    gx, gy = positions(n_gal)
    r_e = rng.uniform(2.0, 10.0, n_gal)
    n_idx = rng.uniform(1.0, 2.5, n_gal)
    q = rng.uniform(0.35, 1.0, n_gal)
    b = _sersic_b(n_idx)
    i_e = sky_noise * rng.uniform(0.5, 3.0, n_gal)
    gflux = i_e * r_e**2 * q * 2 * np.pi * n_idx * np.exp(b) * special.gamma(2 * n_idx) / b ** (2 * n_idx)
    gal_colour = np.array([1.2, 1.0, 0.75]) / 2.95 * 3 if channels == 3 else np.ones(1)
    galaxies = {
        "x": gx, "y": gy, "flux_e": gflux, "r_e": r_e, "n": n_idx, "q": q,
        "theta": rng.uniform(0, np.pi, n_gal), "colour": gal_colour,
    }

    # nebulosity: two octaves of smoothed noise, thresholded into wisps
    big = (h + 2 * m, w + 2 * m)
    scale = max(min(h, w) / 10.0, 3.0)
    field_ = ndimage.gaussian_filter(rng.standard_normal(big), scale, mode="wrap")
    field_ /= field_.std() + 1e-12
    fine = ndimage.gaussian_filter(rng.standard_normal(big), scale / 4.0, mode="wrap")
    field_ += 0.5 * fine / (fine.std() + 1e-12)
    field_ /= field_.std() + 1e-12
    neb = np.clip(field_ - 0.5, 0.0, None) ** 1.5
    neb *= nebula_sigma * sky_noise / (neb.max() + 1e-12)
    neb_colour = np.array([1.0, 0.45, 0.6]) if channels == 3 else np.ones(1)

    grad = tuple(rng.uniform(-gradient, gradient, 2))
    return SkyModel(
        shape=(h, w), channels=channels, sky_e=sky_e * tint, gradient=grad, stars=stars,
        fwhm=float(fwhm), beta=beta, galaxies=galaxies, nebula=neb, nebula_colour=neb_colour, margin=m,
    )


# --------------------------------------------------------------------------
# Scenes and sessions
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Scene:
    """One rendered sky: the truth in electrons, the stars and the camera.

    truth_e: expected electrons per pixel, float32 ``(H, W)`` or ``(3, H, W)``.
    """

    truth_e: np.ndarray
    stars: Stars
    camera: Camera
    sky: SkyModel

    def truth_adu(self) -> np.ndarray:
        """Noise-free reading in ADU, float32 ``(H, W)`` (mosaicked for a Bayer camera)."""
        return self.camera.truth(self.truth_e)

    def expose(self, rng: np.random.Generator) -> np.ndarray:
        """One noisy raw uint16 ``(H, W)`` frame of this scene."""
        return self.camera.expose(self.truth_e, rng)


def make_scene(sky: SkyModel, camera: Camera) -> Scene:
    """Render ``sky`` unshifted with nominal seeing and transparency."""
    return Scene(truth_e=sky.render().astype(np.float32), stars=sky.stars, camera=camera, sky=sky)


@dataclass(frozen=True)
class Session:
    """N frames of the same sky with known truth.

    frames: noisy data, ``(N, H, W)`` uint16 ADU for raw frames (mono or CFA),
    or ``(N, 3, H, W)`` float32 in [0, 1] for a stacked colour image.
    truth: the noise-free value of each frame in the same data units, float32,
    same shape as ``frames``. truth_e: expected electrons per frame before any
    mosaic, float32 ``(N, H, W)`` or ``(N, 3, H, W)``.
    shifts: ``(N, 2)`` ``(dx, dy)``: pixel ``(x, y)`` of frame i sees the sky
    at reference (frame 0) position ``(x + dx, y + dy)``.
    homographies: ``(N, 3, 3)`` mapping frame pixel ``(x, y, 1)`` onto
    frame-0 coordinates. stars: in frame-0 coordinates, nominal FWHM.
    sky_scale, transparency, fwhm: per-frame conditions (fwhm in px).
    data_range: 65535 for raw frames, 1.0 for the stacked image;
    saturation: the clipping level in data units.
    """

    frames: np.ndarray
    truth: np.ndarray
    truth_e: np.ndarray
    shifts: np.ndarray
    homographies: np.ndarray
    stars: Stars
    camera: Camera
    sky: SkyModel
    sky_scale: np.ndarray
    transparency: np.ndarray
    fwhm: np.ndarray
    data_range: float
    saturation: float

    def __len__(self) -> int:
        return len(self.frames)


def make_session(
    sky: SkyModel,
    camera: Camera,
    n_frames: int,
    *,
    rng: np.random.Generator,
    dither: int = 0,
    subpixel: bool = False,
    sky_jitter: float = 0.03,
    transparency_jitter: float = 0.03,
    seeing_jitter: float = 0.15,
) -> Session:
    """Expose ``n_frames`` of ``sky`` with varying conditions and known shifts.

    Frame 0 is the reference: no shift, nominal sky, transparency and seeing.
    Other frames draw their sky level and transparency within
    ``±sky_jitter`` / ``±transparency_jitter`` (fractions), their FWHM within
    ``±seeing_jitter``, and an integer shift in ``[-dither, dither]`` px per
    axis (plus a uniform sub-pixel part in ``[-0.5, 0.5)`` if ``subpixel``);
    ``sky.margin`` must cover the largest shift. Each frame's truth is rendered at its own shift and
    conditions, so it is exactly the expectation its noise was drawn around.
    """
    reach = dither + (1 if subpixel else 0)
    if reach > sky.margin:
        raise ValueError(f"shifts up to {reach} px exceed the sky's margin of {sky.margin} px")
    n = int(n_frames)
    shifts = np.zeros((n, 2))
    if n > 1:
        shifts[1:] = rng.integers(-dither, dither + 1, (n - 1, 2)).astype(float)
        if subpixel:
            shifts[1:] += rng.uniform(-0.5, 0.5, (n - 1, 2))
    sky_scale = np.ones(n)
    trans = np.ones(n)
    seeing = np.ones(n)
    sky_scale[1:] = 1.0 + rng.uniform(-sky_jitter, sky_jitter, n - 1)
    trans[1:] = 1.0 + rng.uniform(-transparency_jitter, transparency_jitter, n - 1)
    seeing[1:] = 1.0 + rng.uniform(-seeing_jitter, seeing_jitter, n - 1)

    truth_e, frames, truth = [], [], []
    for i in range(n):
        e = sky.render(shift=tuple(shifts[i]), fwhm_scale=seeing[i], sky_scale=sky_scale[i],
                       transparency=trans[i])
        truth_e.append(e.astype(np.float32))
        frames.append(camera.expose(e, rng))
        truth.append(camera.truth(e))
    homs = np.tile(np.eye(3), (n, 1, 1))
    homs[:, 0, 2] = shifts[:, 0]
    homs[:, 1, 2] = shifts[:, 1]
    return Session(
        frames=np.stack(frames), truth=np.stack(truth), truth_e=np.stack(truth_e),
        shifts=shifts, homographies=homs, stars=sky.stars, camera=camera, sky=sky,
        sky_scale=sky_scale, transparency=trans, fwhm=sky.fwhm * seeing,
        data_range=float(camera.adu_max), saturation=float(camera.adu_max),
    )


# --------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------

def _shape(shape: int | tuple[int, int]) -> tuple[int, int]:
    return (int(shape), int(shape)) if np.isscalar(shape) else (int(shape[0]), int(shape[1]))


def sky_for_snr(snr: float, read_noise: float) -> float:
    """Sky electrons per pixel whose signal over noise, ``S / sqrt(S + rn^2)``, equals ``snr``."""
    s2 = snr**2
    return 0.5 * (s2 + np.sqrt(s2**2 + 4.0 * s2 * read_noise**2))


def bright_mono(
    shape: int | tuple[int, int] = (128, 128), seed: int = 0, *, n_frames: int = 1,
    dither: int = 0, subpixel: bool = False,
) -> Session:
    """Mono raw frames under a bright sky: 2000 e- sky (SNR ~45), gain 1 e-/ADU, 3 e- read noise, pedestal 500 ADU."""
    shape = _shape(shape)
    rng = np.random.default_rng(seed)
    cam = Camera(gain=1.0, read_noise=3.0, pedestal=500.0, seed=seed)
    sky = make_sky(shape, rng=rng, sky_e=2000.0, read_noise=cam.read_noise,
                   saturation_e=cam.saturation_e, fwhm=3.0, margin=dither + 1)
    return make_session(sky, cam, n_frames, rng=rng, dither=dither, subpixel=subpixel)


def faint_mono(
    shape: int | tuple[int, int] = (128, 128), seed: int = 0, *, n_frames: int = 1,
    dither: int = 0, subpixel: bool = False,
) -> Session:
    """Mono raw frames of a faint sub: background signal over noise ~2 per pixel.

    Gain 0.5 e-/ADU, 2.5 e- read noise, pedestal 200 ADU; sky ~7.4 e- (~15 ADU
    above the pedestal), noise ~3.7 e- (~7.5 ADU).
    """
    shape = _shape(shape)
    rng = np.random.default_rng(seed)
    cam = Camera(gain=0.5, read_noise=2.5, pedestal=200.0, seed=seed)
    sky = make_sky(shape, rng=rng, sky_e=sky_for_snr(2.0, cam.read_noise), read_noise=cam.read_noise,
                   saturation_e=cam.saturation_e, fwhm=2.5, margin=dither + 1)
    return make_session(sky, cam, n_frames, rng=rng, dither=dither, subpixel=subpixel)


def bayer_session(
    shape: int | tuple[int, int] = (128, 128), seed: int = 0, *, n_frames: int = 4,
    pattern: str = "RGGB", dither: int = 6, subpixel: bool = False,
    hot_pixel_fraction: float = 2e-4, cosmic_rays: float = 50.0,
) -> Session:
    """Raw one-shot-colour frames (CFA, uint16 ``(N, H, W)``), Seestar-like.

    Gain 1 e-/ADU, 3 e- read noise, pedestal 1000 ADU, sky ~100 e- per
    photosite (SNR ~10), hot pixels fixed across frames, a few cosmic rays per
    frame, integer dithers up to ``dither`` px.
    """
    shape = _shape(shape)
    rng = np.random.default_rng(seed)
    cam = Camera(gain=1.0, read_noise=3.0, pedestal=1000.0, bayer=pattern.upper(), seed=seed,
                 hot_pixel_fraction=hot_pixel_fraction, cosmic_rays=cosmic_rays)
    sky = make_sky(shape, rng=rng, channels=3, sky_e=100.0, read_noise=cam.read_noise,
                   saturation_e=cam.saturation_e, fwhm=3.0, margin=dither + 1)
    return make_session(sky, cam, n_frames, rng=rng, dither=dither, subpixel=subpixel)


def rgb_stack(
    shape: int | tuple[int, int] = (128, 128), seed: int = 0, *, n_stacked: int = 16,
) -> Session:
    """A calibrated, stacked colour image: float32 ``(1, 3, H, W)`` in [0, 1] with low noise.

    The mean of ``n_stacked`` subs of 1500 e- sky (gain 1, 3 e- read noise),
    pedestal removed and scaled so that the sub's saturation level is 1.0;
    background noise ~1.5e-4, sky ~0.023. ``truth`` is the noise-free value in
    the same units, both clipped to [0, 1].
    """
    shape = _shape(shape)
    rng = np.random.default_rng(seed)
    cam = Camera(gain=1.0, read_noise=3.0, pedestal=0.0, seed=seed)
    sky = make_sky(shape, rng=rng, channels=3, sky_e=1500.0, read_noise=cam.read_noise,
                   saturation_e=cam.saturation_e, fwhm=2.5, margin=1)
    e = sky.render()
    k = int(n_stacked)
    stacked = (rng.poisson(k * e) + rng.normal(0.0, cam.read_noise * np.sqrt(k), e.shape)) / k
    scale = 1.0 / cam.saturation_e
    frame = np.clip(stacked * scale, 0.0, 1.0).astype(np.float32)
    truth = np.clip(e * scale, 0.0, 1.0).astype(np.float32)
    return Session(
        frames=frame[None], truth=truth[None], truth_e=e.astype(np.float32)[None],
        shifts=np.zeros((1, 2)), homographies=np.eye(3)[None], stars=sky.stars, camera=cam,
        sky=sky, sky_scale=np.ones(1), transparency=np.ones(1), fwhm=np.full(1, 2.5),
        data_range=1.0, saturation=1.0,
    )


def demo_frame(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray, Stars]:
    """A faint mono sub for ``siril-denoise demo``.

    Returns (noisy uint16 ``(H, W)`` ADU, truth float32 ``(H, W)`` ADU, star list).
    """
    s = faint_mono((size, size), seed)
    return s.frames[0], s.truth[0], s.stars
