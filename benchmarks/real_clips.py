"""Perception on every video of a folder: a table to read and a contact sheet per clip to look at.

    python benchmarks/real_clips.py DIR [--out socialpipe_runs/real_clips] [--sheet-frames 8]
        [--set section.key=value ...]

Runs ``socialpipe batch DIR --until link`` (people, speech, link with the default settings, or with the
``--set`` overrides; finished clips are kept on a re-run) and writes, beside the run folders:
- ``real_clips.md``: per clip its length and size, the tracks, the shot cuts found, the voices, the
  voices linked to a face, the share of speech time that has a speaker box (a 5 Hz sample of every
  moment some voice speaks: does that voice have a linked track on screen then?) and the seconds per
  stage. The same table is printed.
- ``<clip>/contact_sheet.png``: evenly spread frames with the boxes, names, speaking labels and the
  active-speaker score bar under each face.

The table says how much got a box, not whether the box is right: that needs ground truth
(``socialpipe score speakers``) or a person looking at the sheets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from socialpipe.pipeline.scaling.batch import BatchSettings, run_batch
from socialpipe.pipeline.contracts.config import Config, apply_overrides
from socialpipe.pipeline.presentation.report import load_run, render_contact_sheet
from socialpipe.pipeline.contracts.timebase import time_to_frame

SAMPLE_HZ = 5.0


def speech_with_box(run) -> float | None:
    """Share of the 5 Hz moments of speech (one per voice speaking) whose voice has a linked track on screen."""
    transcript, links, tracks, video = run.transcript, run.links, run.tracks, run.video
    if transcript is None or links is None or tracks is None or not len(transcript):
        return None
    times = np.arange(0, video.duration_s, 1 / SAMPLE_HZ)
    frames = time_to_frame(times, video.fps, video.frame_count)
    moments = boxed = 0
    for t, frame in zip(times.tolist(), frames.tolist()):
        for voice in {u.speaker for u in transcript.utterances if u.start_s <= t < u.end_s}:
            moments += 1
            boxed += links.track_at(voice, int(frame), tracks, t) is not None
    return boxed / moments if moments else None


def clip_row(name: str, record: dict, folder: Path, sheet_frames: int) -> dict:
    row = {"clip": name, "status": record.get("status"), "error": record.get("error")}
    if record.get("status") != "done":
        return row
    run = load_run(folder)
    video = run.video
    shots = run.tracks.meta.get("shots", []) if run.tracks is not None else []
    row.update(size=f"{video.width}x{video.height}", duration_s=video.duration_s,
               tracks=len(run.tracks.track_ids), cuts=max(len(shots) - 1, 0),
               voices=len(run.transcript.speakers), linked=sum(link.track_id is not None for link in run.links.links),
               with_box=speech_with_box(run), seconds=record.get("stage_seconds", {}))
    render_contact_sheet(run, folder / "contact_sheet.png", count=sheet_frames)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| clip | size | length s | tracks | cuts | voices | linked | speech with a box | "
             "people s | speech s | link s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row["status"] != "done":
            lines.append(f"| {row['clip']} | failed: {row['error']} |" + " |" * 9)
            continue
        seconds = row["seconds"]
        share = "-" if row["with_box"] is None else f"{row['with_box']:.0%}"
        lines.append(f"| {row['clip']} | {row['size']} | {row['duration_s']:.1f} | {row['tracks']} | {row['cuts']} | "
                     f"{row['voices']} | {row['linked']} | {share} | " + " | ".join(
                         f"{seconds.get(s, 0) or 0:.1f}" for s in ("people", "speech", "link")) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of videos")
    parser.add_argument("--out", type=Path, default=Path("socialpipe_runs/real_clips"))
    parser.add_argument("--sheet-frames", type=int, default=8)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a setting other than the default (repeatable), as `socialpipe run --set` takes it")
    args = parser.parse_args()
    config = apply_overrides(Config(), args.set)
    batch = run_batch([args.folder], args.out, BatchSettings(config=config, until="link"),
                      progress=lambda event: print(event.message) if event.stage == "batch" and event.message else None)
    rows = [clip_row(name, record, args.out / name, args.sheet_frames) for name, record in batch["videos"].items()]
    text = table(rows)
    (args.out / "real_clips.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"contact sheets: {args.out}/<clip>/contact_sheet.png")


if __name__ == "__main__":
    main()
