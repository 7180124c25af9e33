"""The speech stage with the offline defaults: speed, memory on long audio, and WhisperX side by side.

    python benchmarks/speech.py [--minutes 10] [--hour-minutes 60] [--skip-hour]

From one run it prints:
- **Speed**: the whole stage (``SpeechStage.run``: decode, ASR, segmentation, voice embeddings,
  clustering) on a ``--minutes`` recording, models loaded beforehand; the start-up (imports and
  model loads, which do not grow with the audio) is measured and printed on its own. Goal: at least
  8x real time on 2 cores.
- **Memory**: the stage on a ``--hour-minutes`` recording in a fresh process, its peak resident
  memory (the process's maximum RSS). Goal: at most 2 GB for one hour.
- **Side by side**: the same ``--minutes`` audio through WhisperX's own batched transcription
  (``whisperx.load_model`` with the same bundled faster-whisper model; its diarization needs the
  hub), the time ratio, and the word error rate of both against the known text.

The recordings are the bundled sample's audio (36.8 s, four voices, known text) joined end to end,
so that the WER has a reference; each is a small video (a grey picture) with that audio track.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_videos" / "conversation.mp4"
SAMPLE_TRANSCRIPT = ROOT / "sample_videos" / "conversation.transcript.json"


def long_recording(minutes: float, folder: Path) -> tuple[Path, int]:
    """A video of ``minutes`` whose audio is the sample's, looped; and how many whole loops it holds."""
    from socialpipe.pipeline.media.video import probe

    loop_s = probe(SAMPLE).duration_s
    seconds = minutes * 60
    out = folder / f"speech_{minutes:g}min.mp4"
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-stream_loop", "-1", "-i", str(SAMPLE), "-f", "lavfi", "-i",
                    f"color=c=gray:size=64x36:rate=5:duration={seconds}", "-map", "1:v", "-map", "0:a", "-t",
                    str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(out)], check=True)
    return out, int(seconds // loop_s)


def reference_text(loops: int) -> str:
    from socialpipe.pipeline.contracts.formats import load_transcript

    text = " ".join(u.text for u in load_transcript(SAMPLE_TRANSCRIPT).utterances)
    return " ".join([text] * loops)


def wer(reference: str, words: list[str]) -> float:
    import jiwer

    from socialpipe.pipeline.evaluation.scoring import normalise_text

    return float(jiwer.wer(normalise_text(reference), normalise_text(" ".join(words))))


def whole_loops_words(words, loops: int, loop_s: float) -> list[str]:
    return [w.text for w in words if (w.start_s + w.end_s) / 2 < loops * loop_s]


def hour_child(path: str) -> None:
    """Run in a fresh process: the stage on ``path``; prints its numbers as JSON."""
    warnings.filterwarnings("ignore")
    from socialpipe.pipeline.contracts.config import SpeechConfig
    from socialpipe.pipeline.media.video import probe
    from socialpipe.stages.speech import SpeechStage

    started = time.perf_counter()
    transcript = SpeechStage(SpeechConfig()).listen(probe(path))
    print(json.dumps({"seconds": time.perf_counter() - started, "voices": len(transcript.speakers),
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the speed recording")
    parser.add_argument("--hour-minutes", type=float, default=60, help="length of the memory recording")
    parser.add_argument("--skip-hour", action="store_true", help="leave out the memory run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return hour_child(args.child)
    warnings.filterwarnings("ignore")
    folder = Path(tempfile.mkdtemp(prefix="socialpipe-speech-bench-"))
    from socialpipe.pipeline.media.video import probe

    loop_s = probe(SAMPLE).duration_s
    video_path, loops = long_recording(args.minutes, folder)
    video = probe(video_path)

    started = time.perf_counter()
    import pyannote.audio  # noqa: F401  (the heavy import: lightning)

    from socialpipe.pipeline.contracts.config import SpeechConfig
    from socialpipe.stages import speech

    settings = SpeechConfig()
    speech.load_whisper(settings)
    speech.make_diarizer(settings)  # loads the segmentation model and the voice embedding
    startup_s = time.perf_counter() - started

    started = time.perf_counter()
    transcript = speech.SpeechStage(settings).listen(video)
    stage_s = time.perf_counter() - started
    ours_words = whole_loops_words([w for u in transcript.utterances for w in u.words], loops, loop_s)
    reference = reference_text(loops)

    import whisperx

    from socialpipe.pipeline.media.video import read_audio

    audio = read_audio(video)
    from socialpipe.pipeline.media.models import thread_budget
    from socialpipe.stages.speech.asr import resolve_asr_model

    pipeline = whisperx.load_model(resolve_asr_model(settings.asr_model), "cpu", compute_type="int8",
                                   language="en", threads=thread_budget())
    started = time.perf_counter()
    result = pipeline.transcribe(audio, batch_size=8)
    whisperx_s = time.perf_counter() - started
    # without alignment (wav2vec2 needs the hub) WhisperX gives segment times only: keep the segments
    # whose middle falls in the whole loops
    theirs = [word for seg in result["segments"] if (seg["start"] + seg["end"]) / 2 < loops * loop_s
              for word in seg["text"].split()]

    seconds = video.duration_s
    timing = transcript.meta["timing_s"]
    print(f"speed: {seconds / 60:.1f} min recording (the sample's audio x{seconds / loop_s:.1f}), "
          f"{len(transcript.speakers)} voices")
    print(f"  start-up (imports, models), not counted below   {startup_s:7.1f} s")
    print(f"  speech stage                                   {stage_s:7.1f} s  {seconds / stage_s:5.1f}x real time "
          f"(goal: at least 8x)")
    print(f"    of which ASR {timing['asr_s']:.1f} s, diarization {timing['diarization_s']:.1f} s")
    print(f"side by side on the same audio, bundled tiny.en int8, WER over the {loops} whole loops:")
    print(f"  socialpipe speech stage (ASR + diarization)   {stage_s:7.1f} s  WER {wer(reference, ours_words):.3f}")
    print(f"  WhisperX transcribe (batched ASR only)         {whisperx_s:7.1f} s  WER {wer(reference, theirs):.3f}")
    print(f"  time ratio socialpipe / WhisperX: {stage_s / whisperx_s:.2f}x (ours also diarizes)")
    if not args.skip_hour:
        hour_path, _ = long_recording(args.hour_minutes, folder)
        child = subprocess.run([sys.executable, __file__, "--child", str(hour_path)], check=True, capture_output=True,
                               text=True)
        numbers = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"memory: {args.hour_minutes:g} min recording in a fresh process: peak {numbers['peak_mb']:.0f} MB "
              f"(goal: at most 2048 MB for 60 min), {numbers['seconds']:.0f} s with start-up, "
              f"{numbers['voices']} voices")


if __name__ == "__main__":
    main()
