"""The predict application: a model (directory or registered version) with its trust calibration applied to
spectra, written as per-spectrum and per-sample tables. The trust computation itself is
``libs_pipeline.trust.prediction.predict_with_trust``."""

from libs_pipeline.prediction.run import PredictionRun, load_model_with_trust, resolve_model_dir, run_prediction
from libs_pipeline.prediction.tables import (
    TABLE_SUFFIXES,
    check_table_suffix,
    read_table,
    sample_table_path,
    write_prediction_tables,
    write_table,
)

__all__ = [
    "PredictionRun",
    "TABLE_SUFFIXES",
    "check_table_suffix",
    "load_model_with_trust",
    "read_table",
    "resolve_model_dir",
    "run_prediction",
    "sample_table_path",
    "write_prediction_tables",
    "write_table",
]
