"""Naming voices and persons: by hand (--name, --names), and from a gallery of face photos and voice samples
matched by embedding; names reach every output, and a label that is not the run's is a one-line error."""

from __future__ import annotations

import json
import shutil
import wave

import numpy as np
import pytest

from socialpipe.pipeline.contracts.artifacts import Names, SpeakerLink, SpeakerLinks, Tracks, Transcript, Utterance
from socialpipe.pipeline.contracts.config import Config
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.formats import load_transcript
from socialpipe.pipeline.run.naming import match_voices, parse_names, read_gallery, resolve_names
from tests.conftest import SAMPLE_VIDEO
from tests.stages.test_speech import espeak


def _links() -> SpeakerLinks:
    """SPEAKER_00 and SPEAKER_01 are one person (tracks 1, 2: person 1), SPEAKER_02 is person 2, SPEAKER_03 off
    screen."""
    return SpeakerLinks((SpeakerLink("SPEAKER_00", 1), SpeakerLink("SPEAKER_01", 2), SpeakerLink("SPEAKER_02", 3),
                         SpeakerLink("SPEAKER_03", None)), person_of_track={1: 1, 2: 1, 3: 2})


def test_a_person_s_name_names_all_its_voices_and_a_voice_s_name_names_that_voice():
    links = _links().named({"PERSON_01": "Alice", "SPEAKER_03": "Narrator", "PERSON_2": "Bob"})
    assert [links.person_label(v) for v in ("SPEAKER_00", "SPEAKER_01", "SPEAKER_02", "SPEAKER_03")] == \
        ["Alice", "Alice", "Bob", "Narrator"]
    again = SpeakerLinks.from_json(json.loads(json.dumps(links.to_json())))
    assert again.person_names == {1: "Alice", 2: "Bob"} and again.person_label("SPEAKER_01") == "Alice"
    with pytest.raises(InputError, match=r"'PERSON_07' is neither a voice nor a person of this run; expected one of "
                                         r"\['SPEAKER_00'"):
        _links().named({"PERSON_07": "Carol"})
    with pytest.raises(InputError, match="expected LABEL=NAME"):
        parse_names(("SPEAKER_00",))


def test_cli_names_reach_the_transcript_files_the_viewer_and_inspect(socialpipe, sample_gt_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sample_gt_run, run)
    names = tmp_path / "names.yaml"
    names.write_text("Bob: Robert\n", encoding="utf-8")
    truth = ["--tracks", "sample_videos/conversation.tracks.json", "--transcript",
             "sample_videos/conversation.transcript.json", "--links", "sample_videos/conversation.links.json"]
    result = socialpipe("run", SAMPLE_VIDEO, "--out", run, *truth, "--until", "link", "--name", "Alice=Alicia",
                        "--names", names, "--output-format", "txt")
    assert result.code == 0, result
    assert Names.from_json(json.loads((run / "names.json").read_text())).names == {"Bob": "Robert",
                                                                                   "Alice": "Alicia"}
    text = (run / "transcript.txt").read_text()
    assert "[Alicia]:" in text and "[Robert]:" in text and "[Alice]:" not in text
    assert "Alicia" in load_transcript(run / "transcript.vtt").speakers
    from socialpipe.pipeline.presentation.report import load_run
    from socialpipe.pipeline.presentation.viewer import view_data

    data = view_data(load_run(run))
    assert {u["name"] for u in data["utterances"]} >= {"Alicia", "Robert"}
    # the same run without names: the names are gone from every file
    assert socialpipe("run", SAMPLE_VIDEO, "--out", run, *truth, "--until", "link").code == 0
    assert not (run / "names.json").exists() and "Alicia" not in (run / "transcript.vtt").read_text()
    bad = socialpipe("run", SAMPLE_VIDEO, "--out", run, *truth, "--until", "link", "--name", "Zed=Z")
    assert bad.code == 2 and "'Zed' is neither a voice nor a person of this run" in bad.err
    assert "neither a voice" in bad.err.strip().splitlines()[-1]  # one line, after the progress lines
    early = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "x", "--until", "speech", "--name", "A=B")
    assert early.code == 2 and "expected --until link or later" in early.err


def _wav(path, audio: np.ndarray):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


def test_voice_samples_name_the_voice_they_sound_like(tmp_path):
    """Two espeak voices embedded as the speech stage keeps them; a sample of other words in each voice names
    that voice, and a sample of a third voice names none (with its nearest voice and similarity said)."""
    from socialpipe.pipeline.contracts.config import VOICE_EMBEDDINGS

    def embedding(audio):
        model = VOICE_EMBEDDINGS.build("resemblyzer")
        model.add_block(audio)
        model.queue(np.arange(0, len(audio) / 16000, 0.01), "v")
        return model.finish()["v"].tolist()

    heard = {"SPEAKER_00": espeak("The weather is lovely today and we should walk.", "en-us+f3", 70),
             "SPEAKER_01": espeak("I would rather stay at home and read a book.", "en-us+m3", 30)}
    transcript = Transcript.from_utterances(
        [Utterance(0.0, 1.0, "SPEAKER_00", "a"), Utterance(1.0, 2.0, "SPEAKER_01", "b")],
        {"voice_embeddings": {"model": "resemblyzer", "vectors": {v: embedding(a) for v, a in heard.items()}}})
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    _wav(gallery / "Alice.wav", espeak("Shall we go to the market after lunch?", "en-us+f3", 70))
    _wav(gallery / "Bob.wav", espeak("No, the market is far too crowded on a Sunday.", "en-us+m3", 30))
    names, evidence = match_voices(read_gallery(gallery), transcript)
    assert names == {"SPEAKER_00": "Alice", "SPEAKER_01": "Bob"}
    assert all(e["similarity"] >= e["threshold"] for e in evidence)


def test_a_gallery_photo_names_the_person_whose_face_it_is(tmp_path):
    """The astronaut's face seen in two shots (one person, two tracks); her photo in the gallery names that
    person; a photo without a face names nobody and says so; a folder with neither photos nor sounds is an
    error."""
    from skimage import data

    from socialpipe.pipeline.media.video import probe
    from socialpipe.stages.people import PeopleStage

    face = data.astronaut()
    video_path = _two_shots(tmp_path, face[30:230, 140:340])
    tracks: Tracks = PeopleStage(Config().people).detect(probe(video_path))
    assert tracks.meta["identity"]["embeddings"], "the people stage keeps each track's face embedding"
    person = next(iter(tracks.persons.values()))
    links = SpeakerLinks((SpeakerLink("SPEAKER_00", tracks.track_ids[0]),), person_of_track=dict(tracks.persons))
    gallery = tmp_path / "gallery"
    (gallery / "Eileen").mkdir(parents=True)
    from PIL import Image

    Image.fromarray(face).save(gallery / "Eileen" / "portrait.jpg")
    Image.fromarray(data.chelsea()).save(gallery / "Cat.png")
    names = resolve_names({}, read_gallery(gallery), tracks, None, links, Config())
    assert names.names == {f"PERSON_{person:02d}": "Eileen"}
    by_name = {m["name"]: m for m in names.matches}
    assert by_name["Eileen"]["distance"] <= by_name["Eileen"]["threshold"]
    assert by_name["Cat"]["matched"] is None and "no face" in by_name["Cat"]["why"]
    assert links.named(names.names).person_label("SPEAKER_00") == "Eileen"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no photos"):
        read_gallery(tmp_path / "empty")


def _two_shots(tmp_path, face):
    from tests.conftest import video_from_frames

    first = np.zeros((360, 640, 3), np.uint8)
    first[:] = (30, 60, 120)
    second = np.zeros_like(first)
    second[:] = (200, 180, 150)
    first[80:280, 40:240] = face
    second[100:300, 400:600] = face
    return video_from_frames(tmp_path / "two_shots.mp4", [first] * 15 + [second] * 15, fps=10.0)
