"""Per-frame speaking scores for every face track, fed to LR-ASD the way its published evaluation
feeds it, so that its published accuracy carries over:

- each face track is cut into runs of continuous visibility (a run never crosses a shot cut,
  because tracks do not) and resampled to 25 fps by timestamp: step ``k`` of a run is the picture
  on screen at ``k / 25`` s, whatever the video's rate;
- the crop follows the track box smoothed by a 13-step median filter; for half-size ``s`` the
  crop is a square of side ``2s(1 + 0.4)`` reaching ``s`` above the box centre and ``1.8s`` below
  (the mouth and chin are inside), padded with grey 110 beyond the frame, resized to 224x224,
  turned grey and its centre 112x112 kept;
- the audio is 13 MFCCs per 10 ms (25 ms windows, 16 kHz), four per video step;
- a run is scored on windows of 1 to 6 s, separately for each length, and the per-step scores
  averaged with the published weights (1 s, 2 s three times, 3 s twice, 4, 5, 6 s once); then
  smoothed over +-2 steps.

Where this differs from the published scripts, and why: identical window lengths are computed
once and weighted (the network is deterministic in eval mode, so the result is the same for
half the work); a run longer than 60 s is scored 60 s at a time, a length every window size
divides, so windows fall where they would in one pass while memory holds at most 60 s of crops
per visible face. Without an audio track the visual-only head gives the score (said in the
result).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.signal import medfilt

from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.contracts.config import LinkConfig
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.progress import Counter, ProgressHook, quiet
from socialpipe.pipeline.contracts.timebase import time_to_frame
from socialpipe.pipeline.media.video import decoded_size, stream_audio, stream_frames
from socialpipe.stages.link.scores import ASD_FPS, FrameWatch, TrackScores

MFCC_PER_STEP = 4  # 100 Hz MFCCs per 25 fps step
SAMPLE_RATE = 16000
HOP, WINDOW = 160, 400  # 10 ms hop, 25 ms window at 16 kHz
PRE_EMPHASIS = 0.97
WINDOW_WEIGHTS = {1: 3, 2: 3, 3: 2, 4: 1, 5: 1, 6: 1}  # window seconds -> times it appears in {1,1,1,2,2,2,3,3,4,5,6}
CHUNK_STEPS = 60 * ASD_FPS  # 60 s: every window length divides it
CROP_SCALE = 0.40  # cs: how far the crop reaches beyond the face box
MEDIAN_STEPS = 13
SMOOTH_STEPS = 2
PAD_GREY = 110
PIECE_STEPS = 40  # visual embeddings are computed this many steps at a time (the same numbers at any size; on
# the CPU the encoder runs fastest on 20-60 frames at a time, docs/link.md)
RUN_GAP_S = 0.2  # a track unseen for longer than this starts a new run
WEIGHTS = Path(__file__).with_name("weights") / "lr_asd_talkset.model"
PRECISIONS = LinkConfig.choices["asd_precision"]


def mfcc_features(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """13 MFCCs per 10 ms of 16 kHz float audio in [-1, 1] given as consecutive chunks: (frames, 13) float32.

    The same numbers as ``python_speech_features.mfcc`` on the whole signal in 16-bit sample units (what the
    network was trained on), computed chunk by chunk: pre-emphasis carries the previous sample over, and
    each chunk's last partial window waits for the next chunk.
    """
    from python_speech_features import mfcc

    parts, carry, previous = [], np.zeros(0, np.float64), None
    for chunk in chunks:
        samples = np.asarray(chunk, np.float64) * 32768.0
        if samples.size == 0:
            continue
        emphasised = np.empty_like(samples)
        emphasised[0] = samples[0] if previous is None else samples[0] - PRE_EMPHASIS * previous
        emphasised[1:] = samples[1:] - PRE_EMPHASIS * samples[:-1]
        previous = samples[-1]
        carry = np.concatenate([carry, emphasised])
        if carry.size < WINDOW:
            continue
        complete = (carry.size - WINDOW) // HOP + 1  # windows that lie wholly inside what we have
        parts.append(mfcc(carry[: (complete - 1) * HOP + WINDOW], SAMPLE_RATE, numcep=13, winlen=WINDOW / SAMPLE_RATE,
                          winstep=HOP / SAMPLE_RATE, preemph=0.0).astype(np.float32))
        carry = carry[complete * HOP:]
    if carry.size:  # the tail, zero-padded to one window as the library pads the end of a signal
        parts.append(mfcc(carry, SAMPLE_RATE, numcep=13, winlen=WINDOW / SAMPLE_RATE, winstep=HOP / SAMPLE_RATE,
                          preemph=0.0).astype(np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 13), np.float32)


@dataclass
class FaceRun:
    """One stretch of a face track's continuous visibility on the 25 fps grid."""

    track_id: int
    first_step: int  # the run's first step is the picture at first_step / 25 s
    source_frames: np.ndarray  # (n,) video grid frame shown at each step
    crop_boxes: np.ndarray  # (n, 3) smoothed (centre x, centre y, half size) in video pixels
    face_px: float  # median face box side, video pixels
    crops: list[np.ndarray] = field(default_factory=list)  # grey 112x112 uint8 crops not yet scored
    scored_steps: int = 0  # steps whose crops were scored (and dropped)
    scores: list[np.ndarray] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.source_frames)


def face_runs(tracks: Tracks, video: VideoInfo, min_face_px: float) -> tuple[list[FaceRun], list[dict]]:
    """Every face track cut into runs of continuous visibility, resampled to 25 fps by timestamp; and the
    runs left out (too short for one step, or faces smaller than ``min_face_px``) with the reason."""
    runs, skipped = [], []
    for tid in tracks.track_ids:
        if tracks.kinds.get(tid) != "face":
            continue
        mine = tracks.for_track(tid)
        frames = mine.frame_index.astype(np.int64)
        breaks = np.flatnonzero(np.diff(frames) / video.fps > RUN_GAP_S) + 1
        for rows in np.split(np.arange(len(frames)), breaks):
            start_s, end_s = frames[rows[0]] / video.fps, (frames[rows[-1]] + 1) / video.fps
            steps = np.arange(math.ceil(start_s * ASD_FPS - 1e-6), math.ceil(end_s * ASD_FPS - 1e-6))
            if steps.size == 0:
                skipped.append({"track_id": tid, "start_s": round(start_s, 3), "reason": "shorter than one 25 fps step"})
                continue
            shown = time_to_frame(steps / ASD_FPS, video.fps, video.frame_count)
            nearest = np.clip(np.searchsorted(frames[rows], shown), 0, len(rows) - 1)
            before = np.clip(nearest - 1, 0, len(rows) - 1)
            pick = np.where(np.abs(frames[rows][before] - shown) < np.abs(frames[rows][nearest] - shown), before, nearest)
            xyxy = mine.xyxy[rows][pick]
            sides = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
            face_px = float(np.median(sides))
            if face_px < min_face_px:
                skipped.append({"track_id": tid, "start_s": round(start_s, 3),
                                "reason": f"face {face_px:.0f} px, smaller than the model's {min_face_px:g} px"})
                continue
            kernel = min(MEDIAN_STEPS, steps.size - (1 - steps.size % 2))  # medfilt wants an odd kernel
            smooth = [medfilt(values, kernel) if kernel > 1 else values for values in
                      ((xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2, sides / 2)]
            runs.append(FaceRun(tid, int(steps[0]), shown, np.stack(smooth, axis=1), face_px))
    return runs, skipped


def face_crop(frame: np.ndarray, centre_x: float, centre_y: float, half: float) -> np.ndarray:
    """The network's 112x112 grey crop of a face from an RGB frame (coordinates in this frame's pixels): the
    region ``[cy - half, cy + half (1 + 2 cs)) x [cx - half (1 + cs), cx + half (1 + cs))`` (integer pixel
    bounds as the published code takes them from the frame padded by ``half (1 + 2 cs)`` of PAD_GREY), grey,
    resized to 224 and its centre kept. Only the region is turned grey and padded: the same pixels as turning
    and padding the whole frame, without copying it once per face (a 720p frame for each of three faces)."""
    height, width = frame.shape[:2]
    pad = int(half * (1 + 2 * CROP_SCALE))
    y, x = centre_y + pad, centre_x + pad  # in the padded frame's pixels
    top, bottom = max(int(y - half), 0), min(int(y + half * (1 + 2 * CROP_SCALE)), height + 2 * pad)
    left, right = max(int(x - half * (1 + CROP_SCALE)), 0), min(int(x + half * (1 + CROP_SCALE)), width + 2 * pad)
    if bottom <= top or right <= left:
        return np.full((112, 112), PAD_GREY, np.uint8)
    region = np.full((bottom - top, right - left), PAD_GREY, np.uint8)
    rows = slice(max(top - pad, 0), min(bottom - pad, height))
    cols = slice(max(left - pad, 0), min(right - pad, width))
    if rows.stop > rows.start and cols.stop > cols.start:
        region[rows.start + pad - top:rows.stop + pad - top, cols.start + pad - left:cols.stop + pad - left] = \
            cv2.cvtColor(np.ascontiguousarray(frame[rows, cols]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(region, (224, 224))[56:168, 56:168]


def int8_ranges(weights: str | Path) -> dict[str, float] | None:
    """The int8 calibration for a checkpoint: ``<stem>.int8.json`` beside it, if there is one and it was made for
    these very weights (its ``sha256``); written by ``benchmarks/asd_int8.py --calibrate``."""
    weights = Path(weights)
    beside = weights.with_name(weights.stem + ".int8.json")
    if not beside.is_file():
        return None
    import hashlib
    import json

    data = json.loads(beside.read_text())
    if data.get("sha256") != hashlib.sha256(weights.read_bytes()).hexdigest():
        return None
    return {name: float(value) for name, value in data["ranges"].items()}


def resolve_precision(precision: str, device_type: str = "cpu") -> str:
    """``auto``: bfloat16 for the visual encoder where the device computes it natively (a CUDA GPU that
    supports it; a CPU with oneDNN and AVX512-BF16 or AMX: about 2x faster, speaking scores within a few
    hundredths), float32 elsewhere. ``int8`` is never
    chosen by ``auto``: it is 2.5x faster again, and as close to float32 as bfloat16 on real faces, but
    not on the bundled samples' drawn faces (README, "Active speaker detection"; ``benchmarks/asd_int8.py``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "auto" and device_type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if precision == "auto":
        return "bfloat16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() \
            else "float32"
    return precision


def check_precision_device(precision: str, device: str) -> None:
    """int8 has CPU kernels only: asked for on another device it is a one-line InputError."""
    if precision == "int8" and not device.startswith("cpu"):
        raise InputError(f"link.asd_precision int8 runs on the CPU only; expected link.device=cpu, or "
                         f"link.asd_precision auto, float32 or bfloat16 on {device}")


class SpeakingScorer:
    """LR-ASD over face runs: multi-window scoring with the published window weights."""

    def __init__(self, weights: str | Path | None = None, threads: int | None = None, precision: str = "auto",
                 device: str = "cpu"):
        from socialpipe.stages.link.network import QuantizedVisualEncoder, int8_available, load_lr_asd

        weights = Path(weights or WEIGHTS)
        self.device = torch.device(device)
        self.network = load_lr_asd(weights).to(self.device)
        self.threads = threads
        check_precision_device(precision, device)
        self.precision = resolve_precision(precision, self.device.type)
        self.int8 = None
        if self.precision == "int8":
            ranges = int8_ranges(weights)
            if not int8_available():
                raise InputError("link.asd_precision int8: this PyTorch has no x86 quantized kernels (fbgemm/oneDNN); "
                                 "expected auto, float32 or bfloat16 here")
            if ranges is None:
                raise InputError(f"link.asd_precision int8: no int8 calibration for {weights.name} (expected "
                                 f"{weights.stem}.int8.json beside it, made by benchmarks/asd_int8.py --calibrate); "
                                 "use auto, float32 or bfloat16")
            torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
            self.int8 = QuantizedVisualEncoder(self.network.model.visualEncoder, ranges).eval()

    @torch.inference_mode()
    def visual_embeddings(self, crops: np.ndarray) -> torch.Tensor:
        """(n, 128) visual embeddings of a run's (n, 112, 112) crops as one pass over the whole run would give
        them, computed PIECE_STEPS at a time (``network.Streamed``), so memory holds one piece's activations."""
        from socialpipe.stages.link.network import Streamed

        if self.int8 is not None and crops.dtype != np.uint8:
            crops = np.clip(np.rint(crops), 0, 255).astype(np.uint8)
        faces = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        stream = Streamed(self.int8 if self.int8 is not None else self.network.model.visualEncoder)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            parts = [stream.push(faces[start:start + PIECE_STEPS], last=start + PIECE_STEPS >= len(faces))
                     for start in range(0, len(faces), PIECE_STEPS)]
        return torch.cat(parts) if parts else torch.zeros((0, 128), device=self.device)

    @torch.inference_mode()
    def score(self, crops: np.ndarray, mfcc: np.ndarray | None) -> np.ndarray:
        """Per-step scores for (n, 112, 112) crops and their (4n, 13) MFCCs (None: the visual-only head).

        The visual and audio embeddings are computed once for the run (the encoders see less than half a second
        each way); each window runs the back end (fusion, GRUs, head) on its own stretch, and the window scores
        are averaged with the published weights."""
        visual = self.visual_embeddings(crops)
        if mfcc is None:
            return self.network.lossV.FC(visual)[:, 1].cpu().numpy().astype(np.float32)
        n = len(crops)
        mfcc = torch.from_numpy(mfcc[:MFCC_PER_STEP * n].astype(np.float32)).to(self.device)
        audio = self.network.embed_audio(mfcc[None])[0]
        total = np.zeros(n, np.float64)
        for seconds, weight in WINDOW_WEIGHTS.items():
            size = seconds * ASD_FPS
            whole = n // size * size  # the full windows go through the back end as one batch, the last part alone
            if whole:
                logits = self.network.classify(audio[:whole].reshape(-1, size, audio.shape[1]),
                                                visual[:whole].reshape(-1, size, visual.shape[1]))
                total[:whole] += weight * logits[:, 1].cpu().numpy()
            if whole < n:
                logits = self.network.classify(audio[whole:n][None], visual[whole:n][None])
                total[whole:] += weight * logits[:, 1].cpu().numpy()
        return (total / sum(WINDOW_WEIGHTS.values())).astype(np.float32)


def smooth_scores(scores: np.ndarray, reach: int = SMOOTH_STEPS) -> np.ndarray:
    """Mean over +-reach steps, the window cut at the ends (and where the scores stop: steps past the end of
    the audio stay NaN)."""
    finite = int(np.isfinite(scores).sum()) if np.isfinite(scores).all() else int(np.argmin(np.isfinite(scores)))
    if finite < len(scores):
        return np.concatenate([smooth_scores(scores[:finite], reach), scores[finite:]]).astype(np.float32)
    cumulative = np.concatenate([[0.0], np.cumsum(scores, dtype=np.float64)])
    index = np.arange(len(scores))
    lo, hi = np.maximum(index - reach, 0), np.minimum(index + reach + 1, len(scores))
    return ((cumulative[hi] - cumulative[lo]) / (hi - lo)).astype(np.float32)


def face_crops(video: VideoInfo, runs: list[FaceRun], max_side: int | None = None, watch: FrameWatch | None = None):
    """Decode the video once and yield (run, step index, grey 112x112 crop) for every step of ``runs``, in
    the order of the video's frames (frames are decoded at most ``max_side`` pixels on the longer side, and
    above 50 fps only every few, keeping at least 25 fps). ``watch(frame index, RGB frame)``, if given, sees
    every decoded frame first."""
    width, _ = decoded_size(video, max_side)
    scale = width / video.width
    step = int(video.fps // (2 * ASD_FPS)) + 1  # 1 below 50 fps; above, decode at 25-50 fps
    wanted: dict[int, list[tuple[FaceRun, int]]] = {}  # decoded frame -> (run, step index) it serves
    for run in runs:
        for i, frame in enumerate(run.source_frames):
            wanted.setdefault(int(frame) // step * step, []).append((run, i))
    for frame_index, frame in stream_frames(video, step=step, max_side=max_side):
        if watch is not None:
            watch(frame_index, frame)
        served = wanted.pop(frame_index, None)
        if served is None:
            continue
        for run, i in served:
            cx, cy, half = run.crop_boxes[i] * scale
            yield run, i, face_crop(frame, cx, cy, half)


def score_tracks(video: VideoInfo, tracks: Tracks, weights: str | Path | None = None, min_face_px: float = 24.0,
                 max_side: int | None = None, precision: str = "auto", device: str = "cpu",
                 progress: ProgressHook = quiet, watch: FrameWatch | None = None) -> tuple[list[TrackScores], dict]:
    """Speaking scores of every face track (one entry per run of visibility), and notes: runs skipped and
    why, which head gave the scores. ``watch`` sees every frame decoded for the crops (none when no run is
    scored)."""
    runs, skipped = face_runs(tracks, video, min_face_px)
    notes = {"head": "audio-visual" if video.has_audio else "visual only (the video has no audio track)",
             "fps": ASD_FPS, "skipped": skipped, "weights": Path(weights or WEIGHTS).name}
    if not runs:
        return [], notes
    mfcc = mfcc_features(stream_audio(video, SAMPLE_RATE)) if video.has_audio else None
    scorer = SpeakingScorer(weights, precision=precision, device=device)
    notes["precision"], notes["device"] = scorer.precision, str(scorer.device)
    counter = Counter(progress, "speaking", sum(run.steps for run in runs), "face step")
    for run, i, crop in face_crops(video, runs, max_side, watch):
        run.crops.append(crop)
        if len(run.crops) == CHUNK_STEPS or i == run.steps - 1:
            counter.advance(_score_chunk(scorer, run, mfcc))
    for run in runs:  # the stream ended early (fewer frames than the container said)
        if run.crops:
            counter.advance(_score_chunk(scorer, run, mfcc))
    counter.finish()
    found = [TrackScores(run.track_id, run.first_step, smooth_scores(np.concatenate(run.scores)))
             for run in runs if run.scores and sum(map(len, run.scores))]
    return found, notes


def _score_chunk(scorer: SpeakingScorer, run: FaceRun, mfcc: np.ndarray | None) -> int:
    """Score a run's waiting crops and drop them; how many steps that was."""
    crops = np.stack(run.crops)
    run.crops = []
    first = run.first_step + run.scored_steps
    run.scored_steps += len(crops)
    if mfcc is None:
        run.scores.append(scorer.score(crops, None))
        return len(crops)
    available = max(0, (len(mfcc) - MFCC_PER_STEP * first) // MFCC_PER_STEP)
    usable = min(len(crops), available)
    scores = np.full(len(crops), np.nan, np.float32)  # steps past the end of the audio have no score
    if usable:
        scores[:usable] = scorer.score(crops[:usable], mfcc[MFCC_PER_STEP * first:MFCC_PER_STEP * (first + usable)])
    run.scores.append(scores)
    return len(crops)
