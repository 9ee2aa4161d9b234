"""Deployment: ONNX / OpenVINO export, int8 quantization (NNCF), prediction on video files."""
