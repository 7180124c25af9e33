"""Mouth activity: how much each face track's mouth region opens and moves, and how well that follows a
voice's speech. The link stage's fallback where the active-speaker network has nothing to say (faces
too small for it, drawn or animated faces it was not trained on)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.contracts.progress import Counter, ProgressHook, quiet
from socialpipe.pipeline.contracts.timebase import frame_step, frame_to_time
from socialpipe.pipeline.media.video import stream_frames

MOUTH_SIZE = (24, 16)  # mouth crops are resized to this (width, height) before comparing


@dataclass(frozen=True)
class MouthActivity:
    """Per track, mouth activity on a common time grid; NaN where the track is not visible."""

    times_s: np.ndarray  # (k,)
    track_ids: list[int]
    activity: np.ndarray  # (n_tracks, k) z-scored activity
    opening: np.ndarray  # (n_tracks, k) raw opening
    motion: np.ndarray  # (n_tracks, k) raw motion

def mouth_box(face_xyxy: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    """(x1, y1, x2, y2) of the mouth region, from mouth corners when known, else from the face box."""
    if landmarks is not None and np.isfinite(landmarks).all():
        left, right, nose = landmarks[3], landmarks[4], landmarks[2]
        centre = (left + right) / 2
        width = max(float(np.linalg.norm(right - left)), 4.0)
        top = min(float(nose[1]) + 0.25 * (centre[1] - nose[1]), centre[1] - 0.4 * width)
        return np.array([centre[0] - 0.8 * width, top, centre[0] + 0.8 * width, centre[1] + 0.7 * width])
    x1, y1, x2, y2 = face_xyxy
    w, h = x2 - x1, y2 - y1
    return np.array([x1 + 0.25 * w, y1 + 0.62 * h, x2 - 0.25 * w, y1 + 0.95 * h])

def _crop(grey: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    h, w = grey.shape
    x1, y1 = int(max(np.floor(box[0]), 0)), int(max(np.floor(box[1]), 0))
    x2, y2 = int(min(np.ceil(box[2]), w)), int(min(np.ceil(box[3]), h))
    if x2 - x1 < 3 or y2 - y1 < 3:
        return None
    return cv2.resize(grey[y1:y2, x1:x2], MOUTH_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)

def measure_mouths(video: VideoInfo, tracks: Tracks, analysis_fps: float,
                   progress: ProgressHook = quiet) -> MouthActivity:
    """Mouth opening and motion of every face track on every ``step``-th frame."""
    step = frame_step(video.fps, analysis_fps)
    grid = np.arange(0, video.frame_count, step)
    face_ids = [t for t in tracks.track_ids if tracks.kinds[t] == "face"]
    row_of = {t: i for i, t in enumerate(face_ids)}
    opening = np.full((len(face_ids), len(grid)), np.nan)
    motion = np.full((len(face_ids), len(grid)), np.nan)
    previous: dict[int, tuple[int, np.ndarray]] = {}
    by_frame = {int(f): np.flatnonzero(tracks.frame_index == f) for f in np.unique(tracks.frame_index)}
    counter = Counter(progress, "link", len(grid), "frame")
    # ffmpeg's grey (luma): a third of the bytes of RGB frames and no conversion here; 1.2-1.7x faster, activity
    # as before to a correlation of 0.99994 (benchmarks/frame_work.py)
    for k, (frame_index, grey) in enumerate(stream_frames(video, step=step, grey=True)):
        counter.advance(1)
        rows = by_frame.get(frame_index)
        if rows is None:
            continue
        for i in rows:
            tid = int(tracks.track_id[i])
            if tid not in row_of:
                continue
            lm = None if tracks.landmarks is None else tracks.landmarks[i]
            mouth = _crop(grey, mouth_box(tracks.xyxy[i], lm))
            face = _crop(grey, tracks.xyxy[i])
            if mouth is None or face is None:
                continue
            skin = max(float(np.median(face)), 1.0)
            opening[row_of[tid], k] = float(np.clip(skin - mouth, 0, None).mean() / skin)
            if tid in previous and previous[tid][0] == k - 1:
                motion[row_of[tid], k] = float(np.abs(mouth - previous[tid][1]).mean() / skin)
            previous[tid] = (k, mouth)
    counter.finish()
    activity = _zscore(opening) + np.nan_to_num(_zscore(motion), nan=0.0) * np.isfinite(opening)
    activity[~np.isfinite(opening)] = np.nan
    return MouthActivity(frame_to_time(grid, video.fps), face_ids, activity, opening, motion)

def _zscore(values: np.ndarray) -> np.ndarray:
    """Per row, (x - mean) / std over the finite entries; rows without spread become 0."""
    out = np.full_like(values, np.nan)
    for r, row in enumerate(values):
        seen = np.isfinite(row)
        if seen.sum() < 2:
            out[r, seen] = 0.0
            continue
        spread = row[seen].std()
        out[r, seen] = (row[seen] - row[seen].mean()) / spread if spread > 1e-9 else 0.0
    return out

def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


@dataclass(frozen=True)
class MouthScores:
    """(voices, tracks) agreement of each face track's mouth with each voice's speech."""

    score: np.ndarray  # correlation (negative counts as 0) times coverage
    correlation: np.ndarray  # of mouth activity with the voice's speech while the track is visible
    coverage: np.ndarray  # share of the voice's speech during which the track is visible


def mouth_grid(mouths: MouthActivity, track_ids: list[int], steps: int, step_s: float) -> np.ndarray:
    """(len(track_ids), steps) mouth activity on another time grid (step ``k`` at ``k * step_s``): each step
    takes the last mouth sample at or before it, NaN where the track is not seen then or not measured."""
    grid = np.full((len(track_ids), steps), np.nan, np.float32)
    if not len(mouths.times_s):
        return grid
    at = np.searchsorted(mouths.times_s, np.arange(steps) * step_s + 1e-9, side="right") - 1
    valid = at >= 0
    for r, tid in enumerate(track_ids):
        if tid in mouths.track_ids:
            grid[r, valid] = mouths.activity[mouths.track_ids.index(tid), at[valid]]
    return grid


def mouth_scores(mouths: MouthActivity, speaking: np.ndarray) -> MouthScores:
    """The correlation of each track's mouth activity with each voice's speech while the track is visible,
    times the share of the voice's speech during which it is visible (a person off screen cannot be the one
    talking)."""
    n_voices, n_tracks = len(speaking), len(mouths.track_ids)
    score, corr, coverage = (np.zeros((n_voices, n_tracks)) for _ in range(3))
    for v in range(n_voices):
        talks = speaking[v] > 0
        for t in range(n_tracks):
            visible = np.isfinite(mouths.activity[t])
            coverage[v, t] = float((talks & visible).sum() / max(talks.sum(), 1))
            corr[v, t] = _correlation(mouths.activity[t, visible], speaking[v, visible])
            score[v, t] = max(corr[v, t], 0.0) * coverage[v, t]
    return MouthScores(score, corr, coverage)
