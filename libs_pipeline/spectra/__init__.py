"""Dataset layout, readers, pandera schemas, versioned store and raw-file archive (the base layer)."""
