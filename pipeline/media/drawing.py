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
             thickness: int = 2, scale: float = 1.0, label_inside: bool = False) -> np.ndarray:
    """Draw a box (original-frame pixels times ``scale``) and its name on a filled tag, in place on an
    RGB image; the tag sits above the box, or inside its top edge with ``label_inside``."""
    x1, y1, x2, y2 = (int(round(v * scale)) for v in xyxy)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    if label:
        (text_w, text_h), _ = cv2.getTextSize(label, FONT, FONT_SCALE, 1)
        top = y1 if label_inside else max(y1 - text_h - 6, 0)
        cv2.rectangle(image, (x1, top), (x1 + text_w + 4, top + text_h + 6), colour, -1)
        cv2.putText(image, label, (x1 + 2, top + text_h + 2), FONT, FONT_SCALE, WHITE, 1, cv2.LINE_AA)
    return image


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
