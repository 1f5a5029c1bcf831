"""The encoder benchmark's other processes: the PyLate worker it drives, and the fresh process per long document.

``PyLateWorker`` talks to ``_pylate_worker.py serve`` (in PyLate's virtualenv) over JSON lines. ``run_isolated``
runs one long-document encode in a fresh process (ours: ``bench_encoder.py --long-worker SPEC``, which lands in
:func:`ours_long_worker`; PyLate's: ``_pylate_worker.py long``) and records its peak memory.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks._common import HERE, encode_failure, peak_memory, proc_status_kib


class PyLateWorker:
    """A long-lived ``_pylate_worker.py serve`` process: one JSON command per line, one JSON reply per line."""

    def __init__(self, python: str, checkpoint: Path, threads: int, env: dict[str, str], log_path: Path) -> None:
        self._log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        argv = [python, str(HERE / "_pylate_worker.py"), "serve", "--checkpoint", str(checkpoint)]
        self.proc = subprocess.Popen(
            [*argv, "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            bufsize=1,
        )
        self.log_path = log_path
        self.ready = self._read()
        if not self.ready.get("ok"):
            raise RuntimeError(f"PyLate worker failed to start: {self.ready}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"PyLate worker exited (rc={self.proc.poll()}); see {self.log_path}")
        return json.loads(line)  # type: ignore[no-any-return]

    def call(self, **cmd: Any) -> dict[str, Any]:
        """Send one command (``op=...``) and return its reply; raises RuntimeError on an error reply."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        r = self._read()
        if not r.get("ok"):
            raise RuntimeError(f"PyLate worker error: {r.get('error')}\n{r.get('traceback', '')}")
        return r

    def close(self) -> None:
        """Ask the worker to quit (kill it if it does not), and close its log."""
        try:
            if self.proc.poll() is None:
                self.call(op="quit")
                self.proc.wait(timeout=60)
        except Exception:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def run_isolated(
    argv: list[str], env: dict[str, str], timeout_s: float, result_path: Path, log_path: Path
) -> dict[str, Any]:
    """Run ``argv`` in a fresh process; return its JSON result plus wall time, exit status and the peak RSS
    the kernel recorded for that child alone (``os.wait4``), which also covers a child killed for memory."""
    if result_path.exists():
        result_path.unlink()
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as lf:
        proc = subprocess.Popen(argv, env=env, stdout=lf, stderr=subprocess.STDOUT)
        timed_out = False
        peak_load = 0.0
        polled_hwm = 0
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_load = max(peak_load, os.getloadavg()[0])
            hwm = proc_status_kib("VmHWM", proc.pid)
            if hwm:
                polled_hwm = max(polled_hwm, hwm)
            if time.perf_counter() - t0 > timeout_s:
                timed_out = True
                os.kill(proc.pid, signal.SIGKILL)  # our own child, by pid
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    res: dict[str, Any] = {}
    if result_path.exists():
        res = json.loads(result_path.read_text(encoding="utf-8"))
    res["process_wall_s"] = wall
    res["returncode"] = proc.returncode
    # ru_maxrss from wait4 also counts the pre-exec copy of this (large) parent process, so it is kept for
    # reference only; the peak is the child's own VmHWM (read by the child at its end, or by polling).
    res["wait4_ru_maxrss_kib"] = ru.ru_maxrss
    res["polled_vmhwm_kib"] = polled_hwm
    res["peak_rss_kib"] = res.get("vmhwm_kib") or polled_hwm or None
    res["peak_rss_source"] = "child VmHWM at exit" if res.get("vmhwm_kib") else "parent polling VmHWM every 0.5 s"
    res["peak_load1_during"] = round(peak_load, 2)
    if timed_out:
        res["status"] = "did not finish"
        res["error"] = f"killed after the {timeout_s:.0f} s timeout"
    elif "status" not in res:
        sig = -proc.returncode if proc.returncode < 0 else None
        res["status"] = "killed (out of memory?)" if sig == signal.SIGKILL else "crashed"
        res["error"] = f"exit status {proc.returncode}; see {log_path}"
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-600:]
        res["log_tail"] = tail
        if "memory" in tail.lower() or "alloc" in tail.lower():
            res["status"] = "out of memory"
    return res


def ours_long_worker(spec_path: str) -> int:
    """``bench_encoder.py --long-worker SPEC``: encode one long document with our encoder in this fresh process.

    ``SPEC`` is a JSON file (checkpoint, length, text file, threads, result file, optional ``.npy`` to save the
    vectors to, address-space cap); the result JSON records status, times and this process's peak memory.
    """
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if spec.get("mem_cap_bytes"):
        resource.setrlimit(resource.RLIMIT_AS, (spec["mem_cap_bytes"], spec["mem_cap_bytes"]))
    result: dict[str, Any] = {"impl": "ours", "length": spec["length"], "mem_cap_bytes": spec.get("mem_cap_bytes")}
    t_start = time.perf_counter()
    try:
        _encode_long(spec, result)
    except Exception as err:
        import traceback

        result["status"] = "error"
        result["error"] = f"{type(err).__name__}: {err}"
        result["traceback"] = traceback.format_exc()
    result["total_wall_s"] = time.perf_counter() - t_start
    result.update(peak_memory())
    Path(spec["result"]).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def _encode_long(spec: dict[str, Any], result: dict[str, Any]) -> None:
    """Load our encoder and encode the spec's text into ``result``; running out of memory is recorded, not raised."""
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    from colbert_adapters.encoder import ColBERTEncoder

    text = Path(spec["text"]).read_text(encoding="utf-8")
    t0 = time.perf_counter()
    enc = ColBERTEncoder.from_pretrained(spec["checkpoint"], device="cpu", document_length=spec["length"])
    result["load_s"] = time.perf_counter() - t0
    result["n_tokens"] = enc.count_tokens([text])[0]
    result["rss_after_load_kib"] = proc_status_kib("VmRSS")
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        vec = enc.encode_documents([text], batch_size=1, show_progress=False)[0]
        result["status"] = "ok"
        result["n_rows"] = len(vec)
        if spec.get("save"):
            np.save(spec["save"], vec)
    except (MemoryError, RuntimeError) as err:
        result.update(encode_failure(err))
    result["encode_wall_s"] = time.perf_counter() - w0
    result["encode_cpu_s"] = time.process_time() - c0
