"""Run wiring: the stage table, the orchestrator that walks it, run folders, and worker placement."""
