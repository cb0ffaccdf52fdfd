"""calibrate: cross-match, zero point and colour term, band choice, the target's magnitude."""
