"""What the tests and benchmarks start: free ports, PostgreSQL, Redis, gunicorn."""
