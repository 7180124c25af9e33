"""MTCNN's three-network cascade (Zhang et al., 2016) on facenet-pytorch's networks and weights, with the
candidates' crops resampled all at once.

The cascade: the first network scores 12x12 cells of the frame at every size of an image pyramid; its
candidates, merged by non-maximum suppression and made square, are cut out of the frame and shrunk (or
grown) to 24x24 for the second network, whose survivors are cut out again at 48x48 for the third, which
places the five landmarks. facenet-pytorch resamples every candidate with its own call of PyTorch's "area"
interpolation, about 0.05 ms each, almost all of it the call itself, for about 180 candidates a frame at
640x360 (docs/people.md, "Face detection's crops").

Here each crop is resampled from an integral image of its frame: "area" interpolation is adaptive average
pooling, whose output cell ``i`` of ``S`` covers input rows ``floor(i H / S)`` to ``ceil((i + 1) H / S)``,
and a cell's sum is four lookups in the integral image, for every crop of a frame in one gather. The sums
of 8-bit pixels are exact integers in float32, and dividing by the cell's height and then its width is
PyTorch's own order, so the crops are bit for bit those of the library (a test compares them, and the
boxes, scores and landmarks of whole detections). The pyramid, the candidate boxes, their regression and
suppression are the library's own helpers.
"""

from __future__ import annotations

import numpy as np
import torch

NORMALISE_MEAN, NORMALISE_SCALE = 127.5, 0.0078125  # MTCNN's networks take (pixel - 127.5) / 128
RNET_SIDE, ONET_SIDE = 24, 48
PNET_CELL = 12  # the first network sees 12x12 cells: the pyramid's smallest image side
NETWORK_BATCH = 512  # crops per call of the second and third networks (bounds their activations)
CROP_BATCH = 256  # crops resampled together (bounds the lookup indices: about 14 MB at 48x48)


def integral_image(frame: np.ndarray) -> np.ndarray:
    """(H, W, C) 8-bit pixels -> (H + 1, W + 1, C) int32 sums of every top-left rectangle (a zero row and column
    first; exact up to 8.4 million pixels, far more than a detection frame has)."""
    import cv2

    return cv2.integral(frame, sdepth=cv2.CV_32S).reshape(frame.shape[0] + 1, frame.shape[1] + 1, -1)


def _cells(start: np.ndarray, end: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive average pooling's input range for each of ``side`` output cells of each span [start, end):
    (n, side) first and one-past-last rows (or columns), in integer arithmetic as PyTorch computes them."""
    length = (end - start)[:, None]
    cell = np.arange(side)[None, :]
    return start[:, None] + cell * length // side, start[:, None] - (-(cell + 1) * length // side)


def area_crops(sums: np.ndarray, top: np.ndarray, bottom: np.ndarray, left: np.ndarray, right: np.ndarray,
               side: int) -> np.ndarray:
    """The frame's rectangles [top, bottom) x [left, right) (each a non-empty (n,) int array) resampled to
    side x side as PyTorch's ``interpolate(mode="area")`` resamples them, from the frame's ``integral_image``:
    (n, side, side, C) float32. Each cell's sum is four lookups, as flat indices into the sums."""
    r0, r1 = _cells(top, bottom, side)
    c0, c1 = _cells(left, right, side)
    row_step, channels = sums.shape[1] * sums.shape[2], sums.shape[2]
    flat = sums.reshape(-1)
    first_row, last_row = (r0 * row_step)[:, :, None, None], (r1 * row_step)[:, :, None, None]
    first_col = (c0 * channels)[:, None, :, None] + np.arange(channels)
    last_col = (c1 * channels)[:, None, :, None] + np.arange(channels)
    total = flat[last_row + last_col] - flat[first_row + last_col] - flat[last_row + first_col] \
        + flat[first_row + first_col]
    return total.astype(np.float32) / (r1 - r0)[:, :, None, None].astype(np.float32) \
        / (c1 - c0)[:, None, :, None].astype(np.float32)


def candidate_crops(frames: np.ndarray, boxes: torch.Tensor, owners: torch.Tensor, side: int
                    ) -> tuple[torch.Tensor, np.ndarray]:
    """Each box (n, >=4, frame pixels) of frame ``owners[i]`` clipped to the frame as MTCNN clips it and cut out
    at side x side, normalised for the networks: (m, 3, side, side), and the indices of the m boxes that kept
    a pixel inside the frame (the others are dropped). One frame's integral image is held at a time."""
    from facenet_pytorch.models.utils.detect_face import pad

    height, width = frames.shape[1:3]
    y, ey, x, ex = pad(boxes, width, height)  # 1-based, clipped: rows y-1 .. ey-1, columns x-1 .. ex-1
    top, left = y.astype(np.int64) - 1, x.astype(np.int64) - 1
    bottom, right = ey.astype(np.int64), ex.astype(np.int64)
    owners = owners.cpu().numpy()
    kept = np.flatnonzero((bottom > top) & (right > left))
    crops = np.empty((len(kept), side, side, frames.shape[3]), np.float32)
    for frame in np.unique(owners[kept]):
        sums = integral_image(frames[frame])
        mine = np.flatnonzero(owners[kept] == frame)
        for part in np.array_split(mine, -(-len(mine) // CROP_BATCH)):
            rows = kept[part]
            crops[part] = area_crops(sums, top[rows], bottom[rows], left[rows], right[rows], side)
    crops = (torch.from_numpy(crops).permute(0, 3, 1, 2) - NORMALISE_MEAN) * NORMALISE_SCALE
    return crops, kept


def _in_batches(network, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``network``'s outputs for the crops, on the CPU, NETWORK_BATCH crops at a time on the network's device."""
    device = next(network.parameters()).device
    outputs = [network(crops[start:start + NETWORK_BATCH].to(device)) for start in range(0, len(crops), NETWORK_BATCH)]
    return tuple(torch.cat(parts).cpu() for parts in zip(*outputs))


def pyramid(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """The image scales the first network runs at: the smallest face wanted shown at 12 px, then smaller by
    ``factor`` each time while the frame's short side stays at least 12 px."""
    scales, scale = [], PNET_CELL / min_face
    shortest = min(height, width) * scale  # shrunk step by step beside the scale, as facenet-pytorch does
    while shortest >= PNET_CELL:
        scales.append(scale)
        scale *= factor
        shortest *= factor
    return scales


def first_stage(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first network over the pyramid (on its device): square candidate boxes (n, 5: x1, y1, x2, y2, score)
    in frame pixels and their frames, on the CPU, suppressed within each size (IoU 0.5) and then across sizes
    (0.7)."""
    from facenet_pytorch.models.utils.detect_face import generateBoundingBox, imresample, rerec
    from torchvision.ops.boxes import batched_nms

    height, width = images.shape[2:4]
    found, owners = [torch.zeros(0, 9)], [torch.zeros(0, dtype=torch.long)]
    for scale in pyramid(height, width, model.min_face_size, model.factor):
        resized = (imresample(images, (int(height * scale + 1), int(width * scale + 1))) - NORMALISE_MEAN) \
            * NORMALISE_SCALE
        regression, probs = model.pnet(resized)
        boxes, frames = generateBoundingBox(regression, probs[:, 1], scale, model.thresholds[0])
        pick = batched_nms(boxes[:, :4], boxes[:, 4], frames, 0.5)
        found.append(boxes[pick])
        owners.append(frames[pick])
    boxes, owners = torch.cat([part.cpu() for part in found]), torch.cat([part.cpu() for part in owners])
    pick = batched_nms(boxes[:, :4], boxes[:, 4], owners, 0.7)
    boxes, owners = boxes[pick], owners[pick]
    sides = (boxes[:, 2:4] - boxes[:, 0:2]).repeat(1, 2)  # this stage's offsets scale by the box's side, no +1
    corners = boxes[:, :4] + boxes[:, 5:9] * sides
    return rerec(torch.cat([corners, boxes[:, 4:5]], dim=1)), owners


def second_stage(model, frames: np.ndarray, boxes: torch.Tensor, owners: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The second network on 24x24 crops of the candidates: those it keeps, suppressed (IoU 0.7), moved by its
    regression and made square."""
    from facenet_pytorch.models.utils.detect_face import bbreg, rerec
    from torchvision.ops.boxes import batched_nms

    crops, kept = candidate_crops(frames, boxes, owners, RNET_SIDE)
    boxes, owners = boxes[kept], owners[kept]
    if not len(kept):
        return boxes, owners
    regression, probs = _in_batches(model.rnet, crops)
    score = probs[:, 1]
    passed = score > model.thresholds[1]
    boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
    owners, regression = owners[passed], regression[passed]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], owners, 0.7)
    return rerec(bbreg(boxes[pick], regression[pick])), owners[pick]


def last_stage(onet, frames: np.ndarray, boxes: torch.Tensor, owners: torch.Tensor, threshold: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The third network on 48x48 crops of square boxes (n, >=4) of ``frames``: the faces it scores over
    ``threshold``, moved by its regression, with their landmarks (m, 5, 2), overlaps merged as MTCNN merges
    them (a box covering 70% of a smaller one's area takes its place): boxes (m, 5), landmarks, frames."""
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg

    crops, kept = candidate_crops(frames, boxes, owners, ONET_SIDE)
    boxes, owners = boxes[kept], owners[kept]
    if not len(kept):
        return torch.zeros(0, 5), torch.zeros(0, 5, 2), owners
    with torch.no_grad():
        regression, points, probs = _in_batches(onet, crops)
    score = probs[:, 1]
    keep = score > threshold
    boxes = torch.cat([boxes[keep, :4], score[keep, None]], dim=1)
    owners, points, regression = owners[keep], points[keep], regression[keep]
    sides = (boxes[:, 2:4] - boxes[:, 0:2] + 1).repeat_interleave(5, dim=0).reshape(-1, 5, 2)
    landmarks = torch.stack([points[:, :5], points[:, 5:]], dim=2) * sides + boxes[:, None, 0:2] - 1
    boxes = bbreg(boxes, regression)
    pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], owners, 0.7, "Min")
    return boxes[pick], landmarks[pick], owners[pick]


@torch.no_grad()
def detect_faces(model, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """MTCNN on equal-sized RGB frames (B, H, W, 3) uint8 with ``model``'s networks and settings (a facenet-pytorch
    ``MTCNN``): per frame, boxes (n, 5: x1, y1, x2, y2, probability) and landmarks (n, 5, 2), largest box first,
    as ``MTCNN.detect`` gives them."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    # planar (N, C, H, W) memory: the pyramid's resampling runs 1.5x faster on it than on the frames' own
    # interleaved layout, with the same numbers (every cell's sum is an exact integer in float32)
    images = torch.from_numpy(frames).to(next(model.pnet.parameters()).device).permute(0, 3, 1, 2).contiguous().float()
    boxes, owners = first_stage(model, images)
    if len(boxes):
        boxes, owners = second_stage(model, frames, boxes, owners)
    landmarks = torch.zeros(0, 5, 2)
    if len(boxes):
        boxes, landmarks, owners = last_stage(model.onet, frames, boxes, owners, model.thresholds[2])
    boxes, landmarks, owners = boxes.numpy(), landmarks.numpy(), owners.cpu().numpy()
    found = []
    for frame in range(len(frames)):
        mine = owners == frame
        box, points = boxes[mine], landmarks[mine]
        order = np.argsort((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))[::-1]
        found.append((box[order], points[order]))
    return found
