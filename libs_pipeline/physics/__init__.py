"""Virtual LIBS instrument: libskit LTE plasma -> spectrometer -> detector, and its scenarios."""
