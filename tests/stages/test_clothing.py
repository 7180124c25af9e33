"""Clothing joins the face tracks that faces leave without identity: to the person whose clothes are clearly the
closest, or, far from everyone a face identifies, to one another; never against the faces, never two tracks on
screen together, never when two persons are about as close."""

from __future__ import annotations

import numpy as np
import pytest

from socialpipe.pipeline.contracts.config import PeopleConfig
from socialpipe.pipeline.media.video import probe
from socialpipe.stages.people.clothing import (MARGIN, REACH_S, Wardrobe, clothing_histogram, distances,
                                               join_by_clothing, torso_box)
from tests.conftest import video_from_frames

RED, BLUE, GREEN, GREY = (200, 30, 30), (30, 40, 200), (30, 160, 40), (120, 120, 120)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """OpenCV's Bhattacharyya distance of two histograms: the reference ``distances`` is held to."""
    import cv2

    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def _shirt(colour, noise: int = 0, seed: int = 0) -> np.ndarray:
    """The histogram of a frame that is a shirt of one colour below a face box at (100, 40)-(140, 90)."""
    frame = np.zeros((300, 240, 3), np.uint8)
    frame[:] = colour
    if noise:
        frame = np.clip(frame + np.random.default_rng(seed).integers(-noise, noise, frame.shape), 0, 255)
    return clothing_histogram(frame.astype(np.uint8), np.array([100.0, 40.0, 140.0, 90.0]))


def test_the_region_below_a_face_and_its_colours():
    assert torso_box(np.array([100.0, 40.0, 140.0, 90.0])).tolist() == [80.0, 105.0, 160.0, 180.0]
    frame = np.zeros((120, 240, 3), np.uint8)
    assert clothing_histogram(frame, np.array([100.0, 40.0, 140.0, 90.0])) is None  # the chest is out of the picture
    red, blue = _shirt(RED, 10), _shirt(BLUE, 10)
    assert distance(red, _shirt(RED, 10, seed=1)) < 0.1 < 0.9 < distance(red, blue)
    assert np.allclose(distances(np.stack([red, blue])), [[0, distance(red, blue)], [distance(red, blue), 0]],
                       atol=1e-3)


def _clothes(**colours):
    return {int(name[1:]): _shirt(colour, 10, seed=i) for i, (name, colour) in enumerate(colours.items())}


def _join(persons: dict[int, int], identified: set[int], clothes: dict, together=(), far_in_time=(),
          threshold: float = 0.4):
    """join_by_clothing on tracks ``persons`` (in order), ``together``: pairs on screen at once, ``far_in_time``:
    pairs further apart than REACH_S."""
    ids = list(persons)
    index = {t: i for i, t in enumerate(ids)}

    def matrix(pairs):
        m = np.zeros((len(ids), len(ids)), bool)
        for a, b in pairs:
            m[index[a], index[b]] = m[index[b], index[a]] = True
        return m

    return join_by_clothing(persons, identified, Wardrobe(ids, clothes, matrix(together), ~matrix(far_in_time)),
                            threshold)


def test_a_track_no_face_identifies_joins_the_person_it_is_dressed_as():
    clothes = _clothes(t1=RED, t2=BLUE, t3=RED, t4=BLUE, t5=GREEN)
    persons = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}  # faces identify 1 and 2 only
    joined, joins = _join(persons, {1, 2}, clothes)
    assert joined[3] == joined[1] != joined[2] == joined[4]
    assert joined[5] not in (joined[1], joined[2])  # dressed as no one
    assert sorted(j["track"] for j in joins) == [3, 4] and all(j["distance"] < 0.1 for j in joins)
    assert sorted(set(joined.values())) == [1, 2, 3]  # renumbered in order of first appearance


def test_clothing_never_joins_against_the_faces_or_the_screen():
    clothes = _clothes(t1=RED, t2=RED, t3=RED)
    # 1 and 2: two persons faces tell apart, dressed alike; 3 (no face identity) is as close to both
    joined, joins = _join({1: 1, 2: 2, 3: 3}, {1, 2}, clothes)
    assert len(set(joined.values())) == 3 and joins == []
    # one candidate only, but on screen with it, or a scene away
    joined, joins = _join({1: 1, 3: 2}, {1}, clothes, together=[(1, 3)])
    assert joined[1] != joined[3] and joins == []
    assert _join({1: 1, 3: 2}, {1}, clothes, far_in_time=[(1, 3)])[1] == [] and REACH_S >= 60
    assert _join({1: 1, 3: 2}, {1}, clothes, threshold=0.0)[1] == []  # 0: off
    assert [j["track"] for j in _join({1: 1, 3: 2}, {1}, clothes)[1]] == [3]


def test_the_margin_decides_between_two_persons():
    clothes = _clothes(t1=RED, t2=GREY, t3=RED)
    clothes[3] = (0.75 * clothes[1] + 0.25 * clothes[2]).astype(np.float32)  # mostly red, some grey
    near, other = distance(clothes[3], clothes[1]), distance(clothes[3], clothes[2])
    joined, _ = _join({1: 1, 2: 2, 3: 3}, {1, 2}, clothes, threshold=0.6)
    assert (joined[3] == joined[1]) == (other - near >= MARGIN)
    assert other - near >= MARGIN, (near, other)  # this mix is clearly red


def test_tracks_no_face_identifies_group_by_clothes_far_from_everyone_faces_know():
    clothes = _clothes(t1=RED, t2=BLUE, t3=BLUE, t4=BLUE)
    joined, joins = _join({1: 1, 2: 2, 3: 3, 4: 4}, {1}, clothes, together=[(2, 3)])
    assert joined[2] == joined[4] != joined[3]  # 3 is on screen with 2
    assert joined[1] not in (joined[2], joined[3]) and [j["track"] for j in joins] == [4]
    clothes = _clothes(t1=BLUE, t2=BLUE, t3=BLUE)  # as close to the person faces know: no group
    joined, joins = _join({1: 1, 2: 2, 3: 3}, {1}, clothes, together=[(1, 2), (1, 3)])
    assert len(set(joined.values())) == 3 and joins == []


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory):
    """The astronaut's face large in a red shirt, then smaller in the red shirt, then smaller in a blue one."""
    import cv2
    from skimage import data

    face = data.astronaut()[30:230, 140:340]

    def shot(size: int, top: int, left: int, shirt, wall):
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[:] = wall
        frame[top + size:, left - size // 2:left + size + size // 2] = shirt
        frame[top:top + size, left:left + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
        return frame

    frames = [shot(150, 40, 250, RED, (40, 70, 110))] * 12 + [shot(90, 60, 100, RED, (190, 180, 150))] * 12 + \
        [shot(90, 60, 420, BLUE, (90, 150, 90))] * 12
    return video_from_frames(tmp_path_factory.mktemp("clothing") / "three_shots.mp4", frames, fps=10.0)


def test_a_face_too_small_for_identity_joins_by_its_clothes_through_the_people_stage(three_shots):
    from socialpipe.stages.people import PeopleStage

    settings = dict(detect_fps=10.0, min_track_s=0.0, min_identity_px=50.0)  # faces 64 px, then 38 and 36: too small
    tracks = PeopleStage(PeopleConfig(**settings)).detect(probe(three_shots))
    first, red, blue = sorted(tracks.track_ids)
    identity = tracks.meta["identity"]
    assert list(identity["faces_embedded"]) == [str(first)], identity
    assert tracks.persons[red] == tracks.persons[first] != tracks.persons[blue]
    assert [j["track"] for j in identity["joined_by_clothing"]] == [red]
    assert identity["without_identity"] == [blue]
    off = PeopleStage(PeopleConfig(**settings, clothing_threshold=0.0)).detect(probe(three_shots))
    assert len(set(off.persons.values())) == 3 and off.meta["identity"]["joined_by_clothing"] == []


def test_a_track_cut_where_its_face_changed_keeps_the_clothes_of_each_part():
    from socialpipe.stages.people.identity import track_clothes

    red, blue = _shirt(RED, 10), _shirt(BLUE, 10)
    samples = [(1, 0, red), (1, 10, red), (1, 20, blue), (1, 30, blue), (2, 5, red)]
    splits = [{"track": 1, "new_track": 3, "frame": 20}]  # track 1 became another person at frame 20: track 3
    clothes = track_clothes(samples, splits)
    assert sorted(clothes) == [1, 2, 3]
    assert distance(clothes[1], red) < 0.05 and distance(clothes[3], blue) < 0.05 and distance(clothes[2], red) < 0.05
