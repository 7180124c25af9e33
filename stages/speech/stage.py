"""The speech stage: words (ASR), who speaks when (a diarizer), and words joined into speaker-labelled
utterances, block by block over the video's audio stream."""

from __future__ import annotations

from typing import Any

from socialpipe.pipeline.contracts.artifacts import SpeakerTurn, Transcript, VideoInfo, Word
from socialpipe.pipeline.contracts.config import SpeechConfig
from socialpipe.pipeline.contracts.errors import InputError, NoAudioError, SocialpipeError
from socialpipe.pipeline.contracts.stage import StageInputs
from socialpipe.pipeline.contracts.progress import Counter, ProgressHook, Timer, quiet
from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE, stream_audio
from socialpipe.stages.speech.asr import english_only, transcribe
from socialpipe.stages.speech.blocks import BLOCK_CONTEXT_S, BLOCK_S, audio_blocks, is_silent
from socialpipe.stages.speech.diarization import check_diarizer, make_diarizer
from socialpipe.stages.speech.words import assign_words, build_utterances, drop_wordless_blips


class SpeechStage:
    """Speaker-labelled utterances with word times from a video's audio."""

    def __init__(self, settings: SpeechConfig):
        self.settings = settings

    def check(self, inputs: StageInputs) -> None:
        """Fail at once, before any work, on what would fail later: no audio, or a CUDA device asked for
        on a machine without one."""
        video = inputs.video
        if not video.has_audio:
            raise NoAudioError(f"{video.path}: has no audio track; the speech stage needs one "
                               "(or give the transcript with --transcript FILE)")
        language, model = self.settings.language, self.settings.asr_model
        if language not in (None, "en") and english_only(model):
            raise InputError(f"speech.language is {language!r} but speech.asr_model {model!r} knows English only (it "
                             f"would write {language!r} speech as English words); expected speech.asr_model set to a "
                             "multilingual model (e.g. small, large-v3-turbo, or a local CTranslate2 folder of one)")
        check_diarizer(self.settings)  # the chosen diarizer's models are installed and it can run here
        if self.settings.device.startswith("cuda"):
            import ctranslate2

            if ctranslate2.get_cuda_device_count() == 0:
                raise SocialpipeError(f"speech.device is {self.settings.device}, but this machine has no CUDA device; "
                                      "expected speech.device=cpu (with speech.compute_type=int8) here")

    def run(self, inputs: StageInputs, progress: ProgressHook = quiet) -> Transcript:
        return self.listen(inputs.video, progress)

    def listen(self, video: VideoInfo, progress: ProgressHook = quiet) -> Transcript:
        """Words and speaker turns, block by block (BLOCK_S of audio at a time, streamed from the video):
        memory holds one block whatever the recording's length (a diarizer that needs the whole
        recording, such as a hub pipeline, keeps its audio)."""
        settings = self.settings
        diarizer = make_diarizer(settings)
        timer = Timer("asr", "diarization")
        words: list[Word] = []
        notes: dict[str, Any] = {"word_times": None}
        heard = False
        counter = Counter(progress, "speech", round(video.duration_s, 1), "s")
        for audio_start, samples, block_start, block_end in audio_blocks(stream_audio(video), BLOCK_S,
                                                                          BLOCK_CONTEXT_S, max(diarizer.window_s, BLOCK_CONTEXT_S)):
            with timer("asr"):
                heard = heard or not is_silent(samples)
                listen = samples if block_end is None else \
                    samples[:int((block_end + BLOCK_CONTEXT_S - audio_start) * AUDIO_SAMPLE_RATE)]
                if len(listen) and not is_silent(listen):
                    found, notes = transcribe(listen, settings)
                    words += [Word(w.start_s + audio_start, w.end_s + audio_start, w.text, w.score) for w in found
                              if block_start <= audio_start + (w.start_s + w.end_s) / 2 < (block_end or float("inf"))]
            block_done = min(block_end or video.duration_s, video.duration_s)
            counter.advance((block_done - counter.done) / 2)  # words heard: half the block (a short clip is one)
            with timer("diarization"):
                diarizer.add(samples, audio_start, block_start, block_end)
            counter.advance(block_done - counter.done)
        with timer("diarization"):
            diarization = diarizer.finish() if words or heard else None
        counter.finish()
        turns = [] if diarization is None else [SpeakerTurn(float(seg.start), float(seg.end), str(label))
                                                for seg, _, label in diarization.itertracks(yield_label=True)]
        turns = drop_wordless_blips(turns, words)
        utterances = build_utterances(words, assign_words(words, Transcript.from_utterances(turns)))
        meta = {"source": f"speech stage: {settings.asr_model} + {settings.diarizer} diarization", **notes,
                "diarization": settings.diarizer, "timing_s": timer.seconds()}
        vectors = getattr(diarizer, "voice_embeddings", {})
        if vectors:  # for later stages to compare voices with people or with enrolment samples
            meta["voice_embeddings"] = {"model": getattr(diarizer, "voice_model", settings.voice_embedding),
                                        "vectors": {label: [round(float(x), 5) for x in vector]
                                                    for label, vector in sorted(vectors.items())}}
        return Transcript.from_utterances(utterances, meta, turns)
