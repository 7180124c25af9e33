"""``socialpipe.pipeline``: what the stages share, and what wires them together, in layers.

The layers, lowest first. A module imports only from its own layer or a lower one; the stages
(``socialpipe.stages``) sit between ``media`` and ``run``, and each stage imports no other stage.
Code outside a stage imports it only through its package (``socialpipe.stages.speech``), never a
module inside it. ``tests/test_layers.py`` reads this map and the folders, and checks every import.
"""

__version__ = "0.1.0"

LAYERS: tuple[str, ...] = (
    "contracts",  # typed artifacts, their file formats, settings, errors, time base, progress events
    "media",  # decoding video and audio, drawing, models shared within a process
    "stages",  # socialpipe.stages.*: people, speech, link, answer
    "run",  # the stage table, the orchestrator, run folders, worker placement
    "evaluation",  # scoring against ground truth, datasets, the social tasks, fine-tuning
    "presentation",  # previews, contact sheets, the viewer
    "scaling",  # batches of videos over processes or Ray
    "app",  # socialpipe (the Python API) and socialpipe.cli
)
