"""Light curves leaving CPCS: exports of an alert's calibrated points in the usual formats."""
