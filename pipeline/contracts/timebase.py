"""The one place where seconds and frame indices are converted.

Times are float seconds from the start of the video; frames are 0-based indices;
``fps`` is a float (29.97 is not 29). Frame ``i`` is shown from ``i / fps`` until
``(i + 1) / fps``.
"""

from __future__ import annotations

import math

import numpy as np

from socialpipe.pipeline.contracts.errors import InputError


def frame_to_time(frame_index, fps: float):
    """Start time in seconds of a frame index (scalar or array)."""
    times = np.asarray(frame_index, dtype=np.float64) / float(fps)
    return float(times) if times.ndim == 0 else times


def time_to_frame(time_s, fps: float, frame_count: int | None = None):
    """Index of the frame shown at ``time_s`` (scalar or array), clipped to ``[0, frame_count - 1]`` when the
    count is given."""
    index = np.floor(np.asarray(time_s, dtype=np.float64) * fps + 1e-6).astype(np.int64)
    if frame_count is not None:
        index = np.clip(index, 0, max(frame_count - 1, 0))
    return int(index) if index.ndim == 0 else index


def duration_of(frame_count, fps: float):
    """Seconds spanned by ``frame_count`` frames (scalar or array)."""
    seconds = np.asarray(frame_count, dtype=np.float64) / float(fps)
    return float(seconds) if seconds.ndim == 0 else seconds


def frames_in(duration_s: float, fps: float) -> int:
    """The whole number of frames closest to ``duration_s`` seconds."""
    return int(round(duration_s * fps))


def frame_step(fps: float, target_fps: float) -> int:
    """The frame step that samples a ``fps`` video at about ``target_fps`` (1 when the video is slower)."""
    if not target_fps > 0:
        raise InputError(f"sampling rate must be positive, got {target_fps}")
    return max(1, int(round(fps / target_fps)))


def centred_frames(start_s: float, end_s: float, frame_s: float, frame_count: int) -> slice:
    """The frames of a grid of ``frame_s``-second frames from time 0 whose centre lies in [start_s, end_s)."""
    first = max(math.ceil((start_s - frame_s / 2) / frame_s - 1e-9), 0)
    stop = min(math.ceil((end_s - frame_s / 2) / frame_s - 1e-9), frame_count)
    return slice(first, max(first, stop))


def format_clock(time_s: float) -> str:
    """``MM:SS`` for a time in seconds (hours folded into minutes)."""
    total = max(int(round(time_s)), 0)
    return f"{total // 60:02d}:{total % 60:02d}"
