"""A stand-in Raspberry Pi on this machine, so `make deploy-pi` can be tested without one.

An arm64 Debian 12 (Bookworm, Python 3.11: what Raspberry Pi OS 64-bit is built on) userland runs
under qemu user-mode emulation, boots systemd in systemd-nspawn, lives in its own network namespace
and answers ssh at 10.200.0.2 as user `pi` with passwordless sudo. QEMU_CPU makes every guest process
a Cortex-A72 (Pi 4) or Cortex-A76 (Pi 5), so a wheel that would die with 'Illegal instruction' on a
real Pi dies here too. Emulation is 100-350x slower than the host: use it for function and
numbers-agree checks, never for speed.

Needs root and: qemu-user-static binfmt-support debootstrap systemd-container openssh-client.
The rootfs is built once (about 5 minutes) and cached under the cache folder, keyed by its recipe;
each boot runs on a throwaway overlay of it, so every boot is a freshly flashed Pi.

    python deploy/standin_pi.py build              # build or reuse the cached rootfs
    python deploy/standin_pi.py up [--cpu cortex-a76]   # boot one; prints how to reach it; Ctrl-C stops
    python deploy/standin_pi.py clean              # remove what killed owners left (make standin-clean)
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST_TOOLS = ("debootstrap", "systemd-nspawn", "qemu-aarch64-static", "ssh", "ssh-keygen", "ip")
HOST_PACKAGES = "qemu-user-static binfmt-support debootstrap systemd-container openssh-client iproute2"
SUITE = "bookworm"
GUEST_PACKAGES = ("python3,python3-venv,python3-pip,openssh-server,rsync,sudo,ca-certificates,iproute2,"
                  "procps,systemd,systemd-sysv,dbus,libpam-systemd")
HOST_IP, PI_IP = "10.200.0.1", "10.200.0.2"
NETNS_PREFIX, SCRATCH_PREFIX = "edgesr-pi-", "edge-sr-standin-"  # each followed by the owner's pid
PI_USER = "pi"
CPUS = {  # QEMU_CPU -> what /proc/cpuinfo says on that Pi
    "cortex-a72": dict(model="Raspberry Pi 4 Model B Rev 1.5", part="0xd08", revision="d03115",
                       features="fp asimd evtstrm crc32 cpuid"),
    "cortex-a76": dict(model="Raspberry Pi 5 Model B Rev 1.0", part="0xd0b", revision="d04170",
                       features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                                "asimdrdm lrcpc dcpop asimddp"),
}
# Run in the new rootfs (emulated) after debootstrap: the Pi's user, sshd, sudo and the unit that puts
# a Pi's /proc/cpuinfo in place (onnxruntime crashes on import when it reads the host's x86 one).
CUSTOMIZE = r"""
set -e
useradd -m -s /bin/bash -G sudo pi
passwd -l pi
printf 'pi ALL=(ALL) NOPASSWD:ALL\nDefaults env_keep += "QEMU_CPU"\n' > /etc/sudoers.d/010-pi
chmod 0440 /etc/sudoers.d/010-pi
printf 'AuthorizedKeysFile .ssh/authorized_keys /standin/authorized_keys\nPasswordAuthentication no\nUseDNS no\n' \
  > /etc/ssh/sshd_config.d/standin.conf
echo raspberrypi > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 raspberrypi\n' > /etc/hosts
mkdir -p /standin
cat > /etc/systemd/system/standin-cpuinfo.service <<'EOF'
[Unit]
Description=A Raspberry Pi /proc/cpuinfo for programs that read it
DefaultDependencies=no
Before=sysinit.target
ConditionPathExists=/standin/cpuinfo

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount --bind /standin/cpuinfo /proc/cpuinfo

[Install]
WantedBy=sysinit.target
EOF
systemctl enable standin-cpuinfo.service ssh.service
systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer
apt-get clean
"""
RECIPE_KEY = hashlib.sha256("\n".join([SUITE, GUEST_PACKAGES, CUSTOMIZE]).encode()).hexdigest()[:12]


class StandinError(RuntimeError):
    """The stand-in could not be built or booted; the message says which step and why."""


def default_cache() -> Path:
    return Path(os.environ.get("EDGE_SR_STANDIN_CACHE", Path.home() / ".cache" / "edge-sr" / "standin-pi"))


def missing_prerequisites() -> str | None:
    """Why this machine cannot run the stand-in, or None when it can."""
    if os.geteuid() != 0:
        return "the stand-in Pi needs root (debootstrap, network namespaces, systemd-nspawn)"
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {' '.join(missing)}: apt-get install {HOST_PACKAGES}"
    return None


def run(cmd, timeout=600, **kwargs):
    """Run a host command; a failure raises StandinError naming it, with the tail of its output."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        shown = cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
        raise StandinError(f"`{shown[:200]}` failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
    return done.stdout


def ensure_binfmt() -> None:
    """qemu-aarch64 registered with flags OCPF: F keeps the interpreter usable inside the guest's root,
    O and C let setuid programs (sudo) run with their own credentials, P keeps argv[0]."""
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)])
    entry = misc / "qemu-aarch64"
    if not entry.exists():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    fields = dict(line.split(" ", 1) for line in entry.read_text().splitlines() if " " in line)
    if set("OCPF") <= set(fields.get("flags:", "")):
        return
    magic, mask = fields["magic"], fields["mask"]
    as_escapes = lambda hexed: "".join(f"\\x{hexed[i:i + 2]}" for i in range(0, len(hexed), 2))
    entry.write_text("-1")
    (misc / "register").write_text(
        f":qemu-aarch64:M::{as_escapes(magic)}:{as_escapes(mask)}:{fields['interpreter']}:OCPF")


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses (the only registry reachable from a sandbox)."""
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        if source.exists():
            found = re.search(r"(?m)^(?:URIs:|deb)\s+(?:\[[^]]*]\s+)?(\S+/debian)/?\s", source.read_text() + "\n")
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian"


def build_rootfs(cache: Path | None = None, log=print) -> Path:
    """The cached arm64 rootfs for this recipe, built first if needed (atomically: a half-built one is
    never used)."""
    cache = cache or default_cache()
    rootfs = cache / RECIPE_KEY / "rootfs"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{RECIPE_KEY}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second build waits for the first, then reuses it
        if not (rootfs / "standin-ready").exists():
            _build(cache, log)
    return rootfs


def _build(cache: Path, log) -> None:
    ensure_binfmt()
    building = cache / f"{RECIPE_KEY}.building"
    remove_tree(building)
    building.mkdir(parents=True)
    staged = building / "rootfs"
    try:
        log(f"stand-in Pi: debootstrap arm64 {SUITE} (first stage) into {staged}")
        run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", f"--include={GUEST_PACKAGES}",
             SUITE, str(staged), debian_mirror()], timeout=1800)
        log("stand-in Pi: second stage under emulation (about 5 minutes)")
        run(["chroot", str(staged), "/debootstrap/debootstrap", "--second-stage"], timeout=3600)
        log("stand-in Pi: user, ssh, sudo, cpuinfo unit")
        run(["chroot", str(staged), "/bin/bash", "-c", CUSTOMIZE], timeout=900)
    finally:
        unmount_under(building)  # the second stage mounts /proc and /sys in the chroot and may leave them
    (staged / "standin-ready").write_text(RECIPE_KEY + "\n")
    remove_tree(cache / RECIPE_KEY)
    building.rename(cache / RECIPE_KEY)


def unmount_under(path: Path) -> None:
    """Unmount everything mounted at or below path, deepest first."""
    prefix = str(path.resolve())
    mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounted if m == prefix or m.startswith(prefix + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def remove_tree(path: Path) -> None:
    """rm -rf that never follows a leftover mount (a chroot's /proc, /sys or /dev) into the host."""
    if path.exists():
        unmount_under(path)
        run(["rm", "-rf", "--one-file-system", str(path)])


def client_key(cache: Path) -> Path:
    key = cache / "id_ed25519"
    if not key.exists():
        cache.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edge-sr-standin", "-f", str(key)])
    return key


def pi_cpuinfo(cpu: str) -> str:
    """A Pi's /proc/cpuinfo with as many cores as the host has (what /sys in the guest shows)."""
    spec = CPUS[cpu]
    cores = "".join(f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {spec['features']}\n"
                    f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
                    f"CPU part\t: {spec['part']}\nCPU revision\t: 1\n\n" for n in range(os.cpu_count() or 1))
    return cores + f"Revision\t: {spec['revision']}\nModel\t\t: {spec['model']}\n"


class StandinPi:
    """One booted stand-in Pi. A context manager: leaving it (even on an exception or Ctrl-C) powers the
    guest off, kills what is left of it and removes its network namespace and scratch files."""

    def __init__(self, cpu: str = "cortex-a72", cache: Path | None = None, boot_timeout: float = 180):
        if cpu not in CPUS:
            raise StandinError(f"unknown cpu {cpu!r}; choose from {', '.join(CPUS)}")
        self.cpu, self.cache, self.boot_timeout = cpu, cache or default_cache(), boot_timeout
        self.netns, self.veth_host, self.veth_pi = names(os.getpid())
        self.host, self.user = PI_IP, PI_USER
        self.process: subprocess.Popen | None = None

    # --- reaching it ---
    @property
    def ssh_options(self) -> list[str]:
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-o", "BatchMode=yes"]

    def ssh(self, command: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["ssh", *self.ssh_options, f"{self.user}@{self.host}", command],
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise StandinError(f"on the stand-in Pi `{command}` failed ({done.returncode}): {done.stderr[-1500:]}")
        return done

    def ansible_vars(self) -> str:
        """Inventory variables that let ansible (make deploy-pi PI_VARS=...) log in to this Pi."""
        common = " ".join(self.ssh_options[2:])
        return (f"ansible_ssh_private_key_file={self.key} ansible_python_interpreter=/usr/bin/python3 "
                f"ansible_ssh_common_args='{common}'")

    # --- life cycle ---
    def __enter__(self) -> "StandinPi":
        reason = missing_prerequisites()
        if reason:
            raise StandinError(reason)
        try:
            self._boot()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _boot(self) -> None:
        rootfs = build_rootfs(self.cache)
        ensure_binfmt()
        self.key = client_key(self.cache)
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        shared = self.scratch / "standin"
        shared.mkdir()
        (shared / "cpuinfo").write_text(pi_cpuinfo(self.cpu))
        (shared / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        (shared / "environment").write_text(f"QEMU_CPU={self.cpu}\n")
        (shared / "qemu-cpu.conf").write_text(f"[Manager]\nDefaultEnvironment=QEMU_CPU={self.cpu}\n")
        for path in shared.iterdir():
            path.chmod(0o644)
        shared.chmod(0o755)
        remove_leftovers()  # a killed earlier owner's host-side address would clash with this one's
        self._network()
        self.log = self.scratch / "console.log"
        self.process = subprocess.Popen(
            ["systemd-nspawn", "-D", str(rootfs), "--boot", "--register=no", "--keep-unit", "--volatile=overlay",
             "--machine=raspberrypi", f"--network-namespace-path=/run/netns/{self.netns}",
             f"--setenv=QEMU_CPU={self.cpu}", f"--bind-ro={shared}:/standin",
             f"--bind-ro={shared / 'environment'}:/etc/environment",
             f"--bind-ro={shared / 'qemu-cpu.conf'}:/etc/systemd/system.conf.d/qemu-cpu.conf"],
            stdin=subprocess.DEVNULL, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            env={**os.environ, "QEMU_CPU": self.cpu, "SYSTEMD_NSPAWN_TMPFS_TMP": "0"}, start_new_session=True)
        self._wait_for_ssh()

    def _network(self) -> None:
        run(["ip", "netns", "add", self.netns])
        run(["ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_pi])
        run(["ip", "link", "set", self.veth_pi, "netns", self.netns])
        run(["ip", "addr", "add", f"{HOST_IP}/24", "dev", self.veth_host])
        run(["ip", "link", "set", self.veth_host, "up"])
        inside = ["ip", "netns", "exec", self.netns]
        run([*inside, "ip", "addr", "add", f"{PI_IP}/24", "dev", self.veth_pi])
        run([*inside, "ip", "link", "set", self.veth_pi, "up"])
        run([*inside, "ip", "link", "set", "lo", "up"])

    def _wait_for_ssh(self) -> None:
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StandinError(f"the stand-in Pi exited during boot: {self.console_tail()}")
            try:
                with socket.create_connection((self.host, 22), timeout=2) as sock:
                    sock.settimeout(5)
                    if sock.recv(64).startswith(b"SSH-"):
                        if self.ssh("true", timeout=60, check=False).returncode == 0:
                            return
            except OSError:
                pass
            time.sleep(1)
        raise StandinError(f"no ssh on {self.host} after {self.boot_timeout:.0f} s: {self.console_tail()}")

    def console_tail(self, chars: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-chars:] if getattr(self, "log", None) and self.log.exists() else ""

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # nspawn --boot: SIGTERM asks the guest's systemd to power off
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        # A guest slower to power off than that outlives its killed nspawn (the guest's init has its own session
        # and PID namespace): what is still in its network namespace goes too, before the namespace loses its name.
        kill(guest_processes(self.netns))
        remove_network(self.netns, self.veth_host)
        if getattr(self, "scratch", None):
            remove_tree(self.scratch)


def names(owner: int) -> tuple[str, str, str]:
    """The network namespace and the host and guest veth names of the stand-in owned by process `owner`
    (veth names stay under the kernel's 15 characters for any pid)."""
    return f"{NETNS_PREFIX}{owner}", f"esr{owner}h", f"esr{owner}p"


def remove_network(netns: str, veth_host: str) -> None:
    """Delete a stand-in's namespace and host veth, whichever of them exists."""
    subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    subprocess.run(["ip", "link", "del", veth_host], capture_output=True)


def orphaned_owners() -> list[int]:
    """Owners (pids) of stand-ins still on this machine although the owner has gone: a `make test` or
    `standin-pi` killed (SIGKILL, or SIGTERM outside the test fixture) before it could power its guest off."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    tags = [line.split()[0][len(NETNS_PREFIX):] for line in listed if line.startswith(NETNS_PREFIX)]
    return sorted(int(tag) for tag in tags if tag.isdigit() and not Path(f"/proc/{tag}").exists())


def guest_processes(netns: str) -> list[int]:
    """The systemd-nspawn that boots into netns (it stays in the host's namespace) and every process in it."""
    nspawns = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"systemd-nspawn") and f"--network-namespace-path=/run/netns/{netns}".encode() in argv:
            nspawns.append(int(cmdline.parent.name))
    inside = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    return nspawns + [int(pid) for pid in inside]


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_leftovers() -> list[str]:
    """Kill the guests of stand-ins whose owner has gone and remove their namespaces, host veths and
    scratch folders; a live owner's stand-in is left alone. Returns the namespaces removed."""
    removed = []
    for owner in orphaned_owners():
        netns, veth_host, _ = names(owner)
        kill(guest_processes(netns))
        remove_network(netns, veth_host)
        for scratch in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{owner}-*"):
            remove_tree(scratch)
        removed.append(netns)
    return removed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build or reuse the cached rootfs")
    sub.add_parser("clean", help="remove the guests, namespaces and scratch files that killed owners left")
    up = sub.add_parser("up", help="boot a stand-in Pi until Ctrl-C")
    up.add_argument("--cpu", choices=sorted(CPUS), default="cortex-a72")
    args = parser.parse_args(argv)
    try:
        if args.command == "clean":
            if os.geteuid() != 0:
                raise StandinError("removing a stand-in Pi's network namespace needs root")
            removed = remove_leftovers()
            print(f"removed {', '.join(removed)}" if removed else "no leftover stand-in Pi")
            return 0
        reason = missing_prerequisites()
        if reason:
            raise StandinError(reason)
        if args.command == "build":
            print(build_rootfs())
            return 0
        with StandinPi(args.cpu) as pi:
            print(f"stand-in Pi ({args.cpu}) up: ssh {' '.join(pi.ssh_options)} {pi.user}@{pi.host}")
            print(f"deploy to it: make deploy-pi PI={pi.user}@{pi.host} PI_VARS=\"{pi.ansible_vars()}\"")
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            while True:
                time.sleep(3600)
    except StandinError as error:
        print(f"standin-pi: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
