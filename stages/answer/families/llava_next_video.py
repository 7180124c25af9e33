"""LLaVA-NeXT-Video: each frame is resized (short side to ``size.shortest_edge``) and centre-cropped
to ``crop_size``; 14 px patches are average-pooled ``spatial_pool_stride`` x ``spatial_pool_stride``,
so a token covers a 28 px cell of the crop (12 x 12 = 144 tokens for 336 px); frames follow one
another in one run of ``<video>`` tokens, each in raster order. A crop moves boxes."""

from __future__ import annotations

import numpy as np

from socialpipe.stages.answer.families.base import ModelFamily, register
from socialpipe.stages.answer.layout import FrameGrid, LayoutError, token_runs


def llava_next_video_grids(processor, inputs, frame_size, num_frames, token_id, config) -> list[list[FrameGrid]]:
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
        if len(positions) != frames * rows * cols or len(token_runs(positions)) != 1:
            raise LayoutError(f"{len(positions)} video tokens in {len(token_runs(positions))} runs; expected one run of "
                              f"{frames} frames x {rows} x {cols}")
        result.append([FrameGrid(int(positions[0]) + f * rows * cols, rows, cols, (f,), scale_x, scale_y,
                                 offset_x, offset_y, cell=float(patch * stride)) for f in range(min(frames, num_frames))])
    return result


FAMILY = register(ModelFamily(
    "llava_next_video", "LLaVA-NeXT-Video",
    lambda config: int(getattr(config, "video_token_id", None) or config.video_token_index), llava_next_video_grids))
