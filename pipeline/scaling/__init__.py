"""Scaling: many videos at once, over local processes or a Ray cluster."""
