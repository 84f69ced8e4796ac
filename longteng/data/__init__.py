"""Dataset format, checks and the synthetic seizure-photo generator (torch-free)."""
