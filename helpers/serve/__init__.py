"""Using the trained models: score files (score_files) with PyTorch or ONNX (classifier), export with a model card."""
