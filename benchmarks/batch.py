"""Wall time of ``socialpipe batch`` on one machine: 1 worker, 2 worker processes, 2 workers on a local Ray.

    python benchmarks/batch.py [--videos 8] [--seconds 12] [--until link]

The videos are cuts of the bundled sample (``--seconds`` long, from different offsets, so no two are the
same file) run through the offline stages up to ``--until``; every configuration starts from an empty batch
folder and runs in its own ``socialpipe batch`` process, start-up (imports, Ray) included. Printed: wall
time per configuration and its ratio to 1 worker, the peak resident memory of the largest process, and how often each model was loaded per worker (read from
``batch.json``), which shows that a worker loads its models once however many videos it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "sample_videos" / "conversation.mp4"


def cut_videos(folder: Path, count: int, seconds: float) -> None:
    folder.mkdir(parents=True)
    for k in range(count):
        start = (k * 3.0) % max(38.0 - seconds, 1.0)
        subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{start}", "-i", str(SAMPLE), "-t", f"{seconds}",
                        "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(folder / f"clip{k:02d}.mp4")],
                       check=True)


def batch(videos: Path, out: Path, until: str, extra: list[str]) -> tuple[float, float, dict]:
    """(wall seconds, peak resident MB of the largest process, the batch record) of one batch command."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen([sys.executable, "-c", "from socialpipe.cli import main; main()", "batch",
                                    str(videos), "--out", str(out), "--until", until, "--json", *extra],
                                   stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)  # ru_maxrss: the largest of the process and its reaped workers
        wall = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"batch {' '.join(extra)} failed: {stderr.read().decode()[-1500:]}")
        return wall, usage.ru_maxrss / 1024, json.loads(stdout.read())


def loads_per_worker(record: dict) -> str:
    workers: dict[str, dict] = defaultdict(dict)
    videos: dict[str, int] = defaultdict(int)
    for video in record["videos"].values():
        workers[video["worker"]] = video["model_loads"]  # the counts after the worker's last video
        videos[video["worker"]] += 1
    return "; ".join(f"{videos[w]} videos, loads {dict(sorted(loads.items()))}" for w, loads in sorted(workers.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--until", default="link", choices=["people", "speech", "link"])
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray configuration")
    args = parser.parse_args()
    configurations = [("1 worker", []), ("2 workers", ["--workers", "2"])]
    if not args.no_ray:
        configurations.append(("2 workers, local Ray", ["--workers", "2", "--ray"]))
    with tempfile.TemporaryDirectory() as scratch:
        videos = Path(scratch) / "videos"
        cut_videos(videos, args.videos, args.seconds)
        rows = []
        for label, extra in configurations:
            rows.append((label, *batch(videos, Path(scratch) / label.replace(" ", "_").replace(",", ""), args.until,
                                       extra)))
    base = rows[0][1]
    print(f"socialpipe batch: {args.videos} videos of {args.seconds:g} s, --until {args.until}, {os.cpu_count()} cores "
          "(each configuration one process from an empty folder, start-up included)")
    print(f"{'configuration':<22} {'wall s':>7} {'x 1 worker':>10} {'s per video':>11} {'peak MB':>8}  "
          "models loaded per worker")
    for label, wall, peak, record in rows:
        print(f"{label:<22} {wall:>7.1f} {wall / base:>10.2f} {wall / args.videos:>11.1f} {peak:>8.0f}  "
              f"{loads_per_worker(record)}")
    print("(peak MB: resident memory of the largest single process; with 1 worker that process does all the work. "
          "Ray's own processes are not counted.)")
    minutes = sum(v["duration_s"] for v in rows[0][3]["videos"].values()) / 60
    stages: dict[str, float] = defaultdict(float)
    for video in rows[0][3]["videos"].values():
        for stage, seconds in video["stage_seconds"].items():
            stages[stage] += seconds or 0.0
    print("1 worker, seconds of stage work per minute of video: " +
          ", ".join(f"{stage} {seconds / minutes:.1f}" for stage, seconds in stages.items()) +
          f"; all stages {sum(stages.values()) / minutes:.1f}; wall {base / minutes:.1f} (start-up and probing included)")


if __name__ == "__main__":
    main()
