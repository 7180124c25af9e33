"""Speed of the speech stage with the offline defaults: real-time factors of ASR and diarization.

    python benchmarks/speech.py [--loops 4]

Uses the bundled sample's audio joined end to end ``loops`` times. Loads the libraries and
models first and reports that start-up time on its own (it does not grow with the audio),
then times ASR and diarization on the audio, all in this one run, and prints each one's
real-time factor (audio seconds per wall second) and the whole stage's, with and without
start-up.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parent.parent / "sample_videos" / "conversation.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=4, help="copies of the sample's audio joined end to end")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from socialpipe.pipeline.config import SpeechConfig
    from socialpipe.pipeline.video import AUDIO_SAMPLE_RATE, probe, read_audio

    audio = np.tile(read_audio(probe(SAMPLE)), args.loops)
    seconds = len(audio) / AUDIO_SAMPLE_RATE
    settings = SpeechConfig()

    started = time.perf_counter()
    import pyannote.audio  # noqa: F401  (the heavy import: lightning)
    import resemblyzer  # noqa: F401

    from socialpipe.stages import speech

    speech.load_whisper(settings)
    startup_s = time.perf_counter() - started

    started = time.perf_counter()
    words, _ = speech.transcribe(audio, settings)
    asr_s = time.perf_counter() - started
    started = time.perf_counter()
    annotation = speech.diarize_offline(audio, settings)
    diarization_s = time.perf_counter() - started

    total = asr_s + diarization_s
    print(f"audio: {seconds:.1f} s (the sample x{args.loops}); {len(words)} words, {len(annotation.labels())} voices")
    print(f"  start-up (imports, models)  {startup_s:6.2f} s")
    print(f"  ASR                          {asr_s:6.2f} s  {seconds / asr_s:5.1f}x real time")
    print(f"  diarization                  {diarization_s:6.2f} s  {seconds / diarization_s:5.1f}x real time")
    print(f"  stage without start-up       {total:6.2f} s  {seconds / total:5.1f}x real time (goal: at least 4x)")
    print(f"  stage with start-up          {total + startup_s:6.2f} s  {seconds / (total + startup_s):5.1f}x real time")


if __name__ == "__main__":
    main()
