"""Qwen2.5-VL, video input: each frame is resized to ``(grid_h * patch, grid_w * patch)`` pixels
(multiples of 28), cut into 14 px patches, and 2x2 patches merge into one token, so one token
covers a 28 x 28 px cell; frames ``2g`` and ``2g+1`` share one token grid (temporal patch 2).
The tokens are a contiguous run of ``<|video_pad|>`` in raster order per temporal group."""

from __future__ import annotations

import numpy as np

from socialpipe.stages.answer.families.base import ModelFamily, register
from socialpipe.stages.answer.layout import FrameGrid, LayoutError


def qwen2_5_vl_grids(processor, inputs, frame_size, num_frames, video_token_id, config) -> list[list[FrameGrid]]:
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


FAMILY = register(ModelFamily(
    "qwen2_5_vl", "Qwen2.5-VL", lambda config: int(getattr(config, "video_token_id", None) or config.video_token_index),
    qwen2_5_vl_grids))
