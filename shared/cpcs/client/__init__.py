"""A client of a CPCS server: the ``cpcs upload`` command and the uploader it is built on."""
