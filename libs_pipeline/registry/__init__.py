"""Versioned model artifacts, manifests and aliases (champion/challenger)."""
