"""catalog-cache: the local store of reference stars, served as cones and prefetched on demand."""
