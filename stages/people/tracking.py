"""The adapter to ultralytics' trackers: the only code that knows their input attributes and their
output columns ``[x1, y1, x2, y2, track_id, score, cls, idx]``."""

from __future__ import annotations

import numpy as np

from socialpipe.pipeline.contracts.boxes import Boxes


def make_tracker(name: str, buffer_frames: int):
    """An ultralytics tracker (bytetrack or botsort) with its bundled settings and our frame buffer."""
    from ultralytics.trackers import BOTSORT, BYTETracker
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    args = IterableSimpleNamespace(**YAML.load(check_yaml(f"{name}.yaml")))
    args.track_buffer = buffer_frames
    if name == "botsort":
        args.with_reid = False
        args.gmc_method = "none"  # camera motion compensation needs full frames each step; conversation video is static
        return BOTSORT(args)
    return BYTETracker(args)


class _TrackerInput:
    """Boxes as the trackers read detections: ``conf``, ``cls``, ``xywh`` (centre), ``xyxy``, ``len()``
    and mask indexing."""

    def __init__(self, boxes: Boxes):
        self.boxes, self.xyxy, self.xywh, self.conf = boxes, boxes.xyxy, boxes.xywh, boxes.confidence
        self.cls = np.zeros(len(boxes))  # one class per tracker

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index) -> _TrackerInput:
        return _TrackerInput(self.boxes[index])


def track(tracker, detections: Boxes, frame_index: int) -> Boxes:
    """Feed one frame's detections to ``tracker``; the detections it keeps, with their track ids and frame
    (the exact detected boxes, picked by the tracker's ``idx`` column, not its filtered ones)."""
    rows = np.asarray(tracker.update(_TrackerInput(detections)), np.float64).reshape(-1, 8)
    kept = detections[rows[:, 7].astype(np.int64)]
    return kept.replace(track_id=rows[:, 4].astype(np.int64), frame_index=np.full(len(rows), frame_index))
