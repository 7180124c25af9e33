"""Voices from local-speaker embeddings: constrained average-linkage clustering (two local speakers of
one segmentation window are never one voice), with small clusters folded into the voices they sound like."""

from __future__ import annotations

import numpy as np

from socialpipe.pipeline.contracts.config import VOICE_EMBEDDINGS, SpeechConfig

MIN_CLUSTER_S = 3.0  # a voice needs this much clean speech (summed over windows) to stand on its own...
DISTINCT_VOICE = 1.5  # ...unless it is farther than this many cluster thresholds from every longer voice


def cluster_voices(vectors: np.ndarray, seconds: np.ndarray, settings: SpeechConfig,
                   windows: np.ndarray | None = None) -> np.ndarray:
    """Cluster labels 0..n-1 of unit voice embeddings by average-linkage cosine distance, with the
    segmentation model's own word as a constraint: local speakers of one window (``windows[i]``) are
    different people, so their clusters never merge while another merge is allowed. Merging stops at
    ``voice_threshold(settings)``, or at the configured speaker count, the count kept within
    min/max speakers. Without a configured count, a cluster holding less than MIN_CLUSTER_S of speech
    joins the nearest larger one it may merge with, unless its voice is distinct (farther than
    DISTINCT_VOICE x the threshold from every larger cluster)."""
    n = len(vectors)
    if n == 1:
        return np.zeros(1, int)
    threshold = voice_threshold(settings)
    windows = np.arange(n) if windows is None else np.asarray(windows)
    low = settings.num_speakers or settings.min_speakers or 1
    high = settings.num_speakers or settings.max_speakers or n
    labels = constrained_average_linkage(vectors, windows[:, None] == windows[None, :],
                                          np.inf if settings.num_speakers else threshold, low, high)
    if settings.num_speakers is None:
        labels = absorb_small_clusters(vectors, seconds, labels, windows, threshold, low)
    _, labels = np.unique(labels, return_inverse=True)
    return labels

def voice_threshold(settings: SpeechConfig) -> float:
    """The cosine distance that separates voices: ``speech.cluster_threshold``, or when it is unset the
    voice embedding's own (its ``threshold``, measured on the development recordings: docs/speech.md)."""
    if settings.cluster_threshold is not None:
        return settings.cluster_threshold
    return float(getattr(VOICE_EMBEDDINGS.get(settings.voice_embedding), "threshold", 0.3))

def constrained_average_linkage(vectors: np.ndarray, cannot: np.ndarray, threshold: float, low: int,
                                 high: int) -> np.ndarray:
    """Agglomerative clustering with average linkage on cosine distance. Merges the closest pair of
    clusters that may merge (no cannot-link between their members) while that pair is within
    ``threshold`` and more than ``low`` clusters remain, then goes on merging (the constraints dropped
    once no allowed pair is left) while more than ``high`` remain. Each row's nearest allowed cluster
    is kept, so a merge costs O(n) plus O(n) per row whose nearest cluster took part in it. Memory: one
    float32 and one boolean n x n matrix (20 MB for the 2,000 embeddings clustered at most); ``cannot``
    is used in place."""
    n = len(vectors)
    vectors = vectors.astype(np.float32)
    raw = vectors @ vectors.T  # becomes the average distance between current clusters, constraints aside
    np.subtract(1.0, raw, out=raw)
    np.fill_diagonal(raw, np.inf)
    blocked = cannot
    np.fill_diagonal(blocked, True)
    nearest = np.zeros(n, int)
    nearest_d = np.full(n, np.inf, np.float32)

    def refresh(rows: np.ndarray) -> None:
        for first in range(0, len(rows), 256):  # row blocks, so that no n x n temporary is made
            chunk = rows[first:first + 256]
            allowed = np.where(blocked[chunk], np.float32(np.inf), raw[chunk])
            nearest[chunk] = allowed.argmin(axis=1)
            nearest_d[chunk] = allowed[np.arange(len(chunk)), nearest[chunk]]

    refresh(np.arange(n))
    size = np.ones(n, np.float32)
    alive = np.ones(n, bool)
    labels = np.arange(n)
    count = n
    while count > 1:
        i = int(np.argmin(np.where(alive, nearest_d, np.inf)))
        j, d = int(nearest[i]), float(nearest_d[i])
        if not (count > high or (d <= threshold and count > low)):
            break
        if not np.isfinite(d):  # only cannot-linked pairs are left and the count must still come down
            live = np.flatnonzero(alive)
            sub = raw[np.ix_(live, live)]
            a, b = divmod(int(np.argmin(sub)), len(live))
            i, j = int(live[a]), int(live[b])
        merged = (size[i] * raw[i] + size[j] * raw[j]) / (size[i] + size[j])
        merged[[i, j]] = np.inf
        merged[~alive] = np.inf
        raw[i], raw[:, i] = merged, merged
        raw[j], raw[:, j] = np.inf, np.inf
        blocked[i] |= blocked[j]
        blocked[:, i] = blocked[i]
        size[i] += size[j]
        alive[j] = False
        nearest_d[j] = np.inf
        labels[labels == j] = i
        count -= 1
        refresh(np.union1d(np.flatnonzero(alive & ((nearest == i) | (nearest == j))), [i]))
        to_i = np.where(blocked[:, i], np.float32(np.inf), raw[:, i])
        closer = alive & (to_i < nearest_d)
        nearest[closer], nearest_d[closer] = i, to_i[closer]
    return labels

def absorb_small_clusters(vectors: np.ndarray, seconds: np.ndarray, labels: np.ndarray, windows: np.ndarray,
                           threshold: float, low: int) -> np.ndarray:
    total = {lab: seconds[labels == lab].sum() for lab in np.unique(labels)}
    large = [lab for lab, s in total.items() if s >= MIN_CLUSTER_S]
    if not large or len(large) == len(total):
        return labels
    centroids = np.stack([vectors[labels == lab].mean(axis=0) for lab in large])  # (large, D)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    labels = labels.copy()
    for lab in sorted(set(total) - set(large), key=lambda lab: total[lab]):
        if len(np.unique(labels)) <= low:
            break
        members = labels == lab
        mean = vectors[members].mean(axis=0)
        distance = 1.0 - centroids @ (mean / max(float(np.linalg.norm(mean)), 1e-9))
        allowed = np.array([not np.isin(windows[members], windows[labels == other]).any() for other in large])
        distance[~allowed] = np.inf
        best = int(np.argmin(distance))
        if distance[best] <= DISTINCT_VOICE * threshold:
            labels[members] = large[best]
    return labels
