"""socialpipe's shared contracts: artifact types, file formats, video I/O, config, run folder, CLI.

Stages live in the sibling package ``stages``; they import from here and never from each other.
"""

__version__ = "0.1.0"
