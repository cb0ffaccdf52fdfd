"""reduce: CCD images to measured source tables (detection, astrometry, photometry)."""
