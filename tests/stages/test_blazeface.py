"""BlazeFace (people.detector: blazeface): its geometry, its merge, and faces found on the sample."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from socialpipe.pipeline.contracts.config import PeopleConfig

pytest.importorskip("ai_edge_litert", reason="people.detector blazeface needs ai-edge-litert (the test extra)")


def test_squares_cover_the_frame_with_half_their_side_shared():
    from socialpipe.stages.people.blazeface import tiles

    wide = tiles(856, 480)
    assert [(x, y, side) for x, y, side in wide] == [(0, 0, 480), (188, 0, 480), (376, 0, 480)]
    assert all(b[0] - a[0] <= 240 for a, b in zip(wide, wide[1:]))  # neighbours share at least half a side
    assert tiles(480, 480) == [(0, 0, 480)]
    tall = tiles(360, 640)
    assert tall[0] == (0, 0, 360) and tall[-1] == (0, 280, 360) and all(x == 0 for x, _, _ in tall)


def test_overlapping_detections_become_their_score_weighted_mean():
    from socialpipe.stages.people.blazeface import weighted_merge

    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    points[1] += 4.0
    merged, kept, marks = weighted_merge(boxes, scores, points)
    assert len(merged) == 2 and kept.tolist() == pytest.approx([0.9, 0.8])
    assert merged[0].tolist() == pytest.approx([0.25, 0.25, 10.25, 10.25])
    assert marks[0, 0].tolist() == pytest.approx([1.0, 1.0])


def test_five_points_from_six_put_the_mouth_corners_along_the_eye_line():
    from socialpipe.stages.people.blazeface import MOUTH_HALF_WIDTH, landmarks

    six = np.array([[[40, 50], [60, 50], [50, 60], [50, 70], [30, 52], [70, 52]]], np.float32)
    five = landmarks(six)[0]
    assert five[:3].tolist() == six[0, :3].tolist()
    assert five[3].tolist() == pytest.approx([50 - 20 * MOUTH_HALF_WIDTH, 70])
    assert five[4].tolist() == pytest.approx([50 + 20 * MOUTH_HALF_WIDTH, 70])


def test_it_finds_the_sample_s_faces_where_mtcnn_does():
    """Every 125th frame of the sample: the faces MTCNN finds (three, or two while Carol is away), each box
    overlapping MTCNN's (the boxes are reshaped to MTCNN's proportions), with landmarks inside the box."""
    from socialpipe.pipeline.contracts.boxes import box_iou
    from socialpipe.pipeline.media.video import probe, stream_frames
    from socialpipe.stages.people.detectors import make_face_detector
    from tests.conftest import SAMPLE_VIDEO

    settings = PeopleConfig()
    blaze = make_face_detector(dataclasses.replace(settings, detector="blazeface"))
    mtcnn = make_face_detector(settings)
    checked, faces = 0, 0
    for _, frame in stream_frames(probe(SAMPLE_VIDEO), step=125):
        mine, reference = blaze.detect([frame])[0], mtcnn.detect([frame])[0]
        assert len(mine) == len(reference) >= 2
        faces += len(mine)
        assert (box_iou(reference.xyxy, mine.xyxy).max(axis=1) >= 0.5).all()
        inside = (mine.landmarks >= mine.xyxy[:, None, :2]) & (mine.landmarks <= mine.xyxy[:, None, 2:])
        assert inside.all() and (mine.confidence >= settings.min_confidence).all()
        checked += 1
    assert checked == 8 and faces == 22


def test_a_run_can_choose_it_and_says_so(tmp_path):
    from socialpipe.pipeline.contracts.config import Config, apply_overrides
    from socialpipe.pipeline.media.video import probe
    from socialpipe.stages.people import PeopleStage
    from tests.conftest import SAMPLE_VIDEO

    config = apply_overrides(Config(), ["people.detector=blazeface"])
    tracks = PeopleStage(config.people).detect(probe(SAMPLE_VIDEO))
    assert tracks.meta["source"] == "people stage: blazeface" and len(tracks.track_ids) == 3


def test_without_the_runtime_or_the_weights_it_says_what_to_install(monkeypatch, tmp_path):
    import sys

    from socialpipe.pipeline.contracts.errors import SocialpipeError
    from socialpipe.stages.people.blazeface import load_interpreter

    with pytest.raises(SocialpipeError, match="not here|missing"):
        load_interpreter(tmp_path / "absent.tflite")
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(SocialpipeError, match=r"socialpipe\[blazeface\].*or use people.detector=mtcnn"):
        load_interpreter()
