"""Repository-wide test setup: never touch the network from a test."""

from astropy.utils import data as astropy_data
from astropy.utils import iers

iers.conf.auto_download = False
iers.conf.auto_max_age = None
astropy_data.conf.allow_internet = False
