"""Identity across shots and transitions: real people cut together, scored against hand-made ground truth.

    python benchmarks/cut_together.py --clips DIR [--out socialpipe_runs/cut_together]
        [--config NAME[:section.key=value,...]]...

DIR holds three of the public clips of the development list (never committed, never in CI; fetch them
as docs/people.md says): ``talkshow.mp4`` (a talk show: host and guest), ``street.mp4`` (a street
interview: interviewer and interviewee) and ``tbbt.mp4`` (a sitcom opening). The script cuts 9 shots
out of them, in which 4 people speak, each in two shots and each shot taken where the person seen speaking
is the one heard, and joins them twice on an 856x480 canvas: with hard cuts (``cuts.mp4``) and with 0.6 s
cross-dissolves of picture and sound (``dissolves.mp4``, ffmpeg ``xfade``/``acrossfade``). The ground
truth was made by hand, by watching and listening: per shot, who speaks, when (from the words' times),
and where the speaker's face is (a horizontal span of the source frame). It is written beside the
videos (``*.truth.json``) to read.

Each configuration runs people, speech and link on both videos and is scored at 5 moments a second of
true speech, leaving out 0.4 s either side of a transition (there the picture is two shots):
- **speaker box**: the box the pipeline hands the answer stage at that moment (the voice speaking,
  its track on that frame) has its centre inside the true speaker's span;
- **persons per person**: how many of the pipeline's persons hold a true person's right boxes (1 is
  right; more is one person split into several);
- **voices per person**, and **tracks across a transition** (a track with boxes on both sides of one);
- **DER** (no collar, overlap scored) of who spoke when from the voices alone (``speech.json``) and by
  person (``who_spoke_when.rttm``: voices met faces), against the hand-made turns.

Configurations run side by side in one run; the first is the reference. Example:
``--config default --config campplus:speech.voice_embedding=campplus``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CANVAS = (856, 480)
DISSOLVE_S = 0.6
EDGE_S = 0.4  # moments this close to a transition are not scored
SAMPLE_HZ = 5.0


@dataclass(frozen=True)
class Shot:
    """A piece of a clip: ``speaks`` (start, end) seconds of the clip in which ``person`` speaks, seen at
    ``span`` (left and right of their face, as fractions of the clip's width)."""

    clip: str
    start_s: float
    end_s: float
    person: str
    speaks: tuple[float, float]
    span: tuple[float, float]


# By hand: the shots' people and spans from their frames, the speech from watching and listening (the words'
# times from the transcript of the whole clip).
SHOTS = (
    Shot("talkshow", 0.0, 4.1, "host", (0.0, 3.9), (0.55, 0.9)),  # two-shot: the host asks, the guest listens
    Shot("street", 6.5, 13.4, "interviewee", (6.9, 12.9), (0.2, 0.85)),  # her close-up: she answers
    Shot("tbbt", 0.0, 2.3, "sheldon", (0.0, 2.3), (0.2, 0.6)),  # Sheldon speaks, Leonard's edge at the right
    Shot("street", 13.6, 18.2, "interviewer", (14.1, 17.5), (0.05, 0.75)),  # his close-up: he asks
    Shot("talkshow", 6.8, 11.5, "host", (6.8, 11.5), (0.25, 0.8)),  # the host's close-up: she goes on
    Shot("tbbt", 5.0, 8.2, "sheldon", (5.0, 6.8), (0.25, 0.44)),  # wider, Sheldon behind Leonard (left): he answers
    Shot("street", 18.4, 26.4, "interviewee", (18.6, 26.4), (0.2, 0.85)),  # her close-up again: she explains
    Shot("talkshow", 16.0, 18.5, "guest", (16.1, 18.4), (0.25, 0.8)),  # the guest's close-up: she answers
    Shot("street", 0.2, 6.3, "interviewer", (0.2, 6.1), (0.0, 0.5)),  # two-shot: he asks, she listens on the right
)


def clip_sizes(clips: Path) -> dict[str, tuple[int, int]]:
    sizes = {}
    for name in {s.clip for s in SHOTS}:
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                              "stream=width,height", "-of", "csv=p=0", str(clips / f"{name}.mp4")],
                             check=True, capture_output=True, text=True).stdout
        width, height = (int(v) for v in out.strip().split(","))
        sizes[name] = (width, height)
    return sizes


def on_canvas(i: int) -> str:
    """The filters that put input ``i`` on the CANVAS (picture scaled to its height and centred, 25 fps; sound mono
    16 kHz), as ``[v{i}]`` and ``[a{i}]``. The picture's left edge is then (canvas width - its width) / 2."""
    width, height = CANVAS
    return (f"[{i}:v]scale=-2:{height},pad={width}:{height}:(ow-iw)/2:0,setsar=1,fps=25,format=yuv420p,"
            f"settb=AVTB[v{i}];[{i}:a]aresample=16000,aformat=channel_layouts=mono[a{i}]")


def build(clips: Path, out: Path, dissolve: bool) -> tuple[Path, dict]:
    """The video, and its ground truth: per shot its place on the joined video and the speaker's span there."""
    video = out / ("dissolves.mp4" if dissolve else "cuts.mp4")
    sizes = clip_sizes(clips)
    width, height = CANVAS
    inputs, filters, truth, at = [], [], [], 0.0
    for i, shot in enumerate(SHOTS):
        inputs += ["-ss", f"{shot.start_s}", "-t", f"{shot.end_s - shot.start_s}", "-i", str(clips / f"{shot.clip}.mp4")]
        filters.append(on_canvas(i))
        src_w, src_h = sizes[shot.clip]
        shown_w = src_w * height / src_h
        left = (width - shown_w) / 2
        span = tuple(round((left + f * shown_w) / width, 3) for f in shot.span)
        offset = at - shot.start_s
        truth.append({"clip": shot.clip, "from_s": round(shot.start_s, 3), "start_s": round(at, 3),
                      "end_s": round(at + shot.end_s - shot.start_s, 3), "person": shot.person,
                      "speaks": [round(shot.speaks[0] + offset, 3), round(shot.speaks[1] + offset, 3)],
                      "span": span})
        at += shot.end_s - shot.start_s - (DISSOLVE_S if dissolve else 0.0)
    v, a = "v0", "a0"
    if dissolve:
        for i in range(1, len(SHOTS)):
            offset = truth[i]["start_s"]
            filters.append(f"[{v}][v{i}]xfade=transition=fade:duration={DISSOLVE_S}:offset={offset}[x{i}];"
                           f"[{a}][a{i}]acrossfade=d={DISSOLVE_S}[y{i}]")
            v, a = f"x{i}", f"y{i}"
    else:
        filters.append("".join(f"[v{i}][a{i}]" for i in range(len(SHOTS))) + f"concat=n={len(SHOTS)}:v=1:a=1[x][y]")
        v, a = "x", "y"
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", ";".join(filters), "-map", f"[{v}]",
                    "-map", f"[{a}]", "-c:v", "libx264", "-crf", "20", "-c:a", "aac", str(video)], check=True)
    transitions = [s["start_s"] + (DISSOLVE_S / 2 if dissolve else 0.0) for s in truth[1:]]
    record = {"video": video.name, "shots": truth, "transitions_s": [round(t, 3) for t in transitions],
              "made_by": "hand: who speaks and where, per shot (see benchmarks/cut_together.py)"}
    video.with_suffix(".truth.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return video, record


def score(run, truth: dict) -> dict:
    """Speaker-box accuracy and identity counts of one run against the video's ground truth."""
    from socialpipe.pipeline.contracts.timebase import time_to_frame

    tracks, transcript, links, video = run.tracks, run.transcript, run.links, run.video
    transitions = np.array(truth["transitions_s"])
    right = moments = 0
    persons: dict[str, set] = {}
    voices: dict[str, set] = {}
    failures = {"no voice": 0, "no box": 0, "another face": 0}
    for shot in truth["shots"]:
        start, end = shot["speaks"]
        for t in np.arange(start, end, 1 / SAMPLE_HZ):
            if len(transitions) and np.min(np.abs(transitions - t)) < EDGE_S:
                continue
            moments += 1
            speaking = [u for u in transcript.speech_turns if u.start_s <= t < u.end_s]
            if not speaking:
                failures["no voice"] += 1
                continue
            voice = max(speaking, key=lambda u: u.end_s - u.start_s).speaker
            voices.setdefault(shot["person"], set()).add(voice)
            frame = int(time_to_frame(np.array([t]), video.fps, video.frame_count)[0])
            track = links.track_at(voice, frame, tracks, t)
            if track is None:
                failures["no box"] += 1
                continue
            x1, _, x2, _ = tracks.xyxy[(tracks.track_id == track) & (tracks.frame_index == frame)][0]
            centre = (x1 + x2) / 2 / video.width
            if shot["span"][0] <= centre <= shot["span"][1]:
                right += 1
                persons.setdefault(shot["person"], set()).add(links.person_of_track.get(track, track))
            else:
                failures["another face"] += 1
    from socialpipe.pipeline.contracts.artifacts import Transcript, Utterance
    from socialpipe.pipeline.evaluation.scoring import diarization_error

    reference = Transcript.from_utterances([Utterance(*shot["speaks"], shot["person"]) for shot in truth["shots"]])
    der = {kind: diarization_error(reference.activity_annotation(), hypothesis)["der"] for kind, hypothesis in
           (("audio", transcript.activity_annotation()), ("audio-visual", links.who_spoke_when(transcript)))}
    crossing = 0
    for tid in tracks.track_ids:
        times = tracks.frame_index[tracks.track_id == tid] / video.fps
        crossing += any(times.min() < t - EDGE_S and times.max() > t + EDGE_S for t in transitions)
    return {"speaker_box": right / moments if moments else float("nan"), "moments": moments,
            "persons_per_person": {p: len(s) for p, s in sorted(persons.items())},
            "voices_per_person": {p: len(s) for p, s in sorted(voices.items())},
            "tracks_across": crossing, "failures": failures, "der": der}


def parse_config(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    return name, [o for o in overrides.split(",") if o]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True, help="folder with talkshow.mp4, street.mp4, tbbt.mp4")
    parser.add_argument("--out", type=Path, default=Path("socialpipe_runs/cut_together"))
    parser.add_argument("--config", action="append", default=None, help="NAME[:section.key=value,...]")
    args = parser.parse_args()
    missing = [f"{n}.mp4" for n in sorted({s.clip for s in SHOTS}) if not (args.clips / f"{n}.mp4").is_file()]
    if missing:
        raise SystemExit(f"{args.clips} lacks {', '.join(missing)}: fetch them as docs/people.md says")
    import socialpipe
    from socialpipe.pipeline.presentation.report import load_run

    args.out.mkdir(parents=True, exist_ok=True)
    videos = [build(args.clips, args.out, dissolve) for dissolve in (False, True)]
    rows = []
    for config in args.config or ["default"]:
        name, overrides = parse_config(config)
        for video, truth in videos:
            folder = args.out / f"{video.stem}-{name}"
            socialpipe.run(video, out=folder, until="link", settings=overrides, force=True)
            rows.append((name, video.stem, score(load_run(folder), truth)))
    print("| config | video | speaker box | moments | persons per person | voices per person | tracks across | "
          "DER audio | DER by person | failures |")
    print("|---|---|---:|---:|---|---|---:|---:|---:|---|")
    for name, stem, r in rows:
        print(f"| {name} | {stem} | {r['speaker_box']:.0%} | {r['moments']} | "
              f"{' '.join(f'{p} {n}' for p, n in r['persons_per_person'].items())} | "
              f"{' '.join(f'{p} {n}' for p, n in r['voices_per_person'].items())} | {r['tracks_across']} | "
              f"{r['der']['audio']:.3f} | {r['der']['audio-visual']:.3f} | "
              f"{', '.join(f'{k} {v}' for k, v in r['failures'].items() if v)} |")


if __name__ == "__main__":
    main()
