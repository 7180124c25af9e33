"""Scores of each perception stage against ground truth, with the field's own metric libraries.

- people: multi-object tracking metrics from motmetrics (IDF1, MOTA, ...) with IoU >= 0.5 matching.
- speech: diarization error rate from pyannote.metrics (collar stated) and word error rate from jiwer.
- link: share of voices linked to the right track, and share of speech time attributed to the right track.
- speakers: end to end, the share of single-speaker moments whose speaker box lies on the right face.
- asd: per-face speaking scores against AVA-ActiveSpeaker labels, by average precision.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import numpy as np

from socialpipe.pipeline.contracts.artifacts import SpeakerLinks, Tracks, Transcript
from socialpipe.pipeline.contracts.boxes import box_iou
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.formats import AVA_SPEAKING

UNLINKED = "<off screen>"


def score_people(pred: Tracks, gt: Tracks, min_iou: float = 0.5) -> dict[str, Any]:
    """CLEAR-MOT and identity metrics over every frame that has a ground-truth or predicted box."""
    import motmetrics as mm

    accumulator = mm.MOTAccumulator(auto_id=False)
    frames = np.union1d(np.unique(gt.frame_index), np.unique(pred.frame_index))
    for frame in frames:
        g, p = gt.at_frame(int(frame)), pred.at_frame(int(frame))
        distances = iou_distances(g.xyxy, p.xyxy, min_iou)
        accumulator.update(g.track_id.tolist(), p.track_id.tolist(), distances, frameid=int(frame))
    names = ["idf1", "idp", "idr", "mota", "motp", "precision", "recall", "num_switches", "num_fragmentations",
             "num_false_positives", "num_misses", "num_objects", "num_frames"]
    if len(frames) == 0:
        raise InputError("both track files are empty; nothing to score")
    summary = mm.metrics.create().compute(accumulator, metrics=names, name="people")
    scores = {name: _plain(summary[name].iloc[0]) for name in names}
    scores["min_iou"] = min_iou
    return scores


def iou_distances(gt_xyxy: np.ndarray, pred_xyxy: np.ndarray, min_iou: float) -> np.ndarray:
    """(n_gt, n_pred) 1 - IoU, NaN where IoU < min_iou: motmetrics' distance convention.

    motmetrics 1.4.0's own ``iou_matrix`` calls ``np.asfarray``, which numpy 2 removed.
    """
    iou = box_iou(gt_xyxy, pred_xyxy)
    return np.where(iou >= min_iou, 1.0 - iou, np.nan)


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not np.isfinite(value) else value


def normalise_text(text: str) -> str:
    """Lower case, punctuation removed (apostrophes kept), single spaces: the text WER compares."""
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return " ".join(text.split())


def diarization_error(reference, hypothesis, collar_s: float = 0.0) -> dict[str, Any]:
    """DER of two ``pyannote.core.Annotation``s (pyannote.metrics; overlap scored, ``collar_s`` forgiven on each
    side of every reference boundary, over the span either covers) and its three parts as shares of the
    reference speech."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    from pyannote.core import Segment, Timeline

    if not reference:
        raise InputError("the ground-truth transcript has no speech; nothing to score")
    extent = reference.get_timeline().extent() | hypothesis.get_timeline().extent() if hypothesis else \
        reference.get_timeline().extent()
    metric = DiarizationErrorRate(collar=2 * collar_s, skip_overlap=False)
    components = metric(reference, hypothesis, uem=Timeline([Segment(extent.start, extent.end)]), detailed=True)
    total = components["total"]
    return {"der": float(components["diarization error rate"]), "collar_s": collar_s,
            "missed_speech": float(components["missed detection"] / total) if total else None,
            "false_alarm": float(components["false alarm"] / total) if total else None,
            "speaker_confusion": float(components["confusion"] / total) if total else None,
            "reference_speech_s": float(total)}


def score_speech(pred: Transcript, gt: Transcript, collar_s: float = 0.25) -> dict[str, Any]:
    """DER with ``collar_s`` forgiven on each side of every reference boundary (overlap scored),
    and WER over the whole text in time order when both transcripts have words."""
    scores: dict[str, Any] = {
        **diarization_error(gt.activity_annotation(), pred.activity_annotation(), collar_s),
        "reference_speakers": len(gt.speakers),
        "predicted_speakers": len(pred.speakers),
    }
    reference_text = normalise_text(" ".join(u.text for u in gt.utterances))
    hypothesis_text = normalise_text(" ".join(u.text for u in pred.utterances))
    if reference_text and hypothesis_text:
        import jiwer

        measures = jiwer.process_words(reference_text, hypothesis_text)
        scores.update(wer=float(measures.wer), substitutions=measures.substitutions,
                      deletions=measures.deletions, insertions=measures.insertions,
                      reference_words=len(reference_text.split()))
    else:
        scores["wer"] = None  # one side has no words (an RTTM, say): WER does not apply
    return scores


def matched_frames(pred: Tracks, gt: Tracks, min_iou: float = 0.5) -> dict[tuple[int, int], int]:
    """(predicted track, ground-truth track) -> the frames on which they match (one-to-one matches per frame at
    IoU >= ``min_iou``, by the Hungarian algorithm)."""
    from scipy.optimize import linear_sum_assignment

    votes: dict[tuple[int, int], int] = {}
    for frame in np.intersect1d(pred.frame_index, gt.frame_index):
        p, g = pred.at_frame(int(frame)), gt.at_frame(int(frame))
        cost = np.nan_to_num(iou_distances(p.xyxy, g.xyxy, min_iou), nan=2.0)  # (n_pred, n_gt)
        for i, j in zip(*linear_sum_assignment(cost)):
            if cost[i, j] <= 1.0:
                pair = (int(p.track_id[i]), int(g.track_id[j]))
                votes[pair] = votes.get(pair, 0) + 1
    return votes


def track_mapping(pred: Tracks, gt: Tracks, min_iou: float = 0.5) -> dict[int, int]:
    """Predicted track id -> the ground-truth track it matches on most frames."""
    mapping: dict[int, int] = {}
    for (predicted, truth), _ in sorted(matched_frames(pred, gt, min_iou).items(), key=lambda item: -item[1]):
        mapping.setdefault(predicted, truth)
    return mapping


def score_persons(pred: Tracks, gt: Tracks, min_iou: float = 0.5) -> dict[str, Any]:
    """Identity purity and coverage of the predicted persons over the face boxes matched to ground truth.

    A track's person is its ``persons`` entry (face identity), else the track itself; for the ground truth
    that makes each track id an identity (a MOT file, or a tracks JSON with one id per person) unless the file
    gives ``persons``. Purity: the share of matched boxes whose predicted person's most frequent true person
    is theirs (1: no predicted person mixes two people). Coverage: the share whose true person's most frequent
    predicted person is theirs (1: no person is split over several predicted persons)."""
    table: dict[tuple, int] = {}
    for (p, g), frames in matched_frames(pred, gt, min_iou).items():
        key = (pred.persons.get(p, ("track", p)), gt.persons.get(g, g))
        table[key] = table.get(key, 0) + frames
    total = sum(table.values())
    if total == 0:
        raise InputError("no predicted box matches a ground-truth box; expected tracks of the same video")

    def dominant(side: int) -> int:
        best: dict = {}
        for key, frames in table.items():
            best[key[side]] = max(best.get(key[side], 0), frames)
        return sum(best.values())

    return {"purity": dominant(0) / total, "coverage": dominant(1) / total, "matched_boxes": total,
            "predicted_persons": len({k[0] for k in table}), "true_persons": len({k[1] for k in table}),
            "min_iou": min_iou}


def score_link(pred: SpeakerLinks, gt: SpeakerLinks, gt_transcript: Transcript | None = None,
               pred_transcript: Transcript | None = None, pred_tracks: Tracks | None = None,
               gt_tracks: Tracks | None = None) -> dict[str, Any]:
    """How well voices were tied to tracks.

    Track ids of ``pred`` are those of ``gt``, unless both track sets are given: then each predicted
    track stands for the ground-truth track it overlaps on most frames. Voice labels must match too,
    unless ``pred_transcript`` (with ``gt_transcript``) gives the predicted voices' timing: then each
    ground-truth voice is paired with the predicted voice that overlaps it most (optimal mapping).
    ``voice_accuracy``: share of ground-truth voices whose predicted track (or "unlinked") is right.
    ``time_accuracy``: share of ground-truth speech time during which the predicted speaker's track
    is the true speaker's track (needs ``gt_transcript``).
    """
    if not gt.links:
        raise InputError("the ground-truth links are empty; nothing to score")
    if pred_transcript is not None and gt_transcript is None:
        raise InputError("a predicted transcript (--pred-transcript) maps voices only against the ground-truth "
                         "transcript; give --transcript too")
    if gt_transcript is not None:
        _same_voices(gt_transcript, gt, "ground-truth")
        _same_voices(pred_transcript or gt_transcript, pred, "predicted")
    if (pred_tracks is None) != (gt_tracks is None):
        raise InputError("give both the predicted and the ground-truth tracks to map track ids, or neither")
    if pred_tracks is not None:
        as_truth = track_mapping(pred_tracks, gt_tracks)
        pred = SpeakerLinks(tuple(replace(link, track_id=None if link.track_id is None else
                                          as_truth.get(link.track_id, -link.track_id - 1)) for link in pred.links))
    # predicted voice label standing for each ground-truth voice: itself, or (with a predicted
    # transcript) the predicted voice that overlaps it most under the optimal one-to-one mapping
    own_voice = {link.voice: link.voice for link in gt.links}
    if pred_transcript is None and not {link.voice for link in pred.links} & set(own_voice):
        raise InputError(f"the predicted links name voices {sorted(link.voice for link in pred.links)[:5]} and the "
                         f"ground truth {sorted(own_voice)[:5]}: none in common, so every voice would score as wrong; "
                         "give --pred-transcript and --transcript to map the predicted voices to the true ones")
    if pred_transcript is not None and gt_transcript is not None:
        from pyannote.metrics.diarization import DiarizationErrorRate

        mapping = DiarizationErrorRate().optimal_mapping(gt_transcript.activity_annotation(),
                                                           pred_transcript.activity_annotation())
        own_voice = {truth: guess for guess, truth in mapping.items()}
    per_voice = {}
    for link in gt.links:
        voice = own_voice.get(link.voice)
        predicted = pred.track_for(voice) if any(p.voice == voice for p in pred.links) else "missing"
        per_voice[link.voice] = {"expected": link.track_id, "predicted": predicted, "predicted_voice": voice,
                                 "correct": predicted == link.track_id}
    scores: dict[str, Any] = {
        "voice_accuracy": sum(v["correct"] for v in per_voice.values()) / len(per_voice),
        "voices": per_voice,
    }
    if gt_transcript is not None:
        reference = _by_track(gt_transcript, gt)
        hypothesis = _by_track(pred_transcript or gt_transcript, pred)
        total = sum(reference.label_duration(label) for label in reference.labels())
        right = 0.0
        for label in reference.labels():
            if label in hypothesis.labels():
                truth = reference.label_timeline(label).support()
                guess = hypothesis.label_timeline(label).support()
                right += truth.crop(guess, mode="intersection").duration()
        scores["time_accuracy"] = right / total if total else None
        scores["speech_s"] = float(total)
    return scores


def _same_voices(transcript: Transcript, links: SpeakerLinks, which: str) -> None:
    """Refuse links that do not name the transcript's voices: every voice would count as off screen on both
    sides, and the speech time would score as right."""
    missing = sorted(set(transcript.speakers) - {link.voice for link in links.links})
    if missing:
        raise InputError(f"the {which} links have no link for the transcript's voices {missing[:5]} (they name "
                         f"{sorted(link.voice for link in links.links)[:5]}); expected links and transcript with the "
                         "same voice labels")


def _by_track(transcript: Transcript, links: SpeakerLinks):
    """The transcript's speech relabelled with the track each voice is linked to."""
    annotation = transcript.activity_annotation()
    mapping = {}
    for voice in annotation.labels():
        track = links.track_for(voice)
        mapping[voice] = UNLINKED if track is None else f"track {track}"
    return annotation.rename_labels(mapping)


SPEAKER_SAMPLES_HZ = 5.0  # ground-truth moments are sampled this often


def score_speakers(pred_tracks: Tracks, pred_transcript: Transcript, pred_links: SpeakerLinks,
                   gt_tracks: Tracks, gt_transcript: Transcript, gt_links: SpeakerLinks,
                   duration_s: float, min_iou: float = 0.3) -> dict[str, Any]:
    """End-to-end speaker-box accuracy, and the diarization error of who spoke when from the voices alone and
    by person (``SpeakerLinks.who_spoke_when``: the audio-visual diarization, DER with no collar). The
    accuracy: at every moment (5 a second) where exactly one person speaks in the
    ground truth and that person's face is on screen, is the box the pipeline would hand the answer stage
    (the predicted voice speaking then, its linked track seen on that frame, that track's face box) on the
    true speaker's face (IoU >= ``min_iou``)? Moments where the true speaker is off screen are counted apart:
    any predicted box then is wrong."""
    moments = np.arange(0.0, duration_s, 1.0 / SPEAKER_SAMPLES_HZ) + 0.5 / SPEAKER_SAMPLES_HZ
    right = on_screen = off_screen = boxed_off_screen = 0
    failures = {"no predicted voice": 0, "voice not linked or its track not seen": 0, "box on another face": 0}
    for time_s in moments:
        speaking = {u.speaker for u in gt_transcript.speech_turns if u.start_s <= time_s < u.end_s}
        if len(speaking) != 1:
            continue
        (voice,) = speaking
        gt_frame = int(np.floor(time_s * gt_tracks.fps + 1e-6))
        true_track = gt_links.track_at(voice, gt_frame, gt_tracks, time_s)
        if true_track is None:
            off_screen += 1
            boxed_off_screen += _predicted_box(pred_tracks, pred_transcript, pred_links, time_s, {}) is not None
            continue
        predicted_box = _predicted_box(pred_tracks, pred_transcript, pred_links, time_s, failures)
        on_screen += 1
        true_box = gt_tracks.xyxy[(gt_tracks.track_id == true_track) & (gt_tracks.frame_index == gt_frame)][0]
        if predicted_box is None:
            continue
        if float(box_iou(predicted_box[None], true_box[None])[0, 0]) >= min_iou:
            right += 1
        else:
            failures["box on another face"] += 1
    reference = gt_transcript.activity_annotation()
    audio = diarization_error(reference, pred_transcript.activity_annotation())
    audio_visual = diarization_error(reference, pred_links.who_spoke_when(pred_transcript))
    return {"speaker_box_accuracy": right / on_screen if on_screen else float("nan"),
            "moments_on_screen": on_screen, "moments_right": right, "moments_off_screen": off_screen,
            "boxes_given_off_screen": boxed_off_screen, "min_iou": min_iou, "samples_per_s": SPEAKER_SAMPLES_HZ,
            "failures": failures,
            # who spoke when, no collar, overlap scored: the voices alone, and by person (voices met faces)
            "der_audio": audio["der"], "der_audio_visual": audio_visual["der"],
            "confusion_audio": audio["speaker_confusion"], "confusion_audio_visual": audio_visual["speaker_confusion"]}


def _predicted_box(tracks: Tracks, transcript: Transcript, links: SpeakerLinks, time_s: float,
                   failures: dict[str, int]) -> np.ndarray | None:
    """The face box the pipeline gives for the voice speaking at ``time_s`` (None, with the reason counted)."""
    speaking = [u for u in transcript.speech_turns if u.start_s <= time_s < u.end_s]
    if not speaking:
        failures["no predicted voice"] = failures.get("no predicted voice", 0) + 1
        return None
    voice = max(speaking, key=lambda u: u.end_s - u.start_s).speaker
    frame = int(np.floor(time_s * tracks.fps + 1e-6))
    track = links.track_at(voice, frame, tracks, time_s)
    if track is None:
        reason = "voice not linked or its track not seen"
        failures[reason] = failures.get(reason, 0) + 1
        return None
    return tracks.xyxy[(tracks.track_id == track) & (tracks.frame_index == frame)][0]


def score_asd(pred_rows: list[dict], gt_rows: list[dict]) -> dict[str, Any]:
    """Average precision of per-face speaking scores the way the AVA-ActiveSpeaker benchmark computes it:
    every ground-truth (video, timestamp, entity) is one example, positive when labelled SPEAKING_AUDIBLE;
    predictions sorted by score, precision made non-increasing from the right, area under the precision-
    recall steps. A ground-truth face without a prediction counts with score -inf (it is never found)."""
    truth = {row["key"]: row["label"] == AVA_SPEAKING for row in gt_rows}
    if not truth:
        raise InputError("the ground-truth csv has no rows; expected AVA-ActiveSpeaker labels")
    scored = {row["key"]: row["score"] for row in pred_rows if row["score"] is not None}
    keys = list(truth)
    scores = np.array([scored.get(k, -np.inf) for k in keys])
    labels = np.array([truth[k] for k in keys])
    positives = int(labels.sum())
    if positives == 0:
        raise InputError("the ground truth has no SPEAKING_AUDIBLE rows; average precision needs some")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    recall = np.cumsum(hits) / positives
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    found = np.isfinite(scores[order])
    average_precision = float(np.sum(precision * recall_steps * found))
    return {"mAP": average_precision, "examples": len(keys), "positives": positives,
            "predicted": int(np.isfinite(scores).sum())}
