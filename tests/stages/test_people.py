from __future__ import annotations

import cv2
import numpy as np
import pytest

from socialpipe.pipeline.contracts.artifacts import Tracks
from socialpipe.pipeline.contracts.boxes import Boxes, head_and_shoulders
from socialpipe.pipeline.contracts.config import PeopleConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.pipeline.contracts.formats import load_tracks
from socialpipe.pipeline.evaluation.scoring import score_people
from socialpipe.pipeline.media.video import probe
from socialpipe.stages.people import PeopleStage
from socialpipe.stages.people.postprocess import rejoin
from socialpipe.stages.people.tracking import _TrackerInput
from tests.conftest import SAMPLE_TRACKS, SAMPLE_VIDEO, reachable, video_from_frames


@pytest.fixture(scope="module")
def sample_tracks() -> Tracks:
    return PeopleStage(PeopleConfig()).detect(probe(SAMPLE_VIDEO))


def test_sample_meets_the_tracking_targets(sample_tracks):
    scores = score_people(sample_tracks, load_tracks(SAMPLE_TRACKS, fps=None))
    assert scores["idf1"] >= 0.90 and scores["mota"] >= 0.85, scores


def test_sample_tracks_carry_landmarks_and_the_rejoin_reason(sample_tracks):
    assert len(sample_tracks.track_ids) == 3 and set(sample_tracks.kinds.values()) == {"face"}
    assert np.isfinite(sample_tracks.landmarks).all(axis=(1, 2)).mean() > 0.95
    (join,) = sample_tracks.meta["rejoined"]
    assert join["gap_s"] > 5 and join["appearance_similarity"] >= 0.8 and "looking alike" in join["reason"]
    sample_tracks.validate_against(probe(SAMPLE_VIDEO))


def test_every_frame_between_detections_has_a_box(sample_tracks):
    alice = sample_tracks.for_track(1)
    assert len(alice) >= probe(SAMPLE_VIDEO).frame_count - 5
    assert np.all(np.diff(alice.frame_index) == 1)


def test_frames_without_faces_give_empty_tracks(tiny_video):
    tracks = PeopleStage(PeopleConfig()).detect(probe(tiny_video))
    assert len(tracks) == 0 and tracks.track_ids == [] and tracks.fps == probe(tiny_video).fps


def _face_frame(face_px: int, size=(320, 180), x=140, y=60) -> np.ndarray:
    from skimage import data

    photo = data.astronaut()[40:200, 160:290]  # the face with some margin
    scale = face_px / 87.0  # the face is 87 px wide in the photo
    face = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((size[1], size[0], 3), 180, np.uint8)
    frame[y:y + face.shape[0], x:x + face.shape[1]] = face
    return frame


def test_single_frame_video(tmp_path):
    video = probe(video_from_frames(tmp_path / "one.mp4", [_face_frame(80, size=(320, 240))]))
    assert video.frame_count == 1
    tracks = PeopleStage(PeopleConfig(min_track_s=0.0)).detect(video)
    assert tracks.track_ids == [1] and tracks.frame_index.tolist() == [0]


def test_very_small_face_needs_full_resolution_settings(tmp_path):
    video = probe(video_from_frames(tmp_path / "small.mp4", [_face_frame(22)] * 10))
    assert len(PeopleStage(PeopleConfig()).detect(video)) == 0  # below min_face_px by default
    small = PeopleStage(PeopleConfig(detect_scale=1.0, min_face_px=14, min_track_s=0.0)).detect(video)
    assert len(small.track_ids) == 1 and len(small) == 10
    width = small.xyxy[0, 2] - small.xyxy[0, 0]
    assert 12 <= width <= 36


def test_mtcnn_in_channels_last_memory_finds_the_same_faces():
    """The people stage runs MTCNN's networks in channels-last memory (for speed): the boxes, scores and
    landmarks must be those of the library's own layout."""
    import torch
    from facenet_pytorch import MTCNN

    from socialpipe.pipeline.media.video import stream_frames
    from socialpipe.stages.people.detectors import channels_last

    frames = np.stack([cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
                       for _, frame in stream_frames(probe(SAMPLE_VIDEO), step=47)][:8])
    plain = MTCNN(keep_all=True, min_face_size=20).detect(frames, landmarks=True)
    model = channels_last(MTCNN(keep_all=True, min_face_size=20))
    assert all(net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
               for net in (model.pnet, model.rnet, model.onet))
    fast = model.detect(frames, landmarks=True)
    found = 0
    for expected, got in zip(zip(*plain), zip(*fast)):
        for a, b in zip(expected, got):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            assert a.shape == b.shape and np.abs(a - b).max() < 1e-3
        found += len(expected[0])
    assert found >= 16  # the sample's three faces on most of the frames


def test_opencv_cascade_backend_runs(tmp_path):
    video = probe(video_from_frames(tmp_path / "face.mp4", [_face_frame(80, size=(320, 240))] * 10))
    tracks = PeopleStage(PeopleConfig(detector="opencv", min_track_s=0.0)).detect(video)
    assert tracks.track_ids == [1] and tracks.landmarks is None


def test_yolo_paths_run_end_to_end_on_a_random_model(tmp_path):
    """Plumbing only: a randomly initialised YOLO built from ultralytics' yaml, no weights needed."""
    video = probe(video_from_frames(tmp_path / "face.mp4", [_face_frame(80, size=(320, 240))] * 6))
    people = PeopleStage(PeopleConfig(person_detector="yolo", person_model="yolo11n.yaml", min_track_s=0.0,
                                      min_confidence=0.0)).detect(video)
    assert 1 in people.track_ids and people.kinds[1] == "face"
    faces = PeopleStage(PeopleConfig(detector="yolo", detector_model="yolo11n.yaml", min_confidence=0.0)).detect(video)
    assert isinstance(faces, Tracks)
    assert set(faces.kinds.values()) <= {"face"}


@pytest.mark.skipif(reachable("github.com"), reason="this machine can download YOLO weights, so there is no offline error")
def test_yolo_without_weights_offline_is_a_clear_error(tiny_video):
    with pytest.raises(SocialpipeError, match="not on this machine and could not be fetched.*--set people.person_model"):
        PeopleStage(PeopleConfig(person_detector="yolo", person_model="yolo11m.pt",
                                 trust_pickled_weights=True)).detect(probe(tiny_video))
    with pytest.raises(SocialpipeError, match="needs face weights"):
        PeopleStage(PeopleConfig(detector="yolo")).detect(probe(tiny_video))


def test_pickled_yolo_weights_are_never_loaded_unless_trusted(tiny_video, tmp_path):
    """A crafted .pt file would run code when unpickled; without people.trust_pickled_weights it is not opened."""
    import pickle

    marker = tmp_path / "ran.txt"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    weights = tmp_path / "face.pt"
    weights.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(SocialpipeError, match="are a Python pickle, which runs code when loaded.*trust_pickled_weights"):
        PeopleStage(PeopleConfig(detector="yolo", detector_model=str(weights))).detect(probe(tiny_video))
    assert not marker.exists()


def test_rejoin_needs_appearance_and_position_to_agree():
    class V:
        fps, width, height = 10.0, 640, 360

    look_a, look_b = np.zeros((16, 8), np.float32), np.zeros((16, 8), np.float32)
    look_a[2, 3], look_b[10, 1] = 1.0, 1.0

    def piece(tid, frames, x, look):
        frames = list(frames)
        return (Boxes(np.tile([x, 50, x + 60, 130.0], (len(frames), 1)), np.ones(len(frames)),
                      track_id=np.full(len(frames), tid), frame_index=np.array(frames)),
                np.tile(look.ravel(), (len(frames), 1)))

    def both(first, second):
        return Boxes.concat([first[0], second[0]]), np.concatenate([first[1], second[1]])

    settings = PeopleConfig()
    joined, why = rejoin(*both(piece(1, range(0, 20), 100, look_a), piece(2, range(40, 60), 110, look_a)), V, settings)
    assert set(joined.track_id.tolist()) == {1} and why[0]["reason"].startswith("reappeared")
    other_look = both(piece(1, range(0, 20), 100, look_a), piece(2, range(40, 60), 110, look_b))
    assert set(rejoin(*other_look, V, settings)[0].track_id.tolist()) == {1, 2}
    far = both(piece(1, range(0, 20), 100, look_a), piece(2, range(40, 60), 400, look_a))
    assert set(rejoin(*far, V, settings)[0].track_id.tolist()) == {1, 2}
    edge = both(piece(1, range(0, 20), 575, look_a), piece(2, range(40, 60), 578, look_a))
    assert "right edge" in rejoin(*edge, V, PeopleConfig(rejoin_max_shift=0.01))[1][0]["reason"]


def test_detections_index_like_the_trackers_expect():
    d = _TrackerInput(Boxes(np.array([[0, 0, 10, 20], [5, 5, 7, 9]]), np.array([0.9, 0.2]), np.zeros((2, 5, 2))))
    assert d.xywh.tolist() == [[5, 10, 10, 20], [6, 7, 2, 4]]
    high = d[d.conf > 0.5]
    assert len(high) == 1 and high.boxes.landmarks.shape == (1, 5, 2) and high.cls.tolist() == [0.0]


def test_speaker_boxes_grow_faces_and_prefer_person_boxes():
    face = np.array([[100, 50, 140, 100]])
    box = head_and_shoulders(face, 2.0, 640, 360)[0]
    assert box.tolist() == [80, 37.5, 160, 137.5]
    assert head_and_shoulders(np.array([[0, 0, 40, 50]]), 3.0, 640, 360)[0][0] == 0  # clipped
    tracks = Tracks.from_rows([
        {"track_id": 1, "frame_index": 0, "xyxy": [100, 50, 140, 100]},
        {"track_id": 2, "frame_index": 0, "xyxy": [60, 30, 200, 360]},
    ], fps=10, kinds={1: "face", 2: "person"}, person_of_face={1: 2})
    assert tracks.speaker_box(1, 0, 640, 360, 2.0).tolist() == [60, 30, 200, 360]
    assert tracks.speaker_box(1, 5, 640, 360, 2.0) is None


def test_large_frames_are_decoded_small_and_boxes_come_back_in_original_pixels(tmp_path):
    video = probe(video_from_frames(tmp_path / "big.mp4", [_face_frame(240, size=(1920, 1080), x=900, y=300)] * 6))
    full = PeopleStage(PeopleConfig(max_side=1920, min_track_s=0.0)).detect(video)
    small = PeopleStage(PeopleConfig(max_side=640, min_track_s=0.0)).detect(video)
    assert full.track_ids == small.track_ids == [1]
    assert np.abs(full.xyxy - small.xyxy).max() < 12  # pixels of the 1920x1080 frame
    assert 880 < small.xyxy[0, 0] < 1000 and small.xyxy[0, 2] > 1050


def _cut_scene(face_x: int, background: tuple[int, int, int]) -> np.ndarray:
    frame = _face_frame(80, size=(320, 240), x=face_x)
    frame[frame == 180] = 0
    mask = (frame == 0).all(axis=2)
    frame[mask] = background
    return frame


def test_no_track_crosses_a_shot_cut(tmp_path):
    # the same face in the same place on both sides of a cut (only the background changes): the tracker alone
    # would carry one track through; the cut must end it
    frames = [_cut_scene(120, (200, 60, 40))] * 12 + [_cut_scene(124, (40, 90, 210))] * 12
    video = probe(video_from_frames(tmp_path / "cut.mp4", frames))
    tracks = PeopleStage(PeopleConfig(detect_fps=10.0)).detect(video)
    assert tracks.meta["shots"] == [[0, 11], [12, 23]]
    spans = {tid: (int(tracks.for_track(tid).frame_index.min()), int(tracks.for_track(tid).frame_index.max()))
             for tid in tracks.track_ids}
    assert len(spans) == 2 and all(last < 12 or first >= 12 for first, last in spans.values()), spans
    uncut = PeopleStage(PeopleConfig(detect_fps=10.0, shot_threshold=0)).detect(video)
    assert uncut.meta["shots"] == [[0, 23]] and len(uncut.track_ids) == 1


def test_a_one_frame_shot(tmp_path):
    frames = [_cut_scene(120, (200, 60, 40))] * 8 + [_cut_scene(40, (40, 90, 210))] + \
             [_cut_scene(120, (200, 60, 40))] * 8
    video = probe(video_from_frames(tmp_path / "flash.mp4", frames))
    tracks = PeopleStage(PeopleConfig(detect_fps=10.0, min_track_s=0.0)).detect(video)
    assert tracks.meta["shots"] == [[0, 7], [8, 8], [9, 16]]
    for tid in tracks.track_ids:  # every track stays inside one shot
        frames_of = tracks.for_track(tid).frame_index
        assert (frames_of < 8).all() or (frames_of == 8).all() or (frames_of > 8).all()


def test_a_cross_dissolve_is_a_cut_and_a_moving_face_is_not(tmp_path):
    """Two shots joined by a one-second cross-dissolve (each frame too close to the last for the content
    detector): a cut is placed inside the dissolve and no track crosses it. A face gliding across a still
    background changes as much over a second but is no blend of the window's ends: no cut."""
    first, second = _cut_scene(120, (60, 170, 60)).astype(float), _cut_scene(124, (40, 90, 210)).astype(float)
    blend = [first + (second - first) * k / 21 for k in range(1, 21)]
    video = probe(video_from_frames(tmp_path / "dissolve.mp4", [first] * 15 + blend + [second] * 15))
    tracks = PeopleStage(PeopleConfig(detect_fps=10.0, min_track_s=0.0)).detect(video)
    (cut,) = tracks.meta["gradual_cuts"]
    assert 15 <= cut < 35 and [s[0] for s in tracks.meta["shots"]] == [0, cut], tracks.meta["shots"]
    for tid in tracks.track_ids:
        frames_of = tracks.for_track(tid).frame_index
        assert (frames_of < cut).all() or (frames_of >= cut).all()
    moving = [_cut_scene(40 + 6 * k, (200, 60, 40)) for k in range(25)]  # ends 24 apart (of 255), residual 0.69
    glide = PeopleStage(PeopleConfig(detect_fps=10.0, min_track_s=0.0)).detect(
        probe(video_from_frames(tmp_path / "glide.mp4", moving)))
    assert glide.meta["gradual_cuts"] == [] and len(glide.meta["shots"]) == 1


def _between_bars(frame: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((frame.shape[0], width, 3), np.uint8)
    left = (width - frame.shape[1]) // 2
    out[:, left:left + frame.shape[1]] = frame
    return out


def test_a_cut_is_found_in_a_picture_between_black_bars(tmp_path):
    """A portrait phone video shown in a landscape frame fills a third of it or less: the bars' black, the same
    on both sides of a cut, diluted the content detector's change under its threshold (the street interview
    lost all five cuts that way). The cut is judged on the picture inside the bars, and people.json says where
    the picture was."""
    from socialpipe.stages.people.shots import ShotCuts

    a, b = _cut_scene(120, (200, 60, 40)), _cut_scene(124, (40, 90, 210))
    for width in (640, 960, 1280):  # the picture is half, a third, a quarter of the frame
        cuts = ShotCuts(25.0, 27.0)
        for i, frame in enumerate([_between_bars(a, width)] * 12 + [_between_bars(b, width)] * 12):
            cuts.add(i, frame)
        assert cuts.starts == [0, 12], (width, cuts.starts)
    frames = [_between_bars(a, 960)] * 12 + [_between_bars(b, 960)] * 12
    video = probe(video_from_frames(tmp_path / "bars.mp4", frames))
    tracks = PeopleStage(PeopleConfig(detect_fps=10.0)).detect(video)
    assert tracks.meta["shots"] == [[0, 11], [12, 23]]
    (picture,) = tracks.meta["shot_picture"]
    assert picture["from_frame"] == 0 and abs(picture["xyxy"][0] - 320) <= 8 and abs(picture["xyxy"][2] - 640) <= 8


def test_a_video_that_changes_format_keeps_finding_cuts_on_each_picture():
    """A compilation: a full-frame shot, then two shots of a portrait video between bars. The cut into the
    portrait video is found on the old picture, and the cut between its two shots on the new one (the
    picture's box is looked for again after a cut). Whole frames without bars are judged whole, as before."""
    from socialpipe.stages.people.shots import ShotCuts

    a, b, c = _cut_scene(120, (200, 60, 40)), _cut_scene(124, (40, 90, 210)), _cut_scene(118, (60, 170, 60))
    frames = [cv2.resize(a, (960, 240))] * 30 + [_between_bars(b, 960)] * 30 + [_between_bars(c, 960)] * 30
    cuts = ShotCuts(25.0, 27.0)
    for i, frame in enumerate(frames):
        cuts.add(i, frame)
    assert cuts.starts == [0, 30, 60]
    assert [frame for frame, _ in cuts.boxes_used] == [0, 42]  # the new box once it held 0.5 s
    assert cuts.pictures(960, 240)[0] == {"from_frame": 0, "xyxy": [0, 0, 960, 240]}
    whole = ShotCuts(25.0, 27.0)
    for i, frame in enumerate([a] * 10):
        whole.add(i, frame)
    assert whole.pictures(320, 240) == []


def test_a_coarser_pyramid_runs_the_first_stage_on_fewer_sizes_and_finds_the_same_faces():
    """``people.pyramid_factor`` reaches MTCNN: fewer image sizes for its first network, the sample's faces
    found all the same (the coarser default was chosen on real clips: docs/people.md)."""
    from socialpipe.pipeline.contracts.boxes import box_iou
    from socialpipe.pipeline.media.video import stream_frames
    from socialpipe.stages.people.detectors import MtcnnDetector

    frames = [frame for _, frame in stream_frames(probe(SAMPLE_VIDEO), step=94)][:4]
    found, sizes = {}, {}
    for factor in (0.709, 0.6):
        detector = MtcnnDetector(PeopleConfig(pyramid_factor=factor))
        seen: list = []
        hook = detector.model.pnet.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
        try:
            found[factor] = detector.detect(frames)
        finally:
            hook.remove()
        sizes[factor] = len(seen)
    assert sizes[0.6] < sizes[0.709], sizes
    assert sum(map(len, found[0.709])) >= 10
    for fine, coarse in zip(found[0.709], found[0.6]):
        assert len(fine) == len(coarse)
        for box in fine.xyxy:
            assert box_iou(box, coarse.xyxy).max() > 0.7


class _CountingDetector:
    """A stand-in detector: one 40 px face per frame at x = the frame's number; it keeps every proposal."""

    def __init__(self, refines: bool = True):
        self.searched, self.proposed = [], {}
        if refines:
            self.refine = self._refine

    def detect(self, frames):
        self.searched += [int(frame[0, 0, 0]) for frame in frames]
        return [Boxes(np.array([[frame[0, 0, 0], 0.0, frame[0, 0, 0] + 40.0, 40.0]]), np.ones(1)) for frame in frames]

    def _refine(self, frames, proposals):
        for frame, boxes in zip(frames, proposals):
            self.proposed[int(frame[0, 0, 0])] = boxes
        return [Boxes(boxes, np.full(len(boxes), 0.9)) for boxes in proposals]


def _stream(numbers):
    return [(n, np.full((2, 2, 3), n, np.uint8)) for n in numbers]


def test_the_whole_frame_is_searched_every_nth_detection_and_at_each_shot_start():
    """``people.search_every`` 2: a shot's first detection frame and every second one after it are searched;
    the frames between get their neighbours' faces, moved straight between them, to re-find; every frame comes
    out once, in order, across batches and shots; the video's last frames are re-found from the frame before."""
    from socialpipe.stages.people.search import FaceSearch

    detector = _CountingDetector()
    search = FaceSearch(detector, every=2)
    shots = {n: 0 if n < 25 else 1 for n in range(0, 45, 5)}  # shot 1 starts at frame 25 (detection 5 of 9)
    frames = sorted(shots)
    done = search.add(_stream(frames[:4]), [shots[n] for n in frames[:4]])
    done += search.add(_stream(frames[4:]), [shots[n] for n in frames[4:]])
    done += search.finish()
    assert [index for (index, _), _, _ in done] == frames
    assert [shot for _, shot, _ in done] == [shots[n] for n in frames]
    assert detector.searched == [0, 10, 20, 25, 35]
    assert sorted(detector.proposed) == [5, 15, 30, 40]
    # a face on both searched frames: proposed halfway between them, and where each saw it
    assert list(detector.proposed[5][:, 0]) == [5.0, 0.0, 10.0] and list(detector.proposed[15][:, 0]) == [15.0, 10.0, 20.0]
    assert list(detector.proposed[30][:, 0]) == [30.0, 25.0, 35.0]  # between 25 and 35, both in shot 1
    assert list(detector.proposed[40][:, 0]) == [35.0]  # after the last searched frame: where that frame saw it
    assert search.counts == {"whole_frame": 5, "near_neighbours": 4}


def test_a_shot_that_ends_between_searches_re_finds_from_its_own_frames_only():
    from socialpipe.stages.people.search import FaceSearch

    detector = _CountingDetector()
    search = FaceSearch(detector, every=3)
    shots = [0, 0, 0, 0, 0, 1]  # shot 0: detections 0-4 (searched 0 and 3), shot 1 from the sixth
    done = search.add(_stream(range(6)), shots) + search.finish()
    assert detector.searched == [0, 3, 5]
    assert detector.proposed[1][0, 0] == pytest.approx(1.0) and detector.proposed[2][0, 0] == pytest.approx(2.0)
    assert list(detector.proposed[4][:, 0]) == [3.0]  # shot 0 ends before its next search: frame 3's face, not 5's
    assert len(done) == 6


def test_a_detector_that_cannot_refine_searches_every_frame():
    from socialpipe.stages.people.search import FaceSearch

    detector = _CountingDetector(refines=False)
    search = FaceSearch(detector, every=3)
    done = search.add(_stream(range(5)), [0] * 5) + search.finish()
    assert detector.searched == [0, 1, 2, 3, 4] and len(done) == 5 and search.counts["near_neighbours"] == 0


def test_searching_every_second_detection_tracks_the_sample_to_the_same_targets(sample_tracks):
    """``people.search_every=2`` through the whole stage: half the detection frames searched whole, the others
    re-found, and the tracks still meet the sample's targets with the same tracks and landmarks on the boxes."""
    tracks = PeopleStage(PeopleConfig(search_every=2)).detect(probe(SAMPLE_VIDEO))
    scores = score_people(tracks, load_tracks(SAMPLE_TRACKS, fps=None))
    assert scores["idf1"] >= 0.90 and scores["mota"] >= 0.85, scores
    counts = tracks.meta["face_search"]["frames"]
    assert counts["whole_frame"] > 0 and abs(counts["whole_frame"] - counts["near_neighbours"]) <= 1, counts
    assert sample_tracks.meta["face_search"]["frames"]["near_neighbours"] == 0
    assert len(tracks.track_ids) == len(sample_tracks.track_ids)
    assert np.isfinite(tracks.landmarks).all(axis=(1, 2)).mean() > 0.95


def test_the_meta_says_every_frame_was_searched_when_the_detector_cannot_re_find():
    """OpenCV's cascade has no ``refine``: ``search_every=2`` searches every detection frame, and the meta says so."""
    settings = PeopleConfig(detector="opencv", search_every=2, face_embedding="none")
    tracks = PeopleStage(settings).detect(probe(SAMPLE_VIDEO))
    search = tracks.meta["face_search"]
    assert search["every"] == 1 and search["frames"]["near_neighbours"] == 0 and search["frames"]["whole_frame"] > 0


def test_mtcnn_re_finds_faces_from_rough_proposals_and_drops_proposals_on_no_face():
    """MTCNN's last network alone on proposed boxes: boxes shifted by a fifth of a face come back onto the face
    the whole-frame search found (with landmarks); a box on the wall is dropped."""
    from socialpipe.pipeline.contracts.boxes import box_iou
    from socialpipe.pipeline.media.video import stream_frames
    from socialpipe.stages.people.detectors import MtcnnDetector

    frames = [frame for _, frame in stream_frames(probe(SAMPLE_VIDEO), step=94)][:4]
    detector = MtcnnDetector(PeopleConfig())
    found = detector.detect(frames)
    assert sum(map(len, found)) >= 10
    proposals = []
    for boxes in found:
        side = boxes.xyxy[:, 2] - boxes.xyxy[:, 0]
        shifted = boxes.xyxy + np.stack([side, -side, side, -side], axis=1) * 0.2
        proposals.append(np.concatenate([shifted, [[2.0, 2.0, 40.0, 40.0]]]))  # the frame's corner: no face
    refound = detector.refine(frames, proposals)
    for boxes, again, proposed in zip(found, refound, proposals):
        assert len(again) == len(boxes), (boxes.xyxy, again.xyxy)
        assert np.isfinite(again.landmarks).all()
        for box, shifted in zip(boxes.xyxy, proposed):
            assert box_iou(box, again.xyxy).max() > 0.75
            assert box_iou(box, again.xyxy).max() > box_iou(box, shifted[None]).max()  # moved back onto the face
