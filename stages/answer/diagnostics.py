"""What the alignment did, in numbers and pictures.

- numbers: the paper's AttnMax / AttnMean over each (speaker, frame) group without and with the
  bias, and the share of active heads per chosen layer (:class:`AlignmentReport`, summed per
  layer in :class:`LayerStats`);
- pictures: where a speaker's transcript tokens look in each frame, without and with the bias,
  with every speaker's box drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.media.drawing import colour_of, draw_box, encode_png
from socialpipe.pipeline.contracts.io import write_bytes_atomic
from socialpipe.stages.answer.layout import FrameGrid



@dataclass
class AlignmentReport:
    """Diagnostics of one aligned forward pass: the paper's AttnMax / AttnMean without and with the
    bias, and the share of active heads per chosen layer."""

    attn_max_before: float
    attn_mean_before: float
    attn_max_after: float
    attn_mean_after: float
    active_head_ratio: dict[int, float]
    aligned_calls: dict[int, int] = field(default_factory=dict)  # per chosen layer, sequences aligned (prefills)
    heatmap_before: np.ndarray | None = None  # (visual tokens,) the heatmap speaker's attention, first sequence
    heatmap_after: np.ndarray | None = None

    def to_json(self) -> dict:
        return {"attn_max_before": self.attn_max_before, "attn_mean_before": self.attn_mean_before,
                "attn_max_after": self.attn_max_after, "attn_mean_after": self.attn_mean_after,
                "active_head_ratio": {str(k): v for k, v in self.active_head_ratio.items()}}


@dataclass
class LayerStats:
    """Running sums for the diagnostics of one layer. While a block runs they may be device tensors
    (so no aligned layer waits for the GPU); :meth:`settle` turns them into numbers."""

    heads: int = 0
    active: list = field(default_factory=list)  # per sequence, number of active heads
    max_before: float = 0.0  # sum over (head, row, group) of max_{j in V_{s,t}} A
    mean_before: float = 0.0
    max_after: float = 0.0
    mean_after: float = 0.0
    pairs: int = 0  # (head, row, group) triples summed

    def settle(self) -> None:
        self.active = [int(a) for a in self.active]
        for name in ("max_before", "mean_before", "max_after", "mean_after"):
            setattr(self, name, float(getattr(self, name)))


def record_layer(stats: LayerStats, heads: int, active, before_max, before_mean, after_max, after_mean,
                 pairs: int) -> None:
    """Add one sequence's sums (per-head tensors, on any device) to a layer's running sums, without
    reading them back."""
    stats.heads = heads
    stats.active.append(active)
    stats.max_before = stats.max_before + before_max.sum().double()
    stats.mean_before = stats.mean_before + before_mean.sum().double()
    stats.max_after = stats.max_after + after_max.sum().double()
    stats.mean_after = stats.mean_after + after_mean.sum().double()
    stats.pairs += pairs * heads



def grid_heat(grid: FrameGrid, attention: np.ndarray, visual: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """A grid's share of ``attention`` (over the plan's visual tokens) as an (H, W) map on the original frame."""
    width, height = frame_size
    position = {int(token): i for i, token in enumerate(visual)}
    values = np.array([attention[position[grid.first_token + k]] for k in range(grid.token_count)])
    cells = values.reshape(grid.rows, grid.cols).astype(np.float32)
    # the grid spans processed pixels [0, cols*cell) x [0, rows*cell); map that span back to the frame
    left, top = grid.offset_x / grid.scale_x, grid.offset_y / grid.scale_y
    span_w, span_h = grid.cols * grid.cell / grid.scale_x, grid.rows * grid.cell / grid.scale_y
    heat = np.zeros((height, width), np.float32)
    resized = cv2.resize(cells, (max(int(round(span_w)), 1), max(int(round(span_h)), 1)), interpolation=cv2.INTER_NEAREST)
    x0, y0 = int(round(-left)), int(round(-top))  # crop offsets move the grid inside the frame
    ys, xs = slice(max(y0, 0), min(y0 + resized.shape[0], height)), slice(max(x0, 0), min(x0 + resized.shape[1], width))
    heat[ys, xs] = resized[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return heat


def render_heatmaps(path: str | Path, frames: Sequence[np.ndarray], grids: Sequence[FrameGrid], visual: np.ndarray,
                    before: np.ndarray, after: np.ndarray, boxes: Boxes,
                    speaker: str, thumb_width: int = 320) -> Path:
    """A PNG: one column per frame; the top row without the bias, the bottom row with it, on one colour
    scale from the least to the most attended visual token (blue to red)."""
    height, width = frames[0].shape[:2]
    grid_of = {f: grid for grid in grids for f in grid.frames}
    low = min(float(before.min()), float(after.min()))  # one colour scale for both rows
    spread = max(max(float(before.max()), float(after.max())) - low, 1e-12)
    speakers = boxes.labels
    rows = []
    for attention in (before, after):
        tiles = []
        for f, frame in enumerate(frames):
            heat = np.clip((grid_heat(grid_of[f], attention, visual, (width, height)) - low) / spread, 0, 1)
            colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
            tile = (0.55 * frame + 0.45 * colour).astype(np.uint8)
            for s in speakers:
                box = boxes.box_of(s, f)
                if box is not None:
                    draw_box(tile, box, colour_of(speakers.index(s)), s, thickness=4 if s == speaker else 1,
                             label_inside=True)
            thumb_height = int(round(height * thumb_width / width))
            tiles.append(cv2.resize(tile, (thumb_width, thumb_height), interpolation=cv2.INTER_AREA))
        rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    return write_bytes_atomic(path, encode_png(sheet))


def box_share(grids: Sequence[FrameGrid], attention: np.ndarray, visual: np.ndarray,
              boxes: Boxes, speaker: str) -> float:
    """The share of ``attention`` over the visual tokens that falls on ``speaker``'s box tokens."""
    position = {int(token): i for i, token in enumerate(visual)}
    inside = set()
    for grid in grids:
        for f in grid.frames:
            box = boxes.box_of(speaker, f)
            if box is not None:
                inside.update(int(t) for t in grid.tokens_in_box(box))
    total = float(attention.sum())
    return sum(float(attention[position[t]]) for t in inside if t in position) / total if total else 0.0
