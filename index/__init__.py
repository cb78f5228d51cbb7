"""The pure layer: no Faust, no aiohttp. Sub-packages by theme: `model` (the ONNX embedding
model), `ann` (the HNSW index and what a search needs), `records` (event contract, codecs,
progress), `uses` (use-case arithmetic); `exceptions` is the root of every deliberate error."""
