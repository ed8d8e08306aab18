"""The report page of a live lab, opened in headless Chromium (Debian's `chromium`).

A small workload first (a probe container publishing a port on a worker, a global service on the
spec's first overlay), so the page has containers, tasks and a published port to draw; then
`swarmlab report`, the rendered DOM's SVG must name every node, overlay and published port, and
a screenshot is saved. The workload is removed afterwards.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from swarmlab.model.state import PROJECT_ROOT
from swarmlab.verify.probe import BUILD, FETCH_BUSYBOX, IMAGE

SHOTS = PROJECT_ROOT / "reports"
PORT = 18080
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


def chromium(page: Path, *args: str) -> str:
    """Run headless Chromium on a local file; returns stdout (e.g. the DOM for --dump-dom)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("the report page test needs Debian's chromium (make test installs it: scripts/host-setup.sh)")
    with tempfile.TemporaryDirectory(prefix="swarmlab-chromium-") as profile:
        proc = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
                               "file://" + urllib.parse.quote(str(page))],
                              capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def svg_texts(dom: str) -> str:
    """The text of the rendered topology SVG (every <text> element)."""
    m = re.search(r"<svg\b.*?</svg>", dom, re.S)
    assert m, "no SVG in the rendered page"
    return " ".join(html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", m.group(0)))


def _start_workload(lab, service: str, container: str) -> str:
    spec = lab.spec
    for node in spec.nodes:
        lab.exec(node.name, "sh", "-c", BUILD.format(image=IMAGE, fetch=FETCH_BUSYBOX["apt"]))
    worker = (spec.workers or spec.nodes)[0].name
    lab.exec(worker, "docker", "run", "-d", "--name", container, "-p", f"{PORT}:80", IMAGE, "httpd", "-f", "-p", "80")
    overlay = spec.swarm.overlays[0].name
    manager = spec.first_manager.name
    lab.exec(manager, "docker", "service", "create", "-d", "--name", service, "--network", overlay, "--mode",
             "global", "--endpoint-mode", "dnsrr", IMAGE, "sleep", "3600")
    deadline = time.monotonic() + 90
    while True:
        states = lab.exec(manager, "docker", "service", "ps", service, "--filter", "desired-state=running",
                          "--format", "{{.CurrentState}}").split("\n")
        if sum(s.startswith("Running") for s in states) == len(spec.nodes):
            return worker
        assert time.monotonic() < deadline, f"service {service} not running everywhere: {states}"
        time.sleep(2)


def report_page_in_a_browser(lab) -> tuple[Path, str]:
    """Workload, `swarmlab report`, Chromium checks and screenshot. Returns (screenshot, report output)."""
    spec = lab.spec
    service, container = "report-peer", "report-web"
    try:
        worker = _start_workload(lab, service, container)
        run = lab.run("report")
        assert run.rc == 0, run.out + run.err
        m = re.search(r"^report: (\S+report\.html)", run.out, re.M)
        assert m, run.out
        page = Path(m.group(1))
        assert "collected in" in run.out

        text = svg_texts(chromium(page, "--dump-dom"))
        for node in spec.nodes:
            assert f"{node.name}: {node.role}" in text and node.ip in text, f"{node.name} not drawn"
        for overlay in spec.swarm.overlays:
            assert f"overlay {overlay.name}" in text, f"overlay {overlay.name} not drawn"
        assert f"published tcp {PORT}" in text and f"{container}:80/tcp" in text
        assert "overlay ingress (ingress)" in text

        SHOTS.mkdir(exist_ok=True)
        shot = SHOTS / f"report-{spec.name}.png"
        shot.unlink(missing_ok=True)
        chromium(page, f"--screenshot={shot}", "--window-size=1400,2000", "--hide-scrollbars")
        assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

        # the terminal trace agrees with a real connection from another lab node
        trace = lab.run("explain", worker, "--port", str(PORT))
        assert trace.rc == 0, trace.out + trace.err
        assert f"DNAT: tcp to port {PORT} on any local address goes to 172.17." in trace.out, trace.out
        assert f"container {container}, behind bridge docker0" in trace.out
        assert "verdict: ACCEPT" in trace.out
        other = next(n for n in spec.nodes if n.name != worker)
        probe = ("import urllib.request, urllib.error\n"
                 f"try: urllib.request.urlopen('http://{spec.node(worker).ip}:{PORT}/', timeout=5)\n"
                 "except urllib.error.HTTPError as e: print('http', e.code)\n"
                 "else: print('http 200')\n")
        assert lab.exec(other.name, "python3", "-c", probe).startswith("http ")
        return shot, run.out
    finally:
        lab.exec(spec.first_manager.name, "docker", "service", "rm", service, check=False)
        for node in spec.nodes:
            lab.exec(node.name, "docker", "rm", "-f", container, check=False)
