"""Mouth activity: how much each face track's mouth region opens and moves, and how well that follows a
voice's speech. The link stage's fallback where the active-speaker network has nothing to say (faces
too small for it, drawn or animated faces it was not trained on)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.contracts.progress import Counter, ProgressHook, quiet
from socialpipe.pipeline.contracts.timebase import frame_step, frame_to_time
from socialpipe.pipeline.media.video import decoded_size, stream_frames

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

def _crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The region ``box`` of an RGB frame turned grey (OpenCV's weighted grey) and resized to MOUTH_SIZE; None
    when it is under 3 pixels a side. Only the region is turned grey: the same pixels as turning the frame."""
    h, w = frame.shape[:2]
    x1, y1 = int(max(np.floor(box[0]), 0)), int(max(np.floor(box[1]), 0))
    x2, y2 = int(min(np.ceil(box[2]), w)), int(min(np.ceil(box[3]), h))
    if x2 - x1 < 3 or y2 - y1 < 3:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, MOUTH_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


class MouthMeter:
    """Mouth opening and motion of every face track on every ``step``-th frame (about ``analysis_fps``),
    measured from full-size RGB frames handed to :meth:`see` in the video's order. Either its own decode
    feeds it (:func:`measure_mouths`), or it rides along another decode of the full-size frames (the
    active-speaker model's: the link stage then decodes the video once for both, 1.3 s less at 720p)."""

    def __init__(self, video: VideoInfo, tracks: Tracks, analysis_fps: float):
        self.video, self.tracks = video, tracks
        self.step = frame_step(video.fps, analysis_fps)
        self.grid = np.arange(0, video.frame_count, self.step)
        self.face_ids = [t for t in tracks.track_ids if tracks.kinds[t] == "face"]
        self._row = {t: i for i, t in enumerate(self.face_ids)}
        self.opening = np.full((len(self.face_ids), len(self.grid)), np.nan)
        self.motion = np.full((len(self.face_ids), len(self.grid)), np.nan)
        self._seen = np.zeros(len(self.grid), bool)
        self._previous: dict[int, tuple[int, np.ndarray]] = {}
        self._rows = {int(f): np.flatnonzero(tracks.frame_index == f) for f in np.unique(tracks.frame_index)}
        self._size = decoded_size(video)
        self.seconds = 0.0  # spent measuring (not decoding), for the stage's timings

    @property
    def complete(self) -> bool:
        """Whether every frame of the grid has been seen."""
        return bool(self._seen.all())

    def see(self, frame_index: int, frame: np.ndarray) -> None:
        """Measure the mouths on this frame if it is on the grid (frames off it, or not full size, are ignored)."""
        if frame_index % self.step or frame_index >= self.video.frame_count or \
                (frame.shape[1], frame.shape[0]) != self._size:
            return
        started = time.perf_counter()
        k = frame_index // self.step
        self._seen[k] = True
        for i in self._rows.get(frame_index, ()):
            tid = int(self.tracks.track_id[i])
            if tid not in self._row:
                continue
            lm = None if self.tracks.landmarks is None else self.tracks.landmarks[i]
            mouth = _crop(frame, mouth_box(self.tracks.xyxy[i], lm))
            face = _crop(frame, self.tracks.xyxy[i])
            if mouth is None or face is None:
                continue
            skin = max(float(np.median(face)), 1.0)
            row = self._row[tid]
            self.opening[row, k] = float(np.clip(skin - mouth, 0, None).mean() / skin)
            if tid in self._previous and self._previous[tid][0] == k - 1:
                self.motion[row, k] = float(np.abs(mouth - self._previous[tid][1]).mean() / skin)
            self._previous[tid] = (k, mouth)
        self.seconds += time.perf_counter() - started

    def activity(self) -> MouthActivity:
        """What was measured: opening and motion, z-scored per track and added."""
        opening, motion = self.opening, self.motion
        activity = _zscore(opening) + np.nan_to_num(_zscore(motion), nan=0.0) * np.isfinite(opening)
        activity[~np.isfinite(opening)] = np.nan
        return MouthActivity(frame_to_time(self.grid, self.video.fps), self.face_ids, activity, opening, motion)


def measure_mouths(video: VideoInfo, tracks: Tracks, analysis_fps: float,
                   progress: ProgressHook = quiet) -> MouthActivity:
    """Mouth opening and motion of every face track on every ``step``-th frame, from a decode of its own."""
    meter = MouthMeter(video, tracks, analysis_fps)
    counter = Counter(progress, "link", len(meter.grid), "frame")
    for frame_index, frame in stream_frames(video, step=meter.step):
        counter.advance(1)
        meter.see(frame_index, frame)
    counter.finish()
    return meter.activity()

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
