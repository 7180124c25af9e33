"""``run --output-format``: the transcript as srt, vtt, txt, tsv, WhisperX json and rttm with the final speaker
labels, and WhisperX's json read back as a ground-truth transcript."""

from __future__ import annotations

import json

import pytest

from socialpipe.pipeline.contracts.artifacts import (AttributedSegment, SpeakerLink, SpeakerLinks, Transcript,
                                                     Utterance, UtteranceAttribution, Word)
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.formats import load_transcript
from socialpipe.pipeline.contracts.outputs import OUTPUT_FORMATS, labelled, write_outputs
from tests.conftest import SAMPLE_LINKS, SAMPLE_TRACKS, SAMPLE_TRANSCRIPT, SAMPLE_VIDEO


def test_a_ground_truth_run_writes_every_format_and_each_reads_back(socialpipe, tmp_path):
    out = tmp_path / "run"
    result = socialpipe("run", SAMPLE_VIDEO, "--out", out, "--tracks", SAMPLE_TRACKS, "--transcript", SAMPLE_TRANSCRIPT,
                        "--links", SAMPLE_LINKS, "--until", "link", "--output-format", "all")
    assert result.code == 0, result
    truth = load_transcript(SAMPLE_TRANSCRIPT)
    for kind in ("srt", "vtt", "json", "rttm"):
        back = load_transcript(out / f"transcript.{kind}")
        assert back.speakers == truth.speakers, kind
        assert [(round(u.start_s, 2), u.speaker) for u in back.utterances] == \
               [(round(u.start_s, 2), u.speaker) for u in truth.utterances], kind
        if kind != "rttm":
            assert [u.text for u in back.utterances] == [u.text for u in truth.utterances], kind
    rows = (out / "transcript.tsv").read_text().splitlines()
    assert rows[0] == "start\tend\tspeaker\ttext" and len(rows) == len(truth.utterances) + 1
    first = truth.utterances[0]
    assert rows[1].split("\t") == [str(round(first.start_s * 1000)), str(round(first.end_s * 1000)), first.speaker,
                                   first.text]
    lines = (out / "transcript.txt").read_text().splitlines()
    assert lines[0] == f"[{first.speaker}]: {first.text}"
    whisperx = json.loads((out / "transcript.json").read_text())
    assert set(whisperx) >= {"segments", "word_segments"} and whisperx["segments"][0]["speaker"] == first.speaker
    # the run folder with these files in it is still a run: inspect reads it
    assert socialpipe("inspect", out, "--no-render").code == 0


def test_output_formats_need_a_transcript(socialpipe, tmp_path):
    result = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "run", "--tracks", SAMPLE_TRACKS, "--until", "people",
                        "--output-format", "srt")
    assert result.code == 2 and "--output-format needs the speech stage's transcript" in result.err


def test_labels_are_persons_two_voices_of_one_person_share_one():
    """A and B are one person's voices (tracks 1 and 2, person 1); C is spoken from track 3 (person 2); D has no
    face and keeps its label."""
    transcript = Transcript.from_utterances([
        Utterance(0.0, 2.0, "A", "one", (Word(0.0, 0.5, "one", 0.9),)), Utterance(3.0, 5.0, "B", "two"),
        Utterance(6.0, 8.0, "C", "three"), Utterance(9.0, 10.0, "D", "four")])
    links = SpeakerLinks(
        (SpeakerLink("A", 1, track_ids=(1,)), SpeakerLink("B", 2, track_ids=(2,)), SpeakerLink("C", 3, track_ids=(3,)),
         SpeakerLink("D", None)),
        attributions=(UtteranceAttribution(0.0, 2.0, "A", 1), UtteranceAttribution(3.0, 5.0, "B", 2),
                      UtteranceAttribution(6.0, 8.0, "C", 3, segments=(AttributedSegment(6.0, 8.0, 3),)),
                      UtteranceAttribution(9.0, 10.0, "D", None)),
        person_of_track={1: 1, 2: 1, 3: 2})
    assert [u.speaker for u in labelled(transcript, links).utterances] == ["PERSON_01", "PERSON_01", "PERSON_02", "D"]
    assert labelled(transcript, None) is transcript


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(InputError, match="--output-format 'doc': unknown"):
        write_outputs(load_transcript(SAMPLE_TRANSCRIPT), None, tmp_path, ("doc",))
    assert "json" in OUTPUT_FORMATS and list(tmp_path.iterdir()) == []


def test_whisperx_json_is_a_ground_truth_transcript(tmp_path):
    """WhisperX's --output_format json after --diarize: segments with their speaker, words aligned where
    wav2vec2 could (a number without start/end is left out)."""
    path = tmp_path / "whisperx.json"
    path.write_text(json.dumps({"segments": [
        {"start": 0.5, "end": 2.1, "text": " Hello there.", "speaker": "SPEAKER_00",
         "words": [{"word": "Hello", "start": 0.5, "end": 0.9, "score": 0.91, "speaker": "SPEAKER_00"},
                   {"word": "there.", "start": 1.0, "end": 2.1, "score": 0.8, "speaker": "SPEAKER_00"}]},
        {"start": 2.5, "end": 3.5, "text": "It costs 15.", "speaker": "SPEAKER_01",
         "words": [{"word": "It", "start": 2.5, "end": 2.7, "score": 0.9}, {"word": "15."}]}],
        "word_segments": [], "language": "en"}))
    transcript = load_transcript(path)
    assert transcript.speakers == ["SPEAKER_00", "SPEAKER_01"] and transcript.utterances[0].text == "Hello there."
    assert [w.text for w in transcript.utterances[1].words] == ["It"]
    no_speaker = tmp_path / "plain.json"
    no_speaker.write_text(json.dumps({"segments": [{"start": 0.0, "end": 1.0, "text": "hi"}]}))
    with pytest.raises(InputError, match="segment 0 has no speaker; expected WhisperX's output after diarization"):
        load_transcript(no_speaker)


def test_the_python_api_writes_the_same_formats(tmp_path):
    import socialpipe

    result = socialpipe.run(SAMPLE_VIDEO, out=tmp_path / "run", until="link", tracks=SAMPLE_TRACKS,
                            transcript=SAMPLE_TRANSCRIPT, links=SAMPLE_LINKS, output_formats=("srt", "tsv"))
    assert sorted(p.name for p in result.written) == ["transcript.srt", "transcript.tsv"]
    assert sorted(p.name for p in result.folder.path.glob("transcript.*")) == ["transcript.srt", "transcript.tsv",
                                                                               "transcript.vtt"]  # vtt: always
    assert load_transcript(result.folder.path / "transcript.vtt").speakers == result.transcript.speakers
    assert load_transcript(result.folder.path / "transcript.srt").speakers == result.transcript.speakers


def test_run_json_prints_one_object_and_quiet_prints_nothing(socialpipe, tmp_path):
    truth = ["--tracks", SAMPLE_TRACKS, "--transcript", SAMPLE_TRANSCRIPT, "--links", SAMPLE_LINKS, "--until", "link"]
    result = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "a", *truth, "--json", "--output-format", "txt")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["stopped_after"] == "link" and summary["links"]["Dana"] is None
    assert "transcript.txt" in summary["files"] and summary["written"][0].endswith("transcript.txt")
    quiet = socialpipe("run", SAMPLE_VIDEO, "--out", tmp_path / "b", *truth, "-q")
    assert quiet.code == 0 and quiet.out == "" and quiet.err == "", quiet
