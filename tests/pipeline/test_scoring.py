from __future__ import annotations

import pytest

from socialpipe.pipeline.contracts.artifacts import SpeakerLink, SpeakerLinks, Tracks, Transcript, Utterance
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.evaluation.scoring import iou_distances, normalise_text, score_link, score_people, score_speech


def two_people(swap_after: int | None = None) -> Tracks:
    rows = []
    for frame in range(10):
        ids = (1, 2) if swap_after is None or frame < swap_after else (2, 1)
        rows.append({"track_id": ids[0], "frame_index": frame, "xyxy": [10, 10, 50, 60]})
        rows.append({"track_id": ids[1], "frame_index": frame, "xyxy": [200, 10, 240, 60]})
    return Tracks.from_rows(rows, fps=10.0)


def test_perfect_tracks_score_one():
    scores = score_people(two_people(), two_people())
    assert scores["idf1"] == 1.0 and scores["mota"] == 1.0 and scores["num_switches"] == 0


def test_identity_swap_costs_idf1_and_mota():
    scores = score_people(two_people(swap_after=5), two_people())
    assert scores["num_switches"] == 2
    assert scores["mota"] == pytest.approx(1 - 2 / 20)
    assert scores["idf1"] == pytest.approx(0.5)


def test_missing_and_false_boxes():
    gt = two_people()
    pred = gt[gt.track_id == 1]
    scores = score_people(pred, gt)
    assert scores["recall"] == pytest.approx(0.5) and scores["precision"] == 1.0
    assert scores["num_misses"] == 10 and scores["mota"] == pytest.approx(0.5)


def test_iou_distances_follow_motmetrics_convention():
    d = iou_distances([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [50, 50, 60, 60]], min_iou=0.3)
    assert d[0, 0] == 0.0 and d[0, 1] == pytest.approx(1 - 50 / 150) and d.shape == (1, 3)
    assert d[0, 2] != d[0, 2]  # NaN: no match possible


def turns(*spans) -> Transcript:
    return Transcript.from_utterances([Utterance(s, e, who, text) for s, e, who, text in spans])


def test_der_counts_confusion_with_and_without_collar():
    gt = turns((0, 2, "A", "hello world"), (2, 4, "B", ""))
    pred = turns((0, 2, "x", "hello word"), (2, 3, "y", ""), (3, 4, "x", ""))
    strict = score_speech(pred, gt, collar_s=0.0)
    assert strict["der"] == pytest.approx(0.25) and strict["speaker_confusion"] == pytest.approx(0.25)
    assert strict["wer"] == pytest.approx(0.5) and strict["substitutions"] == 1
    forgiving = score_speech(pred, gt, collar_s=0.25)
    assert forgiving["der"] == pytest.approx(0.75 / 3.0)


def test_missed_speech_and_wer_without_hypothesis_words():
    gt = turns((0, 4, "A", "one two"))
    scores = score_speech(turns((0, 1, "x", "")), gt, collar_s=0.0)
    assert scores["missed_speech"] == pytest.approx(0.75) and scores["wer"] is None
    with pytest.raises(InputError, match="no speech"):
        score_speech(gt, Transcript())


def test_text_normalisation():
    assert normalise_text("Hello,  WORLD! It's 10:30.") == "hello world it's 10 30"


def test_link_scores_by_voice_and_by_speech_time():
    gt = SpeakerLinks((SpeakerLink("A", 1), SpeakerLink("B", 2), SpeakerLink("C", None)))
    pred = SpeakerLinks((SpeakerLink("A", 1), SpeakerLink("B", 3), SpeakerLink("C", None)))
    transcript = turns((0, 2, "A", ""), (2, 4, "B", ""), (4, 5, "C", ""))
    scores = score_link(pred, gt, transcript)
    assert scores["voice_accuracy"] == pytest.approx(2 / 3)
    assert scores["time_accuracy"] == pytest.approx(3 / 5)
    assert scores["voices"]["B"] == {"expected": 2, "predicted": 3, "predicted_voice": "B", "correct": False}
    assert score_link(gt, gt, transcript)["time_accuracy"] == 1.0


def test_link_labels_that_do_not_match_the_transcript_are_refused():
    """All-wrong links whose labels the transcript does not have would otherwise score 100% of speech time."""
    gt = SpeakerLinks((SpeakerLink("A", 1), SpeakerLink("B", 2)))
    wrong = SpeakerLinks((SpeakerLink("Alice", 2), SpeakerLink("Bob", 1)))
    transcript = turns((0, 2, "A", ""), (2, 4, "B", ""))
    with pytest.raises(InputError, match=r"the predicted links have no link for the transcript's voices \['A', 'B'\]"):
        score_link(wrong, gt, transcript)
    with pytest.raises(InputError, match="the ground-truth links have no link"):
        score_link(gt, wrong, transcript)
    with pytest.raises(InputError, match="give --transcript too"):
        score_link(gt, gt, pred_transcript=transcript)


def test_link_time_uses_the_predicted_transcript_when_given():
    gt = SpeakerLinks((SpeakerLink("A", 1), SpeakerLink("B", 2)))
    pred = SpeakerLinks((SpeakerLink("v0", 1), SpeakerLink("v1", 2)))
    truth = turns((0, 2, "A", ""), (2, 4, "B", ""))
    guess = turns((0, 3, "v0", ""), (3, 4, "v1", ""))  # v0 runs one second into B's turn
    scores = score_link(pred, gt, truth, pred_transcript=guess)
    assert scores["time_accuracy"] == pytest.approx(3 / 4)
    assert scores["voice_accuracy"] == 1.0  # v0 stands for A, v1 for B, by overlap
    assert scores["voices"]["A"]["predicted_voice"] == "v0"


def test_link_scores_map_predicted_track_ids_onto_the_truth():
    gt_tracks = two_people()  # track 1 on the left, track 2 on the right
    pred_tracks = Tracks.from_rows([{**row, "track_id": {1: 7, 2: 5}[row["track_id"]]}
                                    for row in ({"track_id": int(t), "frame_index": int(f), "xyxy": list(b)}
                                                for t, f, b in zip(gt_tracks.track_id, gt_tracks.frame_index,
                                                                   gt_tracks.xyxy))], fps=10.0)
    gt = SpeakerLinks((SpeakerLink("A", 1), SpeakerLink("B", 2), SpeakerLink("C", None)))
    pred = SpeakerLinks((SpeakerLink("A", 7), SpeakerLink("B", 5), SpeakerLink("C", None)))
    assert score_link(pred, gt)["voice_accuracy"] == pytest.approx(1 / 3)  # ids taken as they are
    mapped = score_link(pred, gt, pred_tracks=pred_tracks, gt_tracks=gt_tracks)
    assert mapped["voice_accuracy"] == 1.0
    wrong = SpeakerLinks((SpeakerLink("A", 5), SpeakerLink("B", 7), SpeakerLink("C", 5)))
    assert score_link(wrong, gt, pred_tracks=pred_tracks, gt_tracks=gt_tracks)["voice_accuracy"] == 0.0
    with pytest.raises(InputError, match="give both"):
        score_link(pred, gt, pred_tracks=pred_tracks)


# ----------------------------------------------------------------------------- speakers and asd

def _sample_truth():
    from socialpipe.pipeline.contracts.formats import load_links, load_tracks, load_transcript
    from tests.conftest import SAMPLE_LINKS, SAMPLE_TRACKS, SAMPLE_TRANSCRIPT

    return load_tracks(SAMPLE_TRACKS, None), load_transcript(SAMPLE_TRANSCRIPT), load_links(SAMPLE_LINKS)


def test_speaker_boxes_of_the_truth_itself_are_all_right():
    from socialpipe.pipeline.evaluation.scoring import score_speakers

    tracks, transcript, links = _sample_truth()
    scores = score_speakers(tracks, transcript, links, tracks, transcript, links, 37.68)
    assert scores["speaker_box_accuracy"] == 1.0 and scores["moments_on_screen"] > 100
    assert scores["moments_off_screen"] > 10 and scores["boxes_given_off_screen"] == 0  # Dana speaks off screen


def test_a_voice_on_the_wrong_face_loses_its_moments():
    from dataclasses import replace

    from socialpipe.pipeline.evaluation.scoring import score_speakers

    tracks, transcript, links = _sample_truth()
    wrong = SpeakerLinks(tuple(replace(link, track_id=2, track_ids=(2,)) if link.voice == "Alice" else link
                               for link in links.links))
    scores = score_speakers(tracks, transcript, wrong, tracks, transcript, links, 37.68)
    alice_share = sum(u.duration_s for u in transcript.utterances if u.speaker == "Alice") / 37.68
    assert scores["failures"]["box on another face"] > 0
    assert scores["speaker_box_accuracy"] < 1.0 - 0.5 * alice_share


def test_a_person_seen_in_two_pieces_needs_both_tracks_linked():
    """Carol's track cut in two (as a shot cut would): linked to both pieces she keeps every moment; linked to
    the first piece only, her later lines have no box."""
    from dataclasses import replace

    import numpy as np

    from socialpipe.pipeline.evaluation.scoring import score_speakers

    tracks, transcript, links = _sample_truth()
    carol = next(link for link in links.links if link.voice == "Carol")
    frames = tracks.frame_index[tracks.track_id == carol.track_id]
    middle = int(np.median(frames))
    ids = np.where((tracks.track_id == carol.track_id) & (tracks.frame_index >= middle), 99, tracks.track_id)
    from socialpipe.pipeline.contracts.boxes import Boxes

    plain = Boxes(xyxy=tracks.xyxy, confidence=tracks.confidence, landmarks=tracks.landmarks, track_id=ids,
                  frame_index=tracks.frame_index)
    split = Tracks.from_boxes(plain, fps=tracks.fps, kinds={**tracks.kinds, 99: "face"})
    both = SpeakerLinks(tuple(replace(link, track_ids=(carol.track_id, 99)) if link is carol else link
                              for link in links.links))
    first_only = SpeakerLinks(tuple(replace(link, track_ids=(carol.track_id,)) if link is carol else link
                                    for link in links.links))
    assert score_speakers(split, transcript, both, tracks, transcript, links, 37.68)["speaker_box_accuracy"] == 1.0
    partial = score_speakers(split, transcript, first_only, tracks, transcript, links, 37.68)
    assert partial["speaker_box_accuracy"] < 1.0
    assert partial["failures"]["voice not linked or its track not seen"] > 0


def test_asd_average_precision_as_the_benchmark_computes_it(tmp_path):
    from socialpipe.pipeline.contracts.formats import read_ava_csv
    from socialpipe.pipeline.evaluation.scoring import score_asd

    (tmp_path / "gt.csv").write_text("v,1.00,0,0,1,1,SPEAKING_AUDIBLE,a\nv,1.00,0,0,1,1,SPEAKING_AUDIBLE,b\n"
                                     "v,1.00,0,0,1,1,NOT_SPEAKING,c\nv,1.04,0,0,1,1,NOT_SPEAKING,d\n")
    (tmp_path / "pred.csv").write_text("v,1.00,0,0,1,1,SPEAKING_AUDIBLE,a,0.9\nv,1.00,0,0,1,1,SPEAKING_AUDIBLE,c,0.8\n"
                                       "v,1.00,0,0,1,1,SPEAKING_AUDIBLE,b,0.7\nv,1.04,0,0,1,1,NOT_SPEAKING,d,0.1\n")
    scores = score_asd(read_ava_csv(tmp_path / "pred.csv"), read_ava_csv(tmp_path / "gt.csv"))
    # ranked a+, c-, b+, d-: precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1 -> 1/2 * 1 + 1/2 * 2/3
    assert scores["mAP"] == pytest.approx(0.5 + 0.5 * 2 / 3) and scores["positives"] == 2
    missing_b = read_ava_csv(tmp_path / "pred.csv")[:2]
    assert score_asd(missing_b, read_ava_csv(tmp_path / "gt.csv"))["mAP"] == pytest.approx(0.5)


def test_an_ava_csv_with_too_few_columns_is_refused(tmp_path):
    from socialpipe.pipeline.contracts.formats import read_ava_csv

    (tmp_path / "bad.csv").write_text("v,1.0,0,0,1\n")
    with pytest.raises(InputError, match=r"bad.csv:1: 5 columns; expected video_id"):
        read_ava_csv(tmp_path / "bad.csv")


def test_links_keep_every_track_of_a_person_through_json():
    link = SpeakerLink("Ann", 4, track_ids=(7,), person_id=2)
    assert link.track_ids == (4, 7)
    again = SpeakerLinks.from_json(SpeakerLinks((link,)).to_json())
    assert again.links[0].track_ids == (4, 7) and again.links[0].person_id == 2
    with pytest.raises(InputError, match="no main track"):
        SpeakerLink("Ann", None, track_ids=(3,))


def test_person_purity_and_coverage(socialpipe, tmp_path):
    """The second sample's ground truth has one track per person per shot; its persons (Alice 1 and 6, Bob 2, 4
    and 7, Carol 3, 5 and 8) are the truth. Persons found right score 1 and 1; one person per track keeps purity
    and loses coverage; one person for everyone keeps coverage and loses purity."""
    import dataclasses
    import json

    from socialpipe.pipeline.contracts.formats import load_tracks
    from socialpipe.pipeline.evaluation.scoring import score_persons
    from tests.conftest import REPO

    tracks = load_tracks(REPO / "sample_videos" / "shots.tracks.json", fps=None)
    truth = {1: 1, 6: 1, 2: 2, 4: 2, 7: 2, 3: 3, 5: 3, 8: 3}
    gt = dataclasses.replace(tracks, persons=truth)
    right = score_persons(dataclasses.replace(tracks, persons={t: 10 + p for t, p in truth.items()}), gt)
    assert right["purity"] == right["coverage"] == 1.0 and right["predicted_persons"] == right["true_persons"] == 3
    alone = score_persons(tracks, gt)
    assert alone["purity"] == 1.0 and alone["coverage"] < 0.8 and alone["predicted_persons"] == 8
    merged = score_persons(dataclasses.replace(tracks, persons={t: 1 for t in truth}), gt)
    assert merged["coverage"] == 1.0 and merged["purity"] < 0.5
    gt.save(tmp_path / "gt.json")
    dataclasses.replace(tracks, persons={t: 1 for t in truth}).save(tmp_path / "pred.json")
    result = socialpipe("score", "persons", "--pred", tmp_path / "pred.json", "--gt", tmp_path / "gt.json", "--json")
    assert result.code == 0 and json.loads(result.out)["purity"] == pytest.approx(merged["purity"])


def _voices_met_faces():
    """A and B: two voices the diarization made of one person's speech (tracks 1 and 2, both person 1); C: one
    voice two people spoke (its utterance attributed to track 3, person 2, then track 4, person 3); D: no face."""
    from socialpipe.pipeline.contracts.artifacts import AttributedSegment, UtteranceAttribution

    transcript = Transcript.from_utterances([Utterance(0.0, 2.0, "A", "one"), Utterance(3.0, 5.0, "B", "two"),
                                             Utterance(6.0, 10.0, "C", "three four"), Utterance(11.0, 12.0, "D", "five")])
    links = SpeakerLinks(
        (SpeakerLink("A", 1, track_ids=(1,)), SpeakerLink("B", 2, track_ids=(2,)),
         SpeakerLink("C", 3, track_ids=(3, 4)), SpeakerLink("D", None)),
        attributions=(UtteranceAttribution(0.0, 2.0, "A", 1), UtteranceAttribution(3.0, 5.0, "B", 2),
                      UtteranceAttribution(6.0, 10.0, "C", 3, segments=(AttributedSegment(6.0, 8.0, 3),
                                                                        AttributedSegment(8.0, 10.0, 4))),
                      UtteranceAttribution(11.0, 12.0, "D", None)),
        person_of_track={1: 1, 2: 1, 3: 2, 4: 3})
    return transcript, links


def test_who_spoke_when_joins_one_person_s_voices_and_splits_a_voice_where_its_face_changes():
    transcript, links = _voices_met_faces()
    turns = sorted((round(s.start, 2), round(s.end, 2), label)
                   for s, _, label in links.who_spoke_when(transcript).itertracks(yield_label=True))
    assert turns == [(0.0, 2.0, "PERSON_01"), (3.0, 5.0, "PERSON_01"), (6.0, 8.0, "PERSON_02"),
                     (8.0, 10.0, "PERSON_03"), (11.0, 12.0, "D")]


def test_the_audio_visual_der_scores_who_spoke_when_by_person():
    """The truth: P speaks 0-5 (heard as voices A and B), Q 6-8, R 8-10, S 11-12 off screen. The voices alone
    confuse 2 s of P's and 2 s of C's speech; by person, nothing is wrong."""
    from socialpipe.pipeline.evaluation.scoring import score_speakers

    transcript, links = _voices_met_faces()
    truth = Transcript.from_utterances([Utterance(0.0, 2.0, "P"), Utterance(3.0, 5.0, "P"), Utterance(6.0, 8.0, "Q"),
                                        Utterance(8.0, 10.0, "R"), Utterance(11.0, 12.0, "S")])
    tracks = Tracks.from_rows([{"track_id": t, "frame_index": 0, "xyxy": [0, 0, 10, 10]} for t in (1, 2, 3, 4)],
                              fps=25.0)
    scores = score_speakers(tracks, transcript, links, tracks, truth, links, 12.0)
    assert scores["der_audio"] == pytest.approx(4 / 9) and scores["confusion_audio"] == pytest.approx(4 / 9)
    assert scores["der_audio_visual"] == 0.0


def test_the_transcript_by_person_names_persons_and_splits_an_utterance_between_its_words():
    """What every later output shows (transcript files, previews, the prompt): A's and B's lines both PERSON_01;
    C's utterance split at 8 s between its words (spoken from two people's faces); D keeps its voice. Without
    word times, C's utterance goes whole to the person speaking most of it."""
    from socialpipe.pipeline.contracts.artifacts import AttributedSegment, UtteranceAttribution, Word

    transcript, links = _voices_met_faces()
    words = (Word(6.1, 6.9, "three"), Word(7.2, 7.9, "four"), Word(8.2, 9.0, "five"), Word(9.1, 9.8, "six"))
    with_words = Transcript.from_utterances([*transcript.utterances[:2],
                                             Utterance(6.0, 10.0, "C", "three four five six", words),
                                             transcript.utterances[3]])
    final = links.labelled(with_words)
    assert [(u.start_s, u.end_s, u.speaker, u.text) for u in final.utterances] == [
        (0.0, 2.0, "PERSON_01", "one"), (3.0, 5.0, "PERSON_01", "two"), (6.0, 7.9, "PERSON_02", "three four"),
        (8.2, 10.0, "PERSON_03", "five six"), (11.0, 12.0, "D", "five")]
    assert final.utterances[2].words == words[:2]
    uneven = SpeakerLinks(links.links, attributions=(
        UtteranceAttribution(6.0, 10.0, "C", 3, segments=(AttributedSegment(6.0, 7.0, 3), AttributedSegment(7.0, 10.0, 4))),),
        person_of_track=links.person_of_track)
    assert [u.speaker for u in uneven.labelled(transcript).utterances] == ["PERSON_01", "PERSON_01", "PERSON_03", "D"]
