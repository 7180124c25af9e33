"""InternVL3 (transformers-native): each frame is one tile resized to ``size`` (448 x 448), 14 px
patches, pixel shuffle 0.5, so ``image_seq_length`` (256) tokens form a 16 x 16 grid; each frame's
``<IMG_CONTEXT>`` run sits inside its own ``<img>...</img>`` (frames are images)."""

from __future__ import annotations

import numpy as np

from socialpipe.stages.answer.families.base import ModelFamily, register
from socialpipe.stages.answer.layout import FrameGrid, LayoutError, token_runs


def internvl_grids(processor, inputs, frame_size, num_frames, token_id, config) -> list[list[FrameGrid]]:
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
        runs = token_runs(np.flatnonzero(row == token_id))
        if len(runs) != num_frames or any(len(run) != per_frame for run in runs):
            raise LayoutError(f"{len(runs)} runs of image tokens ({[len(r) for r in runs][:4]}...); expected "
                              f"{num_frames} frames of {per_frame}")
        result.append([FrameGrid(int(run[0]), side, side, (f,), processed_w / width, processed_h / height,
                                 cell=processed_w / side) for f, run in enumerate(runs)])
    return result


FAMILY = register(ModelFamily("internvl", "InternVL3", lambda config: int(config.image_token_id), internvl_grids))
