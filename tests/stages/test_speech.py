from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from socialpipe.pipeline.artifacts import Transcript, Utterance, Word
from socialpipe.pipeline.config import SpeechConfig
from socialpipe.pipeline.errors import NoAudioError
from socialpipe.pipeline.formats import load_transcript, read_rttm
from socialpipe.pipeline.scoring import score_speech
from socialpipe.pipeline.video import probe
from socialpipe.stages.speech import SpeechStage, assign_words, build_utterances, diarize_offline
from tests.conftest import SAMPLE_TRANSCRIPT, SAMPLE_VIDEO, reachable


def video_with_audio(tmp_path: Path, samples: np.ndarray, name: str = "a.mp4", rate: int = 16000) -> Path:
    wav = tmp_path / f"{name}.wav"
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    seconds = max(len(samples) / rate, 0.2)
    out = tmp_path / name
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", f"color=c=gray:size=64x36:rate=10:duration={seconds}",
                    "-i", str(wav), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)],
                   check=True)
    return out


def espeak(text: str, voice: str = "en-us+f3", pitch: int = 60) -> np.ndarray:
    result = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "--stdout", text], check=True,
                            capture_output=True)
    samples = np.frombuffer(result.stdout[44:], np.int16).astype(np.float32) / 32768  # 22.05 kHz
    from scipy.signal import resample_poly

    return resample_poly(samples, 160, 221).astype(np.float32)


@pytest.fixture(scope="module")
def sample_transcript():
    return SpeechStage(SpeechConfig()).run(probe(SAMPLE_VIDEO))


def test_sample_meets_der_and_wer_targets(sample_transcript):
    scores = score_speech(sample_transcript, load_transcript(SAMPLE_TRANSCRIPT), collar_s=0.25)
    assert scores["der"] <= 0.15 and scores["wer"] <= 0.25, scores
    assert scores["predicted_speakers"] == 4


def test_sample_transcript_has_word_times_and_says_how(sample_transcript):
    assert sample_transcript.meta["word_times"] == "faster-whisper"
    words = [w for u in sample_transcript.utterances for w in u.words]
    assert len(words) > 60
    assert all(u.start_s <= w.start_s <= w.end_s <= u.end_s + 1e-6 for u in sample_transcript.utterances for w in u.words)
    assert set(sample_transcript.meta["timing_s"]) == {"asr_s", "diarization_s"}


def test_offline_diarization_on_real_speech_from_pyannote():
    import pyannote.audio
    import soundfile

    folder = Path(pyannote.audio.__file__).parent / "sample"
    audio, rate = soundfile.read(folder / "sample.wav", dtype="float32")
    assert rate == 16000
    from socialpipe.pipeline.artifacts import Transcript, Utterance

    annotation = diarize_offline(audio, SpeechConfig())
    hypothesis = Transcript.from_utterances([Utterance(s.start, s.end, label)
                                             for s, _, label in annotation.itertracks(yield_label=True)])
    scores = score_speech(hypothesis, read_rttm(folder / "sample.rttm"), collar_s=0.25)
    assert scores["der"] <= 0.20, scores


def test_silence_gives_an_empty_transcript(tmp_path):
    video = probe(video_with_audio(tmp_path, np.zeros(16000 * 3, np.float32)))
    transcript = SpeechStage(SpeechConfig()).run(video)
    assert len(transcript) == 0 and transcript.speakers == []


def test_single_speaker(tmp_path):
    speech = np.concatenate([espeak("The weather is lovely today."), np.zeros(8000, np.float32),
                             espeak("We should go for a walk in the park.")])
    transcript = SpeechStage(SpeechConfig()).run(probe(video_with_audio(tmp_path, speech)))
    assert len(transcript.speakers) == 1
    assert "weather" in " ".join(u.text.lower() for u in transcript.utterances)


def test_audio_shorter_than_a_second(tmp_path):
    speech = espeak("Yes.")
    assert len(speech) < 16000
    transcript = SpeechStage(SpeechConfig()).run(probe(video_with_audio(tmp_path, speech)))
    assert len(transcript.speakers) <= 1
    assert all(u.end_s <= 1.5 for u in transcript.utterances)


def test_video_without_audio_is_a_clear_error(silent_video):
    with pytest.raises(NoAudioError, match="has no audio track; the speech stage needs one"):
        SpeechStage(SpeechConfig()).run(probe(silent_video))


def test_language_is_passed_to_the_recogniser(tmp_path):
    video = probe(video_with_audio(tmp_path, espeak("Good morning.")))
    transcript = SpeechStage(SpeechConfig(language="en")).run(video)
    assert transcript.meta["language_requested"] == "en" and transcript.meta["language"] == "en"
    detected = SpeechStage(SpeechConfig(language=None)).run(video)
    assert detected.meta["language_requested"] is None and detected.meta["language"] == "en"


def test_words_go_to_the_voice_covering_most_of_them():
    words = [Word(0.0, 0.4, "hi", 0.9), Word(0.5, 1.0, "there", 0.9), Word(1.1, 1.5, "yes", 0.9),
             Word(5.0, 5.2, "late", 0.9)]
    turns = Transcript.from_utterances([Utterance(0.0, 0.8, "A"), Utterance(0.7, 2.0, "B"), Utterance(4.0, 4.9, "B")])
    speakers = assign_words(words, turns)
    assert speakers == ["A", "A", "B", "B"]  # "there" overlaps A 0.3 s, B 0.3 s -> first max; "late" is nearest B
    utterances = build_utterances(words, speakers)
    assert [(u.speaker, u.text) for u in utterances] == [("A", "hi there"), ("B", "yes"), ("B", "late")]
    assert utterances[0].words[1].text == "there"


def test_a_pyannote_pipeline_is_not_loaded_unless_trusted(tmp_path):
    from socialpipe.pipeline.errors import SocialpipeError
    from socialpipe.stages.speech import diarize_pretrained

    with pytest.raises(SocialpipeError, match="loads pickled checkpoints.*speech.trust_pickled_weights=true"):
        diarize_pretrained(np.zeros(16000, np.float32), SpeechConfig(diarization=str(tmp_path)))


@pytest.mark.skipif(reachable("huggingface.co"), reason="this machine reaches the hub, so there is no offline error")
def test_a_trusted_hub_pipeline_offline_is_a_clear_error():
    from socialpipe.pipeline.errors import SocialpipeError
    from socialpipe.stages.speech import diarize_pretrained

    settings = SpeechConfig(diarization="pyannote/speaker-diarization-community-1", trust_pickled_weights=True)
    with pytest.raises(SocialpipeError, match="could not be loaded.*connected machine and HF_TOKEN.*offline"):
        diarize_pretrained(np.zeros(16000, np.float32), settings)
