"""Per-frame jobs done the way they are now and the way they were, side by side in one process.

    python benchmarks/frame_work.py [VIDEO ...] [--rounds 3] [--no-720p]

For each video (default: the bundled sample and the sample scaled to 1280x720):
- shot cuts: ``ShotCuts`` over every frame with the frames shrunk linearly (now, PySceneDetect's own way)
  and by area averaging (before); seconds, their ratio, and whether the cuts and dissolves are the same;
  and, shrunk linearly, judged on the picture inside black bars (now) against on whole frames (before);
- mouth activity, for the people stage's tracks: measured along the active-speaker model's decode (now:
  the seconds the meter itself counts; the difference of two whole runs of the active speaker, with and
  without it, moves more than that from run to run) and with a decode of its own (``measure_mouths``,
  before, and still the way where the model decodes nothing); seconds, their ratio, and whether the
  activities are the same;
- the active speaker (``score_tracks``, decode to scores) with the visual encoder run 40 steps at a time, each
  temporal convolution keeping the frames it needs from the piece before (now, ``network.Streamed``), and 80 at
  a time with 9 steps of context each side computed again for every piece (before), for the people stage's
  tracks; seconds, their ratio, and whether the scores are the same.
The ways alternate, ``--rounds`` times each; the medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_videos" / "conversation.mp4"


def shot_cuts(video, interpolation: int, bars: bool = True) -> tuple[float, tuple]:
    """Seconds of ``ShotCuts`` over every frame (decoded first), and its cuts and dissolves; without ``bars`` the
    detectors judge whole frames, the way before the picture's box inside black bars was looked for."""
    from socialpipe.pipeline.media.video import stream_frames
    from socialpipe.stages.people import shots

    class WholeFrames(shots.ShotCuts):
        def _picture_box(self, small):
            self.whole = (0, 0, small.shape[1], small.shape[0])
            return self.whole

    before, shots.CUT_INTERPOLATION = shots.CUT_INTERPOLATION, interpolation
    try:
        cuts = (shots.ShotCuts if bars else WholeFrames)(video.fps, 27.0)
        frames = list(stream_frames(video, max_side=1280))  # decoded first: only the cutting is timed
        started = time.perf_counter()
        for index, frame in frames:
            cuts.add(index, frame)
        return time.perf_counter() - started, (tuple(cuts.starts), tuple(cuts.gradual))
    finally:
        shots.CUT_INTERPOLATION = before


def speaking(video, tracks, meter=None, recomputed: bool = False) -> tuple[float, list]:
    """Seconds of the active speaker's scoring (with the mouths measured along, if given; the visual encoder
    run the way before, if ``recomputed``), and its scores."""
    from socialpipe.stages.link import speaking as module

    before = module.SpeakingScorer.visual_embeddings
    if recomputed:
        module.SpeakingScorer.visual_embeddings = recomputed_pieces
    try:
        started = time.perf_counter()
        found, _ = module.score_tracks(video, tracks, watch=None if meter is None else meter.see)
        return time.perf_counter() - started, found
    finally:
        module.SpeakingScorer.visual_embeddings = before


def recomputed_pieces(scorer, crops, steps: int = 80, reach: int = 9):
    """The visual embeddings the way before ``network.Streamed``: ``steps`` at a time, each piece with ``reach``
    steps of context each side run through the whole encoder again (float32 and bfloat16 only)."""
    import torch

    faces, parts = torch.from_numpy(crops).to(scorer.device), []
    with torch.inference_mode(), torch.autocast(scorer.device.type, dtype=torch.bfloat16,
                                                enabled=scorer.precision == "bfloat16"):
        for start in range(0, len(faces), steps):
            lo, hi = max(start - reach, 0), min(start + steps + reach, len(faces))
            visual = scorer.network.embed_visual(faces[lo:hi].float().unsqueeze(0))[0].float()
            parts.append(visual[start - lo:start - lo + min(steps, len(faces) - start)])
    return torch.cat(parts)


def mouths(video, tracks) -> tuple[float, float, object, object]:
    """Seconds the mouth activity takes along the active speaker's decode (the meter's own count) and on its own
    decode, and both results."""
    from socialpipe.stages.link.mouth import MouthMeter, measure_mouths

    meter = MouthMeter(video, tracks, 12.5)
    speaking(video, tracks, meter)
    started = time.perf_counter()
    own = measure_mouths(video, tracks, 12.5)
    return meter.seconds, time.perf_counter() - started, meter.activity(), own


def compare(path: Path, rounds: int) -> None:
    import cv2
    import numpy as np

    from socialpipe.pipeline.contracts.config import PeopleConfig
    from socialpipe.pipeline.media.video import probe
    from socialpipe.stages.people import PeopleStage

    video = probe(path)
    print(f"\n{path.name}: {video.width}x{video.height}, {video.frame_count} frames")
    times = {"linear": [], "area": [], "whole": []}
    cuts = {}
    for _ in range(rounds):
        for name, interpolation in (("linear", cv2.INTER_LINEAR), ("area", cv2.INTER_AREA),
                                    ("whole", cv2.INTER_LINEAR)):
            seconds, cuts[name] = shot_cuts(video, interpolation, bars=name != "whole")
            times[name].append(seconds)
    linear, area, whole = (statistics.median(times[name]) for name in ("linear", "area", "whole"))
    print(f"  shot cuts: linear {linear:.2f} s, area {area:.2f} s, ratio {area / linear:.2f}x; "
          f"same cuts and dissolves: {cuts['linear'] == cuts['area']} {cuts['linear']}")
    print(f"  shot cuts on the picture inside black bars {linear:.2f} s, on whole frames {whole:.2f} s, ratio "
          f"{whole / linear:.2f}x; same cuts and dissolves: {cuts['linear'] == cuts['whole']}")
    tracks = PeopleStage(PeopleConfig()).detect(video)
    speaking(video, tracks)  # warm-up: the network's load and first kernels
    times, found = {"along": [], "own": []}, None
    for _ in range(rounds):
        along, own, *found = mouths(video, tracks)
        times["along"].append(along)
        times["own"].append(own)
    along, own = statistics.median(times["along"]), statistics.median(times["own"])
    same = all(np.array_equal(getattr(found[0], name), getattr(found[1], name), equal_nan=True)
               for name in ("opening", "motion", "activity"))
    print(f"  mouth activity: along the active speaker's decode {along:.2f} s, its own decode {own:.2f} s, "
          f"ratio {own / along:.1f}x; the same activity: {same}")
    times, scores = {"streamed": [], "recomputed": []}, {}
    for _ in range(rounds):
        for way in times:
            seconds, scores[way] = speaking(video, tracks, recomputed=way == "recomputed")
            times[way].append(seconds)
    now, before = statistics.median(times["streamed"]), statistics.median(times["recomputed"])
    same = len(scores["streamed"]) == len(scores["recomputed"]) and all(
        np.array_equal(a.scores, b.scores, equal_nan=True) for a, b in zip(scores["streamed"], scores["recomputed"]))
    print(f"  active speaker: visual encoder streamed 40 steps at a time {now:.2f} s, 80 at a time with the context "
          f"recomputed {before:.2f} s, ratio {before / now:.2f}x; the same scores: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help="videos to measure (default: the bundled sample)")
    parser.add_argument("--rounds", type=int, default=3, help="times each way runs, alternating")
    parser.add_argument("--no-720p", action="store_true", help="leave out the sample scaled to 720p")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    warnings.filterwarnings("ignore")
    from perception import scaled  # benchmarks/ is on the path when this file runs as a script

    folder = Path(tempfile.mkdtemp(prefix="socialpipe-frame-work-"))
    for path in args.videos or [SAMPLE] + ([] if args.no_720p else [scaled(SAMPLE, 720, folder)]):
        compare(path, args.rounds)


if __name__ == "__main__":
    main()
