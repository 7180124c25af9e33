"""Shot cuts, found by PySceneDetect's content detector (the change in hue, saturation and
brightness between consecutive frames) on the frames the people stage decodes anyway, shrunk to
256 pixels wide: a cut costs no second decode. Every frame is looked at, not only the frames faces
are detected on, so a cut is placed on the frame where it happens."""

from __future__ import annotations

import cv2
import numpy as np

CUT_WIDTH = 256  # frames are shrunk to this width before comparing


class ShotCuts:
    """Feed frames in order; ``add`` says whether a new shot starts on this frame."""

    def __init__(self, fps: float, threshold: float):
        from scenedetect.detectors import ContentDetector

        self.fps = fps
        # min_scene_len 1: a cut is reported on the frame it happens, even right after another one
        self.detector = ContentDetector(threshold=threshold, min_scene_len=1) if threshold > 0 else None
        self.starts: list[int] = [0]

    def add(self, frame_index: int, frame: np.ndarray) -> bool:
        if self.detector is None:
            return False
        from scenedetect.common import FrameTimecode

        height = max(2, int(round(frame.shape[0] * CUT_WIDTH / frame.shape[1])))
        small = cv2.cvtColor(cv2.resize(frame, (CUT_WIDTH, height), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
        cuts = self.detector.process_frame(FrameTimecode(frame_index, self.fps), small)
        if cuts and frame_index > self.starts[-1]:
            self.starts.append(frame_index)
            return True
        return False

    def shots(self, frame_count: int) -> list[list[int]]:
        """[first frame, last frame] of every shot."""
        ends = [*self.starts[1:], frame_count]
        return [[first, end - 1] for first, end in zip(self.starts, ends) if end > first]


def shot_of(frames: np.ndarray, starts: list[int]) -> np.ndarray:
    """The shot index of each frame."""
    return np.searchsorted(np.asarray(starts), np.asarray(frames), side="right") - 1
