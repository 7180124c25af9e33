"""A pyannote.audio diarization pipeline from the hub (HF_TOKEN for gated ones) or a local folder, as a
diarizer: it is fed the stage's blocks like any other and runs on the whole recording at the end."""

from __future__ import annotations

import os

import numpy as np

from socialpipe.pipeline.contracts.config import SpeechConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE


class WholeRecording:
    """A diarizer that needs the whole recording at once: it keeps each block's own samples (the
    recording's audio, float32, in memory: 230 MB an hour) and diarizes them all in ``finish``."""

    window_s = 0.0  # it needs no audio past a block's end

    def __init__(self, settings: SpeechConfig):
        self.settings = settings
        self.pieces: list[np.ndarray] = []

    def add(self, audio: np.ndarray, audio_start_s: float, block_start_s: float, block_end_s: float | None) -> None:
        first = round((block_start_s - audio_start_s) * AUDIO_SAMPLE_RATE)
        last = None if block_end_s is None else round((block_end_s - audio_start_s) * AUDIO_SAMPLE_RATE)
        self.pieces.append(audio[first:last])

    def recording(self) -> np.ndarray:
        """Everything added, joined (and let go of)."""
        audio = np.concatenate(self.pieces) if self.pieces else np.zeros(0, np.float32)
        self.pieces = []
        return audio


class PyannoteDiarizer(WholeRecording):
    """``speech.diarizer: pyannote``: the pipeline named by ``speech.diarization_model``."""

    def finish(self):
        return diarize_pretrained(self.recording(), self.settings)


def diarize_pretrained(audio: np.ndarray, settings: SpeechConfig):
    """The pipeline ``speech.diarization_model`` (hub id or folder) on an array of samples: a pyannote.core Annotation."""
    import torch
    from pyannote.audio import Pipeline

    if not settings.trust_pickled_weights:
        raise SocialpipeError(f"diarization pipeline {settings.diarization_model!r} loads pickled checkpoints, which "
                              "run code when loaded, and socialpipe does not load pickles by default; for a pipeline "
                              "you trust set speech.trust_pickled_weights=true (configs/hub.yaml does), or use "
                              "speech.diarizer=offline")
    try:
        pipeline = Pipeline.from_pretrained(settings.diarization_model, token=os.environ.get("HF_TOKEN"))
    except Exception as exc:  # huggingface_hub, pyannote and torch raise many types
        pipeline, error = None, exc
    if pipeline is None:
        raise SocialpipeError(
            f"diarization pipeline {settings.diarization_model!r} could not be loaded ({type(error).__name__}); it "
            "needs a connected machine and HF_TOKEN with the model's terms accepted, or a local folder; offline, use "
            "speech.diarizer=offline")
    kwargs = {k: v for k, v in (("num_speakers", settings.num_speakers), ("min_speakers", settings.min_speakers),
                                ("max_speakers", settings.max_speakers)) if v is not None}
    output = pipeline({"waveform": torch.from_numpy(audio)[None], "sample_rate": AUDIO_SAMPLE_RATE}, **kwargs)
    return getattr(output, "speaker_diarization", output)
