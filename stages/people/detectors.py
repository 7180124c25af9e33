"""Face and person detectors: RGB frames in, one :class:`Boxes` per frame out, in original-frame pixels."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import cv2
import numpy as np

from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.config import DETECTORS, PeopleConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError, first_line
from socialpipe.pipeline.media.models import shared, torch_device


class Detector(Protocol):
    kind: str  # "face" or "person"

    def detect(self, frames: list[np.ndarray]) -> list[Boxes]:
        """RGB frames (H, W, 3) -> one Boxes per frame, in original-frame pixels."""


def for_decoded_frames(settings: PeopleConfig, decoded: float) -> PeopleConfig:
    """The people settings as a detector given frames decoded at ``decoded`` times the original size (at most
    ``max_side`` long) takes them: ``detect_scale`` and ``min_face_px``, which speak of the original frame,
    turned into the decoded frame's terms."""
    return dataclasses.replace(settings, detect_scale=min(1.0, settings.detect_scale / decoded),
                               min_face_px=settings.min_face_px * decoded)


def _resize(frames: list[np.ndarray], scale: float) -> list[np.ndarray]:
    if scale == 1.0:
        return frames
    return [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]


def channels_last(mtcnn):
    """MTCNN's three networks run in channels-last memory: the same boxes (within 1e-4 px on real clips), and
    its ceil-mode max pools, which dominate it in the default layout on the CPU, 4-8x faster; detection as a
    whole about 1.7x faster (docs/people.md)."""
    import torch

    def inputs_channels_last(module, args):
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])

    for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet):
        net.to(memory_format=torch.channels_last)
        net.register_forward_pre_hook(inputs_channels_last)
    return mtcnn


class MtcnnDetector:
    """facenet-pytorch's MTCNN: faces with 5 landmarks; its weights ship inside the wheel."""

    kind = "face"

    def __init__(self, settings: PeopleConfig):
        from facenet_pytorch import MTCNN

        self.scale = settings.detect_scale
        self.min_confidence = settings.min_confidence
        min_face = max(settings.min_face_px * self.scale, 12.0)
        device = torch_device("people.device", settings.device)
        factor = settings.pyramid_factor
        self.model = shared("mtcnn", (min_face, factor, device), lambda: channels_last(
            MTCNN(keep_all=True, device=device, min_face_size=min_face, factor=factor)))

    def detect(self, frames: list[np.ndarray]) -> list[Boxes]:
        from socialpipe.stages.people.mtcnn import detect_faces

        found = []
        for boxes, landmarks in detect_faces(self.model, np.stack(_resize(frames, self.scale))):
            keep = boxes[:, 4] >= self.min_confidence
            found.append(Boxes(boxes[keep, :4], boxes[keep, 4], landmarks[keep]).scaled(1 / self.scale))
        return found

    def refine(self, frames: list[np.ndarray], proposals: list[np.ndarray]) -> list[Boxes]:
        """Faces re-found near where they are expected: MTCNN's last network (ONet) alone on each frame's
        proposed boxes ((n, 4), frame pixels), made square as MTCNN makes its own proposals. ONet scores each,
        moves it onto the face and places the landmarks; those it scores under MTCNN's own last threshold or
        ``min_confidence`` are dropped, and overlaps merged as MTCNN merges them."""
        import torch
        from facenet_pytorch.models.utils.detect_face import rerec

        from socialpipe.stages.people.mtcnn import last_stage

        found = [Boxes.empty() for _ in frames]
        counts = [len(np.asarray(boxes).reshape(-1, 4)) for boxes in proposals]
        if not sum(counts):
            return found
        squares = rerec(torch.as_tensor(np.concatenate([np.asarray(boxes, np.float32).reshape(-1, 4)
                                                        for boxes in proposals]) * self.scale))
        owners = torch.as_tensor(np.repeat(np.arange(len(frames)), counts))
        boxes, landmarks, owners = last_stage(self.model.onet, np.stack(_resize(frames, self.scale)), squares, owners,
                                              self.model.thresholds[2])
        boxes, landmarks, owners = boxes.numpy(), landmarks.numpy(), owners.numpy()
        for k in np.unique(owners):
            rows = (owners == k) & (boxes[:, 4] >= self.min_confidence)
            found[k] = Boxes(boxes[rows, :4], boxes[rows, 4], landmarks[rows]).scaled(1 / self.scale)
        return found


class OpenCVDetector:
    """OpenCV's bundled frontal-face Haar cascade: a last resort, no landmarks, confidence 1."""

    kind = "face"

    def __init__(self, settings: PeopleConfig):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.model = cv2.CascadeClassifier(path)
        if self.model.empty():
            raise SocialpipeError(f"OpenCV's face cascade is missing ({path}); reinstall opencv-python")
        self.scale = settings.detect_scale
        self.min_side = max(int(settings.min_face_px * self.scale), 12)

    def detect(self, frames: list[np.ndarray]) -> list[Boxes]:
        found = []
        for frame in _resize(frames, self.scale):
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            rects = self.model.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                minSize=(self.min_side, self.min_side))
            rects = np.asarray(rects, np.float32).reshape(-1, 4)
            xyxy = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
            found.append(Boxes(xyxy, np.ones(len(xyxy))).scaled(1 / self.scale))
        return found


class YoloDetector:
    """An ultralytics YOLO model: the COCO person class of a detection model, or every box of a
    face model the user gives. Weights come from a file or, on a connected machine, the hub."""

    def __init__(self, weights: str, kind: str, settings: PeopleConfig):
        self.kind = kind
        self.model = load_yolo(weights, settings.trust_pickled_weights)
        names = {int(k): str(v) for k, v in self.model.names.items()}
        self.classes = None
        if kind == "person":
            self.classes = [k for k, v in names.items() if v == "person"]
            if not self.classes and len(names) == 80 and all(v == str(k) for k, v in names.items()):
                self.classes = [0]  # an unnamed 80-class model (built from a yaml): COCO order, class 0 is person
        if kind == "person" and not self.classes:
            raise SocialpipeError(f"YOLO model {weights} has no 'person' class (classes: {list(names.values())[:8]}); "
                                  "expected a COCO detection model such as yolo11n.pt")
        self.min_confidence = settings.min_confidence

    def detect(self, frames: list[np.ndarray]) -> list[Boxes]:
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]  # ultralytics takes numpy frames as BGR
        results = self.model.predict(bgr, conf=self.min_confidence, classes=self.classes, verbose=False)
        return [Boxes(r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy()) for r in results]


def load_yolo(weights: str, trusted: bool = False):
    """An ultralytics YOLO model from a weights file, a model yaml (random initialisation) or a hub name.
    ``.pt`` weights are Python pickles, which can run code when loaded: only with ``trusted``."""
    from ultralytics import YOLO

    if not trusted and not weights.endswith((".yaml", ".yml")):
        raise SocialpipeError(f"YOLO weights {weights!r} are a Python pickle, which runs code when loaded, and socialpipe "
                              "does not load pickles by default; for files you trust set "
                              "people.trust_pickled_weights=true (configs/hub.yaml does, for ultralytics' own weights)")

    try:
        return shared("yolo", weights, lambda: YOLO(weights))
    except Exception as exc:  # ultralytics raises ConnectionError, FileNotFoundError or its own types
        raise SocialpipeError(
            f"YOLO weights {weights!r} are not on this machine and could not be fetched ({type(exc).__name__}: "
            f"{first_line(exc)}); on an offline machine give a local weights file with "
            "--set people.detector_model=PATH (face model) or --set people.person_model=PATH (COCO model)") from None


def yolo_face_detector(settings: PeopleConfig) -> Detector:
    """``people.detector: yolo``: the face model ``people.detector_model`` names."""
    if not settings.detector_model:
        raise SocialpipeError("people.detector yolo needs face weights: give --set people.detector_model=PATH "
                              "(a YOLO face model), or use detector mtcnn")
    return YoloDetector(settings.detector_model, "face", settings)


def make_face_detector(settings: PeopleConfig) -> Detector:
    """The face detector ``people.detector`` names (registered in ``DETECTORS``)."""
    return DETECTORS.build(settings.detector, settings)
