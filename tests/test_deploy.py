"""The deploy playbooks run for real (ansible-core, pip, venv, the edge-sr wheel) against this machine
as a local 'Pi': versioned releases, smoke run, idempotent re-deploy, rollback on a broken release,
and the report fetched back. systemd steps are off here (no systemd in this sandbox)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

VENV_BIN = Path(sys.executable).parent
ANSIBLE = VENV_BIN / "ansible-playbook"
pytestmark = pytest.mark.slow


def playbook(name, inventory, *extra):
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "0", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    return subprocess.run([str(ANSIBLE), "-i", str(inventory), str(ROOT / "deploy" / "ansible" / name), *extra],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)


@pytest.fixture(scope="module")
def local_pi(tmp_path_factory):
    if not ANSIBLE.exists():
        pytest.skip("ansible-core not installed")
    tmp = tmp_path_factory.mktemp("pi")
    wheelhouse = tmp / "wheelhouse"
    build = subprocess.run([str(ROOT / "deploy" / "build_wheelhouse.sh"), str(wheelhouse), "host"],
                           capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=600)
    assert build.returncode == 0, build.stderr
    inventory = tmp / "hosts.ini"
    inventory.write_text(
        f"localpi ansible_connection=local ansible_python_interpreter={sys.executable} "
        f"edge_sr_root={tmp / 'opt'} edge_sr_become=false edge_sr_manage_service=false\n")
    return tmp, wheelhouse, inventory


def current_release(tmp):
    return os.readlink(tmp / "opt" / "current")


def test_deploy_installs_a_verified_release_and_links_current(local_pi):
    tmp, wheelhouse, inventory = local_pi
    run = playbook("deploy.yml", inventory, "-e", f"wheelhouse={wheelhouse}")
    assert run.returncode == 0, run.stdout[-3000:]
    release = (wheelhouse / "RELEASE").read_text().strip()
    assert current_release(tmp).endswith(f"releases/{release}")
    installed = tmp / "opt" / "current" / "venv" / "bin" / "edge-sr"
    demo = subprocess.run([str(installed), "--demo", "--frames", "3", "--size", "64x48", "--threads", "1", "--quiet",
                           "--model", "fsrcnn-s"], capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr
    check = subprocess.run([str(tmp / "opt" / "current" / "venv" / "bin" / "python"), "-c",
                            "import importlib.util as u; print(u.find_spec('torch') is None and u.find_spec('tensorflow') is None)"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "True"


def test_redeploying_the_same_release_changes_nothing(local_pi):
    tmp, wheelhouse, inventory = local_pi
    before = current_release(tmp)
    run = playbook("deploy.yml", inventory, "-e", f"wheelhouse={wheelhouse}")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "changed=0" in run.stdout
    assert current_release(tmp) == before


def test_a_broken_release_rolls_back_and_says_what_failed(local_pi):
    tmp, wheelhouse, inventory = local_pi
    before = current_release(tmp)
    broken = tmp / "broken"
    shutil.copytree(wheelhouse, broken)
    for wheel in broken.glob("edge_sr-*.whl"):
        wheel.write_bytes(b"not a wheel")
    (broken / "RELEASE").write_text("broken000000\n")
    run = playbook("deploy.yml", inventory, "-e", f"wheelhouse={broken}")
    assert run.returncode != 0
    assert "failed at 'Install offline from the wheelhouse'" in run.stdout
    assert "previous version keeps running" in run.stdout
    assert current_release(tmp) == before
    assert not (tmp / "opt" / "releases" / "broken000000").exists()


def test_report_playbook_brings_back_the_device_report(local_pi):
    tmp, _, inventory = local_pi
    reports = tmp / "reports"
    run = playbook("report.yml", inventory, "-e", f"reports_dir={reports}", "-e",
                   "edge_sr_bench_args='--scales 2 --sizes 64x48 --threads 1 --seconds 0.3 --models fsrcnn-s_x2_int8.onnx'",
                   "-e", f"edge_sr_root={tmp / 'opt'}")
    assert run.returncode == 0, run.stdout[-3000:]
    [stamp] = list((reports / "localpi").iterdir())
    report = json.loads((stamp / "report.json").read_text())
    assert report["results"][0]["name"] == "fsrcnn-s_x2_int8.onnx"
    assert (stamp / "report.html").read_text().startswith("<!doctype html>")
