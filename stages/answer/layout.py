"""Where speakers sit among the tokens: visual token grids per frame, and transcript line spans.

Everything is read from what the processor produced (``input_ids``, pixel tensor sizes, grid
sizes, offsets) and the model's config, never from assumed constants; how each model family lays
out its frames is in :mod:`socialpipe.stages.answer.families`.

A cell belongs to a box when its centre lies inside the box mapped into processed pixels; a
box that covers no cell centre takes the cell holding the box centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.stages.answer.plan import SequencePlan, SpeakerGroup


class LayoutError(SocialpipeError, ValueError):
    """The processor's output does not have the layout this module expects."""


@dataclass(frozen=True)
class FrameGrid:
    """One grid of visual tokens in one sequence."""

    first_token: int  # index in input_ids of the grid's first token
    rows: int
    cols: int
    frames: tuple[int, ...]  # the sampled frames (0..T-1) this grid shows
    scale_x: float  # original frame pixels -> processed pixels
    scale_y: float
    offset_x: float = 0.0  # processed pixels cropped away on the left / top
    offset_y: float = 0.0
    cell: float = 28.0  # processed pixels per token cell side

    @property
    def token_count(self) -> int:
        return self.rows * self.cols

    def tokens_in_box(self, xyxy: Sequence[float]) -> np.ndarray:
        """Token indices (into input_ids) of the cells whose centre lies in the box (original pixels)."""
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        x1, x2 = x1 * self.scale_x - self.offset_x, x2 * self.scale_x - self.offset_x
        y1, y2 = y1 * self.scale_y - self.offset_y, y2 * self.scale_y - self.offset_y
        centres_x = (np.arange(self.cols) + 0.5) * self.cell
        centres_y = (np.arange(self.rows) + 0.5) * self.cell
        inside = (centres_y[:, None] >= y1) & (centres_y[:, None] <= y2) & \
                 (centres_x[None, :] >= x1) & (centres_x[None, :] <= x2)  # (rows, cols)
        cells = np.flatnonzero(inside.ravel())
        if cells.size == 0:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            if not (0 <= cx < self.cols * self.cell and 0 <= cy < self.rows * self.cell):
                return np.zeros(0, np.int64)
            cells = np.array([int(cy // self.cell) * self.cols + int(cx // self.cell)])
        return self.first_token + cells.astype(np.int64)


def token_runs(positions: np.ndarray) -> list[np.ndarray]:
    """Contiguous runs of token positions."""
    if positions.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    return np.split(positions, breaks)


def line_token_spans(prompt: str, lines: Sequence[str], offsets: np.ndarray,
                     attention_mask: Sequence[int] | None = None) -> list[np.ndarray]:
    """Token indices of each transcript line, through the tokenizer's character offsets.

    The processor expands the video placeholder before tokenising, so offsets refer to the expanded
    text. The lines come after the video, where both texts agree: a line at character ``c`` of the
    prompt sits at ``len(expanded) - (len(prompt) - c)``.
    """
    offsets = np.asarray(offsets).reshape(-1, 2)
    mask = np.ones(len(offsets), bool) if attention_mask is None else np.asarray(attention_mask, bool)
    expanded_length = int(offsets[mask][:, 1].max())
    spans, cursor = [], 0
    for line in lines:
        start = prompt.find(line, cursor)
        if start < 0:
            raise LayoutError(f"transcript line {line[:40]!r} is not in the prompt")
        cursor = start + len(line)
        first = expanded_length - (len(prompt) - start)
        last = first + len(line)
        hit = mask & (offsets[:, 1] > offsets[:, 0]) & (offsets[:, 0] < last) & (offsets[:, 1] > first)
        spans.append(np.flatnonzero(hit).astype(np.int64))
    return spans


def speaker_plan(grids: Sequence[FrameGrid], line_speakers: Sequence[str], line_tokens: Sequence[np.ndarray],
                 line_frames: Sequence[Sequence[int]], boxes: Boxes) -> SequencePlan:
    """The (speaker, frame) groups: U_{s,t} = tokens of s's lines covering frame t; V_{s,t} = the visual
    tokens of s's box in the grid showing frame t (a grid showing two frames takes the union of
    both frames' boxes)."""
    grid_of = {f: grid for grid in grids for f in grid.frames}
    groups = []
    for speaker in dict.fromkeys(line_speakers):
        for frame, grid in sorted(grid_of.items()):
            rows = [tokens for who, tokens, frames in zip(line_speakers, line_tokens, line_frames)
                    if who == speaker and frame in frames]
            cols = [grid.tokens_in_box(box) for f in grid.frames if (box := boxes.box_of(speaker, f)) is not None]
            if rows and cols:
                groups.append(SpeakerGroup(speaker, frame, np.unique(np.concatenate(rows)),
                                           np.unique(np.concatenate(cols))))
    visual = np.concatenate([grid.first_token + np.arange(grid.token_count) for grid in grids]) if grids else None
    return SequencePlan(tuple(groups), visual)


def frames_covered(start_s: float, end_s: float, frame_times_s: Sequence[float]) -> list[int]:
    """Sampled frames whose time falls within [start_s, end_s]; the nearest frame when none does."""
    times = np.asarray(frame_times_s, float)
    inside = np.flatnonzero((times >= start_s) & (times <= end_s))
    if inside.size:
        return inside.tolist()
    return [int(np.argmin(np.minimum(np.abs(times - start_s), np.abs(times - end_s))))]
