"""Shipped instruments: the default scenario's stages that are the same for every seed, study and user (the
generator prior, the evaluation models), trained once and shipped inside the package.

Layout: lsmia_ext/instruments/NAME/ holds a finished stage directory's files exactly as its stage left them
(less those the manifest lists under "omitted"), and NAME.json is its manifest (shipped.py). A study's prior or
evaluation-model stage whose hash equals a manifest's `stage_hash` is filled from NAME/ instead of being trained
(experiment/graph.py instrument_stage), unless the study asks to train its instruments
(`lsmia experiment --train-instruments`). `python bench/ship_instrument.py RUN_DIR/STAGE` adds one (ship.py).
"""
from .shipped import Instrument, find_instrument, instruments

__all__ = ["Instrument", "find_instrument", "instruments"]
