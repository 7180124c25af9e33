"""Face identity: tracks of one face in several shots become one person; faces seen together never do; faces
too small, turned or blurred give no identity; faces alike enough that only being seen together told them apart
give none either."""

from __future__ import annotations

import json

import numpy as np
import pytest

from socialpipe.pipeline.contracts.artifacts import Tracks
from socialpipe.pipeline.contracts.config import PeopleConfig
from socialpipe.pipeline.media.video import probe
from socialpipe.stages.people.identity import chosen_faces, cluster_persons, frontalness, sharpness
from tests.conftest import video_from_frames


def _tracks(spans: dict[int, tuple[int, int]], side: float = 60.0, landmarks=None) -> Tracks:
    rows = [{"track_id": t, "frame_index": f, "xyxy": [10 * t, 10, 10 * t + side, 10 + side], "landmarks": landmarks}
            for t, (first, last) in spans.items() for f in range(first, last + 1)]
    return Tracks.from_rows(rows, fps=10.0)


def test_tracks_of_one_face_in_two_shots_are_one_person_and_faces_seen_together_are_two():
    a, b = np.eye(4)[0], np.eye(4)[1]
    tracks = _tracks({1: (0, 9), 2: (0, 9), 3: (10, 19), 4: (10, 19)})  # shot 1: A and B; shot 2: B and A
    persons = cluster_persons(tracks, {1: a, 2: b, 3: b + 0.05, 4: a + 0.05}, threshold=0.45)
    assert persons[1] == persons[4] != persons[2] == persons[3]
    assert sorted(set(persons.values())) == [1, 2]  # numbered by first appearance


def test_a_track_without_an_embedding_is_a_person_of_its_own():
    tracks = _tracks({1: (0, 9), 2: (10, 19), 3: (20, 29)})
    persons = cluster_persons(tracks, {1: np.eye(4)[0], 3: np.eye(4)[0]}, threshold=0.45)
    assert persons[1] == persons[3] and persons[2] not in (persons[1],)


def test_faces_told_apart_only_by_being_seen_together_give_no_identity():
    """Two people whose faces are as alike as one person's (the samples' drawn faces come from one photograph):
    the constraint keeps the two apart in the shot that shows both, but the faces cannot say which is which in
    a later shot, so no track is joined to another."""
    a = np.eye(4)[0]
    tracks = _tracks({1: (0, 9), 2: (0, 9), 3: (10, 19)})
    persons = cluster_persons(tracks, {1: a, 2: a + 0.1, 3: a + 0.05}, threshold=0.45)
    assert len(set(persons.values())) == 3


def test_faces_too_small_or_turned_away_are_not_embedded():
    eyes_nose = [[20, 20], [40, 20], [30, 30], [22, 40], [38, 40]]
    profile = [[20, 20], [40, 20], [45, 30], [22, 40], [38, 40]]  # the nose past an eye: turned away
    settings = PeopleConfig(identity_frames=3)
    assert frontalness(np.array(eyes_nose, float)) == 1.0 and frontalness(np.array(profile, float)) == 0.0
    chosen = chosen_faces(_tracks({1: (0, 59)}, landmarks=eyes_nose), settings)
    assert len(chosen) == 3 and all(0 <= f <= 59 for f in chosen)  # one face from each third of the track
    assert len(chosen_faces(_tracks({1: (0, 9)}, landmarks=eyes_nose), settings)) == 1  # 1 s: one face is enough
    assert chosen_faces(_tracks({1: (0, 29)}, landmarks=profile), settings) == {}
    assert chosen_faces(_tracks({1: (0, 29)}, side=20.0, landmarks=eyes_nose), settings) == {}


def test_a_blurred_face_is_less_sharp_than_a_sharp_one():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (64, 64)).astype(np.uint8)
    assert sharpness(sharp) > 100 * sharpness(np.full((64, 64), 128, np.uint8)) + 1


@pytest.fixture(scope="module")
def two_shots_of_one_face(tmp_path_factory):
    """The astronaut's photograph in a first shot, a plain wall, then the same face again: two tracks."""
    from skimage import data

    face = data.astronaut()[30:230, 140:340]  # her face and hair, 200 x 200
    first = np.zeros((360, 640, 3), np.uint8)
    first[:] = (30, 60, 120)
    second = np.zeros_like(first)
    second[:] = (200, 180, 150)  # another room: a cut
    first[80:280, 40:240] = face
    second[100:300, 400:600] = face
    frames = [first] * 15 + [second] * 15
    return video_from_frames(tmp_path_factory.mktemp("identity") / "two_shots.mp4", frames, fps=10.0)


def test_one_face_in_two_shots_is_one_person_through_the_people_stage(two_shots_of_one_face, tmp_path):
    from socialpipe.stages.people import PeopleStage

    tracks = PeopleStage(PeopleConfig(detect_fps=10.0, min_track_s=0.0)).detect(probe(two_shots_of_one_face))
    assert len(tracks.track_ids) == 2, tracks.meta
    assert len(set(tracks.persons.values())) == 1 and set(tracks.persons) == set(tracks.track_ids)
    assert tracks.meta["identity"]["without_identity"] == []
    back = Tracks.from_json(json.loads(json.dumps(tracks.to_json())))
    assert back.persons == tracks.persons
    off = PeopleStage(PeopleConfig(detect_fps=10.0, min_track_s=0.0, face_embedding="none")).detect(
        probe(two_shots_of_one_face))
    assert off.persons == {} and off.meta["identity"].startswith("off")


def _faces(vectors, every: int = 10):
    from socialpipe.stages.people.identity import Face

    return [Face(k * every, 100.0, np.asarray(v, np.float32)) for k, v in enumerate(vectors)]


def test_a_track_whose_face_becomes_another_person_s_is_cut_where_its_box_jumps():
    """A cut the shot detector missed: one track runs from A's face (frames 0-34, on the left) into B's (35-79,
    further right; faces embedded every 10 frames); the faces differ past SPLIT_DISTANCE, so the track is cut at
    frame 35, where the box jumps, and B's part is a new track with B's faces."""
    from socialpipe.stages.people.identity import split_where_faces_change

    a, b = np.eye(4)[0], np.eye(4)[1]  # 1.41 apart
    rows = [{"track_id": 1, "frame_index": f, "xyxy": [10 + (60 if f >= 35 else 0), 10, 70 + (60 if f >= 35 else 0), 70]}
            for f in range(80)] + [{"track_id": 2, "frame_index": f, "xyxy": [300, 10, 360, 70]} for f in range(80)]
    tracks = Tracks.from_rows(rows, fps=10.0)
    faces = {1: _faces([a, a + 0.05, a, a - 0.05, b, b + 0.05, b]), 2: _faces([b] * 7)}
    split, split_faces, record = split_where_faces_change(tracks, faces)
    assert record == [{"track": 1, "new_track": 3, "frame": 35, "distance": pytest.approx(1.414, abs=0.01)}]
    assert split.kinds[3] == "face"
    assert set(split.frame_index[split.track_id == 1]) == set(range(35))
    assert set(split.frame_index[split.track_id == 3]) == set(range(35, 80))
    assert len(split_faces[1]) == 4 and len(split_faces[3]) == 3
    assert list(split.track_id[split.frame_index == 50]) == [2, 3]  # rows stay sorted by (frame, track)


def test_one_face_that_varies_is_not_cut_and_neither_is_a_single_odd_face():
    """One person's faces vary (here means up to 0.3 apart; in real tracks up to 0.42) and one face may be odd
    (a real track's first face was 0.78 from the next): neither cuts the track."""
    from socialpipe.stages.people.identity import face_change

    a, b = np.eye(4)[0], np.eye(4)[1]
    odd = a + 0.78 * np.eye(4)[2]
    assert face_change(_faces([a, a + 0.1, a + 0.2, a + 0.3, a + 0.2, a + 0.1])) is None
    assert face_change(_faces([odd, a, a + 0.05, a, a - 0.05, a])) is None  # one odd face is not a change
    assert face_change(_faces([a, a, b])) is None  # too few faces to tell


def test_faces_embedded_in_helper_processes_are_the_ones_embedded_here(monkeypatch):
    """dlib's descriptor uses one core and holds Python's lock, so faces are shared out to helper processes
    (``face_helpers``) when there are cores to spare: the vectors, and their order, must be those this process
    gives alone, and those of the descriptor cut from the whole frame."""
    import dlib

    from socialpipe.pipeline.contracts.formats import load_tracks
    from socialpipe.pipeline.media.models import THREADS_VARIABLE
    from socialpipe.stages.people import face_helpers
    from socialpipe.stages.people.identity import DlibFaceEmbedding, embed_faces
    from tests.conftest import SAMPLE_DIR

    video = probe(SAMPLE_DIR / "shots.mp4")
    tracks = load_tracks(SAMPLE_DIR / "shots.tracks.json", video.fps)
    settings = PeopleConfig()
    model = DlibFaceEmbedding(settings)
    started, answers = [], []
    monkeypatch.setattr(face_helpers._Helper, "__init__", _counting(face_helpers._Helper.__init__, started))
    receive = face_helpers._Helper.receive
    monkeypatch.setattr(face_helpers._Helper, "receive",
                        lambda helper, *args: answers.append(receive(helper, *args)) or answers[-1])
    monkeypatch.setenv(THREADS_VARIABLE, "3")
    shared = embed_faces(video, tracks, model, settings)
    assert len(started) == 2
    assert len(answers) == 2 and all(answer is not None and len(answer) >= 8 for answer in answers)  # they did work
    monkeypatch.setenv(THREADS_VARIABLE, "1")
    alone = embed_faces(video, tracks, model, settings)
    assert len(started) == 2  # one core: no helper

    class WholeFrame:  # the descriptor as dlib cuts the chip itself
        def embed(self, frame, xyxy):
            x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
            points = model.shape(frame, dlib.rectangle(x1, y1, x2, y2))
            return np.asarray(model.model.compute_face_descriptor(frame, points), np.float32)

    whole = embed_faces(video, tracks, WholeFrame(), settings)
    assert sum(map(len, shared.values())) >= face_helpers.MIN_SHARED
    for other in (alone, whole):
        assert shared.keys() == other.keys()
        for tid in shared:
            assert [f.frame for f in shared[tid]] == [f.frame for f in other[tid]]
            assert max(np.abs(a.vector - b.vector).max() for a, b in zip(shared[tid], other[tid])) < 1e-6


def test_a_helper_that_fails_leaves_its_faces_to_this_process(monkeypatch):
    from socialpipe.stages.people import face_helpers

    class Model:
        dimension = 2

        def chip(self, frame, xyxy):
            return np.full((face_helpers.CHIP_SIZE, face_helpers.CHIP_SIZE, 3), int(xyxy[0]), np.uint8)

        def embed_chips(self, chips):
            return [np.array([c[0, 0, 0], 1.0], np.float32) for c in chips]

    monkeypatch.setattr(face_helpers, "thread_budget", lambda: 2)
    monkeypatch.setattr(face_helpers.sys, "executable", "/bin/false")  # the helper exits at once
    with face_helpers.SharedEmbedder(Model(), "dlib", faces=20) as embedder:
        assert len(embedder.helpers) == 1
        for i in range(20):
            embedder.add(i, np.zeros((4, 4, 3), np.uint8), np.array([i, 0, 1, 1]))
        results = embedder.results()
        assert embedder.helpers == []  # dropped
    assert [key for key, _ in results] == list(range(20))
    assert [float(vector[0]) for _, vector in results] == list(range(20))


def _counting(function, calls: list):
    def counted(*args, **kwargs):
        calls.append(1)
        return function(*args, **kwargs)

    return counted
