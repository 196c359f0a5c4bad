"""Virtual LIBS instrument: libskit LTE plasma -> spectrometer -> detector, and its scenarios.

``compositions`` (certified samples), ``plasma`` (libskit emission, per-sample (T, n_e) basis),
``spectrometer`` and ``detector`` (instrument), ``scenarios`` (graded parameter edits for trust tests),
``campaign`` (``simulate_campaign``, ``write_campaign_files``), ``instrument_fit`` (``fit_instrument``: the
virtual instrument matched to a measured campaign) and ``matched_campaign`` (``simulate_matched_campaign``,
``sim_to_real_gap``, ``write_matched_zarr``). Only this package imports libskit; the
submodules are imported explicitly so that ``import libs_pipeline.physics`` stays cheap.
"""
