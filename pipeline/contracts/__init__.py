"""Contracts: the typed values that cross stage boundaries (artifacts), their file formats, settings,
errors, the time base and progress events. They import nothing above them."""
