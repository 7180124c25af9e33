"""How the offline diarization's speaker count depends on ``speech.cluster_threshold``.

    python benchmarks/speaker_count.py [--thresholds 0.2 0.25 0.3 0.35 0.4] [--clips DIR]

For each threshold, from one run: the pooled DER of the AMI meeting chunks (``../shared/data/ami-debug``,
annotated 0-30 s, no collar, overlap scored; left out when the data is not there), the DER of
pyannote.audio's two-speaker sample (no collar), the voices found on the bundled sample (four people),
and the voices found in every video of ``--clips`` (real clips have no annotation: compare with the
people you hear). Only the diarization runs (``diarize_offline``), not ASR.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
AMI = ROOT.parent / "shared" / "data" / "ami-debug"


def read_wav(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000, path
    return audio


def ami_chunks() -> list[tuple]:
    """(uri, samples, reference Annotation, UEM Timeline) of the four AMI chunks; empty when absent."""
    from pyannote.database.util import load_rttm, load_uem

    if not (AMI / "development.rttm").is_file():
        return []
    refs = {**load_rttm(AMI / "development.rttm"), **load_rttm(AMI / "test.rttm")}
    uems = {**load_uem(AMI / "development.uem"), **load_uem(AMI / "test.uem")}
    return [(uri, read_wav(AMI / f"{uri}.wav"), refs[uri], uems[uri]) for uri in ("dev00", "dev01", "tst00", "tst01")]


def pyannote_sample() -> tuple:
    """(uri, samples, reference Annotation, None) of the two-speaker sample inside pyannote.audio."""
    import pyannote.audio
    from pyannote.database.util import load_rttm

    folder = Path(pyannote.audio.__file__).parent / "sample"
    return "sample", read_wav(folder / "sample.wav"), next(iter(load_rttm(folder / "sample.rttm").values())), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.25, 0.3, 0.35, 0.4])
    parser.add_argument("--clips", type=Path, help="a folder of videos to count voices in")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    from socialpipe.pipeline.contracts.config import SpeechConfig
    from socialpipe.pipeline.contracts.formats import load_transcript
    from socialpipe.pipeline.media.video import probe, read_audio
    from socialpipe.stages.speech import diarize_offline

    ami = ami_chunks()
    if not ami:
        print(f"AMI chunks not found at {AMI}: left out")
    _, pyannote_audio, pyannote_ref, _ = pyannote_sample()
    sample_audio = read_audio(probe(ROOT / "sample_videos" / "conversation.mp4"))  # what the speech stage hears
    sample_ref = Annotation()
    for u in load_transcript(ROOT / "sample_videos" / "conversation.transcript.json").utterances:
        sample_ref[Segment(u.start_s, u.end_s)] = u.speaker
    clips = sorted(p for p in args.clips.iterdir() if p.suffix.lower() in {".mp4", ".mkv", ".mov", ".webm", ".avi"}) \
        if args.clips else []
    clip_audio = {p.stem: read_audio(info) if info.has_audio else None for p, info in ((p, probe(p)) for p in clips)}

    header = ["threshold", "AMI DER", "pyannote DER", "sample voices", *clip_audio]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for threshold in args.thresholds:
        settings = SpeechConfig(cluster_threshold=threshold)
        row = [f"{threshold:.2f}"]
        if ami:
            metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
            for _, audio, ref, uem in ami:
                metric(ref, diarize_offline(audio, settings), uem=uem)
            row.append(f"{abs(metric):.3f}")
        else:
            row.append("-")
        row.append(f"{DiarizationErrorRate(collar=0.0, skip_overlap=False)(pyannote_ref, diarize_offline(pyannote_audio, settings)):.3f}")
        row.append(str(len(diarize_offline(sample_audio, settings).labels())))
        for audio in clip_audio.values():
            if audio is None or not np.abs(audio).max(initial=0) > 0:
                row.append("no audio" if audio is None else "silent")
            else:
                row.append(str(len(diarize_offline(audio, settings).labels())))
        print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
