"""tests/slurm/cluster.sh never touches a Slurm it did not set up: a slurm.conf it did not write is
refused in one line before anything changes (its path pointed at a temporary folder through Slurm's
own SLURM_CONF). This runs everywhere; the Slurm tests themselves run with --slurm (tests/slurm/)."""

import os
import subprocess
from pathlib import Path

import pytest

CLUSTER = Path(__file__).resolve().parent / "slurm" / "cluster.sh"


@pytest.mark.parametrize("action", ["start", "stop", "start --install"])
def test_a_slurm_conf_it_did_not_write_is_refused_with_nothing_changed(tmp_path, action):
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=the-lab\nSlurmctldHost=head\n")
    before = conf.stat().st_mtime_ns
    env = dict(os.environ, SLURM_CONF=str(conf))
    proc = subprocess.run(["bash", str(CLUSTER), *action.split()], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (
        f"slurm: {conf} exists and was not written by this script (a real Slurm?); it leaves it alone "
        "(SLURM_CONF=<another path> runs a test cluster beside it); nothing changed"
    )
    assert conf.read_text() == "ClusterName=the-lab\nSlurmctldHost=head\n" and conf.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slurm.conf"]
