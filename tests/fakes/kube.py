"""A small fake Kubernetes API server, with just enough control plane to run Dask for real.

No real API server can be had on these machines, so this serves the endpoints scalable
uses, over HTTPS on 127.0.0.1, to the official ``kubernetes`` client:

- ``/api/v1/namespaces/{ns}/{secrets,services,pods}[/{name}]``
- ``/apis/apps/v1/namespaces/{ns}/{deployments,statefulsets}[/{name}]``
- ``/api/v1/nodes``, ``/api/v1/namespaces/{ns}`` (read only)

with GET (``labelSelector`` equality terms), POST, PATCH (JSON merge patch) and DELETE,
Kubernetes' status codes and ``Status`` bodies (404 NotFound, 409 AlreadyExists).

Behind it, a loop plays the control plane, the way Kubernetes does it, but small:

- nodes are the fake GKE's node pools (labels ``cloud.google.com/gke-nodepool``,
  ``cloud.google.com/gke-spot``, the pool's taints, allocatable from GKE's reservations);
  pods on a node that disappears are deleted, and their controllers make new ones;
- Deployments and StatefulSets keep ``replicas`` pods (a Deployment's pods are owned by
  it directly: no ReplicaSets); a StatefulSet's pod ``name-i`` is re-made only once the old
  one is gone;
- the scheduler binds a pod to the first node matching its nodeSelector, tolerating the
  node's taints and with room for its requests, or marks it ``Unschedulable`` with the
  message Kubernetes writes (``0/2 nodes are available: 2 Insufficient cpu.``);
- the kubelet "pulls" images (only those in ``pullable``; others go ``ErrImagePull`` →
  ``ImagePullBackOff``), then runs the container's command as a local process: ``python``
  is this interpreter, ``$(VAR)`` references are expanded from the container's env
  (with the downward API's ``metadata.name`` / ``status.podIP``), secret volumes are
  written under a per-pod root and their mount paths rewritten to it. Each pod gets its
  own loopback IP (127.x.y.z) as its pod IP; since all pods share one network here, an
  argument binding ``0.0.0.0`` is given the pod's IP (what the wildcard means inside a
  pod's own network namespace). A container whose resident memory exceeds its limit is
  killed (``OOMKilled``); exits restart with a back-off (``CrashLoopBackOff``; faster
  than Kubernetes' 10 s); a ``tcpSocket`` readiness probe is honoured.
- Services get a cluster IP, and LoadBalancers an ingress IP, both loopback addresses
  forwarding TCP to ready endpoints; a LoadBalancer honours ``loadBalancerSourceRanges``.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import itertools
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fakes.gke import FakeGke, FakeNode

# kind plural → (Kind, apiVersion, group for messages, namespaced)
RESOURCES = {
    "secrets": ("Secret", "v1", "", True),
    "services": ("Service", "v1", "", True),
    "pods": ("Pod", "v1", "", True),
    "deployments": ("Deployment", "apps/v1", "apps", True),
    "statefulsets": ("StatefulSet", "apps/v1", "apps", True),
    "nodes": ("Node", "v1", "", False),
    "namespaces": ("Namespace", "v1", "", False),
}
_ROUTES = [
    re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<res>secrets|services|pods)"
               r"(?:/(?P<name>[^/]+))?$"),
    re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/(?P<res>deployments|statefulsets)"
               r"(?:/(?P<name>[^/]+))?$"),
    re.compile(r"^/api/v1/(?P<res>nodes|namespaces)(?:/(?P<name>[^/]+))?$"),
]
# vCPUs and GiB of the machine types tests use.
SHAPES = {
    "e2-medium": (2, 4), "e2-standard-2": (2, 8), "e2-standard-4": (4, 16),
    "e2-standard-8": (8, 32), "e2-highmem-4": (4, 32), "n2-standard-4": (4, 16),
    "n2-standard-8": (8, 32),
}
PAGE = os.sysconf("SC_PAGE_SIZE")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def node_allocatable(machine_type: str) -> tuple[int, int]:
    """(millicores, bytes) GKE leaves for pods on a node (kubelet/OS reservations)."""
    cpus, gib = SHAPES.get(machine_type, (4, 16))
    cpu_res = 0.06 * min(cpus, 1) + 0.01 * min(max(cpus - 1, 0), 1) \
        + 0.005 * min(max(cpus - 2, 0), 2) + 0.0025 * max(cpus - 4, 0)
    mem_res = 0.25 * min(gib, 4) + 0.2 * min(max(gib - 4, 0), 4) \
        + 0.1 * min(max(gib - 8, 0), 8) + 0.06 * min(max(gib - 16, 0), 112) \
        + 0.02 * max(gib - 128, 0)
    return int(cpus * 1000 - cpu_res * 1000), int((gib - mem_res) * 2**30) - 100 * 2**20


def cpu_m(q: Any) -> int:
    s = str(q)
    return int(s[:-1]) if s.endswith("m") else int(float(s) * 1000)


_MEM = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6,
        "G": 10**9, "T": 10**12}


def mem_bytes(q: Any) -> int:
    s = str(q)
    for suffix in sorted(_MEM, key=len, reverse=True):
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * _MEM[suffix])
    return int(float(s))


def _requests(pod: dict[str, Any]) -> tuple[int, int]:
    cpu = mem = 0
    for c in pod["spec"].get("containers", []):
        req = (c.get("resources") or {}).get("requests") or {}
        cpu += cpu_m(req.get("cpu", "0"))
        mem += mem_bytes(req.get("memory", "0"))
    return cpu, mem


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = v
    return target


def _tolerated(taint: dict[str, str], tolerations: list[dict[str, str]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    started: str
    oom: bool = False


@dataclass
class _PodRuntime:
    """The kubelet's private state for one pod."""

    root: Path
    proc: _Proc | None = None
    next_start: float = 0.0
    backoff: float = 0.0
    kill_deadline: float | None = None


class Forwarder:
    """A TCP forwarder on ``ip:port`` to whatever ``backends()`` returns (a kube-proxy)."""

    def __init__(self, ip: str, port: int, backends: Callable[[], list[tuple[str, int]]],
                 allowed: Callable[[], list[str]] | None = None) -> None:
        self.ip, self.port = ip, port
        self.backends = backends
        self.allowed = allowed
        self.sock = socket.create_server((ip, port))
        self.sock.settimeout(0.2)
        self.open: list[socket.socket] = []
        self.refused = 0
        self.closed = False
        self.hold = 20.0
        threading.Thread(target=self._serve, daemon=True).start()

    def _permitted(self, peer: str) -> bool:
        ranges = self.allowed() if self.allowed else []
        if not ranges:
            return True
        ip = ipaddress.ip_address(peer)
        return any(ip in ipaddress.ip_network(r, strict=False) for r in ranges)

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._permitted(peer[0]):
                # A firewall drops the packets: the client hears nothing and times out.
                self.refused += 1
                threading.Thread(target=self._drop, args=(conn,), daemon=True).start()
                continue
            threading.Thread(target=self._connect, args=(conn,), daemon=True).start()

    def _drop(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + self.hold
        while not self.closed and time.monotonic() < deadline:
            time.sleep(0.1)
        conn.close()

    def _connect(self, conn: socket.socket) -> None:
        # No ready endpoint yet (a pod restarting): hold the connection a while, as a load
        # balancer dropping packets makes a client wait, then give up.
        deadline = time.monotonic() + self.hold
        while not (backends := self.backends()):
            if self.closed or time.monotonic() > deadline:
                conn.close()
                return
            time.sleep(0.1)
        try:
            upstream = socket.create_connection(random.choice(backends), timeout=5)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        conn.settimeout(None)
        self.open += [conn, upstream]
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for s in self.open:
            with contextlib.suppress(OSError):
                s.close()


class FakeKube:
    def __init__(self, gke: FakeGke, root: Path, *,
                 pullable: tuple[str, ...] = ("ghcr.io/dask/dask",),
                 namespaces: tuple[str, ...] = ("default", "kube-system"),
                 backoff: float = 1.0, lb_delay: float = 0.3, interval: float = 0.15) -> None:
        self.gke = gke
        self.root = root
        self.pullable = pullable
        self.namespaces = set(namespaces)
        self.backoff = backoff
        self.lb_delay = lb_delay
        self.interval = interval
        self.lock = threading.RLock()
        self.store: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            r: {} for r in RESOURCES if r not in ("nodes", "namespaces")
        }
        self.runtime: dict[str, _PodRuntime] = {}  # by pod uid
        self.forwarders: dict[tuple[str, str, str], Forwarder] = {}
        self.requests: list[tuple[str, str]] = []
        self._lb_at: dict[tuple[str, str], float] = {}
        self._rv = itertools.count(1)
        b = random.randint(64, 250)
        self._ips = (f"127.{b}.{c}.{d}" for c in range(1, 255) for d in range(2, 255))
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.ca_pem = b""

    # -- life -------------------------------------------------------------------------------
    def start(self) -> FakeKube:
        from scalable.tls import ensure_tls

        files = ensure_tls(self.root / "api-tls")
        self.ca_pem = files.ca_file.read_bytes()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(files.node_cert, files.node_key)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _respond(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                code, body = fake.handle(self.command, self.path, raw,
                                         self.headers.get("Content-Type", ""))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _respond

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_b64(self) -> str:
        return base64.b64encode(self.ca_pem).decode()

    def write_kubeconfig(self, path: Path) -> Path:
        import yaml

        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {
                "server": f"https://{self.endpoint}",
                "certificate-authority-data": self.ca_b64}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return path

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self.lock:
            for rt in self.runtime.values():
                self._kill(rt, signal.SIGKILL)
            for rt in self.runtime.values():
                if rt.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        rt.proc.popen.wait(timeout=5)
            for f in self.forwarders.values():
                f.close()
            self.forwarders.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the API ------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, raw: bytes, content_type: str
               ) -> tuple[int, dict[str, Any]]:
        url = urlparse(raw_path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append((method, url.path))
        try:
            for route in _ROUTES:
                m = route.match(url.path)
                if m:
                    g = m.groupdict()
                    body = json.loads(raw) if raw else {}
                    with self.lock:
                        return self._dispatch(method, g["res"], g.get("ns"), g.get("name"),
                                              query, body, content_type)
            raise ApiError(404, "NotFound", f"the server could not find the requested "
                                            f"resource ({url.path})")
        except ApiError as exc:
            return exc.code, exc.body()

    def _not_found(self, res: str, name: str) -> ApiError:
        group = RESOURCES[res][2]
        return ApiError(404, "NotFound", f'{res}{"." + group if group else ""} "{name}" '
                                         "not found")

    def _dispatch(self, method: str, res: str, ns: str | None, name: str | None,
                  query: dict[str, str], body: dict[str, Any], content_type: str
                  ) -> tuple[int, dict[str, Any]]:
        kind, api_version, _group, namespaced = RESOURCES[res]
        if res in ("nodes", "namespaces"):
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} on {res} is not served "
                                                        "by this fake")
            items = self._nodes() if res == "nodes" else [
                {"metadata": {"name": n}, "status": {"phase": "Active"}}
                for n in sorted(self.namespaces)]
            return self._get(res, items, name, query, kind, api_version)
        assert ns is not None
        if ns not in self.namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
        table = self.store[res]
        if method == "GET":
            items = [o for (n, _), o in table.items() if n == ns]
            return self._get(res, items, name, query, kind, api_version)
        if method == "POST":
            return 201, self._create(res, ns, body, kind, api_version)
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} needs a name")
        obj = table.get((ns, name))
        if obj is None:
            raise self._not_found(res, name)
        if method == "PATCH":
            if "json-patch" in content_type:
                raise ApiError(415, "UnsupportedMediaType", "this fake serves merge patches")
            before = json.dumps(obj.get("spec"), sort_keys=True)
            _merge(obj, {k: v for k, v in body.items() if k != "status"})
            if json.dumps(obj.get("spec"), sort_keys=True) != before:
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            return 200, obj
        if method == "DELETE":
            if res == "pods":
                self._delete_pod(obj)
            else:
                del table[(ns, name)]
                if res == "services":
                    self._close_forwarders(ns, name)
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Success",
                         "details": {"name": name, "kind": res, "uid": obj["metadata"]["uid"]}}
        raise ApiError(405, "MethodNotAllowed", f"{method} is not served by this fake")

    def _get(self, res: str, items: list[dict[str, Any]], name: str | None,
             query: dict[str, str], kind: str, api_version: str
             ) -> tuple[int, dict[str, Any]]:
        if name is not None:
            for o in items:
                if o["metadata"]["name"] == name:
                    return 200, o
            raise self._not_found(res, name)
        sel = query.get("labelSelector", "")
        return 200, {
            "kind": f"{kind}List", "apiVersion": api_version,
            "metadata": {"resourceVersion": str(next(self._rv))},
            "items": [o for o in items
                      if _selector_matches(sel, o["metadata"].get("labels") or {})],
        }

    def _create(self, res: str, ns: str, body: dict[str, Any], kind: str, api_version: str
                ) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value")
        if (ns, name) in self.store[res]:
            group = RESOURCES[res][2]
            raise ApiError(409, "AlreadyExists",
                           f'{res}{"." + group if group else ""} "{name}" already exists')
        if res in ("deployments", "statefulsets"):
            spec = body.get("spec") or {}
            sel = (spec.get("selector") or {}).get("matchLabels") or {}
            tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not sel or any(tlabels.get(k) != v for k, v in sel.items()):
                raise ApiError(422, "Invalid", f"{kind}.apps \"{name}\" is invalid: "
                               "spec.template.metadata.labels: Invalid value: `selector` does "
                               "not match template `labels`")
        body["kind"], body["apiVersion"] = kind, api_version
        meta.update(namespace=ns, uid=str(uuid.uuid4()), resourceVersion=str(next(self._rv)),
                    creationTimestamp=_now(), generation=1)
        body.setdefault("status", {})
        if res == "services":
            spec = body.setdefault("spec", {})
            spec["clusterIP"] = next(self._ips)
            spec["clusterIPs"] = [spec["clusterIP"]]
            if spec.get("type") == "LoadBalancer":
                for p in spec.get("ports", []):
                    p["nodePort"] = random.randint(30000, 32767)
            body["status"] = {"loadBalancer": {}}
            self._lb_at[(ns, name)] = time.monotonic() + self.lb_delay
        self.store[res][(ns, name)] = body
        return body

    # -- the control plane ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.lock:
                    self._reconcile()
            except Exception as exc:  # keep the control plane alive; tests see the log
                print(f"fake kube: reconcile failed: {exc!r}", file=sys.stderr)
            self._stop.wait(self.interval)

    def _nodes(self) -> list[dict[str, Any]]:
        out = []
        for n in self.gke.nodes():
            cpu, mem = node_allocatable(n.machine_type)
            out.append(self._node(n, cpu, mem))
        return out

    @staticmethod
    def _node(n: FakeNode, cpu: int, mem: int) -> dict[str, Any]:
        return {
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": n.name, "labels": n.labels},
            "spec": {"taints": n.taints},
            "status": {
                "allocatable": {"cpu": f"{cpu}m", "memory": f"{mem // 1024}Ki"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }

    def _reconcile(self) -> None:
        nodes = {n["metadata"]["name"]: n for n in self._nodes()}
        pods = self.store["pods"]
        owners = {o["metadata"]["uid"] for r in ("deployments", "statefulsets")
                  for o in self.store[r].values()}
        # Garbage: pods whose owner is gone, or whose node is gone.
        for pod in list(pods.values()):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            refs = pod["metadata"].get("ownerReferences") or []
            node = pod["spec"].get("nodeName")
            if (refs and refs[0]["uid"] not in owners) or (node and node not in nodes):
                self._delete_pod(pod, grace=0 if node and node not in nodes else None)
        for dep in self.store["deployments"].values():
            self._reconcile_workload(dep, stateful=False)
        for sts in self.store["statefulsets"].values():
            self._reconcile_workload(sts, stateful=True)
        self._schedule(nodes)
        self._kubelet()
        self._workload_status()
        self._services()

    def _owned(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        uid = obj["metadata"]["uid"]
        return [p for p in self.store["pods"].values()
                if any(r["uid"] == uid for r in p["metadata"].get("ownerReferences") or [])]

    def _reconcile_workload(self, obj: dict[str, Any], *, stateful: bool) -> None:
        name = obj["metadata"]["name"]
        want = int(obj["spec"].get("replicas", 1))
        pods = self._owned(obj)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if stateful:
            names = {p["metadata"]["name"] for p in pods}
            for i in range(want):
                if f"{name}-{i}" not in names:
                    self._new_pod(obj, f"{name}-{i}", {
                        "statefulset.kubernetes.io/pod-name": f"{name}-{i}",
                        "apps.kubernetes.io/pod-index": str(i)})
            for p in live:
                if int(p["metadata"]["name"].rsplit("-", 1)[1]) >= want:
                    self._delete_pod(p)
        else:
            for _ in range(want - len(live)):
                suffix = uuid.uuid4().hex
                self._new_pod(obj, f"{name}-{suffix[:10]}-{suffix[10:15]}",
                              {"pod-template-hash": suffix[:10]})
            for p in sorted(live, key=lambda p: p["metadata"]["creationTimestamp"])[want:]:
                self._delete_pod(p)

    def _new_pod(self, owner: dict[str, Any], name: str, extra: dict[str, str]) -> None:
        ns = owner["metadata"]["namespace"]
        template = json.loads(json.dumps(owner["spec"]["template"]))
        meta = template.get("metadata") or {}
        pod = {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {
                "name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                "labels": {**(meta.get("labels") or {}), **extra},
                "resourceVersion": str(next(self._rv)), "creationTimestamp": _now(),
                "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                     "name": owner["metadata"]["name"],
                                     "uid": owner["metadata"]["uid"], "controller": True}],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        self.store["pods"][(ns, name)] = pod

    def _schedule(self, nodes: dict[str, dict[str, Any]]) -> None:
        used: dict[str, list[int]] = {n: [0, 0] for n in nodes}
        for pod in self.store["pods"].values():
            node = pod["spec"].get("nodeName")
            if node in used:
                cpu, mem = _requests(pod)
                used[node][0] += cpu
                used[node][1] += mem
        for pod in sorted(self.store["pods"].values(),
                          key=lambda p: p["metadata"]["creationTimestamp"]):
            if pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            cpu, mem = _requests(pod)
            reasons: Counter[str] = Counter()
            chosen = None
            for name in sorted(nodes):
                node = nodes[name]
                sel = pod["spec"].get("nodeSelector") or {}
                if any(node["metadata"]["labels"].get(k) != v for k, v in sel.items()):
                    reasons["node(s) didn't match Pod's node affinity/selector"] += 1
                    continue
                tol = pod["spec"].get("tolerations") or []
                bad = [t for t in node["spec"]["taints"]
                       if t["effect"] in ("NoSchedule", "NoExecute") and not _tolerated(t, tol)]
                if bad:
                    reasons[f"node(s) had untolerated taint {{{bad[0]['key']}: "
                            f"{bad[0]['value']}}}"] += 1
                    continue
                alloc = node["status"]["allocatable"]
                if used[name][0] + cpu > cpu_m(alloc["cpu"]):
                    reasons["Insufficient cpu"] += 1
                    continue
                if used[name][1] + mem > mem_bytes(alloc["memory"]):
                    reasons["Insufficient memory"] += 1
                    continue
                chosen = name
                break
            if chosen is None:
                if nodes:
                    why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
                    msg = f"0/{len(nodes)} nodes are available: {why}."
                else:
                    msg = "no nodes available to schedule pods"
                pod["status"] = {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": msg, "lastTransitionTime": _now()}]}
                continue
            used[chosen][0] += cpu
            used[chosen][1] += mem
            pod["spec"]["nodeName"] = chosen
            ip = next(self._ips)
            pod["status"] = {
                "phase": "Pending", "hostIP": "10.128.0.2", "podIP": ip,
                "podIPs": [{"ip": ip}], "startTime": _now(),
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                     "restartCount": 0, "started": False,
                     "state": {"waiting": {"reason": "ContainerCreating"}}}
                    for c in pod["spec"]["containers"]],
            }

    # -- the kubelet ----------------------------------------------------------------------------
    def _rss_by_group(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                rss = int(Path(f"/proc/{entry.name}/statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
            pgrp = int(stat[stat.rindex(")") + 2:].split()[2])
            out[pgrp] = out.get(pgrp, 0) + rss * PAGE
        return out

    def _kubelet(self) -> None:
        rss: dict[int, int] | None = None
        now = time.monotonic()
        for pod in list(self.store["pods"].values()):
            uid = pod["metadata"]["uid"]
            rt = self.runtime.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                self._finish_delete(pod, rt, now)
                continue
            if not pod["spec"].get("nodeName"):
                continue
            if rt is None:
                rt = self.runtime[uid] = _PodRuntime(root=self.root / "pods" / uid[:8])
            container = pod["spec"]["containers"][0]
            cs = pod["status"]["containerStatuses"][0]
            image = container["image"]
            if not image.startswith(self.pullable):
                reason = "ErrImagePull" if cs["state"].get("waiting", {}).get("reason") \
                    == "ContainerCreating" else "ImagePullBackOff"
                cs["state"] = {"waiting": {"reason": reason, "message":
                               f'Back-off pulling image "{image}": ErrImagePull: failed to '
                               f'pull and unpack image "{image}": not found'}}
                continue
            proc = rt.proc
            if proc is not None and proc.popen.poll() is None:
                limit = (container.get("resources") or {}).get("limits", {}).get("memory")
                if limit:
                    if rss is None:
                        rss = self._rss_by_group()
                    if rss.get(proc.popen.pid, 0) > mem_bytes(limit):
                        proc.oom = True
                        self._kill(rt, signal.SIGKILL)
                        proc.popen.wait()
                        continue
                ready = self._probe(pod, container)
                cs.update(ready=ready, started=True, state={"running": {
                    "startedAt": proc.started}})
                pod["status"]["phase"] = "Running"
                cond = {"type": "Ready", "status": "True" if ready else "False"}
                pod["status"]["conditions"] = [
                    {"type": "PodScheduled", "status": "True"}, cond,
                    {"type": "ContainersReady", "status": cond["status"]}]
                continue
            if proc is not None:  # it exited: record, back off, restart
                code = proc.popen.returncode
                reason = "OOMKilled" if proc.oom else ("Completed" if code == 0 else "Error")
                cs["lastState"] = {"terminated": {
                    "exitCode": 137 if proc.oom else (code if code >= 0 else 128 - code),
                    "reason": reason, "startedAt": proc.started, "finishedAt": _now()}}
                cs["restartCount"] = cs.get("restartCount", 0) + 1
                rt.proc = None
                rt.backoff = min(max(rt.backoff * 2, self.backoff), self.backoff * 8)
                rt.next_start = now + rt.backoff
                cs["ready"] = False
                cs["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                               f"back-off {rt.backoff:g}s restarting failed container="
                               f"{container['name']} pod={pod['metadata']['name']}"}}
                pod["status"]["conditions"] = [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False"},
                    {"type": "ContainersReady", "status": "False"}]
                continue
            if now < rt.next_start:
                continue
            problem = self._start(pod, container, rt)
            if problem:
                cs["state"] = {"waiting": {"reason": "ContainerCreating", "message": problem}}

    def _probe(self, pod: dict[str, Any], container: dict[str, Any]) -> bool:
        probe = (container.get("readinessProbe") or {}).get("tcpSocket")
        if not probe:
            return True
        try:
            with socket.create_connection((pod["status"]["podIP"], int(probe["port"])),
                                          timeout=0.1):
                return True
        except OSError:
            return False

    def _start(self, pod: dict[str, Any], container: dict[str, Any], rt: _PodRuntime
               ) -> str | None:
        ns = pod["metadata"]["namespace"]
        mounts: dict[str, str] = {}
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for m in container.get("volumeMounts") or []:
            vol = volumes.get(m["name"], {})
            target = rt.root / "fs" / m["mountPath"].lstrip("/")
            if "secret" in vol:
                secret = self.store["secrets"].get((ns, vol["secret"]["secretName"]))
                if secret is None:
                    return (f'MountVolume.SetUp failed for volume "{m["name"]}": secret '
                            f'"{vol["secret"]["secretName"]}" not found')
                target.mkdir(parents=True, exist_ok=True)
                for key, value in (secret.get("data") or {}).items():
                    f = target / key
                    f.write_bytes(base64.b64decode(value))
                    f.chmod(vol["secret"].get("defaultMode", 0o644))
            mounts[m["mountPath"]] = str(target)
        field_values = {
            "metadata.name": pod["metadata"]["name"],
            "metadata.namespace": ns,
            "status.podIP": pod["status"]["podIP"],
            "spec.nodeName": pod["spec"]["nodeName"],
        }
        env: dict[str, str] = {}
        for e in container.get("env") or []:
            if "valueFrom" in e:
                env[e["name"]] = field_values.get(
                    e["valueFrom"].get("fieldRef", {}).get("fieldPath", ""), "")
            else:
                env[e["name"]] = _expand(str(e.get("value", "")), env)

        def prepare(arg: str) -> str:
            arg = _expand(arg, env)
            for path, real in mounts.items():
                arg = arg.replace(path, real)
            return arg.replace("0.0.0.0", pod["status"]["podIP"])

        argv = [prepare(a) for a in (container.get("command") or []) + (container.get("args")
                                                                         or [])]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        rt.root.mkdir(parents=True, exist_ok=True)
        full_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(rt.root),
                    "HOSTNAME": pod["metadata"]["name"], "PYTHONUNBUFFERED": "1",
                    "LANG": "C.UTF-8", **{k: prepare(v) for k, v in env.items()}}
        with open(rt.root / "container.log", "ab") as log:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=full_env, cwd=rt.root,
                                     start_new_session=True)
        rt.proc = _Proc(popen=popen, started=_now())
        return None

    def _kill(self, rt: _PodRuntime | None, sig: int) -> None:
        if rt is None or rt.proc is None or rt.proc.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rt.proc.popen.pid, sig)

    def _delete_pod(self, pod: dict[str, Any], grace: float | None = None) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            return
        pod["metadata"]["deletionTimestamp"] = _now()
        rt = self.runtime.get(pod["metadata"]["uid"])
        if grace is None:
            grace = min(float(pod["spec"].get("terminationGracePeriodSeconds", 30)), 5.0)
        if rt is not None:
            rt.kill_deadline = time.monotonic() + grace
            self._kill(rt, signal.SIGTERM if grace else signal.SIGKILL)

    def _finish_delete(self, pod: dict[str, Any], rt: _PodRuntime | None, now: float) -> None:
        alive = rt is not None and rt.proc is not None and rt.proc.popen.poll() is None
        if alive and rt is not None:
            if rt.kill_deadline is not None and now > rt.kill_deadline:
                self._kill(rt, signal.SIGKILL)
            return
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        if self.store["pods"].get(key) is pod:
            del self.store["pods"][key]
        self.runtime.pop(pod["metadata"]["uid"], None)

    def _workload_status(self) -> None:
        for res in ("deployments", "statefulsets"):
            for obj in self.store[res].values():
                pods = [p for p in self._owned(obj) if not p["metadata"].get("deletionTimestamp")]
                ready = sum(1 for p in pods if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in p["status"].get("conditions") or []))
                obj["status"] = {"replicas": len(pods), "readyReplicas": ready,
                                 "availableReplicas": ready,
                                 "observedGeneration": obj["metadata"].get("generation", 1)}

    # -- services -------------------------------------------------------------------------------
    def _endpoints(self, svc: dict[str, Any], port: dict[str, Any]) -> list[tuple[str, int]]:
        with self.lock:
            ns = svc["metadata"]["namespace"]
            sel = svc["spec"].get("selector") or {}
            out = []
            for (pns, _), pod in self.store["pods"].items():
                if pns != ns or pod["metadata"].get("deletionTimestamp"):
                    continue
                labels = pod["metadata"].get("labels") or {}
                if any(labels.get(k) != v for k, v in sel.items()):
                    continue
                if not any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in pod["status"].get("conditions") or []):
                    continue
                out.append((pod["status"]["podIP"], int(port.get("targetPort",
                                                                  port["port"]))))
            return out

    def _services(self) -> None:
        for (ns, name), svc in self.store["services"].items():
            for p in svc["spec"].get("ports", []):
                def backends(svc: dict[str, Any] = svc, p: dict[str, Any] = p
                             ) -> list[tuple[str, int]]:
                    return self._endpoints(svc, p)

                key = (ns, name, f"cluster:{p['port']}")
                if key not in self.forwarders:
                    self.forwarders[key] = Forwarder(svc["spec"]["clusterIP"], int(p["port"]),
                                                     backends)
                if svc["spec"].get("type") != "LoadBalancer":
                    continue
                if time.monotonic() < self._lb_at.get((ns, name), 0):
                    continue
                ingress = svc["status"].setdefault("loadBalancer", {}).setdefault(
                    "ingress", [{"ip": next(self._ips), "ipMode": "VIP"}])
                key = (ns, name, f"lb:{p['port']}")
                if key not in self.forwarders:
                    def ranges(svc: dict[str, Any] = svc) -> list[str]:
                        return list(svc["spec"].get("loadBalancerSourceRanges") or [])

                    self.forwarders[key] = Forwarder(ingress[0]["ip"], int(p["port"]),
                                                     backends, allowed=ranges)

    def _close_forwarders(self, ns: str, name: str) -> None:
        for key in [k for k in self.forwarders if k[:2] == (ns, name)]:
            self.forwarders.pop(key).close()

    # -- for tests ----------------------------------------------------------------------------
    def objects(self, res: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(json.dumps(o)) for o in self.store[res].values()]

    def live_processes(self) -> int:
        with self.lock:
            return sum(1 for rt in self.runtime.values()
                       if rt.proc is not None and rt.proc.popen.poll() is None)


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown references stay as they are."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)

