"""What an active-speaker model gives the link stage, whichever model it is: per face track, speaking
scores (logits: above 0 speaking) on a 25 fps grid. Models are registered by name in
``socialpipe.pipeline.contracts.config.ASD_MODELS`` (setting ``link.asd_model``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.contracts.progress import ProgressHook

ASD_FPS = 25  # the grid of the speaking scores (and LR-ASD's own frame rate)
FrameWatch = Callable[[int, np.ndarray], None]  # (frame index, RGB frame): other work sharing a model's decode


@dataclass(frozen=True)
class TrackScores:
    """A run's per-step speaking scores (logits: above 0 speaking) at 25 fps from ``first_step / 25`` s."""

    track_id: int
    first_step: int
    scores: np.ndarray

    @property
    def start_s(self) -> float:
        return self.first_step / ASD_FPS


class ActiveSpeakerScorer(Protocol):
    """An active-speaker model, built from the link settings."""

    def check(self) -> None:
        """Before a run writes anything: what the model needs is there (a one-line InputError if not)."""

    def score(self, video: VideoInfo, tracks: Tracks, progress: ProgressHook,
              watch: FrameWatch | None = None) -> tuple[list[TrackScores], dict]:
        """Speaking scores of every face track (one entry per run of visibility), and notes for the artifact.
        ``watch``, if given, is called with every frame the model decodes, in order, so that other work on the
        frames (the mouth fallback) can share the decode; a model that decodes none, or only some, may skip it."""
