"""Plots, overlays and interactive widgets."""
