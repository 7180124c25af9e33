"""The answer stage end to end on tiny models of each family, its baselines, and its failures."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from socialpipe.pipeline.contracts.artifacts import SpeakerLink, SpeakerLinks, load_json
from socialpipe.pipeline.contracts.config import AnswerConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.pipeline.contracts.formats import load_links, load_tracks, load_transcript
from socialpipe.pipeline.media.video import probe, uniform_frame_indices
from socialpipe.stages.answer.stage import AnswerStage, build_scene, box_text, draw_boxes, load_model, question_window
from tests.conftest import GROUND_TRUTH_ARGS, reachable, SAMPLE_LINKS, SAMPLE_TRACKS, SAMPLE_TRANSCRIPT, SAMPLE_VIDEO
from tests.tiny_models import internvl, llava_next_video, qwen2_5_vl

OPTIONS = ("Alice", "Bob", "Carol")


@pytest.fixture(scope="module")
def sample():
    return (probe(SAMPLE_VIDEO), load_tracks(SAMPLE_TRACKS, fps=None), load_transcript(SAMPLE_TRANSCRIPT),
            load_links(SAMPLE_LINKS))


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    return qwen2_5_vl(tmp_path_factory.mktemp("models") / "qwen")


def test_run_answers_on_the_sample_with_a_local_model(socialpipe, qwen_folder, tmp_path):
    """All four stages for real: people, speech and link on the offline models, then the answer."""
    out = tmp_path / "run"
    result = socialpipe("run", SAMPLE_VIDEO, "--out", out, "--question",
                        "Who left the room at 00:18?", *[a for o in OPTIONS for a in ("--option", o)],
                        "--model", qwen_folder)
    assert result.code == 0, result
    answer = json.loads((out / "answer.json").read_text())
    assert answer["text"] in OPTIONS and answer["options"] == list(OPTIONS) and len(answer["option_scores"]) == 3
    diagnostics = answer["diagnostics"]
    assert diagnostics["variant"] == "align" and diagnostics["aligned_rows"] > 0
    assert diagnostics["attn_max_after"] >= diagnostics["attn_max_before"]
    assert result.out.strip() == answer["text"]
    assert diagnostics["heatmap"]["file"] == "attention.png"
    assert diagnostics["heatmap"]["speaker"] in diagnostics["speakers_with_boxes"]
    assert (out / "attention.png").stat().st_size > 1000
    manifest = json.loads((out / "manifest.json").read_text())
    assert [manifest["stages"][s]["source"].split(" ")[0] for s in ("people", "speech", "link", "answer")] == \
        ["people", "speech", "link", "answer"]
    assert all(13.0 <= t <= 23.1 for t in diagnostics["frame_times_s"])  # around the 00:18 the question names


@pytest.mark.parametrize("build", [qwen2_5_vl, llava_next_video, internvl], ids=["qwen2_5_vl", "llava_next_video",
                                                                               "internvl"])
def test_every_variant_answers_with_every_family(build, sample, tmp_path):
    loaded = load_model(AnswerConfig(model=str(build(tmp_path / "model"))))
    video, tracks, transcript, links = sample
    for variant in ("none", "box", "visual", "align"):
        stage = AnswerStage(AnswerConfig(model="tiny", variant=variant, num_frames=4), loaded=loaded)
        answer = stage.ask(video, tracks, transcript, links, "Who speaks first?", OPTIONS)
        assert answer.chosen_option is not None and answer.text == OPTIONS[answer.chosen_option]
        assert all(np.isfinite(answer.option_scores))
        assert ("attn_max_after" in answer.diagnostics) == (variant == "align")


def test_open_question_generates_text(qwen_folder, sample):
    video, tracks, transcript, links = sample
    stage = AnswerStage(AnswerConfig(model=str(qwen_folder), num_frames=4))
    answer = stage.ask(video, tracks, transcript, links, "What is happening?")
    assert answer.text and answer.chosen_option is None and answer.option_scores is None


def test_baselines_change_what_the_model_sees(sample):
    video, tracks, transcript, links = sample
    scene = build_scene(video, tracks, transcript, links, "Who left?", 4, 2.2)
    assert scene.boxes.box_of("Dana", 0) is None and scene.boxes.box_of("Alice", 0) is not None  # off screen: no box
    assert "Dana [" in "\n".join(scene.lines)
    text = box_text(scene, (video.width, video.height))
    assert "Alice: frame 1 [" in text and "640x360" in text
    drawn = draw_boxes(scene)
    assert not np.array_equal(drawn[0], scene.frames[0])


def test_the_prompt_names_persons_two_voices_of_one_person_are_one_speaker_with_one_box(sample):
    """Alice's and Bob's voices both linked to track 1 (one person heard as two voices), Carol's to track 3: the
    prompt's lines say PERSON_01 for both voices, and the boxes are PERSON_01's (track 1) and PERSON_02's."""
    from socialpipe.pipeline.contracts.artifacts import Transcript

    video, tracks, transcript, _ = sample
    anonymous = {"Alice": "SPEAKER_00", "Bob": "SPEAKER_01", "Carol": "SPEAKER_02", "Dana": "SPEAKER_03"}
    heard = Transcript.from_utterances([dataclasses.replace(u, speaker=anonymous[u.speaker])
                                        for u in transcript.utterances])
    links = SpeakerLinks((SpeakerLink("SPEAKER_00", 1), SpeakerLink("SPEAKER_01", 1), SpeakerLink("SPEAKER_02", 3),
                          SpeakerLink("SPEAKER_03", None)), person_of_track={1: 1, 2: 3, 3: 2})
    scene = build_scene(video, tracks, heard, links, "Who left?", 4, 2.2)
    assert set(scene.line_speakers) == {"PERSON_01", "PERSON_02", "SPEAKER_03"}
    assert all(line.split(" [")[0] in {"PERSON_01", "PERSON_02", "SPEAKER_03"} for line in scene.lines)
    assert set(scene.boxes.labels) == {"PERSON_01", "PERSON_02"}
    t = next(t for t in range(4) if scene.boxes.box_of("PERSON_01", t) is not None)
    frame = uniform_frame_indices(video, 4)[t]
    assert np.allclose(scene.boxes.box_of("PERSON_01", t),
                       tracks.speaker_box(1, frame, video.width, video.height, 2.2))


def test_speakers_without_boxes_or_tracks_still_get_an_answer(qwen_folder, sample):
    video, _, transcript, _ = sample
    stage = AnswerStage(AnswerConfig(model=str(qwen_folder), num_frames=4))
    unlinked = SpeakerLinks(tuple(SpeakerLink(v, None) for v in transcript.speakers))
    answer = stage.ask(video, None, transcript, unlinked, "Who left?", OPTIONS)
    assert answer.text in OPTIONS and answer.diagnostics["aligned_rows"] == 0


def test_question_window():
    class Video:
        duration_s = 40.0

    assert question_window("What happens at 00:18?", Video) == (13.0, 23.0)
    assert question_window("What happens?", Video) == (0.0, 40.0)
    assert question_window("At 12:00 what?", Video) == (0.0, 40.0)  # past the end: the whole clip


@pytest.mark.skipif(reachable("huggingface.co"), reason="this machine reaches the hub, so there is no offline error")
def test_offline_without_weights_stops_after_the_perception_artifacts(socialpipe, tmp_path):
    out = tmp_path / "run"
    result = socialpipe("run", SAMPLE_VIDEO, "--out", out, *GROUND_TRUTH_ARGS, "--question", "Who left?")
    assert result.code == 2
    assert "answer model 'Qwen/Qwen2.5-VL-3B-Instruct' is not on this machine" in result.err
    assert "--model DIR" in result.err
    assert {"people.json", "speech.json", "links.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "answer.json").exists()


def test_a_missing_local_folder_is_a_clear_error():
    with pytest.raises(SocialpipeError, match="no such folder"):
        load_model(AnswerConfig(model="./no/such/model"))


def test_answer_json_round_trips(socialpipe, qwen_folder, tmp_path):
    from socialpipe.pipeline.contracts.artifacts import Answer

    out = tmp_path / "run"
    assert socialpipe("run", SAMPLE_VIDEO, "--out", out, *GROUND_TRUTH_ARGS, "--question", "Who?", "--option", "A",
                      "--option", "B", "--model", qwen_folder, "--set", "answer.variant=none").code == 0
    answer = load_json(Answer, out / "answer.json")
    assert answer.model == str(qwen_folder) and answer.diagnostics["variant"] == "none"
