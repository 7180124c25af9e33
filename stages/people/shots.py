"""Shot cuts, found by PySceneDetect's content detector (the change in hue, saturation and
brightness between consecutive frames) on the frames the people stage decodes anyway, shrunk to
256 pixels wide (linearly, as PySceneDetect does): a cut costs no second decode. Every frame is
looked at, not only the frames faces are detected on, so a cut is placed on the frame where it
happens.

Gradual transitions (cross-dissolves, fades) change each frame too little for the content detector.
They are found by what a dissolve is, a blend: over a one-second window, when the first and the last
frame differ as two shots do (mean absolute difference of their 64x36 pictures at least
GRADUAL_MIN_CHANGE of 255) and the middle frame is their average (what is left of it, against that
difference, at most GRADUAL_MAX_RESIDUAL), a transition is under way and a cut is placed in the middle
of the window; the next is looked for once a window's ends look alike again (a long dissolve is one
cut). A camera pan or a person walking through the frame changes as much, but its middle frame is not
the average of the ends. Such a cut is found half a window late: boxes the old shot's tracker drew
after it are dropped by the people stage (a box stays in the shot its track started in)."""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

CUT_WIDTH = 256  # frames are shrunk to this width before comparing
# frames are shrunk linearly, as PySceneDetect shrinks them itself: 0.08 ms a frame where area averaging took
# 0.6 ms at 640x360 and 1.1 ms at 720p; the same cuts and dissolves on 13 videos (benchmarks/frame_work.py)
CUT_INTERPOLATION = cv2.INTER_LINEAR
GRADUAL_WINDOW_S = 1.0  # a dissolve is looked for over this long
GRADUAL_SIZE = (64, 36)  # pictures compared for a dissolve
GRADUAL_MIN_CHANGE = 20.0  # mean absolute difference (of 255) between the window's ends: two different shots
GRADUAL_MAX_RESIDUAL = 0.3  # |middle - mean of the ends| / |end - start|: 0 for a blend, ~0.5 and up for motion


class ShotCuts:
    """Feed frames in order; ``add`` says whether a new shot starts on this frame."""

    def __init__(self, fps: float, threshold: float):
        from scenedetect.detectors import ContentDetector

        self.fps = fps
        # min_scene_len 1: a cut is reported on the frame it happens, even right after another one
        self.detector = ContentDetector(threshold=threshold, min_scene_len=1) if threshold > 0 else None
        self.starts: list[int] = [0]
        self.window = max(int(round(fps * GRADUAL_WINDOW_S)), 2)
        self.recent: deque[tuple[int, np.ndarray]] = deque(maxlen=self.window + 1)
        self.gradual: list[int] = []  # the starts that came from a gradual transition
        self.settled = True  # False from a gradual cut until a window's ends look alike again

    def add(self, frame_index: int, frame: np.ndarray) -> bool:
        if self.detector is None:
            return False
        from scenedetect.common import FrameTimecode

        height = max(2, int(round(frame.shape[0] * CUT_WIDTH / frame.shape[1])))
        small = cv2.cvtColor(cv2.resize(frame, (CUT_WIDTH, height), interpolation=CUT_INTERPOLATION),
                             cv2.COLOR_RGB2BGR)
        cuts = self.detector.process_frame(FrameTimecode(frame_index, self.fps), small)
        if cuts and frame_index > self.starts[-1]:
            self.starts.append(frame_index)
            return True
        middle = self._dissolve(frame_index, small)
        if middle is not None:
            self.starts.append(middle)
            self.gradual.append(middle)
            return True
        return False

    def _dissolve(self, frame_index: int, small: np.ndarray) -> int | None:
        """The middle frame of a dissolve that the window ending on this frame holds, if it holds one and no cut."""
        self.recent.append((frame_index, cv2.resize(small, GRADUAL_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)))
        if len(self.recent) <= self.window or self.recent[0][0] <= self.starts[-1]:
            return None  # not a full window yet, or a cut inside it
        first, last = self.recent[0][1], self.recent[-1][1]
        middle_index, middle = self.recent[self.window // 2]
        change = float(np.abs(last - first).mean())
        if change < GRADUAL_MIN_CHANGE:
            self.settled = True  # the picture held still for a window: the next transition may be looked for
            return None
        if not self.settled:  # still inside the transition a cut was placed in
            return None
        residual = float(np.abs(middle - (first + last) / 2).mean()) / change
        if residual > GRADUAL_MAX_RESIDUAL:
            return None
        self.settled = False
        return middle_index

    def shots(self, frame_count: int) -> list[list[int]]:
        """[first frame, last frame] of every shot."""
        ends = [*self.starts[1:], frame_count]
        return [[first, end - 1] for first, end in zip(self.starts, ends) if end > first]


def shot_of(frames: np.ndarray, starts: list[int]) -> np.ndarray:
    """The shot index of each frame."""
    return np.searchsorted(np.asarray(starts), np.asarray(frames), side="right") - 1
