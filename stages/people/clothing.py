"""Clothing: a second cue to who is who, for the face tracks whose faces cannot say.

Face identity needs a face the embedding can read: at least ``people.min_identity_px``, not turned
to a profile, not blurred. In TV and film the wide shots hold faces of 20-35 px and many shots
show a profile; each of those tracks would be a person of its own. Within a scene people keep their
clothes, and the colours below a face tell people apart where the face cannot.

Each face track's clothing is the hue-saturation-value histogram (``BINS``) of the region below
its face (``torso_box``: twice the face's width, from 0.3 to 1.8 face heights below its box),
averaged over up to ``FRAMES`` frames spread over the track (decoded in the identity step's pass over
the frames of the faces it embeds); a frame where less than ``MIN_INSIDE`` of that region is in the
picture is left out. Two tracks' clothes are as far apart as the
Bhattacharyya distance of their histograms (0: the same colours, 1: none in common).

Face identity decides first and clothing never overrides it: two persons that faces made are never
joined by clothing. Clothing joins only tracks without face identity, in two passes (``join_by_clothing``):

1. such a track joins the person with a face identity whose tracks' clothes are closest to its own
   (mean distance), when that is within ``people.clothing_threshold`` and closer by ``MARGIN`` than
   any other such person, and no track of that person is on screen with it; closest first;
2. the tracks left are grouped among themselves (average linkage, cut at the threshold; tracks seen
   together never in one group), and a group is one person when every person with a face identity is
   further from it, by ``MARGIN``, than its members are from each other (someone no shot shows
   clearly enough for a face identity, such as an interviewer seen from behind).

Clothes change between scenes and people dress alike (suits, uniforms): then clothing joins
nothing, because the margin is not met; it never splits anyone. ``people.clothing_threshold`` 0
turns it off.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import Tracks
from socialpipe.stages.people.postprocess import pieces

BINS = (8, 4, 4)  # hue, saturation, value
FRAMES = 8  # clothing is sampled on at most this many frames of a track, spread over it
MIN_INSIDE = 0.4  # a torso region less inside the picture than this is not sampled
MARGIN = 0.15  # how much closer the chosen person must be than any other (Bhattacharyya distance)


def torso_box(face: np.ndarray) -> np.ndarray:
    """The region below a face box (x1, y1, x2, y2): twice its width, from 0.3 to 1.8 of its height below it."""
    x1, y1, x2, y2 = (float(v) for v in face)
    width, height, centre = x2 - x1, y2 - y1, (x1 + x2) / 2
    return np.array([centre - width, y2 + 0.3 * height, centre + width, y2 + 1.8 * height])


def clothing_histogram(frame: np.ndarray, face: np.ndarray) -> np.ndarray | None:
    """The normalised HSV histogram (flattened) of the region below ``face`` in an RGB frame; None when less than
    MIN_INSIDE of that region is in the picture, or it is under 4 pixels either way."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = torso_box(face)
    inside = np.array([max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)]).round().astype(int)
    seen = (inside[2] - inside[0]) * (inside[3] - inside[1])
    if inside[2] - inside[0] < 4 or inside[3] - inside[1] < 4 or seen < MIN_INSIDE * (x2 - x1) * (y2 - y1):
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[inside[1]:inside[3], inside[0]:inside[2]]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(BINS), [0, 180, 0, 256, 0, 256]).astype(np.float32)
    return (hist / max(float(hist.sum()), 1.0)).ravel()


def clothing_frames(tracks: Tracks) -> dict[int, list[int]]:
    """Frame -> the rows whose clothing to sample on it: up to FRAMES per face track, spread over its rows."""
    wanted: dict[int, list[int]] = {}
    for tid, rows in pieces(tracks).items():
        if tracks.kinds[tid] == "face":
            for row in rows[np.linspace(0, len(rows) - 1, min(FRAMES, len(rows))).astype(int)]:
                wanted.setdefault(int(tracks.frame_index[row]), []).append(int(row))
    return wanted


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two clothing histograms: 0 the same colours, 1 none in common."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def join_by_clothing(persons: dict[int, int], identified: set[int], clothes: dict[int, np.ndarray],
                     together: dict[tuple[int, int], bool], threshold: float) -> tuple[dict[int, int], list[dict]]:
    """Face track -> person, with the tracks outside ``identified`` (no face identity) joined by their clothes
    (the module's two passes); ``together[(a, b)]``: the two tracks are on screen at once (both orders given).
    Returns the persons (renumbered 1.. by first appearance, as ``persons`` is ordered) and one record per join."""
    persons = dict(persons)
    joins: list[dict] = []

    def apart(a: int, b: int) -> bool:
        return together.get((a, b), False)

    while True:  # pass 1: closest first, each join changing the person's tracks
        placed = identified | {j["track"] for j in joins}
        members: dict[int, list[int]] = {}
        for t in placed:
            members.setdefault(persons[t], []).append(t)
        best = None
        for t in persons:
            if t in placed or t not in clothes:
                continue
            near = sorted((float(np.mean([distance(clothes[t], clothes[m]) for m in mine if m in clothes])), p)
                          for p, mine in members.items()
                          if any(m in clothes for m in mine) and not any(apart(t, m) for m in mine))
            if not near or near[0][0] > threshold or (len(near) > 1 and near[1][0] - near[0][0] < MARGIN):
                continue
            if best is None or near[0][0] < best[0]:
                best = (near[0][0], t, near[0][1], near[1][0] if len(near) > 1 else None)
        if best is None:
            break
        d, t, p, other = best
        persons[t] = p
        joins.append({"track": t, "joins_track": min(members[p]), "distance": round(float(d), 3),
                      "next_person": None if other is None else round(float(other), 3)})
    joins += _group_the_rest(persons, identified, clothes, apart, threshold, joins)
    numbers: dict[int, int] = {}
    return {t: numbers.setdefault(p, len(numbers) + 1) for t, p in persons.items()}, joins


def _group_the_rest(persons: dict[int, int], identified: set[int], clothes: dict[int, np.ndarray], apart,
                    threshold: float, joins: list[dict]) -> list[dict]:
    """Pass 2 (changes ``persons``): the tracks no face and no first-pass join placed, grouped by their clothes
    when every person with a face identity is further by MARGIN than the group's members are from each other."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    placed = identified | {j["track"] for j in joins}
    rest = [t for t in persons if t not in placed and t in clothes]
    if len(rest) < 2:
        return []
    far = np.array([[0.0 if a == b else 1e6 if apart(a, b) else distance(clothes[a], clothes[b]) for b in rest]
                    for a in rest])
    groups = fcluster(linkage(squareform(far, checks=False), "average"), t=threshold, criterion="distance")
    members: dict[int, list[int]] = {}
    for t in placed:
        if t in clothes:
            members.setdefault(persons[t], []).append(t)
    found = []
    for g in dict.fromkeys(groups.tolist()):
        group = [t for t, k in zip(rest, groups) if k == g]
        if len(group) < 2:
            continue
        inside = float(np.mean([distance(clothes[a], clothes[b]) for a, b in itertools.combinations(group, 2)]))
        nearest = min((float(np.mean([distance(clothes[a], clothes[m]) for a in group for m in mine]))
                       for mine in members.values()), default=None)
        if nearest is not None and nearest - inside < MARGIN:
            continue
        for t in group[1:]:
            persons[t] = persons[group[0]]
            found.append({"track": t, "joins_track": group[0], "distance": round(inside, 3),
                          "next_person": None if nearest is None else round(nearest, 3)})
    return found
