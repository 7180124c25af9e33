"""socialpipe's run of MTCNN's cascade (stages/people/mtcnn.py) against facenet-pytorch's own: the same crops,
bit for bit, and so the same faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.nn.functional import interpolate

from socialpipe.pipeline.media.video import probe, stream_frames
from socialpipe.stages.people.mtcnn import area_crops, detect_faces, integral_image, pyramid
from tests.conftest import SAMPLE_VIDEO


def test_area_crops_are_pytorchs_area_interpolation_bit_for_bit():
    """Shrinking and growing, odd sizes, rectangles at every edge: each crop equals facenet-pytorch's resampling
    of it (``interpolate(mode="area")``) exactly."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (97, 131, 3)).astype(np.uint8)
    sums = integral_image(frame)
    top = np.array([0, 0, 50, 96, 10, 0, 3])
    bottom = np.array([97, 5, 97, 97, 61, 97, 40])
    left = np.array([0, 0, 120, 0, 7, 130, 1])
    right = np.array([131, 7, 131, 3, 102, 131, 130])
    image = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    for side in (24, 48):
        got = area_crops(sums, top, bottom, left, right, side)
        for k in range(len(top)):
            expected = interpolate(image[:, :, top[k]:bottom[k], left[k]:right[k]], size=(side, side), mode="area")
            assert np.array_equal(got[k], expected[0].permute(1, 2, 0).numpy()), (side, k)


@pytest.fixture(scope="module")
def sample_frames() -> np.ndarray:
    frames = [cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
              for _, frame in stream_frames(probe(SAMPLE_VIDEO), step=31)][:12]
    frames[3] = np.full_like(frames[3], 128)  # a frame with nothing in it
    return np.stack(frames)


@pytest.mark.parametrize("factor", [0.709, 0.6])
def test_the_cascade_finds_what_facenet_pytorch_finds(sample_frames, factor):
    """Boxes, probabilities and landmarks, in the library's order, equal to those of ``MTCNN.detect`` on the
    same networks, batch by batch."""
    from facenet_pytorch import MTCNN

    from socialpipe.stages.people.detectors import channels_last

    model = channels_last(MTCNN(keep_all=True, min_face_size=12, factor=factor))
    found = 0
    for start in range(0, len(sample_frames), 4):
        batch = sample_frames[start:start + 4]
        boxes, probs, points = model.detect(batch, landmarks=True)
        for (ours, landmarks), box, prob, point in zip(detect_faces(model, batch), boxes, probs, points):
            if box is None:
                assert len(ours) == 0 and len(landmarks) == 0
                continue
            assert np.array_equal(ours[:, :4], np.asarray(box, np.float32))
            assert np.array_equal(ours[:, 4], np.asarray(prob, np.float32))
            assert np.array_equal(landmarks, np.asarray(point, np.float32))
            found += len(ours)
    assert found >= 25  # the sample's three faces on most frames


def test_a_frame_smaller_than_the_smallest_face_has_no_pyramid_and_no_faces():
    from facenet_pytorch import MTCNN

    assert pyramid(10, 40, 12.0, 0.709) == [] and len(pyramid(120, 40, 12.0, 0.709)) == 4
    (found,) = detect_faces(MTCNN(keep_all=True, min_face_size=12), np.zeros((1, 10, 40, 3), np.uint8))
    assert found[0].shape == (0, 5) and found[1].shape == (0, 5, 2)


def test_many_candidates_are_cut_out_in_parts_and_boxes_outside_the_frame_are_dropped():
    """More candidates than one resampling step takes (CROP_BATCH), over two frames, some reaching past the edges
    and one wholly outside: each crop is the library's cut (``pad``, then area interpolation), normalised."""
    from facenet_pytorch.models.utils.detect_face import imresample, pad

    from socialpipe.stages.people.mtcnn import CROP_BATCH, candidate_crops

    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (2, 90, 160, 3)).astype(np.uint8)
    count = 2 * CROP_BATCH + 37
    corner = rng.uniform((-20, -20), (150, 80), (count, 2))
    boxes = torch.as_tensor(np.concatenate([corner, corner + rng.uniform(3, 60, (count, 1))], axis=1),
                            dtype=torch.float32)
    boxes[5] = torch.tensor([170.0, 10.0, 200.0, 40.0])  # wholly right of the frame
    owners = torch.as_tensor(rng.integers(0, 2, count))
    crops, kept = candidate_crops(frames, boxes, owners, 24)
    assert 5 not in kept and len(kept) == len(crops) > 2 * CROP_BATCH
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    y, ey, x, ex = pad(boxes, 160, 90)
    dropped = sorted(set(range(count)) - set(kept.tolist()))
    assert 5 in dropped and all(ey[k] <= y[k] - 1 or ex[k] <= x[k] - 1 for k in dropped)
    for row, k in enumerate(kept):
        expected = imresample(images[owners[k], :, y[k] - 1:ey[k], x[k] - 1:ex[k]].unsqueeze(0), (24, 24))
        assert torch.equal(crops[row], ((expected - 127.5) * 0.0078125)[0]), k
