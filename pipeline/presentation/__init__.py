"""Presentation: previews, contact sheets, the inspection report and the viewer."""
