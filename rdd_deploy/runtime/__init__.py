"""Edge runtime: numpy + pillow + an inference engine (ONNX Runtime or TensorRT); never PyTorch."""
