"""Typeset digits: the ten digits rendered from fonts that ship inside matplotlib.

The glyphs go through the pipeline that produced the UCI handwritten scans (scikit-learn's
``load_digits``): a 32x32 *binary* bitmap, then the count of on-pixels in each non-overlapping
4x4 block, giving an 8x8 image with integer values 0..16. So the two domains differ in how the
digits were drawn (pen vs font), not in resolution, quantization or value range.

Rendering, per sample (all jitter drawn from one ``numpy.random.RandomState(seed)``, whose stream
numpy keeps stable across versions, so the same seed gives the same bytes):

1. draw the digit with Pillow's FreeType renderer at ``_RENDER_PX`` pixels, in one of the
   :data:`FONT_FILES` (DejaVu Sans/Serif/Sans Mono and STIX General, each regular, bold, italic
   and bold italic), with an outline of ``stroke`` pixels (jitter: 0..``_MAX_STROKE``) that
   thickens the pen;
2. crop to the ink's bounding box and resize it (box filter, aspect kept) so its height is
   ``height`` pixels of the 32x32 frame (jitter: ``_HEIGHT_RANGE``), as the scans' preprocessing
   normalized each digit to the frame; a glyph wider than the frame is shrunk to fit;
3. threshold at half intensity (binary), paste centered plus an offset of up to ``_MAX_SHIFT``
   pixels per axis (kept inside the frame);
4. count the on-pixels in each 4x4 block -> 8x8 in 0..16.

Fonts are read from matplotlib's own ``mpl-data/fonts/ttf`` folder (not the system's font list,
which differs between machines); a missing file is an error, never a silent substitute.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from ..errors import DatasetNotFoundError

# Bump when the rendering changes, so fingerprints of old and new data never collide.
GENERATOR_VERSION = 1

# matplotlib's bundled fonts: four families x four styles.
FONT_FILES: tuple[str, ...] = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)

FRAME = 32  # the binary bitmap is FRAME x FRAME, as in the UCI scans
BLOCK = 4  # non-overlapping BLOCK x BLOCK counts -> (FRAME/BLOCK)^2 cells, values 0..BLOCK^2
_RENDER_PX = 96  # font size of the high-resolution rendering (before the resize to the frame)
_MAX_STROKE = 5  # outline width in pixels at _RENDER_PX (0 = the font's own stroke)
_HEIGHT_RANGE = (26, 32)  # glyph height in frame pixels, inclusive
_MAX_SHIFT = 2  # position jitter in frame pixels, per axis


def font_dir() -> Path:
    """matplotlib's bundled TrueType folder."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_paths() -> list[Path]:
    """The font files used, in :data:`FONT_FILES` order; raises if matplotlib lacks one."""
    root = font_dir()
    paths = [root / name for name in FONT_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"typeset-digits needs matplotlib's bundled fonts; missing in {root}: {', '.join(missing)}"
        )
    return paths


@functools.lru_cache(maxsize=None)
def _font(path: str):  # -> PIL.ImageFont.FreeTypeFont
    from PIL import ImageFont

    return ImageFont.truetype(path, _RENDER_PX)


def render_bitmap(digit: int, font_path: Path, *, stroke: int, height: int, dx: int, dy: int) -> np.ndarray:
    """One digit as a FRAME x FRAME binary bitmap (bool), rendered as the module docstring says."""
    from PIL import Image, ImageDraw

    font = _font(str(font_path))
    canvas = 2 * _RENDER_PX + 4 * _MAX_STROKE
    img = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(img).text(
        (canvas // 4, canvas // 8), str(digit), fill=255, font=font, stroke_width=stroke, stroke_fill=255
    )
    box = img.getbbox()
    if box is None:  # a font without the glyph would render nothing
        raise DatasetNotFoundError(f"font {font_path.name} rendered no ink for digit {digit}")
    glyph = img.crop(box)
    w0, h0 = glyph.size
    # Height normalized to the frame, aspect kept; wide glyphs shrink to fit the width.
    scale = min(height / h0, FRAME / w0)
    w, h = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    small = np.asarray(glyph.resize((w, h), Image.Resampling.BOX)) >= 128
    out = np.zeros((FRAME, FRAME), dtype=bool)
    x0 = int(np.clip((FRAME - w) // 2 + dx, 0, FRAME - w))
    y0 = int(np.clip((FRAME - h) // 2 + dy, 0, FRAME - h))
    out[y0 : y0 + h, x0 : x0 + w] = small
    return out


def block_counts(bitmap: np.ndarray) -> np.ndarray:
    """UCI quantization: on-pixels per non-overlapping BLOCK x BLOCK block (uint8, 0..BLOCK^2)."""
    n = FRAME // BLOCK
    return bitmap.reshape(n, BLOCK, n, BLOCK).sum(axis=(1, 3)).astype(np.uint8)


def generate(labels: np.ndarray, seed: int) -> np.ndarray:
    """8x8 glyphs (uint8 0..16) for the given ``labels``, deterministic in ``seed``.

    Fonts are spread evenly within each class (a seeded shuffle of a repeated font list), so every
    class sees every font about equally often.
    """
    paths = font_paths()
    rng = np.random.RandomState(seed)
    fonts = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        fonts[idx] = rng.permutation(np.resize(np.arange(len(paths)), len(idx)))
    out = np.empty((len(labels), FRAME // BLOCK, FRAME // BLOCK), dtype=np.uint8)
    for i, digit in enumerate(labels):
        stroke = int(rng.randint(0, _MAX_STROKE + 1))
        height = int(rng.randint(_HEIGHT_RANGE[0], _HEIGHT_RANGE[1] + 1))
        dx, dy = (int(v) for v in rng.randint(-_MAX_SHIFT, _MAX_SHIFT + 1, size=2))
        bitmap = render_bitmap(int(digit), paths[fonts[i]], stroke=stroke, height=height, dx=dx, dy=dy)
        out[i] = block_counts(bitmap)
    return out


def fonts_fingerprint() -> str:
    """sha256 over the font files' bytes: a different matplotlib font release changes the data."""
    h = hashlib.sha256()
    for p in font_paths():
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
