"""Using the trained models: score your own files (score_files) with a run's PyTorch model (torch_backend) or its ONNX
export (onnx_backend), both behind one interface (classifier); export to ONNX with a model card (export, model_card)."""
