"""Generate the second bundled sample: an edited scene with shot cuts, and its ground truth.

    python sample_videos/make_sample_shots.py [--out sample_videos]

Writes ``shots.mp4`` (640x360, 25 fps, h264 + aac) with ``shots.tracks.json`` (one track per person
per shot: no track crosses a cut), ``shots.transcript.json`` and ``shots.links.json`` (each voice to
every track of its person).

The edit, four shots:
1. wide: Alice, Bob and Carol at a table; Alice asks Bob about his trip while Carol, silent,
   smiles and nods (her mouth widens and opens with her smile, not with any speech);
2. close-up of Bob, who talks for about 10 s without a pause;
3. close-up of Carol, silent, smiling and nodding, while Alice speaks off screen;
4. wide again: Bob answers briefly, Alice closes. Alice and Bob are each seen in two shots.

Faces, voices and mouths are made as in ``make_sample.py`` (scikit-image's public-domain astronaut
photograph, espeak-ng voices). Needs espeak-ng, ffmpeg and scikit-image.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sample import (  # noqa: E402  (the first sample's generator, beside this file)
    AUDIO_RATE, FPS, HEIGHT, SOURCE_FACE_XYXY, SOURCE_LANDMARKS, WIDTH, Person, background, main_for,
    mouth_openness, open_encoder, portrait, speak, to_frame,
)

from socialpipe.pipeline.contracts.artifacts import SpeakerLink, SpeakerLinks, Tracks, Transcript, Utterance  # noqa: E402

WIDE = {  # name -> card placement in the wide shot (x, y, scale)
    "Alice": (40, 120, 0.55), "Bob": (255, 112, 0.55), "Carol": (470, 124, 0.55),
}
CLOSE = {"Bob": (150, 8, 1.1), "Carol": (300, 8, 1.1)}  # close-ups, framed as shot and reverse shot
CLOSE_WALL = {"Bob": (150, 160, 170), "Carol": (205, 190, 160)}  # and against different walls
PEOPLE = {
    "Alice": Person("Alice", 0, "en-us+f3", 70, 160, 0, 0, 1, False, (1.0, 1.0, 1.0), 0.0),
    "Bob": Person("Bob", 0, "en-gb+m3", 30, 165, 0, 0, 1, True, (1.12, 0.96, 0.80), 1.7),
    "Carol": Person("Carol", 0, "en-gb-scotland+f2", 55, 170, 0, 0, 1, False, (0.82, 0.95, 1.18), 3.1),
}
LISTENER = "Carol"
# (shot, who is on screen, lines spoken in it: (speaker, text))
EDIT = [
    ("wide", ["Alice", "Bob", "Carol"], [("Alice", "Welcome back. Bob, tell us about your trip to the coast.")]),
    ("close", ["Bob"], [("Bob", "We drove along the coast for three days and every morning we stopped at a little "
                               "bakery by the harbour where the boats came back full of fish and the whole town "
                               "smelled of fresh bread and salt")]),
    ("close", ["Carol"], [("Alice", "That sounds wonderful. Did you go back there?")]),
    ("wide", ["Alice", "Bob", "Carol"], [("Bob", "Every single day."), ("Alice", "Lovely. Thank you both.")]),
]
GAP_S, SHOT_PAD_S = 0.35, 0.6


def listener_motion(t: float) -> tuple[float, float, float]:
    """The silent listener's (nod offset px, smile 0-1, mouth opening 0-1) at time t: slow nods, a smile
    that comes and goes, and the lips parting with it, none of it following the speech."""
    nod = 5 * np.sin(2 * np.pi * t / 1.1) * (np.sin(2 * np.pi * t / 7.0) > -0.2)
    smile = 0.5 + 0.5 * np.sin(2 * np.pi * t / 3.7)
    opening = 0.45 * max(0.0, np.sin(2 * np.pi * t / 2.3)) * smile
    return float(nod), float(smile), float(opening)


def build(workdir: Path):
    """Lines placed shot by shot; per-speaker audio tracks, utterances and the shots' time spans."""
    lines, shots, t = [], [], 0.0
    for kind, faces, spoken in EDIT:
        start = t
        t += SHOT_PAD_S
        for speaker, text in spoken:
            audio = speak(PEOPLE[speaker], text, workdir)
            lines.append((speaker, text, t, audio))
            t += len(audio) / AUDIO_RATE + GAP_S
        t += SHOT_PAD_S - GAP_S
        shots.append((kind, faces, start, t))
    total_s = t
    tracks = {name: np.zeros(int(np.ceil(total_s * AUDIO_RATE)) + 1, np.float32) for name in PEOPLE}
    utterances = []
    for speaker, text, start, audio in lines:
        first = int(round(start * AUDIO_RATE))
        tracks[speaker][first:first + len(audio)] += audio
        utterances.append(Utterance(first / AUDIO_RATE, (first + len(audio)) / AUDIO_RATE, speaker, text))
    return tracks, utterances, shots, total_s


def draw_person(frame: np.ndarray, card: np.ndarray, person: Person, offset: tuple[int, int], scale: float,
                opening: float, smile: float) -> tuple[np.ndarray, np.ndarray]:
    """Paste a portrait at ``offset`` with its mouth; return its face box and landmarks in frame pixels."""
    ox, oy = offset
    h, w = card.shape[:2]
    fx0, fx1, fy0, fy1 = max(ox, 0), min(ox + w, WIDTH), max(oy, 0), min(oy + h, HEIGHT)
    frame[fy0:fy1, fx0:fx1] = card[fy0 - oy:fy1 - oy, fx0 - ox:fx1 - ox]
    placed = replace(person, scale=scale)
    landmarks = to_frame(placed, SOURCE_LANDMARKS, (ox, oy))
    if person.mirror:
        landmarks = landmarks[[1, 0, 2, 4, 3]]
    left, right = landmarks[3], landmarks[4]
    centre = (left + right) / 2 + np.array([0, 1.5 * scale / 0.7])
    half_w = np.linalg.norm(right - left) * (0.32 + 0.12 * smile)
    half_h = half_w * 0.6 * opening
    point = (int(round(centre[0])), int(round(centre[1])))
    if smile > 0.05:  # the corners lift: a curved line under the lips
        cv2.ellipse(frame, point, (int(round(half_w)), max(int(round(half_w * 0.35 * smile)), 1)), 0, 10, 170,
                    (120, 40, 50), max(int(round(scale * 2)), 1), cv2.LINE_AA)
    if half_h >= 0.8:
        cv2.ellipse(frame, point, (int(round(half_w)), int(round(half_h))), 0, 0, 360, (70, 18, 28), -1, cv2.LINE_AA)
    corners = to_frame(placed, SOURCE_FACE_XYXY.reshape(2, 2), (ox, oy))
    x1, x2 = sorted(corners[:, 0])
    return np.array([x1, corners[0, 1], x2, corners[1, 1]]), landmarks


def render(out_dir: Path) -> None:
    from skimage import data

    source = data.astronaut()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        audio_tracks, utterances, shots, total_s = build(workdir)
        frame_count = int(total_s * FPS)
        openness = {name: mouth_openness(audio_tracks[name], frame_count) for name in PEOPLE}
        cards = {(name, scale): portrait(replace(p, scale=scale), source) for name, p in PEOPLE.items()
                 for scale in {WIDE[name][2], CLOSE.get(name, WIDE[name])[2]}}
        base = background()
        video_path = out_dir / "shots.mp4"
        encoder = open_encoder(sum(audio_tracks.values()), workdir, video_path)
        rows, track_of = [], {}  # (shot, person) -> track id
        first_frames = [int(round(start * FPS)) for _, _, start, _ in shots]
        for frame_index in range(frame_count):
            t = frame_index / FPS
            shot = max(k for k, first in enumerate(first_frames) if first <= frame_index)
            kind, faces = shots[shot][:2]
            frame = base.copy()
            if kind == "close":
                frame[:] = CLOSE_WALL[faces[0]]
            for name in faces:
                person = PEOPLE[name]
                x, y, scale = WIDE[name] if kind == "wide" else CLOSE[name]
                sway = 1 if kind == "wide" else 2
                dx = sway * 5 * np.sin(2 * np.pi * t / 5.0 + person.sway_phase)
                dy = sway * 2 * np.sin(2 * np.pi * t / 3.3 + person.sway_phase)
                smile, opening = 0.0, openness[name][frame_index]
                if name == LISTENER:
                    nod, smile, opening = listener_motion(t)
                    dy += nod * (scale / 0.55)
                box, landmarks = draw_person(frame, cards[name, scale], person, (int(round(x + dx)), int(round(y + dy))),
                                             scale, opening, smile)
                tid = track_of.setdefault((shot, name), len(track_of) + 1)
                rows.append({"track_id": tid, "frame_index": frame_index, "xyxy": box.tolist(), "confidence": 1.0,
                             "landmarks": landmarks.tolist()})
            encoder.stdin.write(frame.tobytes())
        encoder.stdin.close()
        if encoder.wait() != 0:
            raise SystemExit("ffmpeg failed to encode the sample video")

    provenance = {"source": "ground truth, sample_videos/make_sample_shots.py",
                  "shots": [[first, last - 1] for first, last in zip(first_frames, [*first_frames[1:], frame_count])]}
    Tracks.from_rows(rows, fps=FPS, meta=provenance).save(out_dir / "shots.tracks.json")
    Transcript.from_utterances(utterances, {"source": provenance["source"]}).save(out_dir / "shots.transcript.json")
    links = []
    for name in ("Alice", "Bob"):
        ids = tuple(sorted(t for (shot, who), t in track_of.items() if who == name))
        links.append(SpeakerLink(name, ids[0], 1.0, name, track_ids=ids, person_id=len(links) + 1))
    SpeakerLinks(tuple(links), {"source": provenance["source"],
                                "note": "Carol never speaks: her tracks are a silent listener's"}).save(
        out_dir / "shots.links.json")
    print(f"wrote {video_path} ({video_path.stat().st_size / 1e6:.2f} MB, {total_s:.1f} s, {frame_count} frames, "
          f"shots {provenance['shots']})")


def main() -> None:
    main_for(render)


if __name__ == "__main__":
    main()
