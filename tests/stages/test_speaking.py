"""LR-ASD: the network against the original's outputs, its input features, the 25 fps resampling, and the
edges (no audio, faces too small)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.timebase import frame_to_time
from socialpipe.stages.link.network import load_lr_asd
from socialpipe.stages.link.speaking import (ASD_FPS, WEIGHTS, WINDOW_WEIGHTS, SpeakingScorer, face_runs,
                                           int8_ranges, mfcc_features, resolve_precision, score_tracks,
                                           smooth_scores)
from tests.conftest import DEV_DATA

PARITY = DEV_DATA / "lr-asd" / "parity_talkset.npz"
needs_parity = pytest.mark.skipif(not PARITY.is_file(), reason=f"{PARITY} (the original network's outputs) is absent")


@pytest.fixture(scope="module")
def network():
    return load_lr_asd(WEIGHTS)


@needs_parity
@pytest.mark.parametrize("steps", [25, 40, 7])
def test_the_network_reproduces_the_original_outputs(network, steps):
    data = np.load(PARITY)
    with torch.inference_mode():
        out = network(torch.from_numpy(data[f"t{steps}_visual"]), torch.from_numpy(data[f"t{steps}_mfcc"]))
    for key in ("av_logits", "v_logits", "audio_embed", "visual_embed"):
        assert np.abs(out[key].numpy() - data[f"t{steps}_{key}"]).max() < 1e-4, key


def test_the_fast_visual_path_gives_the_published_layers_numbers(network):
    """Eval mode runs the visual encoder as folded 2D convolutions in channels-last memory (for speed); the
    published 3D layers must give the same embeddings."""
    faces = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (2, 1, 23, 112, 112)).astype(np.float32))
    encoder = network.model.visualEncoder
    with torch.inference_mode():
        fast, published = encoder(faces), encoder.reference(faces)
    assert fast.shape == published.shape == (2, 23, 128)
    assert (fast - published).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_fused_convolution_and_relu_give_the_two_ops_numbers(network, monkeypatch, dtype):
    """On the CPU each folded convolution runs with its ReLU fused into one oneDNN kernel (for speed), in the
    autocast dtype; the plain convolution then ReLU must give the same embeddings."""
    from socialpipe.stages.link import network as module

    if not module._fused_conv_relu_available():
        pytest.skip("this PyTorch has no fused oneDNN convolution")
    faces = torch.from_numpy(np.random.default_rng(2).integers(0, 255, (2, 17, 112, 112)).astype(np.float32))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        fused = network.embed_visual(faces)
        monkeypatch.setattr(module, "_fused_conv_relu_available", lambda dtype=None: False)
        plain = network.embed_visual(faces)
    assert fused.shape == plain.shape == (2, 17, 128)
    assert (fused - plain).abs().max() <= (1e-5 if dtype == torch.float32 else 1e-2) * plain.abs().max()


def test_a_fused_kernel_the_cpu_refuses_falls_back_to_the_two_ops(monkeypatch):
    """The fused kernel is private to PyTorch: where it refuses an input (here float64, which oneDNN does not
    compute) the convolution and ReLU run as two ops, with the same numbers, and the process stops trying it for
    that dtype only (a CPU without bfloat16 refusing it used to leave float32 unfused too, and skipped this test)."""
    from socialpipe.stages.link import network as module

    if not module._fused_conv_relu_available():
        pytest.skip("this PyTorch has no fused oneDNN convolution")
    monkeypatch.setattr(module, "_FUSED_REFUSED", [])
    rng = np.random.default_rng(3)
    x, weight, bias = (torch.from_numpy(rng.normal(0, 1, shape)) for shape in ((2, 3, 9, 9), (4, 3, 3, 3), (4,)))
    out = module.conv_relu(x, weight, bias, (1, 1), (1, 1))
    assert module._FUSED_REFUSED == [torch.float64] and not module._fused_conv_relu_available(torch.float64)
    assert module._fused_conv_relu_available(torch.float32)  # one dtype refused leaves the others fused
    assert torch.allclose(out, torch.relu(torch.nn.functional.conv2d(x, weight, bias, padding=1)))


@needs_parity
def test_bfloat16_scores_agree_with_float32():
    data = np.load(PARITY)
    crops = np.concatenate([data["t40_visual"][0], data["t25_visual"][0]])
    mfcc = np.concatenate([data["t40_mfcc"][0], data["t25_mfcc"][0]])
    exact = SpeakingScorer(precision="float32").score(crops, mfcc)
    low = SpeakingScorer(precision="bfloat16").score(crops, mfcc)
    assert np.mean(np.sign(low) == np.sign(exact)) >= 0.95
    assert np.abs(low - exact).max() < 0.02 * np.abs(exact).max()


@needs_parity
def test_int8_scores_agree_with_float32_on_real_faces():
    """The parity crops are real TalkSet faces (measured: same sign on every step, largest difference 0.015
    against scores up to 2.46)."""
    data = np.load(PARITY)
    crops = np.concatenate([data["t40_visual"][0], data["t25_visual"][0]])
    mfcc = np.concatenate([data["t40_mfcc"][0], data["t25_mfcc"][0]])
    exact = SpeakingScorer(precision="float32").score(crops, mfcc)
    scorer = SpeakingScorer(precision="int8")
    assert scorer.precision == "int8" and scorer.int8 is not None
    low = scorer.score(crops, mfcc)
    assert np.mean(np.sign(low) == np.sign(exact)) >= 0.95
    assert np.abs(low - exact).max() < 0.03 * np.abs(exact).max()


def test_int8_is_only_for_weights_it_was_calibrated_for(tmp_path):
    ranges = int8_ranges(WEIGHTS)
    assert ranges is not None and len(ranges) == 12 and all(value > 0 for value in ranges.values())
    assert resolve_precision("auto") in ("bfloat16", "float32")  # auto never picks int8 (README says why)
    copy = tmp_path / "other.model"
    copy.write_bytes(WEIGHTS.read_bytes())
    with pytest.raises(InputError, match=r"no int8 calibration for other.model .*use auto, float32 or bfloat16"):
        SpeakingScorer(copy, precision="int8")
    calibration = tmp_path / "other.int8.json"  # a calibration made for other weights is not used
    calibration.write_text(WEIGHTS.with_name(WEIGHTS.stem + ".int8.json").read_text().replace('"sha256": "',
                                                                                              '"sha256": "0'))
    assert int8_ranges(copy) is None
    with pytest.raises(ValueError, match="expected one of auto, float32, bfloat16, int8"):
        resolve_precision("half")


def test_the_shipped_int8_calibration_is_reproduced_from_the_bundled_samples(tmp_path):
    """``benchmarks/asd_int8.py --calibrate`` on the two bundled samples gives the ranges that ship."""
    import importlib.util
    import json

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("asd_int8", REPO / "benchmarks" / "asd_int8.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made = json.loads(module.calibrate(tmp_path / "ranges.json").read_text())
    shipped = json.loads(WEIGHTS.with_name(WEIGHTS.stem + ".int8.json").read_text())
    assert made["sha256"] == shipped["sha256"]
    assert made["ranges"].keys() == shipped["ranges"].keys()
    for name, value in shipped["ranges"].items():
        assert made["ranges"][name] == pytest.approx(value, rel=1e-3), name


def test_the_bundled_weights_ship_with_their_licence():
    assert WEIGHTS.is_file() and 3_000_000 < WEIGHTS.stat().st_size < 4_000_000
    assert "MIT License" in (WEIGHTS.parent / "LICENSE").read_text()


def test_weights_that_are_not_lr_asd_are_a_clear_error(tmp_path):
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an LR-ASD checkpoint"):
        load_lr_asd(tmp_path / "other.pt")
    (tmp_path / "junk.model").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable PyTorch state dict"):
        load_lr_asd(tmp_path / "junk.model")
    with pytest.raises(InputError, match="no such file"):
        load_lr_asd(tmp_path / "missing.model")


def test_mfccs_in_chunks_equal_the_library_on_the_whole_signal():
    from python_speech_features import mfcc

    rng = np.random.default_rng(0)
    audio = (rng.normal(0, 0.1, 53_123) * np.sin(np.linspace(0, 40, 53_123))).astype(np.float32)
    whole = mfcc(audio.astype(np.float64) * 32768, 16000, numcep=13, winlen=0.025, winstep=0.01)
    chunked = mfcc_features([audio[:7_001], audio[7_001:7_100], audio[7_100:40_000], audio[40_000:]])
    assert chunked.shape == whole.shape == (len(whole), 13)
    assert np.abs(chunked - whole).max() < 1e-3


@needs_parity
def test_window_scores_with_shared_visual_embeddings_match_scoring_each_window_alone(network):
    """The published evaluation runs the whole network on each window; we embed the faces once per run and run
    the rest per window. Only frames near a window's edge can differ (the visual encoder sees 9 frames each way)."""
    data = np.load(PARITY)
    crops = np.concatenate([data["t40_visual"][0], data["t25_visual"][0], data["t40_visual"][0]])  # 105 steps
    mfcc = np.concatenate([data["t40_mfcc"][0], data["t25_mfcc"][0], data["t40_mfcc"][0]])
    exact = np.zeros(len(crops))
    with torch.inference_mode():
        for seconds, weight in WINDOW_WEIGHTS.items():
            size = seconds * ASD_FPS
            for start in range(0, len(crops), size):
                stop = min(start + size, len(crops))
                logits = network(torch.from_numpy(crops[None, start:stop]),
                                 torch.from_numpy(mfcc[None, 4 * start:4 * stop]))["av_logits"]
                exact[start:stop] += weight * logits[:, 1].numpy()
    exact /= sum(WINDOW_WEIGHTS.values())
    ours = SpeakingScorer().score(crops, mfcc)
    assert np.mean(np.sign(ours) == np.sign(exact)) >= 0.95
    assert np.abs(ours - exact).max() < 0.5 * np.abs(exact).max()


def test_a_face_crop_cut_from_the_rgb_frame_equals_the_crop_of_the_padded_grey_frame():
    """face_crop turns grey and pads only the face's region; the published way pads the whole grey frame and
    cuts the region from it: the same pixels, for faces inside the frame and reaching past each edge."""
    import cv2

    from socialpipe.stages.link.speaking import CROP_SCALE, PAD_GREY, face_crop

    def published(grey, cx, cy, half):
        pad = int(half * (1 + 2 * CROP_SCALE))
        padded = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=PAD_GREY)
        y, x = cy + pad, cx + pad
        region = padded[int(y - half):int(y + half * (1 + 2 * CROP_SCALE)),
                        int(x - half * (1 + CROP_SCALE)):int(x + half * (1 + CROP_SCALE))]
        return cv2.resize(region, (224, 224))[56:168, 56:168]

    rng = np.random.default_rng(4)
    for height, width in ((90, 160), (360, 640), (720, 1280)):
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        for _ in range(40):
            half = float(rng.uniform(4, height / 2))
            cx, cy = float(rng.uniform(0, width - 1)), float(rng.uniform(0, height - 1))
            assert np.array_equal(face_crop(frame, cx, cy, half), published(grey, cx, cy, half))


def test_smoothing_averages_two_steps_each_side_and_keeps_missing_audio_missing():
    assert np.allclose(smooth_scores(np.array([0, 0, 5, 0, 0], np.float32)), [5 / 3, 5 / 4, 1, 5 / 4, 5 / 3])
    tail = smooth_scores(np.array([1, 1, 1, np.nan], np.float32))
    assert np.allclose(tail[:3], 1) and np.isnan(tail[3])


def _one_face(fps: float, seconds: float, side: float = 80.0) -> tuple[VideoInfo, Tracks]:
    frames = int(round(fps * seconds))
    video = VideoInfo("unused.mp4", fps, frames, 640, 360, seconds, has_audio=True)
    rows = [{"track_id": 1, "frame_index": f, "xyxy": [100, 100, 100 + side, 100 + side]} for f in range(frames)]
    return video, Tracks.from_rows(rows, fps=fps)


@pytest.mark.parametrize("fps", [24.0, 30000 / 1001, 30.0, 60.0])
def test_face_runs_are_resampled_to_25_fps_by_timestamp(fps):
    video, tracks = _one_face(fps, 4.0)
    (run,), skipped = face_runs(tracks, video, min_face_px=24)
    assert not skipped and run.first_step == 0
    assert abs(run.steps - 4.0 * ASD_FPS) <= 1
    step_times = np.arange(run.steps) / ASD_FPS
    shown_from = frame_to_time(run.source_frames, fps)
    # each step takes the picture on screen at its time
    assert np.all(shown_from <= step_times + 1e-9) and np.all(step_times < shown_from + 1 / fps + 1e-9)


def test_faces_too_small_for_the_model_are_left_out_with_the_reason():
    video, tracks = _one_face(25.0, 2.0, side=12.0)
    runs, skipped = face_runs(tracks, video, min_face_px=24)
    assert runs == [] and "smaller than the model's 24 px" in skipped[0]["reason"]


def test_without_audio_the_visual_only_head_scores_the_faces(tmp_path):
    from tests.builders import Head, talking_heads

    video_path, tracks, _ = talking_heads(tmp_path / "v.mp4", [Head("A", 200, [(0.5, 1.5)])], 2.0, fps=25.0)
    from socialpipe.pipeline.media.video import probe

    video = probe(video_path)
    assert not video.has_audio
    scores, notes = score_tracks(video, tracks)
    assert notes["head"].startswith("visual only")
    assert len(scores) == 1 and len(scores[0].scores) == 50 and np.isfinite(scores[0].scores).all()


def test_int8_off_the_cpu_is_refused_before_any_work():
    from socialpipe.pipeline.contracts.errors import InputError
    from socialpipe.stages.link.speaking import check_precision_device

    check_precision_device("int8", "cpu")
    check_precision_device("bfloat16", "cuda:0")
    with pytest.raises(InputError, match="link.asd_precision int8 runs on the CPU only; expected link.device=cpu"):
        check_precision_device("int8", "cuda:0")


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "int8"])
def test_visual_embeddings_computed_piece_by_piece_equal_one_pass_over_the_run(monkeypatch, precision):
    """A run's faces are embedded PIECE_STEPS at a time, each temporal convolution keeping the frames it needs
    from the piece before (network.Streamed): the same embeddings, bit for bit, as the encoder over the whole run
    at once, for pieces of fewer frames than the encoder's reach (9 each side), and the default; for runs of one
    step, shorter than a piece, a piece and a bit, and several pieces; in each precision (bfloat16, emulated where the
    CPU lacks it and so slow, on two of the lengths)."""
    from socialpipe.stages.link import speaking
    from socialpipe.stages.link.network import int8_available

    if precision == "int8" and not int8_available():
        pytest.skip("this PyTorch has no x86 quantized kernels")
    scorer, default = SpeakingScorer(precision=precision), speaking.PIECE_STEPS
    rng = np.random.default_rng(1)
    lengths = (1, 7, default + 5, 2 * default + 17) if precision != "bfloat16" else (7, default + 5)  # (slow emulated)
    for steps in lengths:
        crops = rng.integers(0, 256, (steps, 112, 112), dtype=np.uint8)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            whole = scorer.int8(torch.from_numpy(crops)[None])[0] if scorer.int8 is not None else \
                scorer.network.embed_visual(torch.from_numpy(crops).float()[None])[0].float()
        for piece in (3, 7, default):
            monkeypatch.setattr(speaking, "PIECE_STEPS", piece)
            pieces = scorer.visual_embeddings(crops)
            assert pieces.shape == whole.shape == (steps, 128)
            assert torch.equal(pieces, whole), (steps, piece)