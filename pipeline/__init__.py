"""``socialpipe.pipeline``: what every stage shares, and what wires the stages together.

- contracts (import only each other): ``errors``, ``timebase``, ``io``, ``boxes``, ``artifacts``,
  ``formats``, ``video``, ``config``, ``stage_table``, ``rundir``, ``progress``, ``drawing``,
  ``datasets``, ``scoring``;
- wiring (may import stages): ``orchestrator``, ``cli``, ``evaluation``, ``report``, ``viewer``.
"""

__version__ = "0.1.0"
