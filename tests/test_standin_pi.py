"""`make deploy-pi` and `make pi-report` against a stand-in Pi: an emulated arm64 Debian 12 with systemd,
in its own network namespace, reached over ssh (deploy/standin_pi.py). Run as a Pi 4 (Cortex-A72) and a
Pi 5 (Cortex-A76). Needs root and the host packages the stand-in names; without them the tests skip,
unless EDGE_SR_REQUIRE_STANDIN=1 (CI sets it), where a missing prerequisite fails them."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "deploy"))
import standin_pi  # noqa: E402

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent
HWCAP_ASIMDDP = 1 << 20  # the dot-product instructions: a Pi 5 has them, a Pi 4 does not
SERVICE_ARGS = "--demo --scale 2 --model fsrcnn-s --size 32x24 --threads 1 --quiet"
BENCH_ARGS = "--scales 2 --sizes 32x24 --threads 1 --seconds 0.5 --models fsrcnn-s_x2_int8.tflite fsrcnn-s_x2_fp32.onnx"


def standin_or_skip():
    reason = standin_pi.missing_prerequisites()
    if reason:
        if os.environ.get("EDGE_SR_REQUIRE_STANDIN") == "1":
            pytest.fail(f"stand-in Pi required but unavailable: {reason}")
        pytest.skip(reason)


def make(target, pi, tmp):
    """`make TARGET PI=...` against the stand-in, asserted to succeed."""
    pi_vars = f"{pi.ansible_vars()} edge_sr_args='{SERVICE_ARGS}' edge_sr_bench_args='{BENCH_ARGS}'"
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    done = subprocess.run(["make", "--no-print-directory", target, f"PI={pi.user}@{pi.host}", f"PI_VARS={pi_vars}",
                           f"WHEELHOUSE={tmp / 'wheelhouse'}", f"REPORTS={tmp / 'reports'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def only_on(pi, cpu, why):
    if pi.cpu != cpu:
        pytest.skip(why)


def service(pi, prop):
    return pi.ssh(f"systemctl show -p {prop} --value edge-sr").stdout.strip()


def hwcap(pi, prefix=""):
    shown = pi.ssh(f"{prefix} env LD_SHOW_AUXV=1 /bin/true").stdout
    return int(next(line.split()[1] for line in shown.splitlines() if line.startswith("AT_HWCAP:")), 16)


@pytest.fixture(scope="module", params=["cortex-a72", "cortex-a76"])
def deployed_pi(request, tmp_path_factory):
    """A freshly booted stand-in Pi of each kind with `make deploy-pi` run against it once."""
    standin_or_skip()
    tmp = tmp_path_factory.mktemp(request.param)
    # A SIGTERM to pytest (a CI timeout, `kill`) then unwinds like Ctrl-C, so the guest is powered off.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with standin_pi.StandinPi(request.param) as pi:
            make("deploy-pi", pi, tmp)
            yield pi, tmp
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_every_guest_process_is_the_pi_cpu_asked_for(deployed_pi):
    pi, _ = deployed_pi
    assert pi.ssh("uname -m").stdout.strip() == "aarch64"
    has_dotprod = pi.cpu == "cortex-a76"
    for prefix in ("", "sudo"):
        assert bool(hwcap(pi, prefix) & HWCAP_ASIMDDP) == has_dotprod
    pid = service(pi, "MainPID")
    assert f"QEMU_CPU={pi.cpu}" in pi.ssh(f"sudo cat /proc/{pid}/environ").stdout.split("\0")


def test_deploy_leaves_the_service_active_and_enabled_on_the_verified_release(deployed_pi):
    pi, tmp = deployed_pi
    release = (tmp / "wheelhouse" / "RELEASE").read_text().strip()
    assert service(pi, "ActiveState") == "active"
    assert pi.ssh("systemctl is-enabled edge-sr").stdout.strip() == "enabled"
    assert pi.ssh("readlink /opt/edge-sr/current").stdout.strip() == f"/opt/edge-sr/releases/{release}"
    assert pi.ssh(f"test -f /opt/edge-sr/releases/{release}/.verified", check=False).returncode == 0
    light = pi.ssh("/opt/edge-sr/current/venv/bin/python -c \"import importlib.util as u; "
                   "print(u.find_spec('torch') is None and u.find_spec('tensorflow') is None)\"")
    assert light.stdout.strip() == "True"


def test_the_deployed_cli_streams_the_demo_on_the_pi(deployed_pi):
    pi, _ = deployed_pi
    run = pi.ssh("/opt/edge-sr/current/venv/bin/edge-sr --demo --frames 4 --size 48x32 --threads 1 "
                 "--model fsrcnn-s --precision int8 --backend litert --quiet --report /tmp/demo.json")
    report = json.loads(pi.ssh("cat /tmp/demo.json").stdout)
    assert report["frames"] == 4, run.stdout
    assert report["psnr"]["sr"] > report["psnr"]["bicubic_opencv"]


def test_a_second_deploy_with_nothing_changed_changes_nothing(deployed_pi):
    pi, tmp = deployed_pi
    pid = service(pi, "MainPID")
    again = make("deploy-pi", pi, tmp)
    assert "changed=0" in again.stdout
    assert service(pi, "MainPID") == pid


def test_a_broken_release_rolls_back_with_the_old_service_still_running(deployed_pi):
    pi, tmp = deployed_pi
    only_on(pi, "cortex-a72", "rollback is a property of the playbook, not the CPU: checked once, on the Pi 4")
    pid, current = service(pi, "MainPID"), pi.ssh("readlink /opt/edge-sr/current").stdout
    broken = tmp / "broken"
    shutil.copytree(tmp / "wheelhouse", broken)
    for wheel in broken.glob("edge_sr-*.whl"):
        wheel.write_bytes(b"not a wheel")
    (broken / "RELEASE").write_text("broken000000\n")
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}
    run = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "build/inventory-pi.ini", "deploy/ansible/deploy.yml",
                          "-e", f"wheelhouse={broken}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode != 0
    assert "failed at 'Install offline from the wheelhouse'" in run.stdout
    assert "previous version keeps running" in run.stdout
    assert pi.ssh("readlink /opt/edge-sr/current").stdout == current
    assert pi.ssh("test -e /opt/edge-sr/releases/broken000000", check=False).returncode != 0
    assert service(pi, "ActiveState") == "active" and service(pi, "MainPID") == pid


def test_pi_report_brings_back_the_same_psnr_the_host_measures(deployed_pi):
    pi, tmp = deployed_pi
    only_on(pi, "cortex-a72", "the report path is the same on both; checked once, on the Pi 4")
    make("pi-report", pi, tmp)
    [stamp] = list((tmp / "reports" / pi.host).iterdir())
    on_pi = json.loads((stamp / "report.json").read_text())
    assert (stamp / "report.html").read_text().startswith("<!doctype html>")
    assert on_pi["machine"]["platform"].endswith("aarch64-with-glibc2.36")
    host = subprocess.run([str(VENV_BIN / "edge-sr"), "bench", *BENCH_ARGS.split(), "--out", str(tmp / "host")],
                          capture_output=True, text=True, timeout=600)
    assert host.returncode == 0, host.stderr
    on_host = json.loads((tmp / "host" / "report.json").read_text())
    psnr = lambda report: {e["name"]: e["quality"]["demo"]["psnr"] for e in report["results"]}
    assert psnr(on_pi).keys() == psnr(on_host).keys() == set(BENCH_ARGS.split("--models ")[1].split())
    for name, value in psnr(on_pi).items():
        assert abs(value - psnr(on_host)[name]) <= 0.01, (name, value, psnr(on_host)[name])
    fleet = subprocess.run([sys.executable, str(ROOT / "deploy" / "fleet_table.py"), str(tmp / "reports")],
                           capture_output=True, text=True)
    rows = [line for line in fleet.stdout.splitlines() if line.startswith(f"| {pi.host} |")]
    assert sorted(row.split(" | ")[1] for row in rows) == sorted(psnr(on_pi))


def test_undeploy_removes_the_service_and_every_release(deployed_pi):
    pi, tmp = deployed_pi
    only_on(pi, "cortex-a76", "checked once, last, on the Pi 5 (the Pi 4 run checks rollback and reports instead)")
    make("undeploy-pi", pi, tmp)
    assert pi.ssh("systemctl is-active edge-sr", check=False).stdout.strip() == "inactive"
    assert pi.ssh("systemctl cat edge-sr", check=False).returncode != 0
    assert pi.ssh("ls /opt/edge-sr /etc/edge-sr", check=False).returncode != 0
