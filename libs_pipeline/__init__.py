"""libs-pipeline: trustworthy LIBS calibration (ingest, augmentation, multitask CNNs, trust flags)."""

__version__ = "0.1.0"
