"""The offline runtime: onnxruntime, numpy and Pillow only. Never imports torch."""
