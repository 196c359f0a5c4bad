"""Virtual LIBS instrument: libskit LTE plasma -> spectrometer -> detector, and its scenarios.

``compositions`` (certified samples), ``plasma`` (libskit emission, per-sample (T, n_e) basis),
``spectrometer`` and ``detector`` (instrument), ``scenarios`` (graded parameter edits for trust tests),
``campaign`` (``simulate_campaign``, ``write_campaign_files``). Only this package imports libskit; the
submodules are imported explicitly so that ``import libs_pipeline.physics`` stays cheap.
"""
