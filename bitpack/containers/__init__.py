"""File containers: safetensors, GGUF, HF model directories, Hub snapshots."""
