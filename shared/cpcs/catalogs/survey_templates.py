"""Survey templates: a Pan-STARRS DR1 cutout of an alert's field from CDS's hips2fits service.

The third source of templates (after uploaded ones and our own earlier frames), online only
(``CPCS_CATALOG_ONLINE``). The request is hips2fits' documented query, the one astroquery's
``hips2fits.query`` sends (HiPS id, width, height, TAN projection, ICRS centre, field of view,
``format=fits``), sent directly with a short time limit: astroquery's client cannot build the query
without matplotlib (it checks the colour map's type even for FITS output), which CPCS does not need.
Offline, for a band the survey lacks, on a timeout or an error of the service, the answer is a
:class:`SurveySkipped` with a note; it never raises.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

__all__ = ["HIPS2FITS_URL", "PS1_HIPS", "SurveyCutout", "SurveySkipped", "fetch_survey_template"]

HIPS2FITS_URL = "https://alasky.cds.unistra.fr/hips-image-services/hips2fits"
#: Pan-STARRS DR1 HiPS at CDS, by standard band.
PS1_HIPS = {band: f"CDS/P/PanSTARRS/DR1/{band}" for band in ("g", "r", "i", "z", "y")}
#: PS1's pixels are 0.25"; the cutout keeps them.
PS1_PIXEL_ARCSEC = 0.25
#: The largest cutout asked for (pixels per side).
MAX_PIXELS = 2400


@dataclass(frozen=True)
class SurveyCutout:
    fits_bytes: bytes
    provenance: dict[str, Any]


@dataclass(frozen=True)
class SurveySkipped:
    note: str


def fetch_survey_template(
    ra_deg: float,
    dec_deg: float,
    band: str,
    *,
    fov_deg: float,
    online: bool,
    timeout_s: float,
    url: str = HIPS2FITS_URL,
) -> SurveyCutout | SurveySkipped:
    """A FITS cutout (with its WCS) of the survey in ``band``, ``fov_deg`` on a side, centred on the
    position; or why there is none."""
    hips = PS1_HIPS.get(band)
    if hips is None:
        return SurveySkipped(f"No survey template: Pan-STARRS has no {band} band (it has g, r, i, z, y).")
    if not online:
        return SurveySkipped(
            "No survey template was fetched: this server is offline (CPCS_CATALOG_ONLINE=false)."
        )
    pixels = int(min(MAX_PIXELS, max(64, round(fov_deg * 3600.0 / PS1_PIXEL_ARCSEC))))
    params: dict[str, str | float | int] = {
        "hips": hips,
        "width": pixels,
        "height": pixels,
        "projection": "TAN",
        "coordsys": "icrs",
        "rotation_angle": 0.0,
        "ra": ra_deg,
        "dec": dec_deg,
        "fov": fov_deg,
        "format": "fits",
    }
    try:
        import requests
        from astropy.io import fits

        response = requests.get(url, params=params, timeout=timeout_s)
        response.raise_for_status()
        with fits.open(io.BytesIO(response.content)) as hdus:  # a FITS image, or it is refused here
            if hdus[0].data is None or hdus[0].data.ndim != 2:
                raise ValueError("the answer holds no 2-D image")
    except Exception as error:
        text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        timed_out = "timed out" in text.lower() or "timeout" in type(error).__name__.lower()
        return SurveySkipped(
            f"No survey template: hips2fits did not give one ({type(error).__name__}"
            f"{': ' + ('timed out' if timed_out else text) if text else ''})."
        )
    return SurveyCutout(
        fits_bytes=response.content,
        provenance={
            "service": "hips2fits",
            "url": url,
            "hips": hips,
            "ra_deg": ra_deg,
            "dec_deg": dec_deg,
            "fov_deg": fov_deg,
            "pixels": pixels,
            "fetched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
