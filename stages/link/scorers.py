"""The active-speaker models the link stage can use (``link.asd_model``)."""

from __future__ import annotations

from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.contracts.config import LinkConfig
from socialpipe.pipeline.contracts.progress import ProgressHook
from socialpipe.pipeline.media.models import torch_device
from socialpipe.stages.link.network import load_lr_asd
from socialpipe.stages.link.scores import FrameWatch, TrackScores
from socialpipe.stages.link.speaking import WEIGHTS, check_precision_device, score_tracks


class LrAsdScorer:
    """``lr-asd``: the LR-ASD network (weights bundled, MIT), fed as its published evaluation feeds it
    (:mod:`socialpipe.stages.link.speaking`)."""

    def __init__(self, settings: LinkConfig):
        self.settings = settings

    def check(self) -> None:
        load_lr_asd(self.settings.asd_weights or WEIGHTS)
        # cuda asked for where there is none, or int8 off the CPU: one line now, before any work
        check_precision_device(self.settings.asd_precision, torch_device("link.device", self.settings.device))

    def score(self, video: VideoInfo, tracks: Tracks, progress: ProgressHook,
              watch: FrameWatch | None = None) -> tuple[list[TrackScores], dict]:
        settings = self.settings
        return score_tracks(video, tracks, settings.asd_weights, settings.min_face_px,
                            precision=settings.asd_precision, device=torch_device("link.device", settings.device),
                            progress=progress, watch=watch)
