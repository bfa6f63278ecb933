"""A local site shaped like the real sources, for tests, benchmarks and the demo."""
