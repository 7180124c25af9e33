"""The offline diarizer: who speaks when, overlaps included, from models that ship inside pip packages."""

from __future__ import annotations

import numpy as np

from socialpipe.pipeline.contracts.config import VOICE_EMBEDDINGS, SpeechConfig
from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE
from socialpipe.stages.speech.blocks import BLOCK_CONTEXT_S, BLOCK_S, audio_blocks
from socialpipe.stages.speech.diarization.clustering import cluster_voices
from socialpipe.stages.speech.diarization.embedding import LocalSpeakerEmbedder
from socialpipe.stages.speech.diarization.segmentation import local_speakers, segmentation_model, segmentation_model_path
from socialpipe.stages.speech.diarization.vad import speech_regions

PART_MARGIN = 0.1  # a piece moves to another voice when it is this much more similar to it (cosine)
MIN_SPEECH_SHARE = 0.2  # a voice needs this share of its time inside silero VAD's speech (speech_gate)
MAX_CLUSTERED = 2000  # at most this many local-speaker embeddings are clustered; the rest join the voices found


class OfflineDiarizer:
    """Who speaks when, overlaps included, from bundled models only, fed block by block.

    Per block: pyannote's segmentation model (inside the whisperx wheel) scores 5 s windows every
    ``segmentation_step_s`` for up to 3 local speakers each, and each local speaker is embedded with
    the ``speech.voice_embedding`` model (``LocalSpeakerEmbedder``). At the end: the clean embeddings are clustered into voices
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

    @staticmethod
    def check(settings: SpeechConfig) -> None:
        """The segmentation model and the voice embedding are installed (a one-line error when not)."""
        segmentation_model_path(settings.segmentation)
        check = getattr(VOICE_EMBEDDINGS.get(settings.voice_embedding), "check", None)
        if check is not None:
            check()

    def __init__(self, settings: SpeechConfig):
        self.settings = settings
        model = segmentation_model(settings.segmentation)
        self.window_s = float(model.specifications.duration)
        self.step_s = settings.segmentation_step_s
        self.scores: list[np.ndarray] = []
        self.embedder = LocalSpeakerEmbedder(VOICE_EMBEDDINGS.build(settings.voice_embedding))
        self.voice_model = settings.voice_embedding  # the embedding behind ``voice_embeddings``
        self.windows = 0
        self.frame_s = 0.0
        self.speech: list[tuple[float, float]] = []  # silero VAD's speech regions, seconds
        self.centroids = np.zeros((0, 0), np.float32)  # one unit voice embedding per voice found
        self.voice_embeddings: dict[str, np.ndarray] = {}  # the final labels' embeddings, after ``finish``

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
        scores = local_speakers(audio, starts, name=self.settings.segmentation)
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
        self.centroids = centroids

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
        names = {label: f"SPEAKER_{int(label):02d}" for label in annotation.labels()}
        self.voice_embeddings = {name: self.centroids[int(label)] for label, name in names.items()}
        return annotation.rename_labels(names)

def diarize_offline(audio: np.ndarray, settings: SpeechConfig):
    """pyannote.core Annotation of who speaks when in an array of samples (the stage streams instead)."""
    diarizer = OfflineDiarizer(settings)
    diarizer.add_all(audio)
    return diarizer.finish()
