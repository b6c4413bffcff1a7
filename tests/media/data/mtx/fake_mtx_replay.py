# A fake `mtx` for tests: replays recorded answers in order and records its argv.
# The test copies this file into tmp_path with a "#!<python>" first line and writes
# <script>.json next to it: {"steps": [{"argv": [...] or null, "stdout": "", "stderr": "",
# "rc": 0, "sleep": 0}, ...], "log": "<path>", "counter": "<path>"}.
# Each run appends its argv (JSON, one line) to "log", takes the next step, checks that its
# argv matches (exit 99 if not), sleeps, prints stdout/stderr and exits with rc.
import json
import os
import sys
import time

with open(os.path.splitext(os.path.abspath(__file__))[0] + ".json") as f:
    cfg = json.load(f)
argv = sys.argv[1:]
with open(cfg["log"], "a") as f:
    f.write(json.dumps(argv) + "\n")
n = 0
if os.path.exists(cfg["counter"]):
    with open(cfg["counter"]) as f:
        n = int(f.read())
with open(cfg["counter"], "w") as f:
    f.write(str(n + 1))
steps = cfg["steps"]
if n >= len(steps):
    sys.stderr.write("fake mtx: no more recorded answers\n")
    sys.exit(98)
step = steps[n]
if step.get("argv") is not None and step["argv"] != argv:
    sys.stderr.write(f"fake mtx: expected {step['argv']}, got {argv}\n")
    sys.exit(99)
if step.get("sleep"):
    time.sleep(step["sleep"])
sys.stdout.write(step.get("stdout", ""))
sys.stderr.write(step.get("stderr", ""))
sys.exit(step.get("rc", 0))
