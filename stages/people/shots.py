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
after it are dropped by the people stage (a box stays in the shot its track started in).

Both look at the picture only, without black bars: a phone's portrait video shown in a landscape frame
fills a third of it, and the bars' unchanging black diluted every change to a third, so the street
interview's five cuts all went unfound (docs/people.md). The picture is the box of the rows and columns
brighter than BAR_LUMA on any frame of the last BAR_WINDOW_S of the shot (a black frame counts for nothing); bars
thinner than BAR_MIN of the side are kept (a dark edge of a picture is not a bar). When that box changes
(a compilation that switches formats, a picture that fades in) and holds for BAR_SETTLE_S, the frame is
judged against the last one on the old box, then the content detector starts again on the new."""

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
BAR_LUMA = 24  # a row or column of the shrunk frame no brighter than this (of 255, any channel) is black there
BAR_MIN = 0.08  # black along an edge is a bar only when at least this share of the frame's side
BAR_WINDOW_S = 2.0  # the picture's box is the union of the frames' boxes over this long
BAR_SETTLE_S = 0.5  # ... and the detectors take a new box once it has held this long


class ShotCuts:
    """Feed frames in order; ``add`` says whether a new shot starts on this frame."""

    def __init__(self, fps: float, threshold: float):
        self.fps = fps
        self.threshold = threshold
        self.detector = self._content_detector() if threshold > 0 else None
        self.starts: list[int] = [0]
        self.window = max(int(round(fps * GRADUAL_WINDOW_S)), 2)
        self.recent: deque[tuple[int, np.ndarray]] = deque(maxlen=self.window + 1)
        self.gradual: list[int] = []  # the starts that came from a gradual transition
        self.settled = True  # False from a gradual cut until a window's ends look alike again
        self.boxes: deque[tuple[int, int, int, int]] = deque(maxlen=max(int(round(fps * BAR_WINDOW_S)), 1))
        self.box: tuple[int, int, int, int] | None = None  # the picture's box on the shrunk frames (x0, y0, x1, y1)
        self.boxes_used: list[tuple[int, tuple[int, int, int, int]]] = []  # (from frame, box): where it changed
        self.pending: tuple[tuple[int, int, int, int], int] | None = None  # a new box, and for how many frames
        self.settle = max(int(round(fps * BAR_SETTLE_S)), 1)
        self.frame_box: tuple[int, int, int, int] | None = None  # the last frame's own box (None: a black frame)
        self.whole: tuple[int, int, int, int] = (0, 0, CUT_WIDTH, 0)  # a whole shrunk frame's box

    def _content_detector(self):
        from scenedetect.detectors import ContentDetector

        # min_scene_len 1: a cut is reported on the frame it happens, even right after another one
        return ContentDetector(threshold=self.threshold, min_scene_len=1)

    def add(self, frame_index: int, frame: np.ndarray) -> bool:
        if self.detector is None:
            return False
        from scenedetect.common import FrameTimecode

        height = max(2, int(round(frame.shape[0] * CUT_WIDTH / frame.shape[1])))
        small = cv2.cvtColor(cv2.resize(frame, (CUT_WIDTH, height), interpolation=CUT_INTERPOLATION),
                             cv2.COLOR_RGB2BGR)
        box = self._settled_box(self._picture_box(small))
        x0, y0, x1, y1 = self.box or box
        cuts = self.detector.process_frame(FrameTimecode(frame_index, self.fps), small[y0:y1, x0:x1])
        if box != self.box:  # the content detector starts again on the new box, from this frame
            self.box, (x0, y0, x1, y1) = box, box
            self.boxes_used.append((frame_index, box))
            self.detector = self._content_detector()
            self.detector.process_frame(FrameTimecode(frame_index, self.fps), small[y0:y1, x0:x1])
        if cuts and frame_index > self.starts[-1]:
            self.starts.append(frame_index)
            self._new_picture()
            return True
        middle = self._dissolve(frame_index, small)
        if middle is not None:
            self.starts.append(middle)
            self.gradual.append(middle)
            self._new_picture()
            return True
        return False

    def _new_picture(self) -> None:
        """After a cut the picture's box is looked for again from this frame: the next shot may have other bars."""
        self.boxes.clear()
        if self.frame_box is not None:
            self.boxes.append(self.frame_box)

    def _dissolve(self, frame_index: int, small: np.ndarray) -> int | None:
        """The middle frame of a dissolve that the window ending on this frame holds, if it holds one and no cut
        (the window's pictures are kept whole and compared inside the picture's box)."""
        self.recent.append((frame_index, cv2.resize(small, GRADUAL_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)))
        if len(self.recent) <= self.window or self.recent[0][0] <= self.starts[-1]:
            return None  # not a full window yet, or a cut inside it
        (x0, y0, x1, y1), (width, height) = self.box, self.whole[2:]
        (w, h), inside = GRADUAL_SIZE, np.s_[:, :]
        if self.box != self.whole:
            inside = np.s_[int(y0 * h / height):int(np.ceil(y1 * h / height)),
                           int(x0 * w / width):int(np.ceil(x1 * w / width))]
        first, last = self.recent[0][1][inside], self.recent[-1][1][inside]
        middle_index, middle = self.recent[self.window // 2][0], self.recent[self.window // 2][1][inside]
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

    def _settled_box(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The box the detectors use: the first frame's, then a new one once it has held for BAR_SETTLE_S (the
        box moves on every frame of a dissolve between two formats, and a detector started again on every
        frame would see no change)."""
        if self.box is None:
            return box
        if box == self.box:
            self.pending = None
            return self.box
        self.pending = (box, 1) if self.pending is None or self.pending[0] != box else (box, self.pending[1] + 1)
        return box if self.pending[1] >= self.settle else self.box

    def _picture_box(self, small: np.ndarray) -> tuple[int, int, int, int]:
        """The box of the picture inside black bars: the union of the frames' boxes over the last BAR_WINDOW_S,
        an edge kept where its bar is thinner than BAR_MIN of the side."""
        height, width = small.shape[:2]
        flat = small.reshape(height, width * 3)  # OpenCV's reduce: a tenth of numpy's max over the channel axis
        columns = np.flatnonzero(cv2.reduce(flat, 0, cv2.REDUCE_MAX).reshape(width, 3).max(axis=1) > BAR_LUMA)
        rows = np.flatnonzero(cv2.reduce(flat, 1, cv2.REDUCE_MAX).ravel() > BAR_LUMA)
        self.frame_box = (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1) if len(columns) \
            else None  # a black frame says nothing of where the picture is
        if self.frame_box is not None:
            self.boxes.append(self.frame_box)
        self.whole = (0, 0, width, height)
        if not self.boxes:
            return self.whole
        x0, y0 = min(b[0] for b in self.boxes), min(b[1] for b in self.boxes)
        x1, y1 = max(b[2] for b in self.boxes), max(b[3] for b in self.boxes)
        return (0 if x0 < BAR_MIN * width else x0, 0 if y0 < BAR_MIN * height else y0,
                width if width - x1 < BAR_MIN * width else x1, height if height - y1 < BAR_MIN * height else y1)

    def pictures(self, width: int, height: int) -> list[dict]:
        """Where the picture's box inside black bars changed, in the video's pixels: ``[{"from_frame", "xyxy"}]``
        (empty when the detectors saw whole frames throughout)."""
        if all(box == self.whole for _, box in self.boxes_used):
            return []
        scale = width / CUT_WIDTH
        return [{"from_frame": frame, "xyxy": [round(min(v * scale, limit)) for v, limit in
                                               zip(box, (width, height, width, height))]}
                for frame, box in self.boxes_used]

    def shots(self, frame_count: int) -> list[list[int]]:
        """[first frame, last frame] of every shot."""
        ends = [*self.starts[1:], frame_count]
        return [[first, end - 1] for first, end in zip(self.starts, ends) if end > first]


def shot_of(frames: np.ndarray, starts: list[int]) -> np.ndarray:
    """The shot index of each frame."""
    return np.searchsorted(np.asarray(starts), np.asarray(frames), side="right") - 1
