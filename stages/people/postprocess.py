"""From raw tracked detections to the tracks artifact: re-join pieces of one track split by a gap,
drop short tracks, smooth, interpolate the frames between detections, and tie faces to people.

Everything works on :class:`Boxes` arrays; appearance ``looks`` are (n, bins) normalised colour
histograms parallel to the boxes, NaN where a box was too small to describe.
"""

from __future__ import annotations

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import VideoInfo
from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.config import PeopleConfig
from socialpipe.pipeline.contracts.timebase import duration_of, frames_in

EDGE_MARGIN_PX = 12.0  # a box this close to a frame border touches it
HISTOGRAM_BINS = (16, 8)  # hue x saturation
HISTOGRAM_SIZE = HISTOGRAM_BINS[0] * HISTOGRAM_BINS[1]


def appearance(frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """A normalised hue-saturation histogram (flattened) of a box's pixels: the appearance used to
    re-join tracks; NaN when the box is too small."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in (max(xyxy[0], 0), max(xyxy[1], 0), min(xyxy[2], w), min(xyxy[3], h)))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return np.full(HISTOGRAM_SIZE, np.nan, np.float32)
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[y1:y2, x1:x2]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(HISTOGRAM_BINS), [0, 180, 0, 256]).astype(np.float32)
    return (hist / max(float(hist.sum()), 1.0)).ravel()


def pieces(boxes: Boxes) -> dict[int, np.ndarray]:
    """Track id -> its row indices in frame order; tracks in order of first appearance."""
    order = np.argsort(boxes.frame_index, kind="stable")
    ids = boxes.track_id[order]
    return {int(tid): order[ids == tid] for tid in dict.fromkeys(ids.tolist())}


def _touching_edge(xyxy: np.ndarray, width: int, height: int) -> set[str]:
    edges = set()
    if xyxy[0] <= EDGE_MARGIN_PX:
        edges.add("left")
    if xyxy[2] >= width - EDGE_MARGIN_PX:
        edges.add("right")
    if xyxy[1] <= EDGE_MARGIN_PX:
        edges.add("top")
    if xyxy[3] >= height - EDGE_MARGIN_PX:
        edges.add("bottom")
    return edges


def _mean_look(looks: np.ndarray) -> np.ndarray | None:
    seen = looks[np.isfinite(looks).all(axis=1)]
    return seen.mean(axis=0).astype(np.float32) if len(seen) else None


def rejoin(boxes: Boxes, looks: np.ndarray, video: VideoInfo, settings: PeopleConfig,
           shot_starts: list[int] = (0,)) -> tuple[Boxes, list[dict]]:
    """Join track pieces of one shot that never overlap in time when the later one starts where the
    earlier one ended (or both touch the same frame edge: left and came back) and they look alike.
    Pieces in different shots (``shot_starts``: each shot's first frame) are never joined.

    Returns the boxes relabelled and one record per join saying why.
    """
    rows = pieces(boxes)
    frames = boxes.frame_index
    spans = {tid: (int(frames[r[0]]), int(frames[r[-1]])) for tid, r in rows.items()}
    mean_looks = {tid: _mean_look(looks[r]) for tid, r in rows.items()}
    shot = {tid: int(np.searchsorted(np.asarray(shot_starts), first, side="right")) for tid, (first, _) in spans.items()}
    candidates = []
    for a, ra in rows.items():
        for b, rb in rows.items():
            gap_frames = spans[b][0] - spans[a][1]
            if a == b or gap_frames <= 0 or duration_of(gap_frames, video.fps) > settings.rejoin_max_gap_s \
                    or shot[a] != shot[b]:
                continue
            if mean_looks[a] is None or mean_looks[b] is None:
                continue
            similarity = float(cv2.compareHist(mean_looks[a], mean_looks[b], cv2.HISTCMP_CORREL))
            end, start = boxes.xyxy[ra[-1]], boxes.xyxy[rb[0]]
            face_w = max((end[2] - end[0] + start[2] - start[0]) / 2, 1.0)
            shift = float(np.linalg.norm((end[:2] + end[2:]) / 2 - (start[:2] + start[2:]) / 2) / face_w)
            size_ratio = (start[2] - start[0]) / max(end[2] - end[0], 1.0)
            same_edge = _touching_edge(end, video.width, video.height) & _touching_edge(start, video.width, video.height)
            near = shift <= settings.rejoin_max_shift
            if similarity >= settings.rejoin_min_similarity and (near or same_edge) and 0.5 <= size_ratio <= 2.0:
                reason = f"left and came back at the {sorted(same_edge)[0]} edge" if same_edge and not near else \
                    "reappeared where it was lost"
                candidates.append((similarity, a, b, {
                    "gap_s": round(duration_of(gap_frames, video.fps), 3), "appearance_similarity": round(similarity, 4),
                    "shift_face_widths": round(shift, 3), "reason": f"{reason}, looking alike"}))
    # greedy, most similar first; a join must not make a track overlap itself in time
    owner = {tid: tid for tid in rows}
    frames_of = {tid: set(frames[r].tolist()) for tid, r in rows.items()}
    joins = []
    for _, a, b, why in sorted(candidates, key=lambda c: -c[0]):
        root_a, root_b = owner[a], owner[b]
        if root_a == root_b or root_b != b:  # b already joined onto something, or the same track
            continue
        if frames_of[root_a] & frames_of[root_b] or max(frames_of[root_a]) >= min(frames_of[root_b]):
            continue
        for tid, root in owner.items():
            if root == root_b:
                owner[tid] = root_a
        frames_of[root_a] |= frames_of.pop(root_b)
        joins.append({"kept": root_a, "joined": b, **why})
    relabelled = np.array([owner[int(t)] for t in boxes.track_id], np.int64)
    return boxes.replace(track_id=relabelled), joins


def finish(boxes: Boxes, video: VideoInfo, step: int, settings: PeopleConfig) -> Boxes:
    """Drop short tracks, smooth over detections, and fill the frames between detections: each
    detection stands for the ``step`` frames around it; gaps up to ``interpolate_max_gap_s`` are
    interpolated, longer ones left empty."""
    max_gap = max(frames_in(settings.interpolate_max_gap_s, video.fps), step)
    before = (step - 1) // 2
    after = step - 1 - before
    parts = []
    for tid, rows in pieces(boxes).items():
        if duration_of(len(rows) * step, video.fps) < settings.min_track_s:
            continue
        frames = boxes.frame_index[rows]
        xyxy = _smooth(boxes.xyxy[rows], frames, settings.smooth_keyframes, max_gap)  # (k, 4)
        marks = boxes.landmarks[rows] if boxes.landmarks is not None else None  # (k, 5, 2)
        if marks is not None and not np.isfinite(marks).all():
            marks = None  # a piece with any detection lacking landmarks carries none
        conf = boxes.confidence[rows]
        out_frames, out_boxes, out_marks, out_conf = [], [], [], []
        for k in range(len(rows)):
            joined_next = k + 1 < len(rows) and frames[k + 1] - frames[k] <= max_gap
            last = frames[k + 1] - 1 if joined_next else min(frames[k] + after, video.frame_count - 1)
            first = frames[k] if (k > 0 and frames[k] - frames[k - 1] <= max_gap) else max(frames[k] - before, 0)
            span = np.arange(first, last + 1)
            t = np.where(span > frames[k], (span - frames[k]) / (frames[k + 1] - frames[k]), 0.0) if joined_next \
                else np.zeros(len(span))
            following = k + 1 if joined_next else k
            out_frames.append(span)
            out_boxes.append((1 - t)[:, None] * xyxy[k] + t[:, None] * xyxy[following])
            if marks is not None:
                out_marks.append((1 - t)[:, None, None] * marks[k] + t[:, None, None] * marks[following])
            out_conf.append(np.where(t > 0, min(conf[k], conf[following]), conf[k]))
        count = sum(map(len, out_frames))
        landmarks = None if boxes.landmarks is None else (
            np.concatenate(out_marks) if marks is not None else np.full((count, 5, 2), np.nan))
        parts.append(Boxes(np.concatenate(out_boxes), np.clip(np.concatenate(out_conf), 0.0, 1.0), landmarks,
                           np.full(count, tid), np.concatenate(out_frames)).clipped(video.width, video.height))
    return Boxes.concat(parts) if parts else Boxes.empty(tracked=True)


def _smooth(xyxy: np.ndarray, frames: np.ndarray, window: int, max_gap: int) -> np.ndarray:
    """Centred moving average of boxes over ``window`` detections, never across a gap."""
    if window <= 1 or len(xyxy) < 2:
        return xyxy
    segment = np.concatenate([[0], np.cumsum(np.diff(frames) > max_gap)])
    out = xyxy.copy()
    r = window // 2
    for k in range(len(xyxy)):
        lo, hi = max(k - r, 0), min(k + r + 1, len(xyxy))
        same = segment[lo:hi] == segment[k]
        out[k] = xyxy[lo:hi][same].mean(axis=0)
    return out


def tie_faces_to_people(faces: Boxes, people: Boxes) -> dict[int, int]:
    """Face track -> the person track whose box holds the face centre in its upper half most often."""
    people_at: dict[int, np.ndarray] = {}
    for frame in np.unique(people.frame_index):
        people_at[int(frame)] = np.flatnonzero(people.frame_index == frame)
    votes: dict[int, dict[int, int]] = {}
    centres = faces.centres
    for i in range(len(faces)):
        cx, cy = centres[i]
        for j in people_at.get(int(faces.frame_index[i]), ()):
            x1, y1, x2, y2 = people.xyxy[j]
            if x1 <= cx <= x2 and y1 <= cy <= y1 + (y2 - y1) / 2:
                tally = votes.setdefault(int(faces.track_id[i]), {})
                tally[int(people.track_id[j])] = tally.get(int(people.track_id[j]), 0) + 1
    return {face: max(tally, key=tally.get) for face, tally in votes.items()}
