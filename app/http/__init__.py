"""The HTTP layer of a worker: views, fan-out to the other workers, wire format, auth, request
and response models, OpenAPI, metrics."""
