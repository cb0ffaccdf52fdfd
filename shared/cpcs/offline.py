"""Keep astropy from reaching the network: called at every service start-up."""

from __future__ import annotations


def configure_astropy_offline() -> None:
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
