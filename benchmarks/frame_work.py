"""Two per-frame jobs done the way they are now and the way they were, side by side in one process.

    python benchmarks/frame_work.py [VIDEO ...] [--rounds 3] [--no-720p]

For each video (default: the bundled sample and the sample scaled to 1280x720):
- shot cuts: ``ShotCuts`` over every frame with the frames shrunk linearly (now, PySceneDetect's own way)
  and by area averaging (before); seconds, their ratio, and whether the cuts and dissolves are the same;
- mouth activity, for the people stage's tracks: measured along the active-speaker model's decode (now:
  the time the active speaker takes with it, less the time it takes alone) and with a decode of its own
  (``measure_mouths``, before, and still the way where the model decodes nothing); seconds, their ratio,
  and whether the activities are the same.
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


def shot_cuts(video, interpolation: int) -> tuple[float, tuple]:
    from socialpipe.pipeline.media.video import stream_frames
    from socialpipe.stages.people import shots

    before, shots.CUT_INTERPOLATION = shots.CUT_INTERPOLATION, interpolation
    try:
        cuts = shots.ShotCuts(video.fps, 27.0)
        frames = list(stream_frames(video, max_side=1280))  # decoded first: only the cutting is timed
        started = time.perf_counter()
        for index, frame in frames:
            cuts.add(index, frame)
        return time.perf_counter() - started, (tuple(cuts.starts), tuple(cuts.gradual))
    finally:
        shots.CUT_INTERPOLATION = before


def speaking(video, tracks, meter=None) -> float:
    from socialpipe.stages.link.speaking import score_tracks

    started = time.perf_counter()
    score_tracks(video, tracks, watch=None if meter is None else meter.see)
    return time.perf_counter() - started


def mouths(video, tracks) -> tuple[float, float, float, object, object]:
    """Seconds the mouth activity adds to the active speaker's run (the difference of two runs, and the meter's
    own count), seconds of it on its own decode, and both results."""
    from socialpipe.stages.link.mouth import MouthMeter, measure_mouths

    alone = speaking(video, tracks)
    meter = MouthMeter(video, tracks, 12.5)
    along = speaking(video, tracks, meter) - alone
    started = time.perf_counter()
    own = measure_mouths(video, tracks, 12.5)
    return along, meter.seconds, time.perf_counter() - started, meter.activity(), own


def compare(path: Path, rounds: int) -> None:
    import cv2
    import numpy as np

    from socialpipe.pipeline.contracts.config import PeopleConfig
    from socialpipe.pipeline.media.video import probe
    from socialpipe.stages.people import PeopleStage

    video = probe(path)
    print(f"\n{path.name}: {video.width}x{video.height}, {video.frame_count} frames")
    times = {"linear": [], "area": []}
    cuts = {}
    for _ in range(rounds):
        for name, interpolation in (("linear", cv2.INTER_LINEAR), ("area", cv2.INTER_AREA)):
            seconds, cuts[name] = shot_cuts(video, interpolation)
            times[name].append(seconds)
    linear, area = statistics.median(times["linear"]), statistics.median(times["area"])
    print(f"  shot cuts: linear {linear:.2f} s, area {area:.2f} s, ratio {area / linear:.2f}x; "
          f"same cuts and dissolves: {cuts['linear'] == cuts['area']} {cuts['linear']}")
    tracks = PeopleStage(PeopleConfig()).detect(video)
    speaking(video, tracks)  # warm-up: the network's load and first kernels
    times, found = {"along": [], "counted": [], "own": []}, None
    for _ in range(rounds):
        along, counted, own, *found = mouths(video, tracks)
        times["along"].append(along)
        times["counted"].append(counted)
        times["own"].append(own)
    along, counted, own = (statistics.median(times[way]) for way in ("along", "counted", "own"))
    same = all(np.array_equal(getattr(found[0], name), getattr(found[1], name), equal_nan=True)
               for name in ("opening", "motion", "activity"))
    print(f"  mouth activity: along the active speaker's decode {along:+.2f} s (its own count {counted:.2f} s), "
          f"its own decode {own:.2f} s, ratio {own / max(along, counted):.1f}x; the same activity: {same}")


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
