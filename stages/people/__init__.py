"""Stage 1, people: faces (and optionally whole people) on stable track ids, for every frame.

- ``detectors``: MTCNN, a YOLO model, or OpenCV's cascade -> :class:`~socialpipe.pipeline.contracts.boxes.Boxes`;
- ``tracking``: the adapter to ultralytics' trackers (ByteTrack, BoT-SORT);
- ``postprocess``: re-joining track pieces, smoothing, interpolation, faces tied to people;
- ``stage``: :class:`PeopleStage`, which runs them in order over a streamed video.
"""

from socialpipe.stages.people.stage import PeopleStage

__all__ = ["PeopleStage"]
