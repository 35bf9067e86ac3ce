"""The demo pipelines (`definitions.py` at the repository root loads them)."""
