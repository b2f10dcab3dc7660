"""Ctrl-C stops a run cleanly: KeyboardInterrupt out of the call, no report written, and
the interpreter goes on (another run works: the interrupted worker stops at the runner's next
checkpoint and leaves nothing behind that a new run could trip on).

No timing: the runner's test hook (WEIGHTKIN_TEST_CANCEL_PAUSE) holds the audit after its
first tensor pair until it is cancelled, and creates DIR/paused; the test sends SIGINT only
then, so the run is certainly in the middle of its work, and it can only end by cancelling.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import f32, safetensors

CHILD = textwrap.dedent(
    """
    import os, sys, weightkin
    out = sys.argv[1] + "/out"
    recipe = sys.argv[1] + "/r.toml"
    try:
        weightkin.audit(recipe, out=out)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    else:
        print("finished", flush=True)
        sys.exit(1)
    assert not os.path.exists(out), "no report may be written"
    # The interpreter and the library go on: the same audit again, to completion.
    report = weightkin.audit(recipe, out=out)
    print("again", report.verdict, flush=True)
    """
)


def model() -> bytes:
    tensors = {}
    for layer in range(8):
        rng = random.Random(layer)
        values = [rng.uniform(-1.0, 1.0) for _ in range(64 * 64)]
        tensors[f"model.layers.{layer}.mlp.up_proj.weight"] = ([64, 64], f32(values))
    return safetensors(tensors)


def test_ctrl_c_stops_the_audit_cleanly(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(model())
    (tmp_path / "b.safetensors").write_bytes(model())
    (tmp_path / "r.toml").write_text(
        '[audit]\nname = "t"\n[models.a]\npath = "a.safetensors"\n[models.b]\n'
        'path = "b.safetensors"\n[[compare]]\na = "a"\nb = "b"\n[report]\nformats = ["json"]\n'
    )
    pause = tmp_path / "pause"
    pause.mkdir()
    env = dict(os.environ, WEIGHTKIN_TEST_CANCEL_PAUSE=str(pause))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait (polling, not timing) until the audit is held in the middle of its work.
        while not (pause / "paused").exists():
            assert child.poll() is None, child.communicate()
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, (out, err)
    assert out.splitlines() == ["interrupted", "again derived"], err
    assert (tmp_path / "out" / "report.json").exists()
