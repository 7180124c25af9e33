from __future__ import annotations

import numpy as np
import pytest

from socialpipe.pipeline.contracts.artifacts import Transcript, Utterance
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.formats import (
    load_links,
    load_tracks,
    load_transcript,
    read_mot,
    read_rttm,
    read_srt,
    read_vtt,
    write_mot,
    write_rttm,
    write_vtt,
)
from tests.conftest import SAMPLE_TRACKS, SAMPLE_TRANSCRIPT
from tests.pipeline.test_artifacts import make_tracks


def transcript_with_names() -> Transcript:
    return Transcript.from_utterances([
        Utterance(0.25, 1.5, "SPEAKER_00", "Hello there, <friend> & co."),
        Utterance(1.0, 2.75, "SPEAKER_01", "Hi!"),
        Utterance(3.125, 4.0, "SPEAKER_00", "Bye."),
    ])


def test_rttm_holds_the_speaker_turns_overlaps_included(tmp_path):
    turns = [Utterance(0.0, 2.0, "A"), Utterance(1.0, 3.0, "B"), Utterance(4.0, 5.0, "C")]
    transcript = Transcript.from_utterances([Utterance(0.2, 1.5, "A", "words")], speaker_turns=turns)
    back = read_rttm(write_rttm(transcript, tmp_path / "s.rttm"))
    assert [(u.start_s, u.end_s, u.speaker) for u in back.utterances] == [(t.start_s, t.end_s, t.speaker) for t in turns]


def test_mot_round_trip(tmp_path):
    tracks = make_tracks()
    back = read_mot(write_mot(tracks, tmp_path / "t.csv"), fps=tracks.fps)
    assert back.track_id.tolist() == tracks.track_id.tolist()
    assert back.frame_index.tolist() == tracks.frame_index.tolist()
    assert np.allclose(back.xyxy, tracks.xyxy, atol=0.01)
    assert np.allclose(back.confidence, tracks.confidence, atol=1e-4)
    first_line = (tmp_path / "t.csv").read_text().splitlines()[0]
    assert first_line.startswith("1,1,10.00,10.00,40.00,50.00,")  # frames from 1, tlwh


def test_mot_unknown_confidence_reads_as_one(tmp_path):
    (tmp_path / "gt.txt").write_text("3,7,1,2,10,20,-1,-1,-1,-1\n")
    tracks = read_mot(tmp_path / "gt.txt", fps=30.0, kind="person")
    assert tracks.confidence.tolist() == [1.0] and tracks.frame_index.tolist() == [2]
    assert tracks.kinds == {7: "person"} and tracks.xyxy.tolist() == [[1, 2, 11, 22]]


def test_rttm_round_trip(tmp_path):
    transcript = transcript_with_names()
    back = read_rttm(write_rttm(transcript, tmp_path / "s.rttm", uri="my video"))
    assert [u.speaker for u in back.utterances] == [u.speaker for u in transcript.utterances]
    assert np.allclose([(u.start_s, u.end_s) for u in back.utterances],
                       [(u.start_s, u.end_s) for u in transcript.utterances], atol=1e-3)
    assert (tmp_path / "s.rttm").read_text().split()[1] == "my_video"


def test_rttm_labels_with_spaces_are_written_with_underscores(tmp_path):
    transcript = Transcript.from_utterances([Utterance(0, 1, "Speaker 2")])
    assert read_rttm(write_rttm(transcript, tmp_path / "s.rttm")).speakers == ["Speaker_2"]


def test_vtt_round_trip_with_voice_spans(tmp_path):
    transcript = transcript_with_names()
    path = write_vtt(transcript, tmp_path / "s.vtt")
    assert "<v SPEAKER_00>Hello there, &lt;friend&gt; &amp; co.</v>" in path.read_text()
    back = read_vtt(path)
    assert [(u.start_s, u.end_s, u.speaker, u.text) for u in back.utterances] == \
        [(u.start_s, u.end_s, u.speaker, u.text) for u in transcript.utterances]


def test_vtt_reads_classes_and_mm_ss_times(tmp_path):
    (tmp_path / "a.vtt").write_text("WEBVTT\n\nNOTE made by hand\n\n01:02.500 --> 01:04.000 align:start\n"
                                    "<v.loud Mrs. Wolowitz>Howard!</v>\n")
    (u,) = read_vtt(tmp_path / "a.vtt").utterances
    assert (u.start_s, u.end_s, u.speaker, u.text) == (62.5, 64.0, "Mrs. Wolowitz", "Howard!")


def test_srt_with_name_prefixes_including_tvqa_style(tmp_path):
    (tmp_path / "s.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,500\n(Sheldon:) Hello, Penny.\n\n"
        "2\n00:00:03,000 --> 00:00:05,000\nPenny: Hi. It is 10:30\nalready.\n- Leonard: Oh.\n")
    transcript = read_srt(tmp_path / "s.srt")
    assert [(u.start_s, u.speaker, u.text) for u in transcript.utterances] == [
        (1.0, "Sheldon", "Hello, Penny."), (3.0, "Leonard", "Oh."), (3.0, "Penny", "Hi. It is 10:30 already.")]


@pytest.mark.parametrize("name, content, message", [
    ("bad.json", "{not json", "not valid JSON"),
    ("list.json", "[1, 2]", "expected a JSON object"),
    ("missing.json", '{"socialpipe": "tracks", "tracks": []}', "missing field 'fps'"),
    ("bad.csv", "1,2,3\n", "line 1: .* is not a MOT row"),
    ("zero.csv", "0,1,1,1,5,5\n", "MOT frames count from 1"),
    ("neg.csv", "1,1,1,1,-5,5\n", "negative box size"),
])
def test_malformed_tracks_name_file_and_expectation(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        load_tracks(tmp_path / name, fps=25.0)


@pytest.mark.parametrize("name, content, message", [
    ("bad.rttm", "SPEAKER f 1 abc 1.0 <NA> <NA> A <NA> <NA>\n", "line 1: .* not an RTTM SPEAKER line"),
    ("short.rttm", "SPEAKER f 1 0.5\n", "not an RTTM SPEAKER line"),
    ("neg.rttm", "SPEAKER f 1 0.5 -1.0 <NA> <NA> A <NA> <NA>\n", "negative duration"),
    ("negstart.rttm", "SPEAKER f 1 -0.5 1.0 <NA> <NA> A <NA> <NA>\n", "expected times >= 0"),
    ("junk.rttm", "hello world\n", "not an RTTM SPEAKER line"),
    ("nohead.vtt", "00:00.000 --> 00:01.000\n<v A>hi\n", "begin with 'WEBVTT'"),
    ("nospeaker.vtt", "WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n", "names no speaker"),
    ("reversed.vtt", "WEBVTT\n\n00:02.000 --> 00:01.000\n<v A>hi\n", "ends .* before it starts"),
    ("badtime.vtt", "WEBVTT\n\n00:xx.000 --> 00:01.000\n<v A>hi\n", "bad cue timing"),
    ("empty.srt", "just text\n", "no SRT cues"),
    ("t.json", '{"utterances": [{"start_s": 1, "speaker": "A"}]}', "missing field 'end_s'"),
    ("t.txt", "", "unknown transcript format '.txt'"),
])
def test_malformed_transcripts_name_file_and_expectation(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        load_transcript(tmp_path / name)


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_transcript(tmp_path / "nope.vtt")
    with pytest.raises(InputError, match="no such file"):
        load_links(tmp_path / "nope.json")
    with pytest.raises(InputError, match="carries no frame rate"):
        load_tracks(tmp_path / "nope.csv", fps=None)


def test_sample_ground_truth_loads():
    assert len(load_tracks(SAMPLE_TRACKS, fps=None).track_ids) >= 3
    assert len(load_transcript(SAMPLE_TRANSCRIPT).speakers) >= 4


def test_vtt_keeps_any_utterance_whole(tmp_path):
    """Blank lines, markup, arrows and edge spaces in the text, line breaks and brackets in a voice name."""
    nasty = Transcript.from_utterances([
        Utterance(0.0, 1.0, "Dr. X\nY <b>", "line one\n\nline three --> <i>&amp;</i>"),
        Utterance(1.0, 2.0, "A", "  padded  "),
        Utterance(2.0, 3.0, "B", ""),
    ])
    back = read_vtt(write_vtt(nasty, tmp_path / "n.vtt"))
    assert [(u.speaker, u.text) for u in back.utterances] == [(u.speaker, u.text) for u in nasty.utterances]
