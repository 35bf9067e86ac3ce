"""A randomized, seeded fault campaign over the whole pipeline (see `engine.py`)."""
