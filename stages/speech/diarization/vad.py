"""Voice activity from silero VAD (the ONNX model inside the faster-whisper wheel)."""

from __future__ import annotations

import numpy as np

from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE


def speech_regions(audio: np.ndarray, audio_start_s: float, block_start_s: float,
                   block_end_s: float | None) -> list[tuple[float, float]]:
    """Silero VAD's speech regions (seconds) inside [block_start_s, block_end_s) of ``audio``, which starts at
    ``audio_start_s``; the model ships inside the faster-whisper wheel (ONNX)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if not len(audio):
        return []
    end = float("inf") if block_end_s is None else block_end_s
    regions = []
    for region in get_speech_timestamps(audio, VadOptions(), sampling_rate=AUDIO_SAMPLE_RATE):
        start_s = max(audio_start_s + region["start"] / AUDIO_SAMPLE_RATE, block_start_s)
        end_s = min(audio_start_s + region["end"] / AUDIO_SAMPLE_RATE, end)
        if end_s > start_s:
            regions.append((start_s, end_s))
    return regions
