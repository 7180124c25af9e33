"""Speed of the whole perception (people, speech, link) and each part's share, on 2 CPU cores.

    python benchmarks/perception.py [VIDEO ...] [--no-720p] [--asd-precision auto|float32|bfloat16|int8]
                                    [--detector mtcnn|blazeface] [--set SECTION.KEY=VALUE ...] [--repeat N]
                                    [--against SECTION.KEY=VALUE ...] [--device cpu|cuda|cuda:N|auto]

For each video (default: the bundled sample, then the sample scaled to 1280x720 so that the
picture work grows while the content stays the same) it runs the three perception stages once on a
3 s cut (start-up: imports and model loads, printed on its own and not counted) and then once on the
whole video, and prints from that run:
- the real-time factor of the whole perception (video seconds per wall second; goals: at least 2.5x on
  640x360, at least 2x on 720p);
- each part's share of the total: decoding, shot cuts, face detection, tracking and post-processing
  (people stage); ASR and diarization (speech stage); active speaker detection (LR-ASD, including its
  own decode of the face crops), the mouth-activity fallback and the linking itself (link stage).
  Goal: active speaker detection at most 15% of the total.

With ``--repeat N`` each video's whole run is repeated N times: the run with the median total is printed
in full, then the spread of the real-time factor and of the active speaker's share over the N runs, and
the goals are judged on the medians (on a shared 2-core machine one run's figure moves by 5-10%).

With ``--against SECTION.KEY=VALUE`` (repeatable) a second configuration (the first's settings with these
changed) runs beside the first in the same process, the two alternating run by run (first, second, first,
...), so that the machine's drift over the hour falls on both alike: both are reported, then the ratio of
their median real-time factors and each part's median time side by side.

The first line names the machine: the CPU, torch's CPU kernels (AVX2, AVX512) and whether it computes
bfloat16 natively (then ``link.asd_precision: auto`` runs the active-speaker network in bfloat16, else in
float32): figures from two machines compare only with these in view. With ``--device cuda`` (every stage's
models on the GPU, as ``socialpipe run --device``) it names the GPU too; dlib's face embedding stays on the CPU.

The stages report their parts' times in their artifacts (``meta.timing_s``); "other" is what a stage
spent outside them (audio decoding, resampling, writing nothing: no files are written here).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_videos" / "conversation.mp4"
GOALS = {360: 2.5, 720: 2.0}  # video height -> real-time factor the perception-speed issue asks for
ASD_GOAL = 0.15


def cut(video: Path, seconds: float, folder: Path) -> Path:
    out = folder / f"{video.stem}_first{seconds:g}s.mp4"
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(video), "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "ultrafast", "-c:a", "aac", str(out)], check=True)
    return out


def scaled(video: Path, height: int, folder: Path) -> Path:
    out = folder / f"{video.stem}_{height}p.mp4"
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(video), "-vf", f"scale=-2:{height}", "-c:v", "libx264",
                    "-preset", "fast", "-crf", "20", "-c:a", "copy", str(out)], check=True)
    return out


def perceive(path: Path, config) -> dict:
    """People, speech and link on ``path`` with ``config``'s settings; wall seconds per stage and the stages'
    own part timings."""
    from socialpipe.pipeline.media.video import probe
    from socialpipe.stages.link import LinkStage
    from socialpipe.stages.people import PeopleStage
    from socialpipe.stages.speech import SpeechStage

    video = probe(path)
    walls, parts = {}, {}
    started = time.perf_counter()
    tracks = PeopleStage(config.people).detect(video)
    walls["people"] = time.perf_counter() - started
    started = time.perf_counter()
    transcript = SpeechStage(config.speech).listen(video)
    walls["speech"] = time.perf_counter() - started
    started = time.perf_counter()
    links = LinkStage(config.link).link(video, tracks, transcript)
    walls["link"] = time.perf_counter() - started
    for stage, artifact in (("people", tracks), ("speech", transcript), ("link", links)):
        parts[stage] = {name[:-2]: seconds for name, seconds in artifact.meta["timing_s"].items()}
    return {"video": video, "walls": walls, "parts": parts, "tracks": len(tracks.track_ids),
            "asd_precision": links.meta.get("speaking", {}).get("precision", "?"),
            "shots": len(tracks.meta.get("shots", [])), "voices": len(transcript.speakers),
            "linked": sum(link.track_id is not None for link in links.links)}


LABELS = {
    ("people", "decode"): "decode (every frame)", ("people", "shots"): "shot cuts (PySceneDetect)",
    ("people", "detect"): "face detection", ("people", "track"): "tracking (ByteTrack)",
    ("people", "post"): "track post-processing", ("speech", "asr"): "ASR (faster-whisper)",
    ("speech", "diarization"): "diarization", ("link", "asd"): "active speaker (LR-ASD)",
    ("link", "mouth"): "mouth-activity fallback", ("link", "link"): "linking",
}


def goal_for(video) -> float:
    """The real-time factor asked for at the nearest height GOALS names."""
    return GOALS[min(GOALS, key=lambda h: abs(h - video.height))]


def report(result: dict) -> None:
    video, walls, parts = result["video"], result["walls"], result["parts"]
    total = sum(walls.values())
    factor = video.duration_s / total
    goal = goal_for(video)
    print(f"\n{Path(video.path).name}: {video.width}x{video.height}, {video.duration_s:.1f} s at {video.fps:g} fps; "
          f"{result['shots']} shots, {result['tracks']} tracks, {result['voices']} voices, {result['linked']} linked")
    print(f"  perception {total:6.1f} s  {factor:5.2f}x real time  (goal for {video.height}p: at least {goal:g}x: "
          f"{'met' if factor >= goal else 'NOT met'})")
    for stage in ("people", "speech", "link"):
        print(f"  {stage:<8}{walls[stage]:8.2f} s  {walls[stage] / total:6.1%}")
        for part, seconds in parts[stage].items():
            print(f"    {LABELS.get((stage, part), part):<28}{seconds:7.2f} s  {seconds / total:6.1%}")
        rest = walls[stage] - sum(parts[stage].values())
        print(f"    {'other':<28}{rest:7.2f} s  {rest / total:6.1%}")
    asd = parts["link"].get("asd", 0.0) / total
    print(f"  active speaker share {asd:.1%} in {result['asd_precision']} "
          f"(goal: at most {ASD_GOAL:.0%}: {'met' if asd <= ASD_GOAL else 'NOT met'})")


def spread(results: list[dict]) -> dict:
    """The run with the median total of ``results``, and the medians and ranges of the real-time factor and
    of the active speaker's share over them."""
    totals = [sum(r["walls"].values()) for r in results]
    factors = sorted(r["video"].duration_s / t for r, t in zip(results, totals))
    shares = sorted(r["parts"]["link"].get("asd", 0.0) / t for r, t in zip(results, totals))
    middle = len(results) // 2
    median = sorted(range(len(results)), key=totals.__getitem__)[middle]
    return {"median_run": results[median], "factor": (factors[middle], factors[0], factors[-1]),
            "asd_share": (shares[middle], shares[0], shares[-1])}


def report_spread(results: list[dict]) -> None:
    found = spread(results)
    report(found["median_run"])
    video = found["median_run"]["video"]
    goal = goal_for(video)
    (factor, low, high), (share, least, most) = found["factor"], found["asd_share"]
    print(f"  over {len(results)} runs: real time {factor:.2f}x median ({low:.2f}-{high:.2f}; goal {goal:g}x: "
          f"{'met' if factor >= goal else 'NOT met'}), active speaker share {share:.1%} median "
          f"({least:.1%}-{most:.1%}; goal at most {ASD_GOAL:.0%}: {'met' if share <= ASD_GOAL else 'NOT met'})")


def part_medians(results: list[dict]) -> dict:
    """(stage, part) -> median seconds over ``results``, with each stage's wall time as (stage, "")."""
    keys = {(stage, part) for r in results for stage in r["parts"] for part in r["parts"][stage]}
    keys |= {(stage, "") for r in results for stage in r["walls"]}
    value = lambda r, stage, part: r["walls"][stage] if not part else r["parts"][stage].get(part, 0.0)  # noqa: E731
    order = lambda key: (("people", "speech", "link").index(key[0]), key[1])  # noqa: E731
    return {key: sorted(value(r, *key) for r in results)[len(results) // 2] for key in sorted(keys, key=order)}


def report_against(first: list[dict], second: list[dict], changed: list[str]) -> None:
    """The second configuration against the first: median real-time factors and their ratio, then each part."""
    factor = lambda runs: spread(runs)["factor"][0]  # noqa: E731
    print(f"\n  {' '.join(changed)} against the first: real time {factor(second):.2f}x against {factor(first):.2f}x "
          f"({factor(second) / factor(first):.2f} times as fast; medians of {len(first)} alternating runs each)")
    mine, theirs = part_medians(second), part_medians(first)
    for (stage, part), seconds in theirs.items():
        label = stage if not part else "  " + LABELS.get((stage, part), part)
        other = mine.get((stage, part), 0.0)
        ratio = f"{other / seconds:5.2f}x" if seconds > 0.01 else "     "
        print(f"    {label:<30}{seconds:7.2f} s -> {other:7.2f} s  {ratio}")


def machine(torch) -> str:
    """The CPU and what torch runs on it: the figures depend on it (without native bfloat16 the active-speaker
    network runs in float32, and on an AVX2 machine that made it a third of the perception, docs/link.md)."""
    import os
    import platform

    from socialpipe.stages.link.speaking import resolve_precision

    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    native = resolve_precision("auto") == "bfloat16"
    return (f"machine: {name}, {cores} cores; torch {torch.__version__} CPU kernels "
            f"{torch.backends.cpu.get_cpu_capability()}; bfloat16 native: {'yes' if native else 'no'} "
            f"(link.asd_precision auto: {'bfloat16' if native else 'float32'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help="videos to measure (default: the bundled sample)")
    parser.add_argument("--no-720p", action="store_true", help="leave out the sample scaled to 720p")
    parser.add_argument("--asd-precision", default="auto", choices=("auto", "float32", "bfloat16", "int8"),
                        help="link.asd_precision for the run (default: auto, as socialpipe run)")
    parser.add_argument("--detector", default="mtcnn", choices=("mtcnn", "blazeface"),
                        help="people.detector for the run (default: mtcnn, as socialpipe run)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="any other setting for the run (repeatable), as `socialpipe run --set` takes it")
    parser.add_argument("--repeat", type=int, default=1,
                        help="whole runs per video; above 1, the median run and the spread are reported")
    parser.add_argument("--against", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a second configuration (the first with these settings changed, repeatable), run "
                             "alternating with the first in this process and compared with it")
    parser.add_argument("--device", default=None, help="where every model runs, as `socialpipe run --device` takes "
                        "it: cpu, cuda, cuda:N or auto (default: each stage's own setting, the CPU)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    warnings.filterwarnings("ignore")
    import torch

    from socialpipe.pipeline.contracts.config import Config, apply_overrides, option_overrides
    from socialpipe.pipeline.contracts.errors import InputError

    try:
        devices = option_overrides(device=args.device)
    except InputError as exc:
        parser.error(str(exc))
    config = apply_overrides(Config(), [f"link.asd_precision={args.asd_precision}",
                                        f"people.detector={args.detector}", *devices, *args.set])

    second = apply_overrides(config, args.against) if args.against else None
    folder = Path(tempfile.mkdtemp(prefix="socialpipe-perception-bench-"))
    videos = args.videos or [SAMPLE] + ([] if args.no_720p else [scaled(SAMPLE, 720, folder)])
    print(machine(torch))
    if args.device is not None and args.device != "cpu" and torch.cuda.is_available():
        print(f"device {args.device}: {torch.cuda.get_device_name()}, torch CUDA {torch.version.cuda}")
    print(f"torch threads {torch.get_num_threads()}; start-up and model loads run on a 3 s cut first and are "
          "not counted")
    for path in videos:
        started = time.perf_counter()
        perceive(cut(path, 3.0, folder), config)
        print(f"\nstart-up on a 3 s cut of {path.name}: {time.perf_counter() - started:.1f} s")
        if second is not None:
            perceive(cut(path, 3.0, folder), second)  # its own models loaded before its runs are timed
        runs, others = [], []
        for _ in range(args.repeat):
            runs.append(perceive(path, config))
            if second is not None:
                others.append(perceive(path, second))
        for results, title in ((runs, None), (others, " ".join(args.against))):
            if not results:
                continue
            if title:
                print(f"\nwith {title}:")
            if len(results) == 1:
                report(results[0])
            else:
                report_spread(results)
        if others:
            report_against(runs, others, args.against)


if __name__ == "__main__":
    main()
