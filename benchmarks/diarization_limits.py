"""Where the offline diarization's error on real meetings comes from: its speaker count or its voices.

    python benchmarks/diarization_limits.py

The offline diarization makes two decisions per frame: how many people speak (pyannote's speaker
counting on the segmentation model's local speakers) and who they are (each window's local speakers
given to voices found by clustering voice embeddings, CAM++ by default). This script runs the diarization once
per recording and then swaps either decision, or both, for the reference:

- *reference count*: the number of reference speakers at each frame, also capped at 2 and 3 (the
  segmentation model has 3 local speakers per window, and on these recordings it never reports more
  than 2 active at once above ``overlap_threshold``);
- *reference voices*: each window's local speakers go one-to-one (Hungarian) to the reference speakers
  whose speech they overlap most, instead of to the clustered voices.

It prints pooled DER (no collar, and a +-0.25 s collar, overlap scored) with its miss / false alarm /
confusion parts for the AMI meeting chunks (``../shared/data/ami-debug``, annotated 0-30 s) and
pyannote.audio's two-speaker sample, and the share of reference speech in frames with more speakers
than the model reports at once. Everything else (turn smoothing, speech gate) is the stage's own.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speaker_count import ami_chunks, pyannote_sample  # noqa: E402

COUNTS = {"model's count": "model", "reference count, at most 2": 2, "reference count, at most 3": 3,
          "reference count": None}  # where each row's count comes from: the model, or the reference capped


def reference_activity(reference, frames, n_frames: int) -> tuple[np.ndarray, list]:
    """(frames, reference speakers) booleans on a pyannote SlidingWindow of frames, and the speakers."""
    speakers = sorted(reference.labels())
    active = np.zeros((n_frames, len(speakers)), bool)
    for segment, _, speaker in reference.itertracks(yield_label=True):
        first, last = frames.closest_frame(segment.start), frames.closest_frame(segment.end)
        active[max(first, 0):min(last, n_frames), speakers.index(speaker)] = True
    return active, speakers


def reference_voices(diarizer, reference):
    """The local speakers' scores moved to the reference speakers they overlap most, one-to-one per window:
    a SlidingWindowFeature (windows, frames, reference speakers) shaped like ``voice_activity``'s."""
    from pyannote.core import SlidingWindow, SlidingWindowFeature
    from scipy.optimize import linear_sum_assignment

    local = diarizer.local_scores()
    n_windows, n_frames, _ = local.data.shape
    frames = SlidingWindow(start=0.0, duration=diarizer.frame_s, step=diarizer.frame_s)
    shift = diarizer.step_s / diarizer.frame_s
    truth, speakers = reference_activity(reference, frames, int(np.ceil((n_windows - 1) * shift)) + n_frames + 1)
    voices = np.full((n_windows, n_frames, len(speakers)), np.nan, np.float32)
    for c in range(n_windows):
        first = int(round(c * shift))
        active = (local.data[c] > diarizer.settings.activity_threshold).astype(np.float32)  # (frames, local)
        overlap = active.T @ truth[first:first + n_frames].astype(np.float32)  # (local, speakers)
        for k, v in zip(*linear_sum_assignment(-overlap)):
            if overlap[k, v] > 0:
                voices[c, :, v] = local.data[c, :, k]
    return SlidingWindowFeature(voices, local.sliding_window)


def reference_count(count, reference, cap: int | None):
    """The count of reference speakers per frame of ``count`` (the model's), at most ``cap``."""
    from pyannote.core import SlidingWindowFeature

    truth, _ = reference_activity(reference, count.sliding_window, len(count.data))
    number = truth.sum(axis=1, keepdims=True)
    return SlidingWindowFeature((number if cap is None else np.minimum(number, cap)).astype(np.uint8),
                                count.sliding_window)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from pyannote.core import SlidingWindowFeature
    from pyannote.metrics.diarization import DiarizationErrorRate

    from socialpipe.pipeline.contracts.config import SpeechConfig
    from socialpipe.stages.speech import OfflineDiarizer

    settings = SpeechConfig()
    sets = {"AMI meeting chunks, pooled": ami_chunks(), "pyannote.audio sample": [pyannote_sample()]}
    for name, recordings in sets.items():
        if not recordings:
            print(f"{name}: data not found, left out")
            continue
        metrics = {(c, v, collar): DiarizationErrorRate(collar=collar, skip_overlap=False)
                   for c in COUNTS for v in ("model", "reference") for collar in (0.0, 0.5)}
        beyond, speech, most = 0.0, 0.0, 0
        for _, audio, reference, uem in recordings:
            diarizer = OfflineDiarizer(settings)
            diarizer.add_all(audio)
            scored = reference.crop(uem) if uem else reference
            voices = {"model": diarizer.voice_activity(), "reference": reference_voices(diarizer, reference)}
            local = diarizer.local_scores().data
            most = max(most, int((local > settings.overlap_threshold).sum(axis=2).max(initial=0)))
            model_count = diarizer.speaker_count(local.shape[2])  # at most the local speakers: not capped
            frames = model_count.sliding_window
            counts = {c: model_count.data if cap == "model" else reference_count(model_count, scored, cap).data
                      for c, cap in COUNTS.items()}
            for v, activity in voices.items():
                if v == "reference":  # annotation() keeps a voice embedding per label: the reference has none
                    diarizer.centroids = np.zeros((activity.data.shape[2], 1), np.float32)
                for c, number in counts.items():
                    count = SlidingWindowFeature(np.minimum(number, activity.data.shape[2]).astype(np.uint8), frames)
                    hypothesis = diarizer.annotation(activity, count)
                    for collar in (0.0, 0.5):
                        metrics[c, v, collar](reference, hypothesis, uem=uem)
            number = counts["reference count"][:, 0]
            speech += float(number.sum())
            beyond += float(np.maximum(number.astype(int) - 2, 0).sum())
        print(f"\n{name}: the segmentation model reports at most {most} speakers at once "
              f"(overlap_threshold {settings.overlap_threshold}); reference speech beyond 2 at once: "
              f"{beyond / max(speech, 1):.1%}\n")
        print("| count | voices | DER no collar | miss | false alarm | confusion | DER collar +-0.25 s |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for c in COUNTS:
            for v in ("model", "reference"):
                metric = metrics[c, v, 0.0]
                parts = metric.accumulated_
                total = max(parts["total"], 1e-9)
                print(f"| {c} | {v}'s voices | {abs(metric):.3f} | {parts['missed detection'] / total:.3f} | "
                      f"{parts['false alarm'] / total:.3f} | {parts['confusion'] / total:.3f} | "
                      f"{abs(metrics[c, v, 0.5]):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
