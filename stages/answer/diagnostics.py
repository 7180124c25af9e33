"""Pictures of the alignment: where a speaker's transcript tokens look in each frame, without and
with the bias, with every speaker's box drawn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.io import write_bytes_atomic
from stages.answer.layout import FrameGrid

BOX_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180)]  # RGB


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
                    before: np.ndarray, after: np.ndarray, boxes: Mapping[tuple[str, int], Sequence[float]],
                    speaker: str, thumb_width: int = 320) -> Path:
    """A PNG: one column per frame; the top row without the bias, the bottom row with it, on one colour
    scale from the least to the most attended visual token (blue to red)."""
    height, width = frames[0].shape[:2]
    grid_of = {f: grid for grid in grids for f in grid.frames}
    low = min(float(before.min()), float(after.min()))  # one colour scale for both rows
    spread = max(max(float(before.max()), float(after.max())) - low, 1e-12)
    speakers = sorted({s for s, _ in boxes})
    rows = []
    for attention in (before, after):
        tiles = []
        for f, frame in enumerate(frames):
            heat = np.clip((grid_heat(grid_of[f], attention, visual, (width, height)) - low) / spread, 0, 1)
            colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
            tile = (0.55 * frame + 0.45 * colour).astype(np.uint8)
            for s in speakers:
                if (s, f) in boxes:
                    x1, y1, x2, y2 = (int(round(v)) for v in boxes[s, f])
                    rgb = BOX_COLOURS[speakers.index(s) % len(BOX_COLOURS)]
                    cv2.rectangle(tile, (x1, y1), (x2, y2), rgb, 4 if s == speaker else 1)
                    cv2.putText(tile, s, (x1 + 3, y1 + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, rgb, 1, cv2.LINE_AA)
            thumb_height = int(round(height * thumb_width / width))
            tiles.append(cv2.resize(tile, (thumb_width, thumb_height), interpolation=cv2.INTER_AREA))
        rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode the heatmap {path}")
    return write_bytes_atomic(path, encoded.tobytes())


def box_share(grids: Sequence[FrameGrid], attention: np.ndarray, visual: np.ndarray,
              boxes: Mapping[tuple[str, int], Sequence[float]], speaker: str) -> float:
    """The share of ``attention`` over the visual tokens that falls on ``speaker``'s box tokens."""
    position = {int(token): i for i, token in enumerate(visual)}
    inside = set()
    for grid in grids:
        for f in grid.frames:
            if (speaker, f) in boxes:
                inside.update(int(t) for t in grid.tokens_in_box(boxes[speaker, f]))
    total = float(attention.sum())
    return sum(float(attention[position[t]]) for t in inside if t in position) / total if total else 0.0
