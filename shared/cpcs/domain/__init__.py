"""Stores: each owns its queries, takes a session, returns typed views (never ORM rows to clients)."""
