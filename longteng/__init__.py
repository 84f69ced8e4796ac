"""longteng: tell genuine goods from counterfeits in inspection photos."""

__version__ = "0.1.0"
