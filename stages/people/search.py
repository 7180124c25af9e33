"""Whole-frame face search on some detection frames, faces re-found near their neighbours' on the others.

With ``people.search_every`` N above 1, the face detector searches the whole frame on every N-th detection
frame of a shot (always on a shot's first). On the frames between, faces are only re-found where the searched
frames before and after put them: each face seen on both is proposed where moving straight between them puts
it and where each saw it (three boxes, which the detector merges), a face seen on one where that one saw it,
and the detector's ``refine`` (MTCNN: its last network alone) scores each proposal, moves it onto the face and
places its landmarks. A face that is on neither searched frame is not looked for between them: it is found on
the next searched frame, N detection frames later at most.

Frames wait here until the next searched frame of their shot is known, so they come out in order and a few
detection frames late; memory holds at most N frames more than the batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from socialpipe.pipeline.contracts.boxes import Boxes, box_iou

MATCH_IOU = 0.3  # a face on the searched frames before and after: its boxes overlap at least this much


@dataclasses.dataclass
class _Frame:
    index: int
    frame: np.ndarray
    shot: int
    searched: bool
    boxes: Boxes | None = None


class FaceSearch:
    """Detections for a stream of (frame index, frame) items with their shots, searching the whole frame on every
    ``every``-th detection frame of a shot when the detector can ``refine`` proposals (else on all)."""

    def __init__(self, detector, every: int):
        self.detector = detector
        self.every = every if hasattr(detector, "refine") else 1
        self.waiting: list[_Frame] = []
        self.last_searched: _Frame | None = None  # the latest searched frame handed out
        self.shot, self.position = None, 0
        self.counts = {"whole_frame": 0, "near_neighbours": 0}

    def add(self, batch: list[tuple[int, np.ndarray]], shots: list[int]) -> list[tuple[tuple[int, np.ndarray], int, Boxes]]:
        """Take a batch; return, in order, the frames whose detections are done: ((index, frame), shot, boxes)."""
        for (index, frame), shot in zip(batch, shots):
            if shot != self.shot:
                self.shot, self.position = shot, 0
            self.waiting.append(_Frame(index, frame, shot, self.position % self.every == 0))
            self.position += 1
        searched = [item for item in self.waiting if item.searched and item.boxes is None]
        if searched:
            for item, boxes in zip(searched, self.detector.detect([item.frame for item in searched])):
                item.boxes = boxes
            self.counts["whole_frame"] += len(searched)
        return self._ready(final=False)

    def finish(self) -> list[tuple[tuple[int, np.ndarray], int, Boxes]]:
        """The frames still waiting (the video has ended): those after the last searched frame re-found from it."""
        return self._ready(final=True)

    def _ready(self, final: bool):
        frames, proposals = [], []
        for position, item in enumerate(self.waiting):
            if item.boxes is not None:
                continue
            after = next((later for later in self.waiting[position + 1:] if later.searched or later.shot != item.shot),
                         None)
            if after is None and not final:
                break  # the next searched frame is not decoded yet
            before = next((earlier for earlier in reversed(self.waiting[:position]) if earlier.searched),
                          self.last_searched)
            frames.append(item)
            proposals.append(_proposals(before if before is not None and before.shot == item.shot else None,
                                        after if after is not None and after.shot == item.shot else None, item.index))
        if frames:
            for item, boxes in zip(frames, self.detector.refine([item.frame for item in frames], proposals)):
                item.boxes = boxes
            self.counts["near_neighbours"] += len(frames)
        done = next((k for k, item in enumerate(self.waiting) if item.boxes is None), len(self.waiting))
        ready, self.waiting = self.waiting[:done], self.waiting[done:]
        self.last_searched = next((item for item in reversed(ready) if item.searched), self.last_searched)
        return [((item.index, item.frame), item.shot, item.boxes) for item in ready]


def _proposals(before: _Frame | None, after: _Frame | None, index: int) -> np.ndarray:
    """Where the faces of the searched frames around ``index`` should be on it: (n, 4) boxes. A face on both
    (the pair overlapping most, at least MATCH_IOU) is proposed where straight motion between them puts it and
    where each saw it (the middle alone loses a few faces a detector re-finds from an end: 87 against 90 of 96
    on a sitcom clip); one on either alone stays where that frame saw it."""
    first = before.boxes.xyxy if before is not None else np.zeros((0, 4))
    second = after.boxes.xyxy if after is not None else np.zeros((0, 4))
    if len(first) == 0 or len(second) == 0:
        return np.concatenate([first, second]).reshape(-1, 4)
    overlap = box_iou(first, second)
    along = (index - before.index) / (after.index - before.index)
    placed, used_first, used_second = [], set(), set()
    for flat in np.argsort(-overlap, axis=None):
        i, j = np.unravel_index(flat, overlap.shape)
        if overlap[i, j] < MATCH_IOU:
            break
        if i in used_first or j in used_second:
            continue
        used_first.add(i)
        used_second.add(j)
        placed += [first[i] + (second[j] - first[i]) * along, first[i], second[j]]
    placed += [first[i] for i in range(len(first)) if i not in used_first]
    placed += [second[j] for j in range(len(second)) if j not in used_second]
    return np.asarray(placed, np.float64).reshape(-1, 4)
