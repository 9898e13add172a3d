"""One look for every figure: the rc settings, the colour-blind-safe palette, sizes and saving.

Figures are plain `matplotlib.figure.Figure` objects rendered by the Agg canvas: pyplot, its
global state and any display are never touched, so drawing works on a headless machine and
leaves a user's own matplotlib backend alone.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fsmrun.analysis.plots.outcome import FORMATS
from fsmrun.base.errors import UserError
from fsmrun.base.io import atomic_write_bytes

DPI = 200
COLUMN_IN = 3.3  # one column of a two-column paper
PAGE_IN = 6.8  # both columns

# Okabe & Ito (2008), ordered so that the first lines differ most; black last.
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
BASELINE_COLOR = "#555555"
TRAIN_RANGE_COLOR = "#0072B2"
OOD_RANGE_COLOR = "#D55E00"

RC: dict[str, object] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "legend.frameon": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "svg.hashsalt": "fsmrun",  # stable element ids, so equal figures give equal files
    "svg.fonttype": "none",  # text stays text (editable, searchable)
    "pdf.fonttype": 42,
}
# No timestamps or software versions inside the files: the same data gives the same bytes.
_METADATA = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


@contextmanager
def styled() -> Iterator[None]:
    """Draw inside this block so every artist picks up RC (nothing global changes)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(width_in: float, height_in: float) -> Figure:
    """A blank figure with constrained layout; its saved size is exactly width x height."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def pixel_size(width_in: float, height_in: float) -> tuple[int, int]:
    """(width, height) in pixels of a PNG saved from a figure of this size."""
    return round(width_in * DPI), round(height_in * DPI)


def save_figure(fig: Figure, folder: Path, name: str, fmt: str) -> Path:
    """Render `fig` to `<folder>/<name>.<fmt>` atomically and return the path."""
    if fmt not in FORMATS:
        raise UserError(f"unknown figure format {fmt!r}; choose one of {', '.join(FORMATS)}")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    path = folder / f"{name}.{fmt}"
    atomic_write_bytes(path, buf.getvalue())
    return path


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def marker(i: int) -> str:
    return MARKERS[i % len(MARKERS)]
