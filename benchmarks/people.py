"""Speed of the people stage at default settings: video-seconds per wall-second, and where time goes.

    python benchmarks/people.py [--video sample_videos/conversation.mp4 --transcript FILE]

Runs the stage once to warm up (model load), then once measured, and prints the real-time
factor together with the shares of decoding, detection, tracking (with appearance
histograms) and post-processing (re-join, smoothing, interpolation), all from that one run.
Then runs the link stage on those tracks and the transcript (the sample's ground truth by
default) and prints its time as a share of people + link.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from socialpipe.pipeline.contracts.config import LinkConfig, PeopleConfig
from socialpipe.pipeline.contracts.formats import load_transcript
from socialpipe.pipeline.media.video import probe
from socialpipe.stages.link import LinkStage
from socialpipe.stages.people import PeopleStage

SAMPLE = Path(__file__).resolve().parent.parent / "sample_videos" / "conversation.mp4"
SAMPLE_TRANSCRIPT = SAMPLE.with_suffix(".transcript.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=SAMPLE)
    parser.add_argument("--transcript", type=Path, default=SAMPLE_TRANSCRIPT, help="voices for the link stage")
    args = parser.parse_args()
    video = probe(args.video)
    stage = PeopleStage(PeopleConfig())
    stage.detect(video)  # warm-up: model load, caches
    started = time.perf_counter()
    tracks = stage.detect(video)
    wall_s = time.perf_counter() - started
    timing = tracks.meta["timing_s"]
    print(f"video: {video.path}, {video.width}x{video.height}, {video.duration_s:.1f} s at {video.fps:g} fps; "
          f"detections every {tracks.meta['detect_every_frames']} frames")
    print(f"people stage: {wall_s:.2f} s wall, {video.duration_s / wall_s:.2f}x real time "
          f"(goal: at least 2x), {len(tracks.track_ids)} tracks")
    for part, seconds in timing.items():
        print(f"  {part[:-2]:<7} {seconds:6.2f} s  {seconds / wall_s:6.1%}")
    rest = wall_s - sum(timing.values())
    print(f"  {'other':<7} {rest:6.2f} s  {rest / wall_s:6.1%}")
    started = time.perf_counter()
    LinkStage(LinkConfig()).link(video, tracks, load_transcript(args.transcript))
    link_s = time.perf_counter() - started
    print(f"link stage: {link_s:.2f} s, {link_s / (wall_s + link_s):.1%} of people + link")


if __name__ == "__main__":
    main()
