"""The durable job queue: job record and store protocol, SQLite and Redis stores, worker, reaper, result files."""
