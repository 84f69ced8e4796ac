"""Export: a trained checkpoint becomes one self-describing ONNX file, gated on parity.

A stage of its own, after training and before the runtime: it imports the model and
training packages, and nothing below it imports it.
"""
