#!/usr/bin/env python3
"""Start and stop a local Kubernetes API server (etcd + kube-apiserver) to check playbooks against.

Stdlib only. It is an API server and nothing else: no controller manager, no
scheduler, no kubelet, so objects are stored and validated, server-side dry
runs work, but Deployments never roll out and pods never run. That is enough
for `ansible-playbook --check --diff` of the Kubernetes runbooks, not for a
real run.

Needs etcd (Debian's `etcd-server`), openssl, and a kube-apiserver binary:
``$STORMDRAIN_KUBE_APISERVER``, or one built by ``build`` from the Go module
proxy into ``~/.cache/stormdrain/kube/<version>/`` (Go 1.24+; about 15 minutes
and 150 MB on two cores).

Command line::

    python deploy/local/kubeapi.py build [--version v1.34.2]
    python deploy/local/kubeapi.py start --dir DIR     # prints the kubeconfig path
    python deploy/local/kubeapi.py stop --dir DIR

From Python: ``kubeconfig = start(data_dir)``, ``stop(data_dir)``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DEFAULT_VERSION = "v1.34.2"
TOKEN = "stormdrain-local-admin"
STATE = "kubeapi.json"
_CHILDREN: dict[int, subprocess.Popen] = {}  # started here: waited on, so a stopped child is no zombie


class KubeError(RuntimeError):
    """The API server could not be built, started or found."""


def cache_dir(version: str) -> Path:
    return Path(os.environ.get("STORMDRAIN_KUBE_CACHE", Path.home() / ".cache" / "stormdrain" / "kube")) / version


def apiserver_binary(version: str = DEFAULT_VERSION) -> Path | None:
    """The kube-apiserver to use: $STORMDRAIN_KUBE_APISERVER, else a cached build, else None."""
    given = os.environ.get("STORMDRAIN_KUBE_APISERVER")
    candidate = Path(given) if given else cache_dir(version) / "kube-apiserver"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def build(version: str = DEFAULT_VERSION, log=print) -> Path:
    """Build kube-apiserver from k8s.io/kubernetes at `version` through the Go module proxy."""
    work = cache_dir(version)
    work.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go") or "go"
    info = json.loads(_run([go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], work))
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", Path(info["GoMod"]).read_text(), re.M)
    minor = "v0." + version.split(".", 1)[1]  # the staging modules are tagged v0.X.Y for v1.X.Y
    replaces = "\n".join(f"\t{m} => {m} {minor}" for m in staging)
    (work / "go.mod").write_text(f"module kubebuild\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes {version}\n\n"
                                 f"replace (\n{replaces}\n)\n")
    (work / "tools.go").write_text(
        '//go:build tools\n\npackage kubebuild\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n')
    log(f"building kube-apiserver {version} in {work} (slow)")
    _run([go, "mod", "tidy", "-e"], work)
    _run([go, "build", "-o", "kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"], work)
    return work / "kube-apiserver"


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, "GOFLAGS": "-mod=mod"})
    if done.returncode != 0:
        raise KubeError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data_dir, version: str = DEFAULT_VERSION, timeout: float = 120.0) -> Path:
    """Start etcd and kube-apiserver in data_dir; return the path of a kubeconfig for them."""
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    binary, etcd = apiserver_binary(version), shutil.which("etcd")
    if binary is None or etcd is None or shutil.which("openssl") is None:
        raise KubeError("needs etcd (apt-get install etcd-server), openssl and kube-apiserver "
                        "($STORMDRAIN_KUBE_APISERVER, or `python deploy/local/kubeapi.py build`)")
    _run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"], d)
    (d / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
    client, peer, port = _free_port(), _free_port(), _free_port()
    pids = [_spawn([etcd, "--data-dir", str(d / "etcd"), "--listen-client-urls", f"http://127.0.0.1:{client}",
                    "--advertise-client-urls", f"http://127.0.0.1:{client}",
                    "--listen-peer-urls", f"http://127.0.0.1:{peer}"], d / "etcd.log")]
    (d / STATE).write_text(json.dumps({"pids": pids, "port": port}))
    pids.append(_spawn([str(binary), "--etcd-servers", f"http://127.0.0.1:{client}", "--secure-port", str(port),
                        "--bind-address", "127.0.0.1", "--cert-dir", str(d / "certs"),
                        "--token-auth-file", str(d / "tokens.csv"), "--authorization-mode", "AlwaysAllow",
                        "--service-account-issuer", "https://kubernetes.default.svc",
                        "--service-account-key-file", str(d / "sa.key"),
                        "--service-account-signing-key-file", str(d / "sa.key"),
                        "--service-cluster-ip-range", "10.0.0.0/24",
                        "--disable-admission-plugins", "ServiceAccount"], d / "apiserver.log"))
    (d / STATE).write_text(json.dumps({"pids": pids, "port": port}))
    _wait_ready(port, timeout, d)
    return _kubeconfig(d, port)


def _spawn(args: list[str], log: Path) -> int:
    with open(log, "ab") as out:
        child = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    _CHILDREN[child.pid] = child
    return child.pid


def request(port: int, path: str, body: dict | None = None) -> dict:
    """One call to the API server as its admin; JSON in and out."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # its own self-signed certificate
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET",
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=context, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode(errors="replace")}


def _wait_ready(port: int, timeout: float, d: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request(port, "/readyz")
        except (OSError, ValueError):
            time.sleep(1)
            continue
        return
    stop(d)
    raise KubeError(f"kube-apiserver was not ready in {timeout:.0f}s; see {d / 'apiserver.log'}")


def _kubeconfig(d: Path, port: int) -> Path:
    path = d / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                   "insecure-skip-tls-verify": True}}],
        "users": [{"name": "admin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
    }))
    return path


def port(data_dir) -> int:
    return json.loads((Path(data_dir) / STATE).read_text())["port"]


def stop(data_dir) -> None:
    """Stop the processes started in data_dir, the API server first."""
    state = Path(data_dir) / STATE
    if not state.exists():
        return
    for pid in reversed(json.loads(state.read_text())["pids"]):
        _end(pid)
    state.unlink()


def _end(pid: int, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: a graceful stop is not worth more here."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    child = _CHILDREN.pop(pid, None)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if (child.poll() is not None) if child else not _alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    if child:
        child.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "start", "stop"])
    parser.add_argument("--dir", default=".stormdrain/kubeapi")
    parser.add_argument("--version", default=DEFAULT_VERSION)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build(args.version, log=lambda m: print(m, file=sys.stderr)))
        elif args.command == "start":
            print(start(args.dir, args.version))
        else:
            stop(args.dir)
    except KubeError as exc:
        print(f"kubeapi: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
