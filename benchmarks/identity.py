"""Who is who across shots: the people stage's persons on real clips, scored against hand-made labels.

    python benchmarks/identity.py --clips DIR [--out socialpipe_runs/identity] [--half] [--joined] [--link]
        [--config NAME[:section.key=value,...]]...

DIR holds the public clips of the development list (docs/people.md says where each comes from; never
committed, never in CI): ``tbbt.mp4``, ``friends.mp4``, ``talkshow.mp4``, ``street.mp4``,
``conference.mp4``, ``debate.mp4``, ``splitscreen.mp4`` (the clips found are used). ``--half`` also runs
each clip scaled to half its size, where most faces fall under what face identity can read (the BBT and
Friends faces are then 11-35 px): a test of what happens when faces cannot say. ``--joined`` also runs one
120 s video of whole clips cut together (the BBT opening, Friends, the talk show, the street interview,
the BBT opening again; each scaled to 480 px high and padded to 856 px wide, sound kept), labelled with
the clips' own labels: the same people seen again after other shows, and voices the diarization must
keep apart across shows.

The labels were made by hand, by looking at each track's faces: per clip, points in time and place
(seconds, and the face's centre as fractions of the frame's width and height) and whose face is there,
one point per shot in which a person is seen (a tracked face, even small or turned). Each point names the
face track whose box holds it on that frame (the smallest such box); a point no box holds counts as unfound.

Each configuration (the first is the reference) runs the people stage on every clip and prints, per clip:
- **joined**: of the pairs of labelled tracks that show one person, how many are one person;
- **wrong**: pairs of labelled tracks that show two people and were made one (the error that matters
  most: it gives one person's speech to another);
- **persons per person**: how many persons the pipeline made of the labelled people (one each is right);
then the totals, and the spread of persons per person over the clips. With ``--link`` each clip also runs
speech and link, and the same is scored on ``links.json``'s persons (``at: link``): the persons a run's
labels (``PERSON_01``...) and previews show, where voices join tracks face identity could not.

Example: ``--config default --config faces-only:people.clothing_threshold=0``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cut_together import CANVAS, on_canvas, parse_config  # noqa: E402

# By hand, from each track's faces (the people of the BBT opening, the Friends scene, the talk show and the street
# interview; the two-person clips as a check that no one is joined): (seconds, centre x, centre y, person).
LABELS = {
    "tbbt": [(0.36, 0.971, 0.57, "leonard"), (1.16, 0.53, 0.318, "sheldon"), (3.52, 0.444, 0.304, "leonard"),
             (6.52, 0.386, 0.257, "sheldon"), (6.72, 0.569, 0.458, "leonard"), (8.92, 0.376, 0.23, "leonard"),
             (12.36, 0.164, 0.186, "sheldon"), (12.4, 0.531, 0.245, "leonard"), (13.32, 0.755, 0.457, "reception"),
             (14.72, 0.466, 0.37, "reception"), (17.76, 0.337, 0.182, "sheldon"), (17.76, 0.495, 0.281, "leonard"),
             (17.76, 0.717, 0.467, "reception")],
    "friends": [(1.07, 0.019, 0.194, "ross"), (1.07, 0.269, 0.32, "rachel"), (1.07, 0.477, 0.222, "joey"),
                (1.53, 0.7, 0.293, "monica"), (3.07, 0.97, 0.477, "rachel"), (3.53, 0.294, 0.317, "phoebe"),
                (3.53, 0.671, 0.291, "ross"), (6.3, 0.115, 0.164, "ross"), (6.3, 0.355, 0.229, "joey"),
                (6.3, 0.72, 0.285, "monica"), (6.53, 0.212, 0.316, "rachel"), (9.83, 0.955, 0.258, "phoebe"),
                (11.13, 0.616, 0.278, "joey"), (11.33, 0.401, 0.235, "chandler")],
    "talkshow": [(2.07, 0.787, 0.217, "host"), (5.47, 0.493, 0.28, "guest"), (9.13, 0.522, 0.303, "host"),
                 (15.23, 0.49, 0.294, "guest"), (19.33, 0.28, 0.268, "guest")],
    "street": [(3.32, 0.265, 0.199, "interviewer"), (3.32, 0.759, 0.258, "interviewee"),
               (10.0, 0.474, 0.176, "interviewee"), (15.92, 0.44, 0.191, "interviewer"),
               (23.24, 0.535, 0.183, "interviewee"), (37.12, 0.198, 0.148, "interviewer"),
               (37.12, 0.782, 0.225, "interviewee")],
    "conference": [(11.21, 0.214, 0.246, "talker"), (11.21, 0.808, 0.25, "listener")],
    "debate": [(6.64, 0.289, 0.262, "left"), (6.64, 0.626, 0.269, "right")],
    "splitscreen": [(8.76, 0.294, 0.337, "left"), (8.76, 0.7, 0.295, "right")],
}


def halved(video: Path, folder: Path) -> Path:
    out = folder / f"{video.stem}_half.mp4"
    if not out.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(video), "-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2",
                        "-c:v", "libx264", "-crf", "18", "-c:a", "copy", str(out)], check=True)
    return out


JOINED = ("tbbt", "friends", "talkshow", "street", "tbbt")


def joined(clips: Path, folder: Path) -> tuple[Path, list]:
    """The clips of JOINED cut together on one canvas, and their labels moved onto it (a person is named with
    their clip, so two shows never share a name)."""
    out = folder / "joined.mp4"
    width, height = CANVAS
    inputs, filters, labels, at = [], [], [], 0.0
    for i, clip in enumerate(JOINED):
        path = clips / f"{clip}.mp4"
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                "stream=width,height:format=duration", "-of", "json", str(path)],
                               check=True, capture_output=True, text=True).stdout
        info = json.loads(probe)
        shown_w = info["streams"][0]["width"] * height / info["streams"][0]["height"]
        left = (width - shown_w) / 2
        inputs += ["-i", str(path)]
        filters.append(on_canvas(i))
        labels += [(at + t, (left + x * shown_w) / width, y, f"{clip}:{who}") for t, x, y, who in LABELS[clip]]
        at += float(info["format"]["duration"])
    if not out.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        filters.append("".join(f"[v{i}][a{i}]" for i in range(len(JOINED))) + f"concat=n={len(JOINED)}:v=1:a=1[x][y]")
        subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", ";".join(filters), "-map", "[x]",
                        "-map", "[y]", "-c:v", "libx264", "-crf", "20", "-c:a", "aac", str(out)], check=True)
    return out, labels


def labelled_tracks(tracks, video, labels) -> tuple[dict[int, str], int]:
    """Face track -> the person labelled on it, and how many labels no box holds."""
    from socialpipe.pipeline.contracts.timebase import time_to_frame

    found, unfound = {}, 0
    for seconds, x, y, person in labels:
        frame = int(time_to_frame(np.array([seconds]), video.fps, video.frame_count)[0])
        rows = np.flatnonzero((tracks.frame_index == frame) & np.isin(tracks.track_id, [
            t for t in tracks.track_ids if tracks.kinds[t] == "face"]))
        px, py = x * video.width, y * video.height
        boxes = tracks.xyxy[rows]
        holds = rows[(boxes[:, 0] <= px) & (px <= boxes[:, 2]) & (boxes[:, 1] <= py) & (py <= boxes[:, 3])]
        if not len(holds):
            unfound += 1
            continue
        area = (tracks.xyxy[holds, 2] - tracks.xyxy[holds, 0]) * (tracks.xyxy[holds, 3] - tracks.xyxy[holds, 1])
        found[int(tracks.track_id[holds[int(np.argmin(area))]])] = person
    return found, unfound


def score(tracks, video, labels, persons=None) -> dict:
    """Pairs of labelled tracks of one person joined, of two people joined, and persons made per person
    (``persons``: track -> person; the people stage's by default)."""
    who, unfound = labelled_tracks(tracks, video, labels)
    persons = persons or tracks.persons or {t: t for t in who}
    same = joined = wrong = 0
    for a, b in itertools.combinations(sorted(who), 2):
        together = persons.get(a, -a) == persons.get(b, -b)
        if who[a] == who[b]:
            same, joined = same + 1, joined + together
        else:
            wrong += together
    people = sorted(set(who.values()))
    made = {p: len({persons.get(t, -t) for t in who if who[t] == p}) for p in people}
    return {"same": same, "joined": joined, "wrong": wrong, "made": made, "unfound": unfound, "tracks": len(who)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True, help="folder with the development clips")
    parser.add_argument("--out", type=Path, default=Path("socialpipe_runs/identity"))
    parser.add_argument("--half", action="store_true", help="also run each clip at half its size")
    parser.add_argument("--joined", action="store_true", help="also run the clips cut together into one video")
    parser.add_argument("--link", action="store_true", help="also run speech and link, and score links.json's persons")
    parser.add_argument("--config", action="append", default=None, help="NAME[:section.key=value,...]")
    args = parser.parse_args()
    clips = [c for c in LABELS if (args.clips / f"{c}.mp4").is_file()]
    if not clips:
        raise SystemExit(f"{args.clips} holds none of {', '.join(f'{c}.mp4' for c in LABELS)}: fetch them as "
                         "docs/people.md says")
    import socialpipe
    from socialpipe.pipeline.presentation.report import load_run

    videos = [(c, "full", args.clips / f"{c}.mp4", LABELS[c]) for c in clips]
    if args.half:
        videos += [(c, "half", halved(args.clips / f"{c}.mp4", args.out / "half"), LABELS[c]) for c in clips]
    if args.joined:
        if missing := sorted({c for c in JOINED if c not in clips}):
            raise SystemExit(f"--joined needs {', '.join(f'{c}.mp4' for c in missing)} in {args.clips}")
        videos.append(("joined", "full", *joined(args.clips, args.out / "joined")))
    rows = []
    for config in args.config or ["default"]:
        name, overrides = parse_config(config)
        for clip, size, video, labels in videos:
            folder = args.out / f"{clip}-{size}-{name}"
            socialpipe.run(video, out=folder, until="link" if args.link else "people", settings=overrides, force=True)
            run = load_run(folder)
            rows.append((name, "people", clip, size, score(run.tracks, run.video, labels)))
            if args.link:
                persons = dict(run.links.person_of_track)
                rows.append((name, "link", clip, size, score(run.tracks, run.video, labels, persons)))
    print("| config | at | clip | size | labelled tracks | joined | wrong | persons per person | labels unfound |")
    print("|---|---|---|---|---:|---:|---:|---|---:|")
    for name, at, clip, size, r in rows:
        print(f"| {name} | {at} | {clip} | {size} | {r['tracks']} | {r['joined']}/{r['same']} | {r['wrong']} | "
              f"{' '.join(f'{p} {n}' for p, n in r['made'].items())} | {r['unfound']} |")
    print()
    print("| config | at | joined | wrong | persons / people | persons per person, per clip (median, worst) |")
    print("|---|---|---:|---:|---:|---|")
    for name, at in dict.fromkeys((r[0], r[1]) for r in rows):
        mine = [r for n, a, *_, r in rows if (n, a) == (name, at)]
        ratios = [sum(r["made"].values()) / len(r["made"]) for r in mine if r["made"]]
        print(f"| {name} | {at} | {sum(r['joined'] for r in mine)}/{sum(r['same'] for r in mine)} | "
              f"{sum(r['wrong'] for r in mine)} | {sum(sum(r['made'].values()) for r in mine)}/"
              f"{sum(len(r['made']) for r in mine)} | {np.median(ratios):.2f}, {max(ratios):.2f} |")


if __name__ == "__main__":
    main()
