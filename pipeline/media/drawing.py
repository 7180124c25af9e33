"""The one palette and the one way boxes are drawn: previews, contact sheets, the visual-prompt
baseline and the attention heatmaps all draw a box with its name tag through :func:`draw_box`."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# RGB, distinct on video; track ids and speakers index into it in order
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60))
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45
WHITE = (255, 255, 255)


def colour_of(index: int) -> tuple[int, int, int]:
    """The palette colour for a track id or a speaker's position in a sorted list."""
    return PALETTE[index % len(PALETTE)]


def draw_box(image: np.ndarray, xyxy: Sequence[float], colour: tuple[int, int, int], label: str | None = None,
             thickness: int = 2, scale: float = 1.0, label_inside: bool = False,
             taken: list[tuple[int, int, int, int]] | None = None) -> np.ndarray:
    """Draw a box (original-frame pixels times ``scale``) and its name on a filled tag, in place on an
    RGB image. The tag sits above the box (or inside its top edge with ``label_inside``), moved in from the
    image's edges; with ``taken`` (the tags drawn on this image so far, added to) it goes where it covers none
    of them: above the box, inside its top edge, below it, or further up."""
    x1, y1, x2, y2 = (int(round(v * scale)) for v in xyxy)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    if label:
        (text_w, text_h), _ = cv2.getTextSize(label, FONT, FONT_SCALE, 1)
        tag_w, tag_h = text_w + 4, text_h + 6
        left = int(np.clip(x1, 0, max(image.shape[1] - tag_w, 0)))
        tops = [y1] if label_inside else [y1 - tag_h, y1, y2 + 1]
        tops += [tops[0] - k * tag_h for k in range(1, 4)]
        tops = [int(np.clip(top, 0, max(image.shape[0] - tag_h, 0))) for top in tops]
        top = next((t for t in tops if not any(_overlap((left, t, left + tag_w, t + tag_h), other)
                                               for other in taken or ())), tops[0])
        if taken is not None:
            taken.append((left, top, left + tag_w, top + tag_h))
        cv2.rectangle(image, (left, top), (left + tag_w, top + tag_h), colour, -1)
        cv2.putText(image, label, (left + 2, top + text_h + 2), FONT, FONT_SCALE, WHITE, 1, cv2.LINE_AA)
    return image


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def put_text(image: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int] = WHITE) -> None:
    """A line of text in the house font, in place, shortened with an ellipsis to fit the image's width."""
    max_width = image.shape[1] - origin[0] - 8
    while len(text) > 4 and cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0] > max_width:
        text = text[:-5] + "..."
    cv2.putText(image, text, origin, FONT, FONT_SCALE, colour, 1, cv2.LINE_AA)


def encode_png(image: np.ndarray) -> bytes:
    """An RGB image as PNG bytes."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the picture as PNG")
    return encoded.tobytes()
