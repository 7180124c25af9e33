"""Clothing: a second cue to who is who, for the face tracks whose faces cannot say.

Face identity needs a face the embedding can read: at least ``people.min_identity_px``, not turned
to a profile, not blurred. In TV and film the wide shots hold faces of 20-35 px and many shots
show a profile; each of those tracks would be a person of its own. Within a scene people keep their
clothes, and the colours below a face tell people apart where the face cannot.

Each face track's clothing is the hue-saturation-value histogram (``BINS``) of the region below
its face (``torso_box``: twice the face's width, from 0.3 to 1.8 face heights below its box),
averaged over up to ``FRAMES`` frames spread over the track (decoded in the identity step's pass over
the frames of the faces it embeds); a frame where less than ``MIN_INSIDE`` of that region is in the
picture is left out. Two tracks' clothes are as far apart as the Bhattacharyya distance of their
histograms (0: the same colours, 1: none in common), and are compared only when the tracks are at
most ``REACH_S`` apart in time (about a scene: clothes change between scenes, and two people dressed
alike an hour apart say nothing of each other).

Face identity decides first and clothing never overrides it: two persons that faces made are never
joined by clothing. Clothing joins only tracks without face identity, in two passes (``join_by_clothing``):

1. such a track joins the person with a face identity whose tracks' clothes are closest to its own
   (mean distance over the person's tracks compared), when that is within ``people.clothing_threshold``
   and closer by ``MARGIN`` than any other such person, and no track of that person is on screen with
   it; closest first;
2. the tracks left are grouped among themselves (average linkage, cut at the threshold; tracks seen
   together never in one group), and a group is one person when every person with a face identity is
   further from it, by ``MARGIN``, than its members are from each other (someone no shot shows
   clearly enough for a face identity, such as an interviewer seen from behind).

Clothes change between scenes and people dress alike (suits, uniforms): then clothing joins
nothing, because the margin is not met; it never splits anyone. ``people.clothing_threshold`` 0
turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import Tracks
from socialpipe.stages.people.postprocess import pieces

BINS = (8, 4, 4)  # hue, saturation, value
FRAMES = 8  # clothing is sampled on at most this many frames of a track, spread over it
MIN_INSIDE = 0.4  # a torso region less inside the picture than this is not sampled
MARGIN = 0.15  # how much closer the chosen person must be than any other (Bhattacharyya distance)
REACH_S = 300.0  # clothes are compared only between tracks at most this far apart in time (about a scene)


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


def distances(histograms: np.ndarray) -> np.ndarray:
    """(n, n) Bhattacharyya distances between normalised histograms (rows), as OpenCV's ``compareHist`` gives them
    (HISTCMP_BHATTACHARYYA) for one pair: 0 the same colours, 1 none in common."""
    root = np.sqrt(np.maximum(histograms, 0.0)).astype(np.float64)
    return np.sqrt(np.clip(1.0 - root @ root.T, 0.0, None))


@dataclass
class Wardrobe:
    """What clothing compares: the face tracks (in order of first appearance), their clothes (absent: never
    sampled), which pairs are on screen together (``together``, n x n) and which are close enough in time for
    their clothes to be compared (``near``: within REACH_S, a scene's length; clothes change between scenes)."""

    tracks: list[int]
    clothes: dict[int, np.ndarray]
    together: np.ndarray
    near: np.ndarray

    @classmethod
    def of(cls, tracks: Tracks, track_ids: list[int], clothes: dict[int, np.ndarray],
           together: np.ndarray) -> Wardrobe:
        spans = pieces(tracks)
        first = np.array([tracks.frame_index[spans[t][0]] for t in track_ids], np.float64) / tracks.fps
        last = np.array([tracks.frame_index[spans[t][-1]] for t in track_ids], np.float64) / tracks.fps
        gap = np.maximum(first[:, None], first[None]) - np.minimum(last[:, None], last[None])
        return cls(track_ids, clothes, together, gap <= REACH_S)


def join_by_clothing(persons: dict[int, int], identified: set[int], wardrobe: Wardrobe,
                     threshold: float) -> tuple[dict[int, int], list[dict]]:
    """Face track -> person, with the tracks outside ``identified`` (no face identity) joined by their clothes
    (the module's two passes). Returns the persons (renumbered 1.. in the order of ``persons``, first appearance)
    and one record per join."""
    ids = wardrobe.tracks
    has = np.array([t in wardrobe.clothes for t in ids])
    if threshold <= 0 or not has.any():
        return dict(persons), []
    blank = np.zeros_like(next(iter(wardrobe.clothes.values())))  # rows of tracks never sampled: never compared
    far = distances(np.stack([wardrobe.clothes.get(t, blank) for t in ids]))
    usable = wardrobe.near & has[:, None] & has[None]  # pairs whose clothes are compared
    label = np.array([persons[t] for t in ids])
    placed = np.array([t in identified for t in ids])
    joins = _join_to_persons(far, usable, wardrobe.together, label, placed, ids, threshold)
    joins += _group_the_rest(far, usable, wardrobe.together, label, placed, ids, threshold)
    numbers: dict[int, int] = {}
    return {t: numbers.setdefault(int(p), len(numbers) + 1) for t, p in zip(ids, label)}, joins


def _join_to_persons(far: np.ndarray, usable: np.ndarray, together: np.ndarray, label: np.ndarray,
                     placed: np.ndarray, ids: list[int], threshold: float) -> list[dict]:
    """Pass 1 (changes ``label`` and ``placed``): closest first, each track without face identity joins the person
    with one whose clothes are within ``threshold`` and closer by MARGIN than any other's; the sums behind the
    mean distances are updated as each track joins."""
    persons = list(dict.fromkeys(label[placed].tolist()))
    members = np.stack([placed & (label == p) for p in persons], axis=1).astype(np.float64) if persons else \
        np.zeros((len(ids), 0))
    sums = np.where(usable, far, 0.0) @ members  # (tracks, persons): summed distances to the members compared
    counts = usable.astype(np.float64) @ members
    blocked = (together.astype(np.float64) @ members) > 0
    joins: list[dict] = []
    while members.shape[1]:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where((counts > 0) & ~blocked, sums / counts, np.inf)
        mean[placed] = np.inf
        order = np.sort(mean, axis=1)
        best = order[:, 0]
        second = order[:, 1] if order.shape[1] > 1 else np.full(len(ids), np.inf)
        with np.errstate(invalid="ignore"):  # inf - inf: no candidate at all, and best is inf then
            ok = (best <= threshold) & (second - best >= MARGIN)
        if not ok.any():
            break
        i = int(np.argmin(np.where(ok, best, np.inf)))
        k = int(np.argmin(mean[i]))
        joins.append({"track": ids[i], "joins_track": ids[int(np.argmax(members[:, k]))],
                      "distance": round(float(best[i]), 3),
                      "next_person": None if not np.isfinite(second[i]) else round(float(second[i]), 3)})
        label[i], placed[i], members[i, k] = persons[k], True, 1.0
        sums[:, k] += np.where(usable[:, i], far[:, i], 0.0)
        counts[:, k] += usable[:, i]
        blocked[:, k] |= together[:, i]
    return joins


def _group_the_rest(far: np.ndarray, usable: np.ndarray, together: np.ndarray, label: np.ndarray,
                    placed: np.ndarray, ids: list[int], threshold: float) -> list[dict]:
    """Pass 2 (changes ``label``): the tracks nothing placed, grouped by their clothes (average linkage; pairs
    seen together or not compared never in one group) when every placed person is further by MARGIN than the
    group's members are from each other."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    rest = np.flatnonzero(~placed & usable.any(axis=1))
    if len(rest) < 2:
        return []
    apart = np.where(together[np.ix_(rest, rest)] | ~usable[np.ix_(rest, rest)], 1e6, far[np.ix_(rest, rest)])
    np.fill_diagonal(apart, 0.0)
    groups = fcluster(linkage(squareform(apart, checks=False), "average"), t=threshold, criterion="distance")
    joins = []
    for g in dict.fromkeys(groups.tolist()):
        group = rest[groups == g]
        if len(group) < 2:
            continue
        inside = float(far[np.ix_(group, group)][np.triu_indices(len(group), 1)].mean())
        nearest = [float(far[np.ix_(group, mine)][usable[np.ix_(group, mine)]].mean())
                   for mine in (np.flatnonzero(placed & (label == p)) for p in dict.fromkeys(label[placed].tolist()))
                   if usable[np.ix_(group, mine)].any()]
        if nearest and min(nearest) - inside < MARGIN:
            continue
        for i in group[1:]:
            label[i] = label[group[0]]
            joins.append({"track": ids[i], "joins_track": ids[group[0]], "distance": round(inside, 3),
                          "next_person": round(min(nearest), 3) if nearest else None})
    return joins
