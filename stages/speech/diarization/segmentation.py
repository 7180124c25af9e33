"""pyannote's segmentation model (the one inside the whisperx wheel): per 5 s window, the activity of up
to 3 local speakers on a grid of frames."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.pipeline.media.models import shared
from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE

SEGMENTATION_ASSET = ("whisperx", "assets", "pytorch_model.bin")


def segmentation_model_path() -> str:
    import whisperx

    path = Path(whisperx.__file__).parent.joinpath(*SEGMENTATION_ASSET[1:])
    if not path.is_file():
        raise SocialpipeError(f"the segmentation model that ships in the whisperx wheel is missing ({path}); "
                              "reinstall whisperx==3.8.6")
    return str(path)

def segmentation_model():
    from pyannote.audio import Model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lightning's checkpoint-upgrade notice
        path = segmentation_model_path()
        model = shared("segmentation", path, lambda: Model.from_pretrained(path))
    return model.eval()

def local_speakers(audio: np.ndarray, window_starts_s: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Segmentation scores (windows, frames, local speakers) for the 5 s windows starting at
    ``window_starts_s`` (seconds into ``audio``; a window running past the end is zero-padded)."""
    import torch

    model = segmentation_model()
    size = int(model.specifications.duration * AUDIO_SAMPLE_RATE)
    out = []
    for first in range(0, len(window_starts_s), batch_size):
        batch = np.zeros((len(window_starts_s[first:first + batch_size]), 1, size), np.float32)
        for i, start in enumerate(window_starts_s[first:first + batch_size]):
            piece = audio[int(round(start * AUDIO_SAMPLE_RATE)):][:size]
            batch[i, 0, :len(piece)] = piece
        with torch.no_grad():
            out.append(model(torch.from_numpy(batch)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, 0), np.float32)
