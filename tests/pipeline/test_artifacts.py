from __future__ import annotations

import numpy as np
import pytest

from socialpipe.pipeline.contracts.artifacts import (
    Answer,
    SpeakerLink,
    SpeakerLinks,
    Tracks,
    Transcript,
    Utterance,
    VideoInfo,
    Word,
    load_json,
)
from socialpipe.pipeline.contracts.errors import InputError

VIDEO = VideoInfo(path="v.mp4", fps=25.0, frame_count=100, width=640, height=360, duration_s=4.0, has_audio=True)


def make_tracks(rows=None, fps=25.0, **kwargs) -> Tracks:
    rows = rows if rows is not None else [
        {"track_id": 1, "frame_index": 0, "xyxy": [10, 10, 50, 60], "confidence": 0.9},
        {"track_id": 2, "frame_index": 0, "xyxy": [100, 20, 150, 80], "confidence": 0.8},
        {"track_id": 1, "frame_index": 1, "xyxy": [12, 10, 52, 60], "confidence": 0.95},
    ]
    return Tracks.from_rows(rows, fps=fps, **kwargs)


def make_transcript() -> Transcript:
    return Transcript.from_utterances([
        Utterance(2.0, 3.0, "Bob", "fine thanks", (Word(2.0, 2.4, "fine"), Word(2.5, 3.0, "thanks", 0.9))),
        Utterance(0.5, 1.5, "Alice", "how are you"),
    ])


def test_tracks_are_sorted_and_indexable():
    tracks = make_tracks()
    assert tracks.frame_index.tolist() == [0, 0, 1]
    assert tracks.track_ids == [1, 2]
    assert len(tracks.for_track(1)) == 2
    assert tracks.at_frame(0).track_id.tolist() == [1, 2]
    assert np.allclose(tracks.time_s, [0.0, 0.0, 0.04])
    assert tracks.kinds == {1: "face", 2: "face"}
    assert tracks.for_track(2).kinds == {2: "face"}


def test_empty_tracks_are_well_formed():
    empty = Tracks.empty(fps=VIDEO.fps)
    assert len(empty) == 0 and empty.track_ids == [] and empty.xyxy.shape == (0, 4)
    empty.validate_against(VIDEO)
    assert Tracks.from_json(empty.to_json()).fps == VIDEO.fps
    with pytest.raises(InputError, match="tracks are at 30 fps but the video is at 25 fps"):
        Tracks.empty(fps=30.0).validate_against(VIDEO)


@pytest.mark.parametrize("row, message", [
    ({"track_id": 1, "frame_index": 0, "xyxy": [50, 10, 10, 60]}, "x2 < x1"),
    ({"track_id": 1, "frame_index": -1, "xyxy": [0, 0, 1, 1]}, "frame indices must be >= 0"),
    ({"track_id": 1, "frame_index": 0, "xyxy": [0, 0, 1, 1], "confidence": 1.5}, "confidence"),
    ({"track_id": 1, "frame_index": 0, "xyxy": [0, 0, float("nan"), 1]}, "finite"),
])
def test_tracks_reject_bad_rows(row, message):
    with pytest.raises(InputError, match=message):
        make_tracks([row])


def test_tracks_reject_two_boxes_on_one_frame_and_unknown_kind():
    row = {"track_id": 1, "frame_index": 3, "xyxy": [0, 0, 1, 1]}
    with pytest.raises(InputError, match="same frame"):
        make_tracks([row, row])
    with pytest.raises(InputError, match="unknown track kinds"):
        make_tracks([row], kinds={1: "dog"})


@pytest.mark.parametrize("xyxy, frame, message", [
    ([600, 10, 700, 60], 0, "outside the 640x360 frame"),
    ([-20, 10, 30, 60], 0, "outside the 640x360 frame"),
    ([10, 10, 50, 60], 100, "video has frames 0..99"),
])
def test_tracks_validate_against_video(xyxy, frame, message):
    with pytest.raises(InputError, match=message):
        make_tracks([{"track_id": 1, "frame_index": frame, "xyxy": xyxy}]).validate_against(VIDEO)


def test_landmarks_survive_json_and_missing_rows_stay_nan(tmp_path):
    landmarks = [[20, 30], [40, 30], [30, 40], [22, 50], [38, 50]]
    tracks = make_tracks([
        {"track_id": 1, "frame_index": 0, "xyxy": [10, 10, 50, 60], "landmarks": landmarks},
        {"track_id": 1, "frame_index": 1, "xyxy": [10, 10, 50, 60]},
    ], kinds={1: "person"})
    back = load_json(Tracks, tracks.save(tmp_path / "t.json"))
    assert back.kinds == {1: "person"}
    assert np.allclose(back.landmarks[0], landmarks)
    assert np.isnan(back.landmarks[1]).all()
    assert np.allclose(back.xyxy, tracks.xyxy) and np.allclose(back.confidence, tracks.confidence)


@pytest.mark.parametrize("start, end, speaker, message", [
    (-1.0, 2.0, "A", "expected times >= 0"),
    (3.0, 2.0, "A", "ends .* before it starts"),
    (1.0, 2.0, " ", "empty speaker label"),
    (float("inf"), 2.0, "A", "non-numeric times"),
])
def test_utterance_rejects_bad_times_and_labels(start, end, speaker, message):
    with pytest.raises(InputError, match=message):
        Utterance(start, end, speaker)


def test_transcript_orders_utterances_and_counts_talk_time():
    transcript = make_transcript()
    assert [u.speaker for u in transcript.utterances] == ["Alice", "Bob"]
    assert transcript.speakers == ["Alice", "Bob"]
    assert transcript.talk_time_s() == pytest.approx({"Alice": 1.0, "Bob": 1.0})
    with pytest.raises(InputError, match="sorted"):
        Transcript(tuple(reversed(transcript.utterances)))


def test_speaker_turns_are_the_speech_activity_and_survive_json():
    words = (Word(0.1, 0.5, "hello", 0.9),)
    utterances = [Utterance(0.1, 0.5, "A", "hello", words)]
    turns = [Utterance(2.0, 3.0, "B"), Utterance(0.0, 1.0, "A"), Utterance(0.5, 2.5, "B")]  # overlap, B wordless
    transcript = Transcript.from_utterances(utterances, {"source": "t"}, turns)
    assert [t.start_s for t in transcript.speaker_turns] == [0.0, 0.5, 2.0]
    assert transcript.speakers == ["A", "B"]  # B is heard without recognised words
    assert transcript.talk_time_s() == pytest.approx({"A": 1.0, "B": 2.5})  # from the turns, not the words
    voices, active = transcript.activity(frame_s=0.5, frame_count=6)
    assert voices == ["A", "B"] and active[:, 1].tolist() == [1.0, 1.0]  # both voices at 0.75 s
    back = Transcript.from_json(transcript.to_json())
    assert back == transcript
    plain = Transcript.from_utterances(utterances)
    assert "speaker_turns" not in plain.to_json() and plain.speech_turns == plain.utterances


def test_transcript_validates_against_video_duration():
    Transcript.from_utterances([Utterance(3.0, 4.02, "A")]).validate_against(VIDEO)  # within tolerance
    with pytest.raises(InputError, match="ends at 5.00s but the video lasts 4.00s"):
        Transcript.from_utterances([Utterance(3.0, 5.0, "A")]).validate_against(VIDEO)


def test_transcript_json_round_trip_keeps_words(tmp_path):
    transcript = make_transcript()
    back = load_json(Transcript, transcript.save(tmp_path / "t.json"))
    assert back.utterances == transcript.utterances


def test_links_validate_tracks_and_voices():
    tracks, transcript = make_tracks(), make_transcript()
    good = SpeakerLinks((SpeakerLink("Alice", 1), SpeakerLink("Bob", None)))
    good.validate_against(tracks, transcript)
    assert good.track_for("Alice") == 1 and good.track_for("Bob") is None
    with pytest.raises(InputError, match="linked to track 7, which does not exist"):
        SpeakerLinks((SpeakerLink("Alice", 7),)).validate_against(tracks, transcript)
    with pytest.raises(InputError, match="voice 'Zed', which the transcript does not have"):
        SpeakerLinks((SpeakerLink("Zed", 1),)).validate_against(tracks, transcript)
    with pytest.raises(InputError, match="linked more than once"):
        SpeakerLinks((SpeakerLink("Alice", 1), SpeakerLink("Alice", 2)))


def test_links_read_plain_mapping_and_round_trip(tmp_path):
    plain = SpeakerLinks.from_json({"Alice": 1, "Bob": None})
    assert [(link.voice, link.track_id) for link in plain.links] == [("Alice", 1), ("Bob", None)]
    full = SpeakerLinks((SpeakerLink("Alice", 1, 0.7, "Alice Smith", {"corr": 0.8}),))
    assert load_json(SpeakerLinks, full.save(tmp_path / "l.json")) == full


def test_answer_validation_and_round_trip(tmp_path):
    with pytest.raises(InputError, match="question is empty"):
        Answer("  ", "x")
    with pytest.raises(InputError, match="chosen option 3"):
        Answer("q?", "x", options=("a", "b"), chosen_option=3)
    answer = Answer("Who left?", "Carol", ("Alice", "Carol"), 1, (-3.2, -0.4), "tiny", {"attn_max": 0.1})
    assert load_json(Answer, answer.save(tmp_path / "a.json")) == answer


def test_loading_the_wrong_artifact_type_names_both(tmp_path):
    path = make_transcript().save(tmp_path / "t.json")
    with pytest.raises(InputError, match="holds a socialpipe transcript, expected a tracks"):
        load_json(Tracks, path)


def test_transcript_answers_time_questions():
    transcript = Transcript.from_utterances([Utterance(0.0, 2.0, "A", "one"), Utterance(1.5, 3.0, "B", "two"),
                                             Utterance(5.0, 6.0, "A", "three")])
    assert [u.text for u in transcript.speaking_at(1.7)] == ["one", "two"]
    assert [u.text for u in transcript.speaking_at(2.0)] == ["two"]  # an utterance ends where it stops
    assert transcript.speaking_at(4.0) == () and [u.text for u in transcript.speaking_at(5.0)] == ["three"]
    assert [u.text for u in transcript.during(2.5, 5.0)] == ["two", "three"]  # touching counts
    assert transcript.during(3.2, 4.9) == ()
    assert transcript.voice_over(1.0, 3.0) == "B" and transcript.voice_over(3.5, 4.5) is None
    voices, active = transcript.activity(frame_s=1.0, frame_count=7)
    assert voices == ["A", "B"] and active.tolist() == [[1, 1, 0, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0, 0]]
    assert transcript.utterance_activity(1.0, 7)[1].tolist() == [0, 1, 1, 0, 0, 0, 0]


def test_load_json_of_a_part_s_type_names_the_types_it_reads(tmp_path):
    import socialpipe

    path = tmp_path / "x.json"
    path.write_text("{}")
    for part in (socialpipe.Boxes, socialpipe.Utterance, socialpipe.Word):
        with pytest.raises(InputError, match=rf"{part.__name__} is not an artifact file's type; load_json reads one "
                                             r"of VideoInfo, Tracks, Transcript, SpeakerLinks, Names, Answer"):
            socialpipe.load_json(part, path)
