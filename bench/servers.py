"""The overhead bench's outside processes: nginx (mocks and least_conn proxy), LiteLLM, Redis.

Every process is started here with its own config in the bench's work directory and stopped
by PID through its Popen handle. nginx runs with `master_process off` so one PID does all of
its work and its CPU time reads from one /proc entry.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.procs import Processes, free_port

# The mocks answer at once with a fixed body: the provider's cost is ~0, so what the bench
# measures is the path in front of it. ModelsLab's `success` answer and its `processing` one
# (for jobs that stay in flight until a webhook comes), and OpenAI's images answer for
# LiteLLM, which speaks OpenAI's API to its providers.
SUCCESS = {
    "status": "success",
    "id": 1,
    "output": ["http://127.0.0.1/bench.png"],
    "generationTime": 0.01,
}
PROCESSING = {"status": "processing", "id": 1, "eta": 30, "output": []}
OPENAI_IMAGES = {"created": 1700000000, "data": [{"url": "http://127.0.0.1/bench.png"}]}
SUCCESS_PATH = "/ml/success"  # a ModelsLab base_url whose text2img answers `success`
PROCESSING_PATH = "/ml/processing"  # ... answers `processing`

LITELLM_VERSION = "1.108.7"  # pinned: the figures name the version they were taken with
LITELLM_KEY = "sk-bench-master-key-not-a-secret"  # LiteLLM refuses to start without one
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gateway-bench"


def _literal(body: dict[str, object]) -> str:
    return "'" + json.dumps(body, separators=(",", ":")) + "'"


def _nginx_main(prefix: Path) -> str:
    return f"""
daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
"""


def mock_conf(prefix: Path, ports: list[int]) -> str:
    servers = "".join(
        f"""
  server {{
    listen 127.0.0.1:{port} reuseport;
    client_body_buffer_size 64k;
    default_type application/json;
    location {SUCCESS_PATH}/ {{ return 200 {_literal(SUCCESS)}; }}
    location {PROCESSING_PATH}/ {{ return 200 {_literal(PROCESSING)}; }}
    location /v1/images/generations {{ return 200 {_literal(OPENAI_IMAGES)}; }}
    location / {{ return 404 '{{"status":"error","message":"not found"}}'; }}
  }}"""
        for port in ports
    )
    return _nginx_main(prefix) + servers + "\n}\n"


def proxy_conf(prefix: Path, fronts: dict[int, list[int]]) -> str:
    """One least_conn upstream (pooled keep-alive) per listening port."""
    blocks = []
    for i, (port, upstream) in enumerate(fronts.items()):
        servers = "".join(f"    server 127.0.0.1:{p};\n" for p in upstream)
        blocks.append(f"""
  upstream pool{i} {{
    least_conn;
{servers}    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://pool{i};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}""")
    return _nginx_main(prefix) + "".join(blocks) + "\n}\n"


def start_nginx(procs: Processes, name: str, conf: str, cpu: str) -> None:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(exe).exists():
        raise RuntimeError("nginx is not installed (`make bench` installs it)")
    prefix = procs.workdir / name
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(conf.replace("PREFIX", str(prefix)))
    procs.start(name, ["taskset", "-c", cpu, exe, "-p", str(prefix), "-c",
                       str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")])  # fmt: skip


def start_redis(procs: Processes, name: str, cpu: str, *extra: str) -> int:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (`make bench` installs it)")
    port = free_port()
    workdir = procs.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    procs.start(name, ["taskset", "-c", cpu, exe, "--port", str(port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--dir", str(workdir),
                       "--protected-mode", "no", *extra])  # fmt: skip
    return port


def litellm_exe() -> Path:
    """LiteLLM's proxy in its own virtualenv under the cache dir (never a project dependency),
    on the interpreter the bench runs on, so both proxies are measured on the same one."""
    venv = CACHE / f"litellm-{LITELLM_VERSION}-py{platform.python_version()}"
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         f"litellm[proxy]=={LITELLM_VERSION}"],
        check=True,
    )  # fmt: skip
    return exe


def start_litellm(procs: Processes, mock_port: int, cpu: str) -> str:
    exe = litellm_exe()
    port = free_port()
    config = procs.workdir / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "bench-image",
                        "model_info": {"mode": "image_generation"},
                        "litellm_params": {
                            "model": "openai/dall-e-3",
                            "api_base": f"http://127.0.0.1:{mock_port}/v1",
                            "api_key": "sk-bench-not-a-secret",
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False},
            }
        )
    )
    env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "NO_DOCS": "True",
           "LITELLM_MASTER_KEY": LITELLM_KEY}  # fmt: skip
    os.environ.update(env)  # Processes.start passes the environment on
    procs.start("litellm", ["taskset", "-c", cpu, str(exe), "--config", str(config),
                            "--host", "127.0.0.1", "--port", str(port),
                            "--num_workers", "1"])  # fmt: skip
    return f"http://127.0.0.1:{port}"


def pid_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_rss(pid: int) -> int:
    """Resident set size in bytes."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children still running (LiteLLM forks a worker)."""
    total = pid_cpu(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(tree_cpu(int(c)) for c in children)


def wait_port(port: int, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port} after {timeout:g}s") from None
            time.sleep(0.05)
