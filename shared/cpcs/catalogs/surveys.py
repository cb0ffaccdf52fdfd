"""Registry of the reference surveys: Vizier tables, column names, bands, colours, wavelengths.

Every survey we calibrate against is described by a :class:`SurveyDefinition`: where Vizier
serves it, the real Vizier names of its position, magnitude and error columns, and for each of our
band names the colour index used in the calibration fit, the effective wavelength (used to prefer
bands close to an observer's declared filter) and the magnitude system.

Vizier column names were checked against recorded Vizier output and code that queries these tables
(see the notes on each survey below); band wavelengths are the usual published effective
wavelengths, rounded to the nm, good enough to rank bands against a filter.

Derived bands
-------------
* SDSS -> Johnson-Cousins B, V, R, I: Jordi, Grebel & Ammon (2006, A&A 460, 339), Table 3 ("all
  stars" relations, as listed on the SDSS "Transformations between SDSS magnitudes and other
  systems" page)::

      B = g + 0.313 (g - r) + 0.219      V = g - 0.565 (g - r) - 0.016
      R = r - 0.153 (r - i) - 0.117      I = i - 0.386 (i - z) - 0.397

  The photometric errors are propagated and a transformation scatter (``JORDI_RMS``) is added in
  quadrature.
* PS1 -> B, V, R, I: Tonry et al. (2012, ApJ 750, 99), Table 6, quadratic in x = g - r::

      B = g + 0.212 + 0.556 x + 0.034 x^2      V = r + 0.005 + 0.462 x + 0.013 x^2
      R = r - 0.137 - 0.108 x - 0.029 x^2      I = i - 0.366 - 0.136 x - 0.018 x^2

  with the fit rms of that table (``TONRY_RMS``) added in quadrature.

* RefCat2 -> B, V, R, I: the same Tonry et al. (2012) relations, RefCat2's griz being on the PS1
  system (Tonry et al. 2018).

Southern and photographic surveys
---------------------------------
RefCat2 (all-sky, Gaia DR2 positions at 2015.5 with proper motions), SkyMapper DR4 (PSF
magnitudes, its own u v g r i z passbands) and USNO-B1 (photographic, no errors in the table: the
documented 0.3 mag stands in) are fetched from Vizier; VST ATLAS and OGLE-III have no
cone-searchable Vizier table that we could confirm and are import only. Which part of the sky each
covers is in :mod:`cpcs.catalogs.coverage`.

Positions and epochs
--------------------
APASS, PS1, SDSS and 2MASS positions are J2000 equinox / ICRS at their own observing epochs (as
Vizier serves them). Gaia DR3 and GaiaSP positions are kept at the Gaia catalogue epoch
J2016.0 (``RA_ICRS``/``DE_ICRS``): for current observations that is much closer in time than a
propagation back to 2000. ``SurveyDefinition.position_epoch`` records it, and catalogues read for
a known survey carry it as ``ReferenceCatalogue.epoch``. Gaia DR3 proper motions (``pmRA``, which
includes cos(dec), and ``pmDE``, mas/yr; ``SurveyDefinition.pmra_column``/``pmdec_column``) travel
with its stars, so astrometry can move them to an image's epoch
(``ReferenceCatalogue.at_epoch``). The GaiaSP table (I/360/syntphot) has no proper motions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from cpcs.errors import InputError

if TYPE_CHECKING:
    from cpcs.catalogs.model import FloatArray, ReferenceCatalogue

__all__ = [
    "JORDI_RMS",
    "SURVEYS",
    "TONRY_RMS",
    "BandDefinition",
    "SurveyDefinition",
    "bands_by_wavelength",
    "colour_of",
    "custom_survey",
    "definition_for",
    "find_survey",
    "get_survey",
    "validate_survey_name",
]

MagSystem = Literal["Vega", "AB"]
Deriver = Callable[
    [Mapping[str, "FloatArray"], Mapping[str, "FloatArray"]],
    tuple[dict[str, "FloatArray"], dict[str, "FloatArray"]],
]

_SURVEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
# Position columns Vizier computes at equinox and epoch J2000 (lower case).
_VIZIER_J2000_COLUMNS = frozenset({"raj2000", "_raj2000"})


@dataclass(frozen=True)
class BandDefinition:
    """One band of a survey.

    Attributes
    ----------
    name : str
        Our band name (``"V"``, ``"r"``, ``"J"``, ``"BP"``...). Case matters: ``R`` is Cousins,
        ``r`` is Sloan-like.
    mag_column, err_column : str or None
        Vizier column names of the magnitude and its error; ``None`` for derived bands (and for a
        missing error column).
    wavelength_nm : float or None
        Approximate effective wavelength in nm (``None`` when unknown, for custom bands).
    system : {"Vega", "AB"} or None
        Magnitude system.
    colour : tuple of (str, str) or None
        The colour index ``(blue, red)`` used in the calibration fit for this band, both bands of
        the same survey; ``None`` when the survey cannot provide one.
    flux_column, flux_err_column : str or None
        For surveys that give a flux error instead of a magnitude error (GaiaSP): the columns the
        magnitude error is computed from, ``1.0857 * e_F / F``.
    flag_column : str or None
        A per-band quality flag; the magnitude is kept only where it equals 1 (GaiaSP: "G and
        BP-RP of the source lie in the validated range for this band").
    derivation : str or None
        For derived bands, the transformation and its source.
    fixed_error : float or None
        The magnitude error of every star when the catalogue has no error column but documents
        its accuracy (USNO-B1 photographic magnitudes: 0.3 mag).
    """

    name: str
    mag_column: str | None
    err_column: str | None
    wavelength_nm: float | None
    system: MagSystem | None
    colour: tuple[str, str] | None
    flux_column: str | None = None
    flux_err_column: str | None = None
    flag_column: str | None = None
    derivation: str | None = None
    fixed_error: float | None = None

    @property
    def derived(self) -> bool:
        """True when the band is computed from other bands, not read from the catalogue."""
        return self.derivation is not None


@dataclass(frozen=True, eq=False)
class SurveyDefinition:
    """Everything we need to fetch, parse and use one reference survey.

    Attributes
    ----------
    name : str
        Our survey name, also the folder name in the tile store.
    title : str
        Human-readable title.
    vizier_table : str or None
        The Vizier table (``"II/336/apass9"``); ``None`` for a custom (import-only) survey.
    ra_column, dec_column : str
        Vizier position columns (degrees).
    bands : tuple of BandDefinition
        Catalogue bands first, derived bands after.
    column_filters : mapping of str to str
        Vizier constraints sent with every query (object class, primary detections, magnitude
        limit that keeps a 3.4 deg^2 tile to a sane number of rows).
    extra_columns : tuple of str
        Other columns to request (those the filters and the parser need).
    request_all_columns : bool
        Ask Vizier for every column (``"**"``) instead of a named list.
    position_epoch : float
        Epoch of the stored positions (Julian year).
    derive : callable or None
        Computes the derived bands from the catalogue bands.
    custom : bool
        True for a site's own survey created by an import.
    sources : str
        Where the column names were confirmed.
    pmra_column, pmdec_column : str or None
        Vizier columns of the proper motions in mas/yr (right ascension including cos(dec)),
        requested with the positions; ``None`` when the survey has none.
    keep_values : mapping of str to tuple of float
        Per-star quality columns applied locally, to fetched and imported rows alike: a row is
        kept only where the column holds one of the values (RefCat2 ``dupvar``: 0 or 2, neither a
        Gaia variable nor a duplicate). A row without the column, or with it empty, is kept.
    """

    name: str
    title: str
    vizier_table: str | None
    ra_column: str
    dec_column: str
    bands: tuple[BandDefinition, ...]
    column_filters: Mapping[str, str] = field(default_factory=dict)
    extra_columns: tuple[str, ...] = ()
    request_all_columns: bool = False
    position_epoch: float = 2000.0
    derive: Deriver | None = None
    custom: bool = False
    sources: str = ""
    pmra_column: str | None = None
    pmdec_column: str | None = None
    keep_values: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def has_proper_motions(self) -> bool:
        """True when the survey provides proper motions (both columns named)."""
        return self.pmra_column is not None and self.pmdec_column is not None

    def epoch_of_columns(self, ra_column: str) -> float:
        """Julian epoch of positions read from a Vizier column of this survey.

        Vizier adds ``RAJ2000``/``DEJ2000`` (and the computed ``_RAJ2000``/``_DEJ2000``) at epoch
        J2000, proper motions taken into account, to catalogues whose own positions are at
        another epoch (Gaia DR3: ``RA_ICRS``/``DE_ICRS`` at 2016.0). Every other position
        column is at :attr:`position_epoch`.

        Parameters
        ----------
        ra_column : str
            Name of the right-ascension column the positions were read from.

        Returns
        -------
        float
        """
        own = self.ra_column.lower()
        name = ra_column.lower()
        if name != own and name in _VIZIER_J2000_COLUMNS and own not in _VIZIER_J2000_COLUMNS:
            return 2000.0
        return self.position_epoch

    @property
    def vizier_catalogue(self) -> str | None:
        """The Vizier catalogue (``"II/336"``) holding :attr:`vizier_table`."""
        if self.vizier_table is None:
            return None
        return self.vizier_table.rsplit("/", 1)[0]

    @property
    def band_names(self) -> list[str]:
        """All band names, catalogue bands first."""
        return [b.name for b in self.bands]

    @property
    def catalogue_bands(self) -> list[BandDefinition]:
        """Bands read from the catalogue (not derived)."""
        return [b for b in self.bands if not b.derived]

    @property
    def fetchable(self) -> bool:
        """True when the survey can be fetched from Vizier."""
        return self.vizier_table is not None

    def band(self, name: str) -> BandDefinition:
        """Return the definition of band ``name``.

        Raises
        ------
        KeyError
            When the survey has no such band.
        """
        for b in self.bands:
            if b.name == name:
                return b
        raise KeyError(f"survey {self.name} has no band {name!r} (bands: {', '.join(self.band_names)})")

    def has_band(self, name: str) -> bool:
        """True when the survey defines band ``name``."""
        return any(b.name == name for b in self.bands)

    def vizier_columns(self) -> list[str]:
        """Column list for an astroquery ``Vizier(columns=...)`` query."""
        if self.request_all_columns:
            return ["**"]
        cols = [self.ra_column, self.dec_column]
        for pm in (self.pmra_column, self.pmdec_column):
            if pm is not None and pm not in cols:
                cols.append(pm)
        for b in self.catalogue_bands:
            for c in (b.mag_column, b.err_column, b.flux_column, b.flux_err_column, b.flag_column):
                if c is not None and c not in cols:
                    cols.append(c)
        cols.extend(c for c in self.extra_columns if c not in cols)
        cols.extend(c for c in self.keep_values if c not in cols)
        return cols

    def add_derived_bands(
        self, mags: Mapping[str, FloatArray], errs: Mapping[str, FloatArray]
    ) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
        """Return ``mags``/``errs`` completed with the derived bands they lack.

        A derived band already present (e.g. given in an imported file) is kept as it is.

        Parameters
        ----------
        mags, errs : mapping of str to ndarray
            Catalogue bands.

        Returns
        -------
        mags, errs : dict of str to ndarray
        """
        out_m = dict(mags)
        out_e = dict(errs)
        if self.derive is None:
            return out_m, out_e
        new_m, new_e = self.derive(mags, errs)
        for band, values in new_m.items():
            if band not in out_m:
                out_m[band] = values
                out_e[band] = new_e[band]
        return out_m, out_e


# --------------------------------------------------------------------------------------------------
# Transformations

#: Scatter added in quadrature to SDSS-derived B, V, R, I (mag). Jordi et al. (2006) quote the
#: coefficient uncertainties; these values are a conservative allowance for the star-to-star
#: scatter of their fits (to be refined from the paper's Table 3).
JORDI_RMS: dict[str, float] = {"B": 0.03, "V": 0.02, "R": 0.03, "I": 0.03}

#: Fit rms of the Tonry et al. (2012) Table 6 quadratic relations, PS1 -> B, V, R, I (mag).
TONRY_RMS: dict[str, float] = {"B": 0.032, "V": 0.012, "R": 0.015, "I": 0.017}


def _get(mags: Mapping[str, FloatArray], band: str, like: FloatArray) -> FloatArray:
    values = mags.get(band)
    return np.full(like.shape, np.nan) if values is None else np.asarray(values, dtype=np.float64)


def _linear_err(terms: Iterable[tuple[float, FloatArray]], rms: float) -> FloatArray:
    total: FloatArray | None = None
    for coeff, err in terms:
        part = (coeff * err) ** 2
        total = part if total is None else total + part
    assert total is not None
    return np.asarray(np.sqrt(total + rms**2), dtype=np.float64)


def _jordi_sdss_to_bvri(
    mags: Mapping[str, FloatArray], errs: Mapping[str, FloatArray]
) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    """SDSS ugriz -> Johnson-Cousins BVRI, Jordi, Grebel & Ammon (2006) Table 3, all stars."""
    like = next(iter(mags.values()))
    g, r, i, z = (_get(mags, b, like) for b in "griz")
    eg, er, ei, ez = (_get(errs, b, like) for b in "griz")
    out_m = {
        "B": g + 0.313 * (g - r) + 0.219,
        "V": g - 0.565 * (g - r) - 0.016,
        "R": r - 0.153 * (r - i) - 0.117,
        "I": i - 0.386 * (i - z) - 0.397,
    }
    out_e = {
        "B": _linear_err([(1.313, eg), (0.313, er)], JORDI_RMS["B"]),
        "V": _linear_err([(0.435, eg), (0.565, er)], JORDI_RMS["V"]),
        "R": _linear_err([(0.847, er), (0.153, ei)], JORDI_RMS["R"]),
        "I": _linear_err([(0.614, ei), (0.386, ez)], JORDI_RMS["I"]),
    }
    return out_m, out_e


def _tonry_ps1_to_bvri(
    mags: Mapping[str, FloatArray], errs: Mapping[str, FloatArray]
) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    """PS1 gri -> Johnson-Cousins BVRI, Tonry et al. (2012) Table 6 quadratic relations."""
    like = next(iter(mags.values()))
    g, r, i = (_get(mags, b, like) for b in "gri")
    eg, er, ei = (_get(errs, b, like) for b in "gri")
    x = g - r
    out_m = {
        "B": g + 0.212 + 0.556 * x + 0.034 * x**2,
        "V": r + 0.005 + 0.462 * x + 0.013 * x**2,
        "R": r - 0.137 - 0.108 * x - 0.029 * x**2,
        "I": i - 0.366 - 0.136 * x - 0.018 * x**2,
    }
    # d/dx of each polynomial, for the error propagation through x = g - r
    slope = {
        "B": 0.556 + 0.068 * x,
        "V": 0.462 + 0.026 * x,
        "R": -0.108 - 0.058 * x,
        "I": -0.136 - 0.036 * x,
    }
    out_e = {
        "B": np.sqrt(((1.0 + slope["B"]) * eg) ** 2 + (slope["B"] * er) ** 2 + TONRY_RMS["B"] ** 2),
        "V": np.sqrt((slope["V"] * eg) ** 2 + ((1.0 - slope["V"]) * er) ** 2 + TONRY_RMS["V"] ** 2),
        "R": np.sqrt((slope["R"] * eg) ** 2 + ((1.0 - slope["R"]) * er) ** 2 + TONRY_RMS["R"] ** 2),
        "I": np.sqrt((slope["I"] * eg) ** 2 + (slope["I"] * er) ** 2 + ei**2 + TONRY_RMS["I"] ** 2),
    }
    return out_m, out_e


# --------------------------------------------------------------------------------------------------
# Band building blocks

# Effective wavelengths (nm). Johnson-Cousins: Bessell (2005, ARA&A 43, 293); SDSS: Fukugita et
# al. (1996); PS1: Tonry et al. (2012); 2MASS: Cohen et al. (2003); Gaia: DR3 passbands.
_WAVELENGTH: dict[str, float] = {
    "U": 366.0, "B": 438.0, "V": 545.0, "R": 641.0, "I": 798.0,
    "u": 355.0, "g": 469.0, "r": 617.0, "i": 748.0, "z": 893.0,
    "J": 1235.0, "H": 1662.0, "K": 2159.0, "Ks": 2159.0,
    "G": 622.0, "BP": 511.0, "RP": 777.0,
}  # fmt: skip
_PS1_WAVELENGTH = {"g": 481.0, "r": 617.0, "i": 752.0, "z": 866.0, "y": 962.0}
_SYSTEM: dict[str, MagSystem] = {
    **dict.fromkeys(["U", "B", "V", "R", "I", "J", "H", "K", "Ks", "G", "BP", "RP"], "Vega"),
    **dict.fromkeys(["u", "g", "r", "i", "z", "y"], "AB"),
}

_BVRI_DERIVED = ("B", "V", "R", "I")


def _band(
    name: str,
    mag: str | None,
    err: str | None,
    colour: tuple[str, str] | None,
    *,
    wavelength: float | None = None,
    flux_column: str | None = None,
    flux_err_column: str | None = None,
    flag_column: str | None = None,
    derivation: str | None = None,
    system: MagSystem | None = None,
    fixed_error: float | None = None,
) -> BandDefinition:
    return BandDefinition(
        name=name,
        mag_column=mag,
        err_column=err,
        wavelength_nm=wavelength if wavelength is not None else _WAVELENGTH.get(name),
        system=system if system is not None else _SYSTEM.get(name),
        colour=colour,
        flux_column=flux_column,
        flux_err_column=flux_err_column,
        flag_column=flag_column,
        derivation=derivation,
        fixed_error=fixed_error,
    )


def _derived_bvri(source: str) -> tuple[BandDefinition, ...]:
    return tuple(_band(b, None, None, ("B", "V"), derivation=source) for b in _BVRI_DERIVED)


_GR = ("g", "r")
_RI = ("r", "i")
_BV = ("B", "V")


def _gaia_sp_band(name: str, colour: tuple[str, str]) -> BandDefinition:
    return _band(
        name,
        f"{name}mag",
        None,
        colour,
        flux_column=f"F{name}",
        flux_err_column=f"e_F{name}",
        flag_column=f"{name}Flag",
    )


APASS = SurveyDefinition(
    name="APASS",
    title="AAVSO Photometric All-Sky Survey DR9 (Henden+ 2016)",
    vizier_table="II/336/apass9",
    ra_column="RAJ2000",
    dec_column="DEJ2000",
    bands=(
        _band("B", "Bmag", "e_Bmag", _BV),
        _band("V", "Vmag", "e_Vmag", _BV),
        _band("g", "g'mag", "e_g'mag", _GR),
        _band("r", "r'mag", "e_r'mag", _GR),
        _band("i", "i'mag", "e_i'mag", _RI),
    ),
    sources=(
        "Vizier column list of II/336/apass9 (RAJ2000, DEJ2000, Vmag, e_Vmag, Bmag, e_Bmag, g'mag, "
        "e_g'mag, r'mag, e_r'mag, i'mag, e_i'mag; g'r'i' are AB Sloan magnitudes) as recorded in "
        "wgoltz/gcx-1.5 src/query.c; also the APASS reader of a public SkyCatalog class."
    ),
)

PS1 = SurveyDefinition(
    name="PS1",
    title="Pan-STARRS1 DR1 mean PSF photometry (Chambers+ 2016)",
    vizier_table="II/349/ps1",
    ra_column="RAJ2000",
    dec_column="DEJ2000",
    bands=(
        _band("g", "gmag", "e_gmag", _GR, wavelength=_PS1_WAVELENGTH["g"]),
        _band("r", "rmag", "e_rmag", _GR, wavelength=_PS1_WAVELENGTH["r"]),
        _band("i", "imag", "e_imag", _RI, wavelength=_PS1_WAVELENGTH["i"]),
        _band("z", "zmag", "e_zmag", _RI, wavelength=_PS1_WAVELENGTH["z"]),
        _band("y", "ymag", "e_ymag", _RI, wavelength=_PS1_WAVELENGTH["y"]),
        *_derived_bvri("Tonry et al. (2012) ApJ 750, 99, Table 6 (quadratic in g-r)"),
    ),
    column_filters={"rmag": "<20.5"},
    derive=_tonry_ps1_to_bvri,
    sources=(
        "Vizier II/349/ps1 header of a recorded CSV export (_RAJ2000, RAJ2000, DEJ2000, objID, Qual, "
        "gmag, e_gmag, gKmag, ... ymag, e_ymag, yFlags) in public ML code; afterglow-core and "
        "mirar PS1 Vizier plugins (RAJ2000/DEJ2000, gmag/e_gmag ... ymag/e_ymag)."
    ),
)

SDSS = SurveyDefinition(
    name="SDSS",
    title="SDSS photometric catalogue DR12 (Alam+ 2015), stars, primary detections",
    vizier_table="V/147/sdss12",
    ra_column="RA_ICRS",
    dec_column="DE_ICRS",
    bands=(
        _band("u", "umag", "e_umag", _GR),
        _band("g", "gmag", "e_gmag", _GR),
        _band("r", "rmag", "e_rmag", _GR),
        _band("i", "imag", "e_imag", _RI),
        _band("z", "zmag", "e_zmag", _RI),
        *_derived_bvri("Jordi, Grebel & Ammon (2006) A&A 460, 339, Table 3 (all stars)"),
    ),
    column_filters={"class": "=6", "mode": "=1", "rmag": "<21"},
    extra_columns=("class", "mode"),
    derive=_jordi_sdss_to_bvri,
    sources=(
        "V/147/sdss12 fields RA_ICRS and umag ('Model magnitude in u filter, AB scale') in the "
        "cds-astro VOTable crate tests; queries of V/147/sdss12 with column_filters "
        "{'class': '=6'} (stars) and {'mode': '=1'} (primary) in public pipelines."
    ),
)

TWOMASS = SurveyDefinition(
    name="2MASS",
    title="2MASS All-Sky Point Source Catalog (Cutri+ 2003)",
    vizier_table="II/246/out",
    ra_column="RAJ2000",
    dec_column="DEJ2000",
    bands=(
        _band("J", "Jmag", "e_Jmag", ("J", "K")),
        _band("H", "Hmag", "e_Hmag", ("J", "K")),
        _band("K", "Kmag", "e_Kmag", ("J", "K")),
    ),
    sources=(
        "II/246/out columns 2MASS, RAJ2000, DEJ2000, Jmag, e_Jmag, Hmag, e_Hmag, Kmag, e_Kmag, Qflg, "
        "Rflg, Cflg in recorded ECSV answers and SED-fitting code querying II/246/out."
    ),
)

GAIA_SP = SurveyDefinition(
    name="GaiaSP",
    title="Gaia DR3 synthetic photometry catalogue GSPC (Gaia Collaboration, Montegriffo+ 2023)",
    vizier_table="I/360/syntphot",
    ra_column="RA_ICRS",
    dec_column="DE_ICRS",
    bands=(
        _gaia_sp_band("U", _BV),
        _gaia_sp_band("B", _BV),
        _gaia_sp_band("V", _BV),
        _gaia_sp_band("R", _BV),
        _gaia_sp_band("I", _BV),
        _gaia_sp_band("u", _GR),
        _gaia_sp_band("g", _GR),
        _gaia_sp_band("r", _GR),
        _gaia_sp_band("i", _GR),
        _gaia_sp_band("z", _GR),
    ),
    request_all_columns=True,
    position_epoch=2016.0,
    sources=(
        "I/360/syntphot: RA_ICRS, DE_ICRS, Bmag/BFlag, Vmag/VFlag, Rmag/RFlag, gmag/gFlag, "
        "rmag/rFlag, imag/iFlag, E(BP/RP)corr in public Vizier queries; Imag/IFlag, Source in "
        "another; fluxes FB, FV, FR, FI in a Go client. Gaia archive synthetic_photometry_gspc "
        "documents JKC UBVRI and SDSS ugriz with flux, flux error, mag and flag per band and no "
        "magnitude error. U, u, z and the e_F<band> names follow the same pattern but were not "
        "seen in recorded output, hence all columns ('**') are requested."
    ),
)

GAIA = SurveyDefinition(
    name="Gaia",
    title="Gaia DR3 (Gaia Collaboration, Vallenari+ 2023)",
    vizier_table="I/355/gaiadr3",
    ra_column="RA_ICRS",
    dec_column="DE_ICRS",
    bands=(
        _band("G", "Gmag", "e_Gmag", ("BP", "RP")),
        _band("BP", "BPmag", "e_BPmag", ("BP", "RP")),
        _band("RP", "RPmag", "e_RPmag", ("BP", "RP")),
    ),
    column_filters={"Gmag": "<20"},
    position_epoch=2016.0,
    pmra_column="pmRA",
    pmdec_column="pmDE",
    sources=(
        "I/355/gaiadr3 ReadMe (Gmag, e_Gmag 'added by CDS', BPmag, e_BPmag, RPmag, e_RPmag, pmRA, "
        "pmDE; positions at Ep=2016.0, RAJ2000/DEJ2000 at Ep=2000 added by CDS) recorded in "
        "wgoltz/gcx-1.5 src/query.c; mirar's Gaia Vizier plugin uses RA_ICRS/DE_ICRS."
    ),
)

REFCAT2 = SurveyDefinition(
    name="RefCat2",
    title="ATLAS All-Sky Stellar Reference Catalog 2 (Tonry+ 2018)",
    vizier_table="J/ApJ/867/105/refcat2",
    ra_column="RA_ICRS",
    dec_column="DE_ICRS",
    bands=(
        # g r i z on the PS1 system (AB), from PS1, ATLAS, SkyMapper, APASS, Tycho-2 and Gaia DR2
        _band("g", "gmag", "e_gmag", _GR, wavelength=_PS1_WAVELENGTH["g"]),
        _band("r", "rmag", "e_rmag", _GR, wavelength=_PS1_WAVELENGTH["r"]),
        _band("i", "imag", "e_imag", _RI, wavelength=_PS1_WAVELENGTH["i"]),
        _band("z", "zmag", "e_zmag", _RI, wavelength=_PS1_WAVELENGTH["z"]),
        *_derived_bvri("Tonry et al. (2012) ApJ 750, 99, Table 6 (RefCat2 is on the PS1 system)"),
    ),
    column_filters={"rmag": "<19"},
    derive=_tonry_ps1_to_bvri,
    position_epoch=2015.5,
    pmra_column="pmRA",
    pmdec_column="pmDE",
    # Gaia DR2 flag copied by RefCat2: 0 constant, 1 variable, 2 not available, +4 duplicate.
    keep_values={"dupvar": (0.0, 2.0)},
    sources=(
        "J/ApJ/867/105/refcat2: RA_ICRS, DE_ICRS, gmag/e_gmag, rmag/e_rmag, imag/e_imag, "
        "zmag/e_zmag, pmRA, pmDE in public Vizier clients (stellarphot's refcat2 query, STDPipe's "
        "catalogue table with e_gmag ... e_zmag, a calibration pipeline's column mapping); "
        "Plx/e_Plx, pmRA/e_pmRA, dupvar and rp1 in a public script reading the Vizier table; "
        "positions at epoch 2015.5 and the dupvar coding in the RefCat2 README (Tonry et al. 2018)."
    ),
)

# SkyMapper's own passbands (Bessell et al. 2011, PASP 123, 789), effective wavelengths in nm.
_SKYMAPPER_WAVELENGTH = {"u": 349.0, "v": 384.0, "g": 510.0, "r": 617.0, "i": 779.0, "z": 916.0}


def _skymapper_band(name: str, colour: tuple[str, str]) -> BandDefinition:
    return _band(
        name, f"{name}PSF", f"e_{name}PSF", colour, wavelength=_SKYMAPPER_WAVELENGTH[name], system="AB"
    )


SKYMAPPER = SurveyDefinition(
    name="SkyMapper",
    title="SkyMapper Southern Survey DR4 (Onken+ 2024), PSF magnitudes",
    vizier_table="II/379/smssdr4",
    ra_column="RAICRS",
    dec_column="DEICRS",
    bands=tuple(_skymapper_band(b, _GR if b in "uvgr" else _RI) for b in "uvgriz"),
    # SExtractor-style flags below 4: neighbours or blends allowed, saturated or cut sources not.
    column_filters={"flags": "<4", "rPSF": "<20"},
    extra_columns=("flags", "ClassStar"),
    position_epoch=2017.0,
    sources=(
        "II/379/smssdr4 (SkyMapper DR4, Onken+ 2024): RAICRS, DEICRS, EpMean, ObjectId, flags, "
        "ClassStar and uPSF/e_uPSF ... zPSF/e_zPSF in astropop's Vizier catalogue definition; "
        "the same names in afterglow-core's SkyMapper plugin for II/358/smss (DR1.1). Positions "
        "are mean positions of 2014-2021 images: epoch 2017.0 is an approximate middle."
    ),
)

VST_ATLAS = SurveyDefinition(
    name="VST-ATLAS",
    title="VLT Survey Telescope ATLAS (Shanks+ 2015), ugriz, import only",
    vizier_table=None,
    ra_column="RAJ2000",
    dec_column="DEJ2000",
    bands=tuple(_band(b, f"{b}mag", f"e_{b}mag", _GR if b in "ugr" else _RI) for b in "ugriz"),
    sources=(
        "No Vizier table of the whole survey was found (Vizier holds subsets such as "
        "J/MNRAS/453/690, Fornax; the catalogues are served by the OmegaCAM Science Archive). "
        "Imported with Vizier-style names umag/e_umag ... zmag/e_zmag, AB magnitudes close to SDSS "
        "(Shanks et al. 2015, calibrated on APASS)."
    ),
)

OGLE3 = SurveyDefinition(
    name="OGLE-III",
    title="OGLE-III photometric maps of the Magellanic Clouds and the Galactic bulge (Udalski+ 2008, "
    "Szymanski+ 2011), V I, import only",
    vizier_table=None,
    ra_column="RAJ2000",
    dec_column="DEJ2000",
    bands=(_band("V", "Vmag", "e_Vmag", ("V", "I")), _band("I", "Imag", "e_Imag", ("V", "I"))),
    sources=(
        "The maps are published by the OGLE archive per subfield (lmcNNN.s.map, smcNNN.s.map, "
        "blgNNN.s.map; Udalski et al. 2008, AcA 58, 89 and 329; Szymanski et al. 2011, AcA 61, 83); "
        "no cone-searchable Vizier table of them was found. Imported with Vizier-style names "
        "Vmag/e_Vmag, Imag/e_Imag: standard Johnson V and Cousins I (Vega)."
    ),
)

#: Photographic accuracy of USNO-B1 magnitudes (Monet et al. 2003, AJ 125, 984: 0.3 mag).
USNOB1_MAG_ERROR = 0.3
# Photographic passbands (nm, approximate): B1 103a-O (POSS-I O), R1 103a-E (POSS-I E), B2 IIIa-J
# (POSS-II J, SERC-J), R2 IIIa-F (POSS-II F, SERC-ER), I IV-N (POSS-II N, SERC-I).
_USNOB1_WAVELENGTH = {"B1": 430.0, "R1": 645.0, "B2": 470.0, "R2": 650.0, "I": 805.0}


def _usnob1_band(name: str, colour: tuple[str, str]) -> BandDefinition:
    return _band(
        name,
        f"{name}mag",
        None,
        colour,
        wavelength=_USNOB1_WAVELENGTH[name],
        system="Vega",
        fixed_error=USNOB1_MAG_ERROR,
    )


USNOB1 = SurveyDefinition(
    name="USNO-B1",
    title="USNO-B1.0 (Monet+ 2003), photographic B1 R1 B2 R2 I",
    vizier_table="I/284/out",
    ra_column="RAJ2000",
    dec_column="DEJ2000",
    bands=(
        _usnob1_band("B1", ("B1", "R1")),
        _usnob1_band("R1", ("B1", "R1")),
        _usnob1_band("B2", ("B2", "R2")),
        _usnob1_band("R2", ("B2", "R2")),
        _usnob1_band("I", ("R2", "I")),
    ),
    pmra_column="pmRA",
    pmdec_column="pmDE",
    sources=(
        "I/284/out: USNO-B1.0, RAJ2000, DEJ2000 (J2000, proper motions applied), B1mag, R1mag, "
        "B2mag, R2mag, Imag, pmRA, pmDE, B1s/g in public astroquery clients of I/284 and the "
        "afterglow USNO-B1 plugin; gcx-1.5 queries table I_284_out. The table has no magnitude "
        "errors: the documented 0.3 mag accuracy stands in for them."
    ),
)

#: Every known survey by name, in the order of preference for calibration.
SURVEYS: dict[str, SurveyDefinition] = {
    s.name: s
    for s in (GAIA_SP, REFCAT2, APASS, PS1, SKYMAPPER, SDSS, VST_ATLAS, OGLE3, TWOMASS, USNOB1, GAIA)
}

_ALIASES: dict[str, str] = {
    "apass9": "APASS", "apassdr9": "APASS",
    "panstarrs": "PS1", "pan-starrs": "PS1", "panstarrs1": "PS1", "ps1dr1": "PS1",
    "sdss12": "SDSS", "sdssdr12": "SDSS",
    "twomass": "2MASS", "2mass_psc": "2MASS",
    "gaiadr3": "Gaia", "gaia_dr3": "Gaia",
    "gaia_sp": "GaiaSP", "gaiadr3sp": "GaiaSP", "gspc": "GaiaSP", "gaiasynth": "GaiaSP", "syntphot": "GaiaSP",
    "refcat": "RefCat2", "atlas-refcat2": "RefCat2", "atlas_refcat2": "RefCat2", "atlasrefcat2": "RefCat2",
    "smss": "SkyMapper", "smssdr4": "SkyMapper", "skymapperdr4": "SkyMapper", "skymapper_dr4": "SkyMapper",
    "vstatlas": "VST-ATLAS", "vst_atlas": "VST-ATLAS", "atlas-vst": "VST-ATLAS",
    "ogle3": "OGLE-III", "ogleiii": "OGLE-III", "ogle_iii": "OGLE-III",
    "usnob1": "USNO-B1", "usno-b1.0": "USNO-B1", "usnob": "USNO-B1", "usno_b1": "USNO-B1",
}  # fmt: skip


def validate_survey_name(name: str) -> str:
    """Check that ``name`` is usable as a survey name (and a folder name).

    Parameters
    ----------
    name : str

    Returns
    -------
    str
        The name, stripped.

    Raises
    ------
    cpcs.errors.InputError
        ``code="invalid_survey_name"``.
    """
    cleaned = name.strip() if isinstance(name, str) else ""
    if not _SURVEY_NAME.match(cleaned):
        raise InputError(
            f"invalid survey name {name!r}: use 1-64 letters, digits, '_', '.', '+' or '-'",
            code="invalid_survey_name",
        )
    return cleaned


def find_survey(name: str) -> SurveyDefinition | None:
    """Return the known survey called ``name`` (case-insensitive, common aliases), else ``None``."""
    if not isinstance(name, str):
        return None
    key = name.strip()
    if key in SURVEYS:
        return SURVEYS[key]
    lowered = key.lower()
    for survey_name, definition in SURVEYS.items():
        if survey_name.lower() == lowered:
            return definition
    alias = _ALIASES.get(lowered)
    return SURVEYS[alias] if alias is not None else None


def get_survey(name: str) -> SurveyDefinition:
    """Return the known survey called ``name``.

    Raises
    ------
    cpcs.errors.InputError
        ``code="unknown_survey"`` when there is none.
    """
    definition = find_survey(name)
    if definition is None:
        raise InputError(
            f"unknown survey {name!r}; known surveys: {', '.join(SURVEYS)}", code="unknown_survey"
        )
    return definition


def _generic_colour(band: str, bands: list[str]) -> tuple[str, str] | None:
    candidates: list[tuple[str, str]]
    if band in {"U", "B", "V", "R", "I"}:
        candidates = [("B", "V"), ("V", "R"), ("R", "I"), ("V", "I")]
    elif band in {"u", "g", "r"}:
        candidates = [("g", "r"), ("r", "i"), ("g", "i")]
    elif band in {"i", "z", "y"}:
        candidates = [("r", "i"), ("i", "z"), ("g", "r")]
    elif band in {"J", "H", "K", "Ks"}:
        candidates = [("J", "K"), ("J", "Ks"), ("J", "H"), ("H", "K")]
    elif band in {"G", "BP", "RP"}:
        candidates = [("BP", "RP")]
    else:
        candidates = []
    for blue, red in candidates:
        if blue in bands and red in bands:
            return (blue, red)
    return None


def custom_survey(name: str, bands: Iterable[str]) -> SurveyDefinition:
    """Describe a site's own survey (import only) with the given bands.

    Standard band names (UBVRI, ugrizy, JHK/Ks, G/BP/RP) get their usual wavelength, system and a
    colour index when both bands of it are present; other bands have none.

    Parameters
    ----------
    name : str
        Survey name.
    bands : iterable of str
        Band names.

    Returns
    -------
    SurveyDefinition
    """
    band_list = list(dict.fromkeys(bands))
    definitions = tuple(
        BandDefinition(
            name=b,
            mag_column=f"{b}mag",
            err_column=f"e_{b}mag",
            wavelength_nm=_WAVELENGTH.get(b),
            system=_SYSTEM.get(b),
            colour=_generic_colour(b, band_list),
        )
        for b in band_list
    )
    return SurveyDefinition(
        name=validate_survey_name(name),
        title=f"{name} (local catalogue)",
        vizier_table=None,
        ra_column="RAJ2000",
        dec_column="DEJ2000",
        bands=definitions,
        custom=True,
        sources="imported file",
    )


def definition_for(survey: str, bands: Iterable[str] = ()) -> SurveyDefinition:
    """Return the known definition of ``survey``, or a custom one built from ``bands``."""
    known = find_survey(survey)
    return known if known is not None else custom_survey(survey, bands)


def colour_of(cat: ReferenceCatalogue, band: str) -> tuple[FloatArray, FloatArray]:
    """Colour index used with ``band`` in the calibration fit, per star, with its error.

    Parameters
    ----------
    cat : ReferenceCatalogue
        Reference stars.
    band : str
        One of the catalogue's bands.

    Returns
    -------
    colour, colour_err : ndarray of float64
        ``mag[blue] - mag[red]`` and ``hypot(err[blue], err[red])``; all NaN when the survey has no
        colour for this band (or lacks one of its two bands).

    Raises
    ------
    KeyError
        When ``band`` is not a band of ``cat``.
    """
    if band not in cat.mags:
        raise KeyError(f"{cat.survey} catalogue has no band {band!r} (bands: {', '.join(cat.bands)})")
    definition = definition_for(cat.survey, cat.bands)
    pair: tuple[str, str] | None = None
    if definition.has_band(band):
        pair = definition.band(band).colour
    if pair is None and not definition.custom:
        pair = _generic_colour(band, cat.bands)
    n = len(cat)
    if pair is None or pair[0] not in cat.mags or pair[1] not in cat.mags:
        return np.full(n, np.nan), np.full(n, np.nan)
    blue, red = pair
    colour = cat.mags[blue] - cat.mags[red]
    err = np.hypot(cat.errs[blue], cat.errs[red])
    return np.asarray(colour, dtype=np.float64), np.asarray(err, dtype=np.float64)


def bands_by_wavelength(definition: SurveyDefinition, wavelength_nm: float) -> list[str]:
    """Band names of a survey, nearest effective wavelength first (bands without one last).

    Parameters
    ----------
    definition : SurveyDefinition
    wavelength_nm : float
        Effective wavelength of the observer's filter.

    Returns
    -------
    list of str
    """

    def key(b: BandDefinition) -> tuple[int, float, int]:
        if b.wavelength_nm is None:
            return (1, 0.0, int(b.derived))
        return (0, abs(b.wavelength_nm - wavelength_nm), int(b.derived))

    return [b.name for b in sorted(definition.bands, key=key)]
