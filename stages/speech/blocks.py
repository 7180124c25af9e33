"""Audio in blocks: the speech stage and the diarizers work through a recording a block at a time, so
memory holds one block (and its context) whatever the recording's length."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE

BLOCK_S = 120.0  # the stage works through the audio in blocks this long: memory holds one block
BLOCK_CONTEXT_S = 2.0  # a block's ASR also hears this much audio before and after it


def audio_blocks(chunks: Iterable[np.ndarray], block_s: float, before_s: float,
                 after_s: float) -> Iterator[tuple[float, np.ndarray, float, float | None]]:
    """Consecutive blocks of a stream of audio chunks: (start of the samples in seconds, samples, block
    start, block end or None for the last block). Block k owns [k * block_s, (k + 1) * block_s); its
    samples reach ``before_s`` earlier and ``after_s`` later where the audio has them, so work on a
    block sees its edges in context. Memory holds one block and its context."""
    rate = AUDIO_SAMPLE_RATE
    buffer, buffer_start, block_start = np.zeros(0, np.float32), 0, 0.0
    for chunk in chunks:
        buffer = np.concatenate([buffer, chunk])
        while buffer_start + len(buffer) >= int((block_start + block_s + after_s) * rate):
            low = max(0, int((block_start - before_s) * rate))
            high = int((block_start + block_s + after_s) * rate)
            yield low / rate, buffer[low - buffer_start:high - buffer_start], block_start, block_start + block_s
            block_start += block_s
            drop = max(0, int((block_start - before_s) * rate) - buffer_start)
            buffer, buffer_start = buffer[drop:], buffer_start + drop
    low = max(0, int((block_start - before_s) * rate))
    yield low / rate, buffer[low - buffer_start:], block_start, None


def is_silent(audio: np.ndarray) -> bool:
    return len(audio) == 0 or float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < 1e-4
