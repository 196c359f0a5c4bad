"""Torch-only: multitask 1-D CNN, losses, training loop, zarr-backed data loading."""
