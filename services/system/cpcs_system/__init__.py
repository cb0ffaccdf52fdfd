"""The composition root: the ``cpcs`` command, what each service process runs, the embedded system
and its demo. The only package that imports the services; the library (``cpcs``) imports none."""
