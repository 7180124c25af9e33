"""Where speakers sit among the tokens: visual token grids per frame, and transcript line spans.

Everything is read from what the processor produced (``input_ids``, pixel tensor sizes, grid
sizes, offsets) and the model's config, never from assumed constants.

Qwen2.5-VL, video input: each frame is resized to ``(grid_h * patch, grid_w * patch)`` pixels
(multiples of 28), cut into 14 px patches, and 2x2 patches merge into one token, so one token
covers a 28 x 28 px cell; frames ``2g`` and ``2g+1`` share one token grid (temporal patch 2).
The tokens are a contiguous run of ``<|video_pad|>`` in raster order per temporal group.

LLaVA-NeXT-Video: each frame is resized (short side to ``size.shortest_edge``) and centre-cropped
to ``crop_size``; 14 px patches are average-pooled ``spatial_pool_stride`` x ``spatial_pool_stride``,
so a token covers a 28 px cell of the crop (12 x 12 = 144 tokens for 336 px); frames follow one
another in one run of ``<video>`` tokens, each in raster order. A crop moves boxes.

InternVL3 (transformers-native): each frame is one tile resized to ``size`` (448 x 448), 14 px
patches, pixel shuffle 0.5, so ``image_seq_length`` (256) tokens form a 16 x 16 grid; each frame's
``<IMG_CONTEXT>`` run sits inside its own ``<img>...</img>``.

A cell belongs to a box when its centre lies inside the box mapped into processed pixels; a
box that covers no cell centre takes the cell holding the box centre.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from socialpipe.pipeline.boxes import Boxes
from socialpipe.pipeline.errors import SocialpipeError
from socialpipe.stages.answer.plan import SequencePlan, SpeakerGroup

SUPPORTED_FAMILIES = ("qwen2_5_vl", "llava_next_video", "internvl")


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


def family_of(model_or_config) -> str:
    config = getattr(model_or_config, "config", model_or_config)
    family = getattr(config, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
        raise LayoutError(f"model family {family!r} is not supported by the alignment yet; "
                          f"supported: {list(SUPPORTED_FAMILIES)}")
    return family


def visual_token_id(config) -> int:
    """The token id that stands for a video frame's visual features in this family."""
    family = family_of(config)
    if family == "internvl":
        return int(config.image_token_id)  # frames are images inside <img>...</img>
    return int(getattr(config, "video_token_id", None) or config.video_token_index)


def frame_grids(processor, inputs: Mapping, frame_size: tuple[int, int], num_frames: int,
                config) -> list[list[FrameGrid]]:
    """Per sequence of the batch, its visual token grids (one video per sequence); ``frame_size`` is
    the original (width, height)."""
    family = family_of(config)
    token_id = visual_token_id(config)
    builders = {"qwen2_5_vl": _qwen2_5_vl_grids, "llava_next_video": _llava_next_video_grids,
                "internvl": _internvl_grids}
    return builders[family](processor, inputs, frame_size, num_frames, token_id, config)


def _runs(positions: np.ndarray) -> list[np.ndarray]:
    """Contiguous runs of token positions."""
    if positions.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    return np.split(positions, breaks)


def _llava_next_video_grids(processor, inputs, frame_size, num_frames, token_id, config) -> list[list[FrameGrid]]:
    video = processor.video_processor
    patch, stride = int(processor.patch_size), int(config.spatial_pool_stride)
    pixels = inputs["pixel_values_videos"]
    frames, processed_h, processed_w = int(pixels.shape[1]), int(pixels.shape[-2]), int(pixels.shape[-1])
    rows, cols = processed_h // patch // stride, processed_w // patch // stride
    width, height = frame_size
    scale_x = scale_y = 1.0
    resized_w, resized_h = width, height
    if video.do_resize:
        short = int(video.size["shortest_edge"])
        if width <= height:
            resized_w, resized_h = short, int(short * height / width)
        else:
            resized_w, resized_h = int(short * width / height), short
        scale_x, scale_y = resized_w / width, resized_h / height
    offset_x = (resized_w - processed_w) // 2 if video.do_center_crop else 0
    offset_y = (resized_h - processed_h) // 2 if video.do_center_crop else 0
    result = []
    for row in np.asarray(inputs["input_ids"]):
        positions = np.flatnonzero(row == token_id)
        if len(positions) != frames * rows * cols or len(_runs(positions)) != 1:
            raise LayoutError(f"{len(positions)} video tokens in {len(_runs(positions))} runs; expected one run of "
                              f"{frames} frames x {rows} x {cols}")
        result.append([FrameGrid(int(positions[0]) + f * rows * cols, rows, cols, (f,), scale_x, scale_y,
                                 offset_x, offset_y, cell=float(patch * stride)) for f in range(min(frames, num_frames))])
    return result


def _internvl_grids(processor, inputs, frame_size, num_frames, token_id, config) -> list[list[FrameGrid]]:
    per_frame = int(processor.image_seq_length)
    side = int(round(per_frame ** 0.5))
    if side * side != per_frame:
        raise LayoutError(f"image_seq_length {per_frame} is not a square grid")
    size = processor.video_processor.size
    processed_h, processed_w = int(size["height"]), int(size["width"])
    if processed_h != processed_w:
        raise LayoutError(f"InternVL frames of {processed_w}x{processed_h}; expected square tiles")
    width, height = frame_size
    result = []
    for row in np.asarray(inputs["input_ids"]):
        runs = _runs(np.flatnonzero(row == token_id))
        if len(runs) != num_frames or any(len(run) != per_frame for run in runs):
            raise LayoutError(f"{len(runs)} runs of image tokens ({[len(r) for r in runs][:4]}...); expected "
                              f"{num_frames} frames of {per_frame}")
        result.append([FrameGrid(int(run[0]), side, side, (f,), processed_w / width, processed_h / height,
                                 cell=processed_w / side) for f, run in enumerate(runs)])
    return result


def _qwen2_5_vl_grids(processor, inputs, frame_size, num_frames, video_token_id, config) -> list[list[FrameGrid]]:
    video = processor.video_processor
    merge, patch, temporal = int(video.merge_size), int(video.patch_size), int(video.temporal_patch_size)
    width, height = frame_size
    ids = np.asarray(inputs["input_ids"])
    grids_thw = np.asarray(inputs["video_grid_thw"]).reshape(-1, 3)
    if len(grids_thw) != len(ids):
        raise LayoutError(f"{len(grids_thw)} videos for {len(ids)} sequences; expected one video per sequence")
    result = []
    for row, (t, h, w) in zip(ids, grids_thw):
        positions = np.flatnonzero(row == video_token_id)
        rows, cols = int(h) // merge, int(w) // merge
        per_group = rows * cols
        if len(positions) != int(t) * per_group:
            raise LayoutError(f"{len(positions)} video tokens, but video_grid_thw {[int(t), int(h), int(w)]} "
                              f"means {int(t) * per_group}")
        if len(positions) and positions[-1] - positions[0] + 1 != len(positions):
            raise LayoutError("the video tokens are not one contiguous run")
        processed_w, processed_h = int(w) * patch, int(h) * patch
        grids = []
        for g in range(int(t)):
            frames = tuple(f for f in range(g * temporal, (g + 1) * temporal) if f < num_frames)
            grids.append(FrameGrid(int(positions[0]) + g * per_group, rows, cols, frames,
                                   processed_w / width, processed_h / height, cell=float(patch * merge)))
        result.append(grids)
    return result


def line_token_spans(prompt: str, lines: Sequence[str], input_ids: Sequence[int], offsets: np.ndarray,
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
