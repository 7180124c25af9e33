"""Stage 3, link: which visible track owns each voice, decided without training, with evidence.

Reads top to bottom:
1. per face track and analysis frame, the mouth region (located by the mouth-corner and nose
   landmarks, or the lower face when there are none) gives two signals, normalised by face
   size and brightness: opening (how much darker than the face it is) and motion (change since
   the previous analysis frame); their z-scores summed are the track's mouth activity;
2. per voice, its speech activity on the same time grid, from the transcript's turns;
3. voice x track score = correlation of the two while the track is visible, times the share of
   the voice's speech during which the track is visible (a person off screen cannot be the one
   talking; a mouth that moves while other voices talk lowers the correlation);
4. a one-to-one assignment (Hungarian) keeps pairs above a threshold, so off-screen voices stay
   unlinked;
5. each utterance is also attributed to the most active visible mouth, kept as evidence (it
   shows a diarization cluster that merged two people).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from socialpipe.pipeline.artifacts import SpeakerLink, SpeakerLinks, Tracks, Transcript, VideoInfo
from socialpipe.pipeline.config import LinkConfig
from socialpipe.pipeline.progress import Counter, ProgressHook, quiet
from socialpipe.pipeline.timebase import duration_of, frame_step, frame_to_time
from socialpipe.pipeline.video import stream_frames

MOUTH_SIZE = (24, 16)  # mouth crops are resized to this (width, height) before comparing
ANONYMOUS_VOICE = re.compile(r"^(speaker|spk|voice)[ _-]?\d+$", re.IGNORECASE)


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
    for k, (frame_index, frame) in enumerate(stream_frames(video, step=step)):
        counter.advance(1)
        rows = by_frame.get(frame_index)
        if rows is None:
            continue
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
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


def attribute_utterances(transcript: Transcript, mouths: MouthActivity, frame_s: float) -> list[dict]:
    """For each utterance, the visible track whose mouth is most active during it (None if none visible)."""
    during = transcript.utterance_activity(frame_s, len(mouths.times_s)) > 0  # (utterances, k)
    result = []
    for u, inside in zip(transcript.utterances, during):
        best, best_value, runner_up = None, -np.inf, -np.inf
        for r, tid in enumerate(mouths.track_ids):
            values = mouths.activity[r, inside]
            seen = np.isfinite(values)
            if inside.sum() == 0 or seen.mean() < 0.5:
                continue
            value = float(values[seen].mean())
            if value > best_value:
                best, best_value, runner_up = tid, value, best_value
            elif value > runner_up:
                runner_up = value
        result.append({"start_s": round(u.start_s, 3), "end_s": round(u.end_s, 3), "voice": u.speaker,
                       "track_id": best, "activity": None if best is None else round(best_value, 3),
                       "margin": None if best is None or not np.isfinite(runner_up) else round(best_value - runner_up, 3)})
    return result


class LinkStage:
    """Voices -> tracks from mouth activity and speech activity."""

    def __init__(self, settings: LinkConfig):
        self.settings = settings

    def run(self, video: VideoInfo, tracks: Tracks, transcript: Transcript,
            progress: ProgressHook = quiet) -> SpeakerLinks:
        settings = self.settings
        mouths = measure_mouths(video, tracks, settings.analysis_fps, progress)
        frame_s = duration_of(frame_step(video.fps, settings.analysis_fps), video.fps)
        voices, speaking = transcript.activity(frame_s, len(mouths.times_s))
        n_voices, n_tracks = len(voices), len(mouths.track_ids)
        score = np.zeros((n_voices, n_tracks))
        evidence: dict[tuple[int, int], dict] = {}
        for v in range(n_voices):
            talks = speaking[v] > 0
            others = (speaking.sum(axis=0) - speaking[v]) > 0
            for t in range(n_tracks):
                visible = np.isfinite(mouths.activity[t])
                coverage = float((talks & visible).sum() / max(talks.sum(), 1))
                corr = _correlation(mouths.activity[t, visible], speaking[v, visible])
                score[v, t] = max(corr, 0.0) * coverage
                own = mouths.activity[t, talks & visible]
                other = mouths.activity[t, others & ~talks & visible]
                evidence[v, t] = {
                    "score": round(float(score[v, t]), 4), "correlation": round(corr, 4),
                    "coverage": round(coverage, 4),
                    "activity_while_speaking": round(float(own.mean()), 3) if own.size else None,
                    "activity_while_others_speak": round(float(other.mean()), 3) if other.size else None,
                }
        utterances = attribute_utterances(transcript, mouths, frame_s)
        chosen: dict[int, int] = {}
        if n_voices and n_tracks:
            for v, t in zip(*linear_sum_assignment(-score)):
                if score[v, t] >= settings.min_score and evidence[v, t]["coverage"] >= settings.min_coverage:
                    chosen[int(v)] = int(t)
        links = []
        for v, voice in enumerate(voices):
            mine = [u for u in utterances if u["voice"] == voice]
            ranked = sorted(range(n_tracks), key=lambda t: -score[v, t])
            t = chosen.get(v)
            track_id = None if t is None else mouths.track_ids[t]
            agree = sum(u["track_id"] == track_id for u in mine) / len(mine) if mine and track_id is not None else None
            tracks_won = sorted({u["track_id"] for u in mine if u["track_id"] is not None})
            links.append(SpeakerLink(
                voice=voice, track_id=track_id,
                confidence=float(np.clip(score[v, t], 0.0, 1.0)) if t is not None else
                float(np.clip(1.0 - (score[v, ranked[0]] if ranked else 0.0), 0.0, 1.0)),
                display_name=None if ANONYMOUS_VOICE.match(voice) else voice,
                evidence={
                    "decision": "linked" if t is not None else "unlinked: no visible mouth agrees with this voice",
                    "candidates": {str(mouths.track_ids[c]): evidence[v, c] for c in ranked[:3]},
                    "utterances_on_linked_track": None if agree is None else round(agree, 3),
                    "tracks_most_active_in_its_utterances": tracks_won,
                },
            ))
        meta = {"source": "link stage: mouth activity x speech activity", "analysis_fps": round(1 / frame_s, 4),
                "utterances": utterances}
        return SpeakerLinks(tuple(links), meta)
