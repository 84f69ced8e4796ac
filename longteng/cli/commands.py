"""Top-level commands beyond `data` (train, evaluate, export, predict, score) are added here."""
