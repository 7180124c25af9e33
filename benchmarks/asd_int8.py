"""Active speaker detection in float32, bfloat16 and int8, side by side; and the int8 calibration.

    python benchmarks/asd_int8.py [RUN_FOLDER ...]          # measure (default: the two bundled samples)
    python benchmarks/asd_int8.py --calibrate [--out PATH]  # write the bundled weights' int8 ranges

Measure: for each video (a run folder with ``video.json`` and ``people.json``, or by default each bundled
sample with its ground-truth face tracks) the whole ``score_tracks`` (decode, crops, MFCCs, network, window
averaging) runs once per precision on 2 threads, after one warm-up. It prints each precision's seconds,
the ratio to float32, and how far its per-step speaking scores are from float32's: the share of steps on
the same side of 0 (speaking or not), the mean and the largest absolute difference (scores are logits;
speaking faces score about +1 to +5).

Calibrate: the int8 encoder needs, for each of its 12 convolutions, the range its outputs are quantized
over (``network.activation_ranges``: the 99.99th percentile). It is measured here on every face step of
both bundled samples (synthetic, so anyone can reproduce it; on the LR-ASD parity crops, real TalkSet
faces, every layer's range comes out lower) and written beside the weights as ``<stem>.int8.json`` with
the weights' SHA-256; int8 is used only for the weights it was made for.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = [ROOT / "sample_videos" / name for name in ("conversation.mp4", "shots.mp4")]
PERCENTILE = 99.99


def sample_inputs(video_path: Path):
    from socialpipe.pipeline.contracts.formats import load_tracks
    from socialpipe.pipeline.media.video import probe

    video = probe(video_path)
    return video_path.stem, video, load_tracks(video_path.with_suffix(".tracks.json"), video.fps)


def run_inputs(folder: Path):
    from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo, load_json

    return folder.name, load_json(VideoInfo, folder / "video.json"), load_json(Tracks, folder / "people.json")


def run_crops(video, tracks) -> list[np.ndarray]:
    """Every face run's (steps, 112, 112) uint8 crops, as the scorer cuts them."""
    from socialpipe.stages.link.speaking import face_crops, face_runs

    runs, _ = face_runs(tracks, video, 24.0)
    for run, _, crop in face_crops(video, runs):
        run.crops.append(crop)
    return [np.stack(run.crops) for run in runs if run.crops]


def calibrate(out: Path | None) -> Path:
    from socialpipe.stages.link.network import activation_ranges, load_lr_asd
    from socialpipe.stages.link.speaking import WEIGHTS

    encoder = load_lr_asd(WEIGHTS).model.visualEncoder
    crops = [torch.from_numpy(run) for path in SAMPLES for run in run_crops(*sample_inputs(path)[1:])]
    pieces = [run[start:start + 200] for run in crops for start in range(0, len(run), 200)]
    ranges = activation_ranges(encoder, pieces, PERCENTILE)
    out = out or WEIGHTS.with_name(WEIGHTS.stem + ".int8.json")
    out.write_text(json.dumps({
        "weights": WEIGHTS.name, "sha256": hashlib.sha256(WEIGHTS.read_bytes()).hexdigest(),
        "percentile": PERCENTILE, "calibrated_on": [path.name for path in SAMPLES] + [f"{sum(map(len, crops))} face steps"],
        "made_by": "benchmarks/asd_int8.py --calibrate",
        "ranges": {name: round(value, 4) for name, value in ranges.items()}}, indent=1) + "\n")
    return out


def measure(inputs) -> None:
    from socialpipe.stages.link.speaking import score_tracks

    print(f"{'video':14s} {'precision':9s} {'seconds':>7s} {'x float32':>9s} {'same side of 0':>14s} "
          f"{'mean |diff|':>11s} {'max |diff|':>10s}")
    for name, video, tracks in inputs:
        reference, base = None, None
        score_tracks(video, tracks, precision="int8")  # warm-up: imports, kernels, page cache
        for precision in ("float32", "bfloat16", "int8"):
            start = time.perf_counter()
            found, notes = score_tracks(video, tracks, precision=precision)
            seconds = time.perf_counter() - start
            scores = np.concatenate([run.scores for run in found])
            if reference is None:
                reference, base = scores, seconds
            ok = np.isfinite(reference) & np.isfinite(scores)
            diff = np.abs(scores[ok] - reference[ok])
            print(f"{name:14s} {notes['precision']:9s} {seconds:7.2f} {base / seconds:9.2f} "
                  f"{np.mean((scores[ok] > 0) == (reference[ok] > 0)):14.4f} {diff.mean():11.4f} {diff.max():10.3f}",
                  flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders (video.json + people.json)")
    parser.add_argument("--calibrate", action="store_true", help="write the bundled weights' int8 ranges")
    parser.add_argument("--out", type=Path, help="where --calibrate writes (default: beside the weights)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    if args.calibrate:
        print(f"wrote {calibrate(args.out)}")
        return 0
    measure([run_inputs(folder) for folder in args.runs] if args.runs else [sample_inputs(path) for path in SAMPLES])
    return 0


if __name__ == "__main__":
    sys.exit(main())
