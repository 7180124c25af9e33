"""The evidence the link decision reads, computed from the active-speaker scores and the voices' speech
on the 25 fps grid: per face track and voice, how often the face speaks while the voice speaks alone,
against while other voices speak instead; and where each track is seen."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.contracts.config import LinkConfig
from socialpipe.pipeline.contracts.timebase import time_to_frame
from socialpipe.stages.link.scores import ASD_FPS, TrackScores


@dataclass(frozen=True)
class SpeakingEvidence:
    """Per face track, its speaking scores on the 25 fps grid (NaN where it is not visible or not scored)."""

    track_ids: list[int]
    logits: np.ndarray  # (n_tracks, steps) float32


@dataclass(frozen=True)
class VoiceEvidence:
    """One face track against one voice."""

    seen_steps: int  # steps the track is seen while the voice speaks alone
    speaking_share: float | None  # share of them on which the face speaks (None: never seen then)
    speaking_share_otherwise: float | None  # the same share while other voices speak instead (None: seen then
    # for under link.min_seen_s, too little to say anything)
    margin: float | None  # speaking_share - speaking_share_otherwise (a missing one counts 0)
    seen_steps_otherwise: int = 0  # steps the track is seen while other voices speak instead

    def qualifies(self, settings: LinkConfig) -> bool:
        """Seen long enough, speaking often enough, and clearly more than while others speak."""
        return (self.seen_steps >= settings.min_seen_s * ASD_FPS and self.speaking_share is not None
                and self.speaking_share >= settings.min_speaking_share and self.margin >= settings.min_margin)

    def to_json(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def speaking_grid(scores: list[TrackScores], track_ids: list[int], steps: int) -> SpeakingEvidence:
    logits = np.full((len(track_ids), steps), np.nan, np.float32)
    row = {t: i for i, t in enumerate(track_ids)}
    for run in scores:
        end = min(run.first_step + len(run.scores), steps)
        if end > run.first_step:
            logits[row[run.track_id], run.first_step:end] = run.scores[:end - run.first_step]
    return SpeakingEvidence(track_ids, logits)


def voice_evidence(grid: SpeakingEvidence, speaking: np.ndarray, settings: LinkConfig) -> list[list[VoiceEvidence]]:
    """For each track and voice: the steps the track is seen while the voice speaks alone, the share of them
    on which the network says speaking, the same share while other voices speak instead, and their difference.
    (Silence is not counter-evidence: a face the network finds speaking in a pause is more often speech the
    diarization missed than a listener.) The share while others speak counts only when the track is seen then
    for ``link.min_seen_s``, as the share itself needs: a shot that starts a few steps before the voice's turn
    (or a turn that the diarization ends a little late) sees a speaker "speaking while another voice speaks"
    on those steps, and two steps at 100% used to cancel a whole line's 100%."""
    alone = (speaking > 0) & (speaking.sum(axis=0, keepdims=True) == 1)
    others = (speaking <= 0) & (speaking.sum(axis=0, keepdims=True) > 0)  # other voices speak, this one does not
    enough = settings.min_seen_s * ASD_FPS
    result = []
    for t in range(len(grid.track_ids)):
        seen = np.isfinite(grid.logits[t])
        talking = grid.logits[t] > settings.speaking_threshold
        rows = []
        for v in range(len(speaking)):
            during, outside = alone[v] & seen, others[v] & seen
            share = float(talking[during].mean()) if during.sum() else None
            share_outside = float(talking[outside].mean()) if outside.sum() >= max(enough, 1) else None
            rows.append(VoiceEvidence(int(during.sum()), share, share_outside,
                                      None if share is None else share - (share_outside or 0.0), int(outside.sum())))
        result.append(rows)
    return result


def visibility(tracks: Tracks, track_ids: list[int], video: VideoInfo, steps: int) -> np.ndarray:
    """(tracks, steps) whether each track has a box on the frame shown at each 25 fps step."""
    shown = time_to_frame(np.arange(steps) / ASD_FPS, video.fps, video.frame_count)
    seen = np.zeros((len(track_ids), steps), bool)
    for i, tid in enumerate(track_ids):
        seen[i] = np.isin(shown, tracks.for_track(tid).frame_index)
    return seen


def together(seen: np.ndarray, row: dict[int, int], a: int, b: int) -> int:
    """Steps on which tracks a and b are both on screen (scored by the network or not)."""
    return int((seen[row[a]] & seen[row[b]]).sum())


def speaking_steps(grid: SpeakingEvidence, t: int, active: np.ndarray) -> int:
    """Steps on which track row ``t`` speaks while the voice (``active``) does, plus one if it was scored at all."""
    values = grid.logits[t]
    return int(((values > 0) & (active > 0)).sum()) + int(np.isfinite(values).sum() > 0)


def speaking_probabilities(scores: list[TrackScores], video: VideoInfo) -> dict[int, list[tuple[int, float]]]:
    """Per face track, ``(frame, probability)`` at 25 fps (the frame shown at each step)."""
    out: dict[int, list[tuple[int, float]]] = {}
    for run in scores:
        values = 1 / (1 + np.exp(-run.scores.astype(np.float64)))
        frames = time_to_frame((run.first_step + np.arange(len(values))) / ASD_FPS, video.fps, video.frame_count)
        for frame, value in zip(frames.tolist(), values.tolist()):
            if np.isfinite(value):
                out.setdefault(run.track_id, []).append((frame, round(value, 3)))
    return out
