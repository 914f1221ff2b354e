"""Simulated and real X-ray datasets: HDF5 layout, generation, torch datasets, splits."""
