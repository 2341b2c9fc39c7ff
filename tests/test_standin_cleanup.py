"""`make standin-clean` (deploy/standin_pi.py clean): what a killed stand-in Pi owner left behind (its
guest's processes, network namespace and host veth) is removed; a live owner's stand-in is not touched.
Runs on real network namespaces and processes, without booting a guest. Needs root and iproute2."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "deploy"))
import standin_pi  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="network namespaces need root and iproute2")


def namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def fake_standin(owner):
    """The host-side state a stand-in owned by `owner` creates, with a process living in its namespace."""
    netns, veth_host, veth_pi = standin_pi.names(owner)
    for cmd in (["ip", "netns", "add", netns],
                ["ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_pi],
                ["ip", "link", "set", veth_pi, "netns", netns]):
        subprocess.run(cmd, check=True, capture_output=True)
    return subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "600"], start_new_session=True)


def test_clean_removes_a_dead_owners_standin_and_keeps_a_live_owners():
    gone = subprocess.Popen(["true"])
    gone.wait()
    living = subprocess.Popen(["sleep", "600"])
    dead_guest, live_guest = fake_standin(gone.pid), fake_standin(living.pid)
    try:
        done = subprocess.run([sys.executable, str(ROOT / "deploy" / "standin_pi.py"), "clean"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        dead_netns, dead_veth, _ = standin_pi.names(gone.pid)
        live_netns, live_veth, _ = standin_pi.names(living.pid)
        assert done.stdout.strip() == f"removed {dead_netns}"
        assert dead_guest.wait(timeout=10) != 0  # killed
        assert dead_netns not in namespaces() and not link_exists(dead_veth)
        assert live_guest.poll() is None
        assert live_netns in namespaces() and link_exists(live_veth)
    finally:
        for process in (dead_guest, live_guest, living):
            process.kill()
            process.wait()
        for owner in (gone.pid, living.pid):
            standin_pi.remove_network(*standin_pi.names(owner)[:2])


def test_leaving_a_standin_kills_a_guest_that_outlived_its_nspawn():
    owner = subprocess.Popen(["sleep", "600"])  # a stand-in of its own, apart from any this test process boots
    guest = fake_standin(owner.pid)  # in its own session, as a booted guest's init is
    pi = standin_pi.StandinPi()
    pi.netns, pi.veth_host, _ = standin_pi.names(owner.pid)
    pi.process = subprocess.Popen(["sleep", "600"], start_new_session=True)  # the nspawn: ends at SIGTERM, guest left
    try:
        pi.__exit__(None, None, None)
        assert guest.wait(timeout=10) != 0  # killed
        assert pi.netns not in namespaces() and not link_exists(pi.veth_host)
    finally:
        for process in (guest, owner, pi.process):
            process.kill()
            process.wait()
        standin_pi.remove_network(*standin_pi.names(owner.pid)[:2])


def test_clean_with_nothing_left_says_so():
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "standin_pi.py"), "clean"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no leftover stand-in Pi"
