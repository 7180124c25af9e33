"""Speaker boxes: the region of the frame that stands for a person.

The answer stage pulls each speaker's text toward this region. It is the person box
when the people stage tracked one and tied the face to it (``Tracks.meta["person_of_face"]``),
else the face box grown to head and shoulders, clipped to the frame.
"""

from __future__ import annotations

import numpy as np

from pipeline.artifacts import Tracks


def head_and_shoulders(face_xyxy: np.ndarray, expand: float, width: int, height: int) -> np.ndarray:
    """Face boxes (n, 4) -> boxes ``expand`` times as wide and tall, centred on the face horizontally,
    reaching a quarter face height above the face and the rest below it; clipped to the frame."""
    face = np.asarray(face_xyxy, np.float64).reshape(-1, 4)
    w, h = face[:, 2] - face[:, 0], face[:, 3] - face[:, 1]
    cx = (face[:, 0] + face[:, 2]) / 2
    top = face[:, 1] - 0.25 * h
    boxes = np.stack([cx - expand * w / 2, top, cx + expand * w / 2, top + expand * h], axis=1)  # (n, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes


def speaker_box(tracks: Tracks, track_id: int, frame_index: int, width: int, height: int,
                expand: float) -> np.ndarray | None:
    """The speaker box (x1, y1, x2, y2) of a track on one frame, or None when the track is not there."""
    person_of_face = {int(k): int(v) for k, v in tracks.meta.get("person_of_face", {}).items()}
    person = person_of_face.get(track_id)
    if person is not None:
        rows = np.flatnonzero((tracks.track_id == person) & (tracks.frame_index == frame_index))
        if rows.size:
            return tracks.xyxy[rows[0]].copy()
    rows = np.flatnonzero((tracks.track_id == track_id) & (tracks.frame_index == frame_index))
    if rows.size == 0:
        return None
    if tracks.kinds.get(track_id) == "person":
        return tracks.xyxy[rows[0]].copy()
    return head_and_shoulders(tracks.xyxy[rows[0]], expand, width, height)[0]
