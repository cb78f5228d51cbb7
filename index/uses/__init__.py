"""Arithmetic of the use cases, pure: watchlist matching, novelty, alerts, user profiles,
embedding health."""
