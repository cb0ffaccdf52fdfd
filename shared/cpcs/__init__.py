"""CPCS: the common library shared by every service (science, contracts, messaging, database)."""

__version__ = "0.1.0"
