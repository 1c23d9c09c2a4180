"""The faust-streaming processors: gate, router, freshness."""
