"""The distributed query engine: plan which copies answer, ask them, wait for writes, merge.

HTTP (:mod:`app.http`) parses requests into :class:`app.search.query.SearchRequest` and renders
what :class:`app.search.service.SearchService` returns; it holds no query logic.
"""
