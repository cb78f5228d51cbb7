"""The embedding model: find or convert a sentence-transformers model to one fused ONNX file
(`prepare`, `onnx_export`, `quantize`, `models`) and run it (`embedder`)."""
