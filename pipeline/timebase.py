"""The one place where seconds and frame indices are converted.

Times are float seconds from the start of the video; frames are 0-based indices;
``fps`` is a float (29.97 is not 29). Frame ``i`` is shown from ``i / fps`` until
``(i + 1) / fps``.
"""

from __future__ import annotations

import math

import numpy as np


def frame_to_time(frame_index, fps: float):
    """Start time in seconds of a frame index (scalar or array)."""
    times = np.asarray(frame_index, dtype=np.float64) / float(fps)
    return float(times) if times.ndim == 0 else times


def time_to_frame(time_s: float, fps: float, frame_count: int | None = None) -> int:
    """Index of the frame shown at ``time_s``, clipped to ``[0, frame_count - 1]`` when the count is given."""
    index = int(math.floor(time_s * fps + 1e-6))
    if frame_count is not None:
        index = min(max(index, 0), max(frame_count - 1, 0))
    return index


def format_clock(time_s: float) -> str:
    """``MM:SS`` for a time in seconds (hours folded into minutes)."""
    total = max(int(round(time_s)), 0)
    return f"{total // 60:02d}:{total % 60:02d}"
