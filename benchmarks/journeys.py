"""A new user's first hour, timed: every README journey (Python API, CLI, studio) as a fresh clone runs it.

- API: each ```python block of the README, in its own fresh process, in an empty folder (what a user pasting
  it into a new interpreter gets, imports and model loading included).
- CLI: every `vadapters ...` line of the README, in order, in one empty folder (later lines use earlier outputs).
- Studio: the studio's own end-to-end tests (`tests/test_app_browser.py`: headless chromium clicks each tab's
  main action; `tests/test_app.py`: the same calls through gradio_client), timed per test from pytest's report.

Every step must succeed; a failure is recorded with its error tail and the run exits 1. The machine's load
(`os.getloadavg`) is recorded before and after, as other jobs on a shared CPU stretch every time.

    python benchmarks/journeys.py [--only api,cli,studio]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from _report import command, header, machine, write_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
STUDIO_TESTS = ["tests/test_app_browser.py", "tests/test_app.py"]


def _env() -> dict[str, str]:
    bin_dir = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "VADAPTERS_NO_PROGRESS": "1",
            "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")), "")


def api_journey(text: str) -> list[dict]:
    rows = []
    for k, block in enumerate(re.findall(r"```python\n(.*?)```", text, flags=re.S)):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", block], cwd=folder, env=_env(), capture_output=True,
                                 text=True, timeout=1800)  # fmt: skip
            rows.append({"step": f"python block {k}: {_first_line(block)[:70]}", "seconds": time.perf_counter() - start,
                         "ok": res.returncode == 0, "error": res.stderr[-1500:] if res.returncode else ""})  # fmt: skip
    return rows


def cli_journey(text: str) -> list[dict]:
    rows = []
    lines = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
        if line.strip().startswith("vadapters ")
    ]
    with tempfile.TemporaryDirectory() as folder:
        for line in lines:
            start = time.perf_counter()
            res = subprocess.run(shlex.split(line, comments=True), cwd=folder, env=_env(), capture_output=True,
                                 text=True, timeout=1800)  # fmt: skip
            rows.append({"step": line, "seconds": time.perf_counter() - start, "ok": res.returncode == 0,
                         "error": res.stderr[-1500:] if res.returncode else ""})  # fmt: skip
    return rows


def studio_journey() -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "junit.xml")
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "", "-p", "no:cacheprovider", f"--junitxml={report}",
                        *STUDIO_TESTS], cwd=REPO, env={**_env(), "OMP_NUM_THREADS": "1"}, timeout=3600)  # fmt: skip
        rows = []
        for case in ET.parse(report).getroot().iter("testcase"):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if case.find("skipped") is not None:
                continue
            rows.append({"step": f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}",
                         "seconds": float(case.get("time", 0)), "ok": bad is None,
                         "error": (bad.get("message") or "")[-1500:] if bad is not None else ""})  # fmt: skip
    return rows


def render(result: dict) -> str:
    md = header("A new user's journeys, timed", result)
    md += f"Load average (1, 5, 15 min) before: {result['load_before']}, after: {result['load_after']}.\n\n"
    md += (
        "Seconds: API and CLI, the wall time of each step's own process(es); studio, the sum of its tests' own "
        "times as pytest reports them (the server start, the browser launch and shared fixtures excluded).\n\n"
    )
    md += "| journey | steps | all ran | seconds |\n|---|---|---|---|\n"
    for name, j in result["journeys"].items():
        md += f"| {name} | {len(j['steps'])} | {'yes' if j['all_ok'] else '**no**'} | {j['seconds']} |\n"
    for name, j in result["journeys"].items():
        md += f"\n## {name}\n\n| step | seconds | ran |\n|---|---|---|\n"
        for r in j["steps"]:
            md += f"| `{r['step']}` | {r['seconds']} | {'yes' if r['ok'] else '**no**: ' + r['error'][-200:]} |\n"
    return md


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="api,cli,studio", help="comma-separated journeys to run")
    parser.add_argument("--report-only", action="store_true", help="rewrite the markdown from the JSON result")
    args = parser.parse_args()
    if args.report_only:
        with open(os.path.join(REPO, "benchmarks", "results", "journeys.json"), encoding="utf-8") as fh:
            result = json.load(fh)
        write_report("journeys", result, render(result), folder=os.path.join(REPO, "benchmarks", "results"))
        return 0
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    start, load_before = time.time(), os.getloadavg()
    journeys: dict[str, list[dict]] = {}
    for name in args.only.split(","):
        print(f"journey {name} ...", flush=True)
        journeys[name] = {"api": lambda: api_journey(text), "cli": lambda: cli_journey(text),
                          "studio": studio_journey}[name]()  # fmt: skip
    result = {
        "command": command(), "machine": machine(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))),
        "seconds": round(time.time() - start, 1), "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "journeys": {k: {"seconds": round(sum(r["seconds"] for r in v), 1), "all_ok": all(r["ok"] for r in v),
                         "steps": [{**r, "seconds": round(r["seconds"], 1)} for r in v]} for k, v in journeys.items()},
    }  # fmt: skip
    write_report("journeys", result, render(result))
    return 0 if all(j["all_ok"] for j in result["journeys"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
