"""Names for voices and persons: given by hand (``run --name LABEL=NAME``, ``--names FILE``) or found in a
gallery (``run --gallery DIR``) of reference face photos and voice samples.

A gallery holds, per name, photos (``DIR/Alice.jpg`` or ``DIR/Alice/*.jpg``) and voice samples
(``DIR/Alice.wav`` or ``DIR/Alice/*.wav``). Each photo's largest face is found by the people stage's face
detector and embedded by its face-identity model; a name's face is the mean of its photos'. Each person of the
run (``links.json``'s persons) has the mean face of its tracks' embeddings (``people.json``'s
``meta.identity.embeddings``). Names and persons are paired one to one (the Hungarian assignment), and a pair
counts when its distance is at most FACE_MATCH_DISTANCE and every other person is FACE_MATCH_MARGIN further. A voice sample is embedded by
the model that embedded the run's voices (``speech.json``'s ``meta.voice_embeddings``) and paired the same way
with the voices, counted when the cosine similarity is at least one minus that model's clustering threshold.
Names given by hand win over gallery matches. Every match, and every name that matched nothing, is recorded
with its similarity and threshold in ``names.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from socialpipe.pipeline.contracts.artifacts import Names, SpeakerLinks, Tracks, Transcript
from socialpipe.pipeline.contracts.config import DETECTORS, FACE_EMBEDDINGS, VOICE_EMBEDDINGS, Config
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.io import not_a_regular_file, sha256_file
from socialpipe.pipeline.media.video import AUDIO_SAMPLE_RATE, read_audio_file

PHOTOS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SOUNDS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus")
FACE_MATCH_DISTANCE = 0.5  # a gallery face and a person at most this far apart (dlib) are one person (docs/link.md)
FACE_MATCH_MARGIN = 0.1  # ... and the face is at least this much nearer to that person than to any other
PHOTO_SIDE = 1280  # photos are shrunk to at most this many pixels on the longer side before detection
VOICE_SAMPLE_S = 60.0  # the first minute of a voice sample is embedded


@dataclass(frozen=True)
class Gallery:
    """Per name, its photos and voice samples."""

    folder: Path
    photos: Mapping[str, tuple[Path, ...]]
    sounds: Mapping[str, tuple[Path, ...]]

    @property
    def key(self) -> list[list[str]]:
        """Each file (relative path) and its sha256: what a run's answer depends on."""
        files = sorted({p for paths in (*self.photos.values(), *self.sounds.values()) for p in paths})
        return [[str(p.relative_to(self.folder)), sha256_file(p)] for p in files]


def read_gallery(folder: str | Path) -> Gallery:
    """The gallery in ``folder``: ``NAME.jpg`` / ``NAME.wav`` files, or ``NAME/`` folders of them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--gallery {folder}: not a folder; expected a folder of NAME.jpg photos and NAME.wav "
                         "voice samples (or NAME/ folders of them)")
    photos: dict[str, list[Path]] = {}
    sounds: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        name, files = (entry.name, sorted(entry.iterdir())) if entry.is_dir() else (entry.stem, [entry])
        for path in files:
            if not_a_regular_file(path) is not None:
                continue
            kind = photos if path.suffix.lower() in PHOTOS else sounds if path.suffix.lower() in SOUNDS else None
            if kind is not None and name.strip():
                kind.setdefault(name.strip(), []).append(path)
    if not photos and not sounds:
        raise InputError(f"--gallery {folder}: no photos ({', '.join(PHOTOS)}) or voice samples "
                         f"({', '.join(SOUNDS)}) in it; expected NAME.jpg, NAME.wav or NAME/ folders of them")
    return Gallery(folder, {k: tuple(v) for k, v in photos.items()}, {k: tuple(v) for k, v in sounds.items()})


def read_names_file(path: str | Path) -> dict[str, str]:
    """A ``--names`` file: a YAML or JSON map of label -> name."""
    why = not_a_regular_file(Path(path))
    if why is not None:
        raise InputError(f"--names {path}: {why}; expected a YAML or JSON file mapping labels to names")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"--names {path}: not readable YAML or JSON ({type(exc).__name__}); expected a map "
                         "such as {SPEAKER_00: Alice, PERSON_02: Bob}") from None
    if not isinstance(data, Mapping) or not all(isinstance(v, (str, int, float)) for v in data.values()):
        raise InputError(f"--names {path}: expected a map of label -> name such as {{SPEAKER_00: Alice, "
                         f"PERSON_02: Bob}}, found {type(data).__name__}")
    return {str(label): str(name) for label, name in data.items()}


def parse_names(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--name LABEL=NAME`` options as a map."""
    names = {}
    for pair in pairs:
        label, sep, name = pair.partition("=")
        if not sep or not label.strip() or not name.strip():
            raise InputError(f"--name {pair!r}: expected LABEL=NAME, such as SPEAKER_00=Alice or PERSON_02=Bob")
        names[label.strip()] = name.strip()
    return names


def assign(distance: np.ndarray, most: float) -> list[tuple[int, int, float]]:
    """(row, column, distance) pairs one to one, the total distance least (Hungarian), each at most ``most``."""
    from scipy.optimize import linear_sum_assignment

    if distance.size == 0:
        return []
    rows, cols = linear_sum_assignment(distance)
    return [(int(r), int(c), float(distance[r, c])) for r, c in zip(rows, cols) if distance[r, c] <= most]


def photo_face(path: Path, detector, model) -> np.ndarray | None:
    """The embedding of the largest face in a photo (None: no face found)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft("RGB", (PHOTO_SIDE, PHOTO_SIDE))  # JPEGs decode shrunk: memory stays bounded
            image = image.convert("RGB")
            image.thumbnail((PHOTO_SIDE, PHOTO_SIDE))
            pixels = np.asarray(image)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InputError(f"--gallery {path}: not a readable photo ({type(exc).__name__}); expected a JPEG or PNG "
                         "image of the person's face") from None
    found = detector.detect([pixels])[0]
    if len(found) == 0:
        return None
    sides = np.minimum(found.xyxy[:, 2] - found.xyxy[:, 0], found.xyxy[:, 3] - found.xyxy[:, 1])
    return np.asarray(model.embed(pixels, found.xyxy[int(np.argmax(sides))]), np.float32)


def match_faces(gallery: Gallery, tracks: Tracks | None, links: SpeakerLinks, config: Config) -> tuple[dict, list]:
    """PERSON label -> name for the gallery faces that match a person, and the evidence for every name."""
    stored = ((tracks.meta.get("identity") or {}).get("embeddings") or {}) if tracks is not None else {}
    if not gallery.photos:
        return {}, []
    if not stored or not links.person_of_track:
        return {}, [{"name": name, "by": "face", "matched": None,
                     "why": "the run has no face embeddings (people.face_embedding none, or ground-truth tracks)"}
                    for name in gallery.photos]
    people = replace(config.people, detect_scale=1.0)  # a photo is seen whole, at its (shrunk) size
    detector = DETECTORS.build(people.detector, people)
    model = FACE_EMBEDDINGS.build(people.face_embedding, people)
    faces = {}
    for name, paths in gallery.photos.items():
        found = [v for v in (photo_face(p, detector, model) for p in paths) if v is not None]
        if found:
            faces[name] = np.mean(found, axis=0)
    by_person: dict[int, list[np.ndarray]] = {}
    for track, vector in stored.items():
        person = links.person_of_track.get(int(track))
        if person is not None:
            by_person.setdefault(person, []).append(np.asarray(vector, np.float32))
    names, persons = list(faces), sorted(by_person)
    distance = np.array([[float(np.linalg.norm(faces[n] - np.mean(by_person[p], axis=0))) for p in persons]
                         for n in names]).reshape(len(names), len(persons))
    pairs = {names[r]: (persons[c], d) for r, c, d in assign(distance, FACE_MATCH_DISTANCE)
             if np.delete(distance[r], c).min(initial=np.inf) - d >= FACE_MATCH_MARGIN}
    evidence = []
    for name in gallery.photos:
        if name not in faces:
            evidence.append({"name": name, "by": "face", "matched": None, "why": "no face found in its photos"})
            continue
        row = names.index(name)
        nearest = int(np.argmin(distance[row])) if persons else None
        entry = {"name": name, "by": "face", "threshold": FACE_MATCH_DISTANCE, "margin": FACE_MATCH_MARGIN,
                 "measure": "face distance", "runner_up": round(float(np.sort(distance[row])[1]), 3)
                 if len(persons) > 1 else None}
        if name in pairs:
            entry.update(matched=f"PERSON_{pairs[name][0]:02d}", distance=round(pairs[name][1], 3))
        else:
            entry.update(matched=None, why="no person's face is close enough, and nearer than the others by "
                                           "the margin",
                         nearest=None if nearest is None else f"PERSON_{persons[nearest]:02d}",
                         distance=None if nearest is None else round(float(distance[row, nearest]), 3))
        evidence.append(entry)
    return {f"PERSON_{person:02d}": name for name, (person, _) in pairs.items()}, evidence


def match_voices(gallery: Gallery, transcript: Transcript | None) -> tuple[dict, list]:
    """Voice label -> name for the gallery voice samples that match a voice, and the evidence for every name."""
    stored = (transcript.meta.get("voice_embeddings") or {}) if transcript is not None else {}
    if not gallery.sounds:
        return {}, []
    if not stored.get("vectors") or stored.get("model") not in VOICE_EMBEDDINGS:
        return {}, [{"name": name, "by": "voice", "matched": None,
                     "why": "the run kept no voice embeddings (a hub diarizer or a ground-truth transcript)"}
                    for name in gallery.sounds]
    implementation = VOICE_EMBEDDINGS.get(stored["model"])
    least = 1.0 - float(getattr(implementation, "threshold", 0.3))
    samples = {}
    for name, paths in gallery.sounds.items():
        model = VOICE_EMBEDDINGS.build(stored["model"])
        for path in paths:
            audio = read_audio_file(path, VOICE_SAMPLE_S)
            if len(audio):
                model.add_block(audio)
                model.queue(np.arange(0.0, len(audio) / AUDIO_SAMPLE_RATE, 0.01), name)
                model.flush()
        samples.update(model.finish())
    voices = sorted(stored["vectors"])
    vectors = np.array([stored["vectors"][v] for v in voices], np.float32)
    names = list(samples)
    similarity = np.array([[float(np.dot(samples[n], v) / max(np.linalg.norm(v), 1e-9)) for v in vectors]
                           for n in names]).reshape(len(names), len(voices))
    pairs = {names[r]: (voices[c], 1.0 - d) for r, c, d in assign(1.0 - similarity, 1.0 - least)}
    evidence = []
    for name in gallery.sounds:
        entry = {"name": name, "by": "voice", "threshold": round(least, 3), "measure": "cosine similarity"}
        if name in pairs:
            entry.update(matched=pairs[name][0], similarity=round(pairs[name][1], 3))
        elif name in samples and voices:
            nearest = int(np.argmax(similarity[names.index(name)]))
            entry.update(matched=None, why="no voice is close enough", nearest=voices[nearest],
                         similarity=round(float(similarity[names.index(name), nearest]), 3))
        else:
            entry.update(matched=None, why="its samples hold no sound")
        evidence.append(entry)
    return {voice: name for name, (voice, _) in pairs.items()}, evidence


def resolve_names(given: Mapping[str, str], gallery: Gallery | None, tracks: Tracks | None,
                  transcript: Transcript | None, links: SpeakerLinks, config: Config) -> Names:
    """Every name of the run: the gallery's matches, then the names given by hand (which win). Applying them
    (``SpeakerLinks.named``) checks each label against the run's voices and persons."""
    names: dict[str, str] = {}
    matches: list = []
    if gallery is not None:
        by_face, face_evidence = match_faces(gallery, tracks, links, config)
        by_voice, voice_evidence = match_voices(gallery, transcript)
        names.update(by_voice)
        names.update(by_face)  # a face names the person, whichever voice it speaks
        matches = face_evidence + voice_evidence
    names.update(given)
    return Names(names, tuple(matches))


