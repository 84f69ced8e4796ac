"""Synthetic seizure photos of fictional-brand smartphones, drones and USB flash drives.

Genuine items follow a fixed brand design; counterfeits carry 1 to 3 tells from a
catalogue (tells.py). Photos of one seizure case share their scene; labels are
independent of every scene and camera nuisance. See generate.synthesize.
"""

from longteng.data.synth.config import DIFFICULTIES, SynthConfig, parse_items_per_photo, parse_size, parse_tell_names
from longteng.data.synth.designs import PRODUCTS
from longteng.data.synth.generate import CONFIG_NAME, SynthSummary, synthesize
from longteng.data.synth.tells import STRENGTH_RANGES, TELL_DESCRIPTIONS, TELLS

__all__ = [
    "CONFIG_NAME",
    "DIFFICULTIES",
    "PRODUCTS",
    "STRENGTH_RANGES",
    "TELLS",
    "TELL_DESCRIPTIONS",
    "SynthConfig",
    "SynthSummary",
    "parse_items_per_photo",
    "parse_size",
    "parse_tell_names",
    "synthesize",
]
