"""Stage 3, link: which visible face tracks own each voice, decided without training, with evidence.

Reads top to bottom:
1. every face track gets a per-frame speaking score from the LR-ASD active-speaker network
   (:mod:`socialpipe.stages.link.speaking`, the network in :mod:`socialpipe.stages.link.network`), fed 25 fps face crops and the audio's MFCCs;
2. per track and voice, the evidence is the share of the track's visible frames on which the
   network says "speaking" while that voice speaks alone, against the share while it does not
   (other voices, or silence);
3. each track goes to the voice it speaks for most clearly, if it clearly speaks for one: a voice
   may own many tracks (one person seen in several shots, or after a gap); a track belongs to at
   most one voice; silent listeners, reaction shots and audiences stay unlinked; a voice with no
   speaking face stays off screen;
4. voices no track speaks for may still be linked by mouth activity (how much the mouth region
   opens and moves, correlated with the voice's speech) where the network's evidence is absent
   (faces too small for it, drawn or animated faces it was not trained on);
5. audio and vision disagreeing is said in the evidence: one voice speaking from two faces seen
   together (the diarization merged two people), or one face speaking for two voices (it split
   one person); with ``link.correct`` the per-utterance attribution and the links follow the faces;
6. each utterance is attributed to the linked track that speaks during it, and the tracks of one
   voice form one person.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from socialpipe.pipeline.artifacts import SpeakerLink, SpeakerLinks, Tracks, Transcript, VideoInfo
from socialpipe.pipeline.config import LinkConfig
from socialpipe.pipeline.progress import Counter, ProgressHook, quiet
from socialpipe.pipeline.timebase import duration_of, frame_step, frame_to_time, time_to_frame
from socialpipe.pipeline.video import stream_frames
from socialpipe.stages.link.network import load_lr_asd
from socialpipe.stages.link.speaking import ASD_FPS, WEIGHTS, TrackScores, score_tracks

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


def mouth_scores(mouths: MouthActivity, speaking: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(voices, tracks) mouth-activity score, correlation and coverage: the correlation of the track's mouth
    activity with the voice's speech while the track is visible, times the share of the voice's speech during
    which it is visible (a person off screen cannot be the one talking)."""
    n_voices, n_tracks = len(speaking), len(mouths.track_ids)
    score, corr, coverage = (np.zeros((n_voices, n_tracks)) for _ in range(3))
    for v in range(n_voices):
        talks = speaking[v] > 0
        for t in range(n_tracks):
            visible = np.isfinite(mouths.activity[t])
            coverage[v, t] = float((talks & visible).sum() / max(talks.sum(), 1))
            corr[v, t] = _correlation(mouths.activity[t, visible], speaking[v, visible])
            score[v, t] = max(corr[v, t], 0.0) * coverage[v, t]
    return score, corr, coverage


@dataclass(frozen=True)
class SpeakingEvidence:
    """Per face track, its speaking scores on the 25 fps grid (NaN where it is not visible or not scored)."""

    track_ids: list[int]
    logits: np.ndarray  # (n_tracks, steps) float32


def speaking_grid(scores: list[TrackScores], track_ids: list[int], steps: int) -> SpeakingEvidence:
    logits = np.full((len(track_ids), steps), np.nan, np.float32)
    row = {t: i for i, t in enumerate(track_ids)}
    for run in scores:
        end = min(run.first_step + len(run.scores), steps)
        if end > run.first_step:
            logits[row[run.track_id], run.first_step:end] = run.scores[:end - run.first_step]
    return SpeakingEvidence(track_ids, logits)


def voice_evidence(grid: SpeakingEvidence, speaking: np.ndarray, settings: LinkConfig) -> list[list[dict]]:
    """For each track and voice: the steps the track is seen while the voice speaks alone, the share of them
    on which the network says speaking, the same share while other voices speak instead, and their difference.
    (Silence is not counter-evidence: a face the network finds speaking in a pause is more often speech the
    diarization missed than a listener.)"""
    alone = (speaking > 0) & (speaking.sum(axis=0, keepdims=True) == 1)
    others = (speaking <= 0) & (speaking.sum(axis=0, keepdims=True) > 0)  # other voices speak, this one does not
    result = []
    for t in range(len(grid.track_ids)):
        seen = np.isfinite(grid.logits[t])
        talking = grid.logits[t] > settings.speaking_threshold
        rows = []
        for v in range(len(speaking)):
            during, outside = alone[v] & seen, others[v] & seen
            share = float(talking[during].mean()) if during.sum() else None
            share_outside = float(talking[outside].mean()) if outside.sum() else None
            rows.append({"seen_steps": int(during.sum()), "speaking_share": share,
                         "speaking_share_otherwise": share_outside,
                         "margin": None if share is None else share - (share_outside or 0.0)})
        result.append(rows)
    return result


def _qualifies(row: dict, settings: LinkConfig) -> bool:
    return (row["seen_steps"] >= settings.min_seen_s * ASD_FPS and row["speaking_share"] is not None
            and row["speaking_share"] >= settings.min_speaking_share and row["margin"] >= settings.min_margin)


def _rounded(row: dict) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}


def visibility(tracks: Tracks, track_ids: list[int], video: VideoInfo, steps: int) -> np.ndarray:
    """(tracks, steps) whether each track has a box on the frame shown at each 25 fps step."""
    shown = time_to_frame(np.arange(steps) / ASD_FPS, video.fps, video.frame_count)
    seen = np.zeros((len(track_ids), steps), bool)
    for i, tid in enumerate(track_ids):
        seen[i] = np.isin(shown, tracks.for_track(tid).frame_index)
    return seen


def attribute_utterances(transcript: Transcript, grid: SpeakingEvidence, seen: np.ndarray,
                         owners: dict[str, list[int]], primary: dict[str, int], correct: bool) -> list[dict]:
    """Each utterance's track: among its voice's tracks seen during at least 30% of it, the one the network finds
    speaking most (with ``correct``), else the voice's main track when seen, else the one seen longest."""
    during = transcript.utterance_activity(1 / ASD_FPS, grid.logits.shape[1]) > 0
    row = {t: i for i, t in enumerate(grid.track_ids)}
    result = []
    for u, inside in zip(transcript.utterances, during):
        shown = {t: int(seen[row[t], inside].sum()) for t in owners.get(u.speaker, []) if t in row}
        shown = {t: n for t, n in shown.items() if n and n >= 0.3 * inside.sum()}
        speaking = {t: grid.logits[row[t], inside & seen[row[t]]] for t in shown}
        speaking = {t: float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else None for t, v in speaking.items()}
        scored = [t for t in shown if speaking[t] is not None]
        best = None
        if shown:
            if correct and scored:
                best = max(scored, key=lambda t: speaking[t])
            elif primary.get(u.speaker) in shown:
                best = primary[u.speaker]
            else:
                best = max(shown, key=shown.get)
        entry = {"start_s": round(u.start_s, 3), "end_s": round(u.end_s, 3), "voice": u.speaker,
                 "track_id": best, "score": None if best is None or speaking[best] is None else round(speaking[best], 3)}
        if correct and len(scored) > 1:  # the voice's faces seen together: follow whichever speaks, moment by moment
            entry["segments"] = _speaking_segments(grid, [row[t] for t in scored], np.flatnonzero(inside))
        result.append(entry)
    return result


SEGMENT_SMOOTH_STEPS = 12  # about half a second: who speaks is decided on scores averaged this long


def _speaking_segments(grid: SpeakingEvidence, rows: list[int], steps: np.ndarray) -> list[dict]:
    """Within an utterance, stretches of ``[start_s, end_s, track_id]`` on which each of the given tracks is the
    one the network finds speaking most (scores averaged over about half a second; unseen counts as silent)."""
    values = np.nan_to_num(grid.logits[np.ix_(rows, steps)], nan=-20.0)
    kernel = np.ones(SEGMENT_SMOOTH_STEPS) / SEGMENT_SMOOTH_STEPS
    smooth = np.stack([np.convolve(v, kernel, mode="same") for v in values])
    winner = smooth.argmax(axis=0)
    segments, start = [], 0
    for k in range(1, len(steps) + 1):
        if k == len(steps) or winner[k] != winner[start]:
            segments.append({"start_s": round(steps[start] / ASD_FPS, 3), "end_s": round((steps[k - 1] + 1) / ASD_FPS, 3),
                             "track_id": grid.track_ids[rows[winner[start]]]})
            start = k
    return segments


def together(seen: np.ndarray, row: dict[int, int], a: int, b: int) -> int:
    """Steps on which tracks a and b are both on screen (scored by the network or not)."""
    return int((seen[row[a]] & seen[row[b]]).sum())


class LinkStage:
    """Voices -> the face tracks that speak them, from active-speaker scores (mouth activity as fallback)."""

    def __init__(self, settings: LinkConfig):
        self.settings = settings

    def check(self) -> None:
        """Before a run writes anything: the active-speaker weights can be read (a one-line InputError if not)."""
        if self.settings.method == "asd":
            load_lr_asd(self.settings.asd_weights or WEIGHTS)

    def run(self, video: VideoInfo, tracks: Tracks, transcript: Transcript,
            progress: ProgressHook = quiet) -> SpeakerLinks:
        settings = self.settings
        started = time.perf_counter()
        steps = max(int(np.ceil(video.duration_s * ASD_FPS)), 1)
        face_ids = [t for t in tracks.track_ids if tracks.kinds[t] == "face"]
        if settings.method == "asd":
            scores, notes = score_tracks(video, tracks, settings.asd_weights, settings.min_face_px,
                                         precision=settings.asd_precision, progress=progress)
        else:
            scores, notes = [], {"head": "off (link.method mouth): mouth activity only"}
        timing = {"asd_s": time.perf_counter() - started, "mouth_s": 0.0}
        row = {t: i for i, t in enumerate(face_ids)}
        grid = speaking_grid(scores, face_ids, steps)
        voices, speaking = transcript.activity(1 / ASD_FPS, steps)
        evidence = voice_evidence(grid, speaking, settings)

        # 1. each track to the voice it speaks for most clearly
        owners: dict[str, list[int]] = {voice: [] for voice in voices}
        how: dict[tuple[str, int], str] = {}
        disagreements: list[dict] = []
        for t, tid in enumerate(face_ids):
            qualified = sorted((v for v in range(len(voices)) if _qualifies(evidence[t][v], settings)),
                               key=lambda v: -evidence[t][v]["margin"])
            if not qualified:
                continue
            owners[voices[qualified[0]]].append(tid)
            how[voices[qualified[0]], tid] = "active speaker"
            if len(qualified) > 1:
                split = [voices[v] for v in qualified]
                disagreements.append({"kind": "two voices on one face", "track_id": tid, "voices": split,
                                      "meaning": "the diarization may have split one person",
                                      "corrected": settings.correct})
                if settings.correct:
                    for v in qualified[1:]:
                        owners[voices[v]].append(tid)
                        how[voices[v], tid] = "active speaker (same face as " + voices[qualified[0]] + ")"

        seen = visibility(tracks, face_ids, video, steps)

        # 2. voices without a speaking face: mouth activity where the network had nothing to say
        mouth = None
        orphans = [v for v, voice in enumerate(voices) if not owners[voice]]
        taken = {t for ids in owners.values() for t in ids}
        if (settings.mouth_fallback or settings.method == "mouth") and orphans and face_ids:
            tick = time.perf_counter()
            mouths = measure_mouths(video, tracks, settings.analysis_fps, progress)
            frame_s = duration_of(frame_step(video.fps, settings.analysis_fps), video.fps)
            _, coarse = transcript.activity(frame_s, len(mouths.times_s))
            mouth = mouth_scores(mouths, coarse)
            timing["mouth_s"] = time.perf_counter() - tick
            free = [t for t, tid in enumerate(mouths.track_ids) if tid not in taken
                    and not self._asd_says_silent(evidence, row[tid], settings)]
            if free:
                sub = mouth[0][np.ix_(orphans, free)]
                for i, j in zip(*linear_sum_assignment(-sub)):
                    v, t = orphans[i], free[j]
                    if mouth[0][v, t] >= settings.min_score and mouth[2][v, t] >= settings.min_coverage:
                        tid = mouths.track_ids[t]
                        owners[voices[v]].append(tid)
                        how[voices[v], tid] = "mouth activity"
                self._more_shots_by_mouth(mouth[1], mouths.track_ids, free, orphans, voices, owners, how, seen, row)

        # 3. one voice speaking from two faces seen together
        for voice, ids in owners.items():
            for i, a in enumerate(ids):
                for b in ids[i + 1:]:
                    if together(seen, row, a, b) >= settings.min_seen_s * ASD_FPS and not any(
                            d["kind"] == "two voices on one face" and d["track_id"] in (a, b) for d in disagreements):
                        disagreements.append({"kind": "one voice on two faces seen together", "voice": voice,
                                              "track_ids": [a, b], "meaning": "the diarization may have merged two "
                                              "people; each utterance follows the face speaking in it"
                                              if settings.correct else "the diarization may have merged two people",
                                              "corrected": settings.correct})

        primary = {voice: max(ids, key=lambda t: self._speaking_steps(grid, row[t], speaking[voices.index(voice)]))
                   for voice, ids in owners.items() if ids}
        utterances = attribute_utterances(transcript, grid, seen, owners, primary, settings.correct)
        persons: dict[int, int] = {}  # the tracks of one voice are one person; a silent face is its own
        for ids in [owners[voice] for voice in voices] + [[tid] for tid in face_ids]:
            if ids:
                known = next((persons[t] for t in ids if t in persons), max(persons.values(), default=0) + 1)
                for t in ids:
                    persons.setdefault(t, known)

        links = []
        for v, voice in enumerate(voices):
            ids = owners[voice]
            ranked = sorted(range(len(face_ids)), key=lambda t: -(evidence[t][v]["margin"] or -1.0))
            candidates = {str(face_ids[t]): _rounded(evidence[t][v]) for t in ranked[:3]}
            if mouth is not None:
                for tid in candidates:
                    m = row[int(tid)]
                    candidates[tid].update(mouth_correlation=round(float(mouth[1][v, m]), 3),
                                           mouth_score=round(float(mouth[0][v, m]), 3))
            mine = [u for u in utterances if u["voice"] == voice]
            if ids:
                best = primary[voice]
                margin = evidence[row[best]][v]["margin"]
                confidence = float(np.clip(margin if how[voice, best].startswith("active") else mouth[0][v, row[best]], 0, 1))
                decision = "linked by " + ", ".join(sorted({how[voice, t] for t in ids}))
            else:
                best, confidence = None, 1.0 - float(np.clip(evidence[ranked[0]][v]["margin"] or 0.0, 0, 1)) if ranked else 1.0
                decision = "unlinked: no visible face speaks with this voice"
            links.append(SpeakerLink(
                voice=voice, track_id=best, track_ids=tuple(sorted(ids)), person_id=None if best is None else persons[best],
                confidence=confidence, display_name=None if ANONYMOUS_VOICE.match(voice) else voice,
                evidence={
                    "decision": decision,
                    "tracks": {str(t): how[voice, t] for t in sorted(ids)},
                    "candidates": candidates,
                    "utterances_with_a_track": round(sum(u["track_id"] is not None for u in mine) / len(mine), 3)
                    if mine else None,
                    "disagreements": [d for d in disagreements if d.get("voice") == voice or voice in d.get("voices", [])],
                },
            ))
        meta = {"source": "link stage: LR-ASD active-speaker scores x speech activity"
                          + (" (mouth activity for voices it left unlinked)" if mouth is not None else ""),
                "speaking": notes, "disagreements": disagreements, "utterances": utterances,
                "person_of_track": {str(t): p for t, p in sorted(persons.items())},
                "speaking_scores": speaking_scores_json(scores, video)}
        timing["link_s"] = time.perf_counter() - started - timing["asd_s"] - timing["mouth_s"]
        meta["timing_s"] = {k: round(v, 4) for k, v in timing.items()}
        return SpeakerLinks(tuple(links), meta)

    def _more_shots_by_mouth(self, correlation: np.ndarray, track_ids: list[int], free: list[int], orphans: list[int],
                             voices: list[str], owners: dict[str, list[int]], how: dict, seen: np.ndarray,
                             row: dict[int, int]) -> None:
        """A voice the mouth fallback linked also takes its person's tracks in other shots: a free track whose
        mouth follows this voice best of all voices, with correlation >= ``link.min_correlation``, and never on
        screen together with the voice's tracks (so at most one face per voice at a time). Best first."""
        linked = {voices[v] for v in orphans if owners[voices[v]]}
        taken = {t for ids in owners.values() for t in ids}
        candidates = []
        for t in free:
            if track_ids[t] in taken:
                continue
            v = int(np.argmax(correlation[:, t]))
            if voices[v] in linked and correlation[v, t] >= self.settings.min_correlation:
                candidates.append((float(correlation[v, t]), voices[v], track_ids[t]))
        for _, voice, tid in sorted(candidates, reverse=True):
            if all(together(seen, row, tid, other) == 0 for other in owners[voice]):
                owners[voice].append(tid)
                how[voice, tid] = "mouth activity (the same person in another shot)"

    @staticmethod
    def _asd_says_silent(evidence: list[list[dict]], t: int, settings: LinkConfig) -> bool:
        """The network saw this face long enough during some voice and found it not speaking: not a fallback
        candidate (a listener whose head moves)."""
        rows = [r for r in evidence[t] if r["speaking_share"] is not None
                and r["seen_steps"] >= settings.min_seen_s * ASD_FPS]
        return bool(rows) and max(r["speaking_share"] for r in rows) < settings.silent_share

    @staticmethod
    def _speaking_steps(grid: SpeakingEvidence, t: int, active: np.ndarray) -> int:
        values = grid.logits[t]
        return int(((values > 0) & (active > 0)).sum()) + int(np.isfinite(values).sum() > 0)


def speaking_scores_json(scores: list[TrackScores], video: VideoInfo) -> dict[str, list]:
    """Per face track, ``[[frame, probability], ...]`` at 25 fps (the frame shown at each step)."""
    out: dict[str, list] = {}
    for run in scores:
        values = 1 / (1 + np.exp(-run.scores.astype(np.float64)))
        frames = time_to_frame((run.first_step + np.arange(len(values))) / ASD_FPS, video.fps, video.frame_count)
        for frame, value in zip(frames.tolist(), values.tolist()):
            if np.isfinite(value):
                out.setdefault(str(run.track_id), []).append([frame, round(value, 3)])
    return out
