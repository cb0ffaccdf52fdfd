"""The manual's curl commands, unchanged but for the host, against a real ``make up`` on a new data folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.testing.processes import free_port, run_cli, wait_ready
from cpcs_system.demo import DEMO_ALERT
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG

ROOT = Path(__file__).resolve().parents[2]


def _curl(*args: str) -> tuple[int, str]:
    result = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=120, check=True
    )
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def test_manual_curl_flow_against_make_up(tmp_path: Path, gaia16aye_field: SimulatedField) -> None:
    data_dir, port = tmp_path / "data", free_port()
    env = {**os.environ, "CPCS_DATA_DIR": str(data_dir), "CPCS_PORT": str(port)}
    log = tmp_path / "make-up.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            ["make", "-s", "up"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host = f"http://127.0.0.1:{port}"
    try:
        wait_ready(host, [server])
        printed = log.read_text()
        match = re.search(r"shown only this once:\s*\n\s*(\S+)", printed)
        assert match, printed
        admin_token = match.group(1)
        assert f"{host}/docs" in printed and f"{host}/alerts " in printed

        token = run_cli(
            [
                "users",
                "add",
                "K. Rybicki",
                "--observatory",
                "Ostrowik 0.6m",
                "--lon",
                "21.42",
                "--lat",
                "52.09",
            ],
            env,
        ).strip()
        for survey, path in write_reference_tables(gaia16aye_field, tmp_path / "refs").items():
            run_cli(["catalog", "import", "--survey", survey, str(path)], env)
        catalogue = tmp_path / "frame.cat"
        field = gaia16aye_field
        catalogue.write_text(to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr))

        status, body = _curl(
            "-F",
            "ivorn=ivo://Gaia16aye",
            "-F",
            f"ra={FIELD_RA_DEG}",
            "-F",
            f"dec={FIELD_DEC_DEG}",
            "-F",
            f"hashtag={admin_token}",
            f"{host}/followup/newevent",
        )
        assert status == 201, body
        status, body = _curl(
            "-F",
            "matchDist=2",
            "-F",
            "MJD=57737.81755",
            "-F",
            "expTime=120",
            "-F",
            "EventID=ivo://Gaia16aye",
            "-F",
            f"sexCat=@{catalogue}",
            "-F",
            "forceFilter=no",
            "-F",
            f"hashtag={token}",
            "-F",
            "outputFormat=json",
            "-F",
            "noPlot=1",
            "-F",
            "dryRun=0",
            f"{host}/followup/cgi/upload",
        )
        assert status == 200, body
        result = json.loads(body)
        assert result["mag_err"] > 0 and result["npoints"] >= 20
        status, body = _curl(f"{host}/followup/get_alert_lc_data?alert_name=ivo://Gaia16aye&hashtag={token}")
        assert status == 200 and json.loads(body)["id"] == [result["followup_id"]]
        status, body = _curl(
            "-F",
            f"followupid={result['followup_id']}",
            "-F",
            f"hashtag={token}",
            f"{host}/followup/cgi/delpoint",
        )
        assert status == 200, body
        status, body = _curl(f"{host}/followup/list_of_alerts?format=json")
        names = {a["ivorn"]: a["nfollowup"] for a in json.loads(body)["alerts"]}
        assert names["ivo://Gaia16aye"] == 0  # the deleted point no longer counts
        assert DEMO_ALERT in names  # a new data folder shows the demo
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # make and the server it started
        server.wait(timeout=30)
