"""Profiles, results store, notebook execution and sweeps."""
