"""The single executable (`make dist`) and the Debian package (`make deb`), built and run."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

GLIBC = ["libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1", "libresolv.so.2"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make deb`` (which runs ``make dist``) once for this module: cwalld, config.toml, the .deb."""
    out = tmp_path_factory.mktemp("dist") / "cwalld"
    subprocess.run(["make", "-s", "deb", f"OUT={out}", f"BUILD={out.parent / 'build'}",
                    f"VENV={Path(sys.executable).parent.parent}"], cwd=ROOT, check=True, capture_output=True, timeout=900)
    return out.parent


def bare_root(folder: Path, executable: Path) -> Path:
    """A root file system holding the executable, glibc and zlib, and nothing else: no Python,
    no /usr, no shell (what a new Debian 12 minus everything the executable must not need)."""
    (folder / "tmp").mkdir(parents=True)
    (folder / "tmp").chmod(0o1777)
    for sub in ("bin", "lib64", "lib/x86_64-linux-gnu", "srv"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(executable, folder / "bin" / "cwalld")
    shutil.copy("/lib64/ld-linux-x86-64.so.2", folder / "lib64")
    for lib in [*GLIBC, "libz.so.1"]:
        shutil.copy(f"/lib/x86_64-linux-gnu/{lib}", folder / "lib/x86_64-linux-gnu")
    return folder


def test_the_executable_needs_no_python(dist: Path, tmp_path: Path) -> None:
    """dist/cwalld (a shiv zipapp) ran only on the Python minor it was built with: on 3.12 `serve`
    died with `No module named 'orjson.orjson'`. Now --version, check and serve run in a root
    with no python3 at all, nor any other Python file."""
    assert os.geteuid() == 0, "chroot needs root (CI runs as root)"
    root = bare_root(tmp_path / "root", dist / "cwalld")
    assert not [p for p in root.rglob("*python*")]
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    (root / "srv" / "c.toml").write_text('[storage]\npath = "/srv/cwall.db"\n[server]\ncontrol_socket = "/srv/c.sock"\n')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([chroot, str(root), "/bin/cwalld", *args], capture_output=True, text=True,
                              timeout=60, env={"PATH": "/bin"})

    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("cwalld "), r.stderr
    r = run("check", "-c", "/srv/c.toml")
    assert r.returncode == 0 and "storage  new" in r.stdout, r.stdout + r.stderr
    port = free_port()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's end of sd_notify
    notify.bind(str(root / "srv" / "notify.sock"))
    notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    serve = subprocess.Popen(["/bin/sh", "-c", 'export WATCHDOG_PID=$$; exec "$0" "$@"',  # the PID systemd starts
                              chroot, str(root), "/bin/cwalld", "serve", "-c", "/srv/c.toml"],
                             env={"PATH": "/bin", "CWALLD_SERVER_PORT": str(port), "NOTIFY_SOCKET": "/srv/notify.sock",
                                  "WATCHDOG_USEC": "1000000"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as ready:
                    assert ready.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline and serve.poll() is None, "serve did not become ready"
                time.sleep(0.1)
        for path in ("/api/v1/categories", "/api/docs", "/api/docs/swagger-ui-bundle.js", "/", "/admin"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r2:
                assert r2.status == 200, path
                if path == "/":  # the page's files travel inside the executable too
                    assets = re.findall(r'/static/[\w.]+', r2.read().decode())
        assert len(assets) == 2, assets
        for path in assets:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r2:
                assert r2.status == 200 and b"{{" not in r2.read(), path
        # The executable unpacks itself and runs cwalld as its child: READY=1 and the watchdog
        # pings come from another PID than the one systemd started (so the unit says
        # NotifyAccess=all), and the child must ping although WATCHDOG_PID names its parent.
        notify.settimeout(10)
        said: dict[bytes, int] = {}
        while b"WATCHDOG=1" not in said:
            data, ancillary, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(12))
            sender = struct.unpack("iII", ancillary[0][2][:12])[0]
            said.update({line: sender for line in data.split(b"\n")})
        assert b"READY=1" in said and said[b"READY=1"] != serve.pid and said[b"WATCHDOG=1"] == said[b"READY=1"]
    finally:
        serve.send_signal(signal.SIGTERM)
        out = serve.communicate(timeout=30)[0]
    assert serve.returncode == 0, out
    assert (root / "srv" / "cwall.db").exists() and '"event":"stopped"' in out
    unit = (ROOT / "systemd" / "cwalld.service").read_text()
    assert "\nNotifyAccess=all\n" in unit


def test_dist_config_has_the_services_paths(dist: Path) -> None:
    from cwalld import config

    cfg = config.load(dist / "config.toml", env={})
    assert cfg.storage.path == "/var/lib/cwalld/cwall.db" and cfg.server.control_socket == "/run/cwalld/control.sock"
    example = config.load(ROOT / "config.toml.example", env={})
    assert config.replace(cfg, storage={"path": example.storage.path},
                          server={"control_socket": ""}).ai == example.ai  # the rest is the example's


def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """dpkg on a throwaway root, its maintainer scripts run (chrootless, with DPKG_ROOT set)."""
    r = subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_the_deb_installs_enables_removes_keeping_data_and_purges(dist: Path, tmp_path: Path) -> None:
    from cwalld import __version__, config

    (deb,) = dist.glob("cwalld_*_amd64.deb")
    assert deb.name == f"cwalld_{__version__}_amd64.deb"
    info = subprocess.run(["dpkg-deb", "--info", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "Package: cwalld" in info and f"Version: {__version__}" in info and "Depends: libc6 (>= 2.36)" in info
    for script in ("postinst", "prerm", "postrm", "conffiles"):
        assert f" {script} " in info
    contents = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    files = {line.split()[-1] for line in contents.splitlines() if not line.startswith("d")}
    assert files == {"./usr/bin/cwalld", "./usr/lib/systemd/system/cwalld.service", "./etc/cwalld/config.toml",
                     "./usr/share/doc/cwalld/README"}
    conffiles = subprocess.run(["dpkg-deb", "-I", str(deb), "conffiles"], capture_output=True, text=True).stdout
    assert conffiles.split() == ["/etc/cwalld/config.toml"]

    root = tmp_path / "root"
    for sub in ("info", "updates", "triggers"):
        (root / "var/lib/dpkg" / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    dpkg(root, "-i", str(deb))
    assert "Status: install ok installed" in dpkg(root, "-s", "cwalld").stdout
    wants = root / "etc/systemd/system/multi-user.target.wants/cwalld.service"
    assert wants.is_symlink()  # enabled (started too, where systemd runs: not in a throwaway root)
    cfg = config.load(root / "etc/cwalld/config.toml", env={})
    assert cfg.storage.path == "/var/lib/cwalld/cwall.db" and cfg.server.socket == "/run/cwalld/control.sock"
    r = subprocess.run([str(root / "usr/bin/cwalld"), "check", "--config-only", "-c", str(root / "etc/cwalld/config.toml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # what the service made: DynamicUser=yes keeps it in /var/lib/private/cwalld, /var/lib/cwalld links there
    (root / "var/lib/private/cwalld").mkdir(parents=True)
    (root / "var/lib/private/cwalld/cwall.db").write_text("the confessions")
    (root / "var/lib/cwalld").symlink_to("private/cwalld")
    (root / "etc/cwalld/ai-api-key").write_text("sk-secret")  # as the README has the operator do

    dpkg(root, "-r", "cwalld")
    assert not (root / "usr/bin/cwalld").exists() and not (root / "usr/lib/systemd/system/cwalld.service").exists()
    assert (root / "var/lib/cwalld/cwall.db").read_text() == "the confessions"  # remove keeps the data
    assert (root / "etc/cwalld/config.toml").exists()  # and the config

    dpkg(root, "-P", "cwalld")
    assert not (root / "var/lib/private/cwalld").exists() and not (root / "var/lib/cwalld").is_symlink()
    assert not (root / "etc/cwalld").exists() and not wants.is_symlink()  # the key file too
