"""ingest: authenticates uploads, validates them cheaply, stores the bytes and queues the work."""
