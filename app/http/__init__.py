"""The HTTP layer of a worker: it parses requests, renders answers, and checks who may call what.
The views, request and response models, OpenAPI, the page and auth live here; the query engine
they call is :mod:`app.search`, the metrics :mod:`app.metrics`."""
