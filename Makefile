.PHONY: run test venv lint bench clean

# The main job, end to end, on the embedded default (SQLite, local store, in-process tasks).
run: venv
	.venv/bin/shoal demo

# The test suite, with every service it needs started first.
test:
	scripts/test.sh

venv:
	scripts/venv.sh

lint: venv
	.venv/bin/ruff check .

clean:
	rm -rf shoal-data .pytest_cache .ruff_cache
