"""Training, calibration and evaluation. Modules that import torch say so; metrics are numpy-only."""
