"""training.distribute: --distribute mirrored and multi-worker against one process, a killed worker, resume.

The multi-worker test starts two ``graft train`` processes on 127.0.0.1 (free ports) that train a tiny
personal base on generated images (imbalanced, so class weights apply; batches of 7, split 4 / 3, and
a smaller last one). Dropout is 0 and augmentation off, so that one process and two replicas see the
same batches: the head's shuffles are graftkit's own, and one fine-tuning epoch draws the dataset's
first shuffle either way. The result then matches one process to float rounding (5.0e-6 largest weight
difference, 2.0e-6 in validation loss, measured; TOLERANCE below). Every process has a deadline; a
test that fails kills what it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from graftkit.errors import GraftError
from graftkit.training import distribute

ROOT = Path(__file__).absolute().parents[2]  # the checkout under test, where the worker processes import from
TOLERANCE = 1e-4  # largest difference from one process allowed, in weights and validation loss
OPTIONS = {"epochs": 3, "fine_tune_epochs": 1, "lr": 0.05, "batch_size": 7, "freeze": "last:2", "dropout": 0.0,
           "augment": False, "fine_tune_cache": "off", "head_solver": "adam"}  # the head trains on replicas
DEADLINE = 90  # seconds any one process may take before the test stops it and fails


def flags(options: dict) -> list[str]:
    """``OPTIONS`` as ``graft train`` flags."""
    out = []
    for name, value in options.items():
        if name == "augment":
            out += [] if value else ["--no-augment"]
        else:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_main() -> None:
    """One worker (run in its own process): ``graft train ARGV`` under TF_CONFIG, as the JSON in argv[1] says.

    ``kill``: ``[stage, epoch, batch]`` at which this worker kills itself (SIGKILL), mid-epoch;
    ``dump``: an .npz to save the trained model's weights in (to compare the replicas).
    """
    spec = json.loads(sys.argv[1])
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": spec["workers"]},
                                          "task": {"type": "worker", "index": spec["index"]}})
    from graftkit.training import pipeline, stages

    if spec.get("kill"):
        name, epoch_at, batch_at = spec["kill"]
        begin, done = stages.StageRun.begin_epoch, stages.StageRun.batch_done

        def begin_epoch(self, epoch, steps=None):
            self.test_epoch = epoch
            begin(self, epoch, steps)

        def batch_done(self, batch, loss=None):
            if (self.name, self.test_epoch, batch) == (name, epoch_at, batch_at):
                os.kill(os.getpid(), signal.SIGKILL)
            done(self, batch, loss)

        stages.StageRun.begin_epoch, stages.StageRun.batch_done = begin_epoch, batch_done
    if spec.get("dump"):
        train_config = pipeline.train_config

        def dumping(*args, **kwargs):
            run = train_config(*args, **kwargs)
            np.savez(spec["dump"], *run.model.get_weights())
            return run

        pipeline.train_config = dumping
    from graftkit.cli import main

    sys.exit(main(spec["argv"]))


class Workers:
    """Two worker processes on 127.0.0.1, their output in files, stopped (SIGKILL) if they outlive the test."""

    def __init__(self, folder: Path, env: dict):
        self.folder, self.env, self.procs = folder, env, []

    def start(self, argv: list[str], name: str, kills: dict | None = None, dumps: bool = False) -> None:
        workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
        self.procs, self.logs = [], []
        for index in range(2):
            spec = {"index": index, "workers": workers, "argv": argv, "kill": (kills or {}).get(index),
                    "dump": str(self.folder / f"{name}-{index}.npz") if dumps else None}
            log = self.folder / f"{name}-{index}.log"
            code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                    "from tests.training.test_distribute import worker_main; worker_main()")
            with open(log, "w") as out:
                self.procs.append(subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], cwd=ROOT,
                                                   env=self.env, stdout=out, stderr=subprocess.STDOUT))
            self.logs.append(log)
        self.addresses = workers

    def wait(self) -> list[int]:
        """Both exit codes; a worker still running at the deadline is killed and the test fails."""
        end = time.monotonic() + DEADLINE
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(1.0, end - time.monotonic())))
            except subprocess.TimeoutExpired:
                self.stop()
                pytest.fail(f"a worker did not stop within {DEADLINE} s:\n" + self.output(0) + self.output(1))
        return codes

    def output(self, index: int) -> str:
        return self.logs[index].read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """Generated images and the tiny personal base, the one-process run's weights and scores."""
    from graftkit import api, log
    from tests.helpers import tiny_cnn, write_images

    root = tmp_path_factory.mktemp("distribute")
    images = write_images(root / "images", {"red": 15, "green": 12, "blue": 10})  # class weights, uneven batches
    base = tiny_cnn(root / "personal.keras")
    log.set_quiet(True)
    try:
        run = api.train(images, base=str(base), out=str(root / "one"), **OPTIONS)
    finally:
        log.set_quiet(False)
    assert run.metrics["train_images"] % OPTIONS["batch_size"]  # odd batches split 4 / 3, and a smaller last one
    return {"root": root, "images": images, "base": base, "weights": run.model.get_weights(),
            "val_loss": run.metrics["stages"]["fine_tune"]["best_val_loss"]}


def weights_in(path: Path) -> list:
    with np.load(path) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def largest_difference(a: list, b: list) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def test_two_workers_match_one_process_and_resume_after_a_killed_worker(tiny_set, tmp_path):
    root = tiny_set["root"]
    env = {**os.environ, "GRAFT_CACHE_DIR": str(tmp_path / "shared-cache"), "TMPDIR": str(tmp_path / "tmp"),
           "TF_CPP_MIN_LOG_LEVEL": "2", "GRAFT_JOIN_TIMEOUT": "60"}
    (tmp_path / "tmp").mkdir()
    run_dir = tmp_path / "run"
    workers = Workers(tmp_path, env)
    argv = ["train", str(tiny_set["images"]), "--base", str(tiny_set["base"]), "--out", str(run_dir),
            "--distribute", "multi-worker", *flags(OPTIONS)]
    try:
        workers.start(argv, "killed", kills={0: ["head", 1, 2]})  # the chief dies in the middle of head epoch 2
        codes = workers.wait()
        assert codes == [-signal.SIGKILL, 2], workers.output(1)
        other = workers.output(1)
        errors = [line for line in other.splitlines() if line.startswith("graft: error:")]
        assert errors == [f"graft: error: worker 0 ({workers.addresses[0]}) stopped answering (it exited, was "
                          "killed, or its machine or network failed), so this worker stopped too: start every "
                          f"worker again with graft train --resume {run_dir}"], other
        assert "Traceback" not in other
        assert "features: split across 2 workers, 19 of 37 here" in workers.output(0)
        assert "classes are imbalanced: weighting the loss" in workers.output(0)
        shards = [json.loads(p.read_text())["keys"] for p in (tmp_path / "shared-cache").rglob("*.json")
                  if p.name != "key.json"]
        assert sorted(len(keys) for keys in shards) == [18, 19] and len(set(shards[0]) | set(shards[1])) == 37
        from graftkit.training import checkpoint

        state = checkpoint.load(run_dir)
        assert (state.current.stage, state.current.epoch) == ("head", 1) and not (run_dir / "model.keras").exists()

        workers.start(["train", "--resume", str(run_dir)], "resumed", dumps=True)
        codes = workers.wait()
        assert codes == [0, 0], workers.output(0) + workers.output(1)
    finally:
        workers.stop()
    lines = [json.loads(next(line for line in workers.output(i).splitlines() if line.startswith('{"run_dir"')))
             for i in (0, 1)]
    assert lines[0] == lines[1] and lines[0]["run_dir"] == str(run_dir)  # the chief's folder, on both
    assert (run_dir / "model.keras").is_file() and not (run_dir / "UNFINISHED").exists()
    assert "resumed after epoch 1" in workers.output(0)
    assert "graft:" not in workers.output(1).split("print only warnings and errors")[-1]  # quiet but the result
    chief, other = weights_in(tmp_path / "resumed-0.npz"), weights_in(tmp_path / "resumed-1.npz")
    assert all(np.array_equal(a, b) for a, b in zip(chief, other))  # both replicas hold the same weights
    assert largest_difference(chief, tiny_set["weights"]) < TOLERANCE
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert abs(metrics["stages"]["fine_tune"]["best_val_loss"] - tiny_set["val_loss"]) < TOLERANCE
    assert not list((tmp_path / "tmp").glob("graftkit-*"))  # the other worker's scratch folders went, both times


def test_mirrored_on_two_cpu_devices_matches_one_process(tiny_set, tmp_path):
    out = tmp_path / "mirrored.npz"
    code = ("import sys, numpy as np; sys.path.insert(0, %r); import graftkit\n"
            "run = graftkit.train(%r, base=%r, out=%r, distribute='mirrored', **%r)\n"
            "np.savez(%r, *run.model.get_weights())"
            % (str(ROOT), str(tiny_set["images"]), str(tiny_set["base"]), str(tmp_path / "run"), OPTIONS, str(out)))
    env = {**os.environ, "GRAFT_DEVICES": "CPU:0,CPU:1", "GRAFT_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE, env=env)
    assert result.returncode == 0, result.stderr
    assert "distribute: mirrored over 2 device(s) (CPU:0, CPU:1)" in result.stderr
    assert largest_difference(weights_in(out), tiny_set["weights"]) < TOLERANCE


def test_a_worker_that_never_joins_is_named_within_the_wait(tiny_set, tmp_path):
    ports = free_ports(2)
    env = {**os.environ, "GRAFT_JOIN_TIMEOUT": "3", "GRAFT_CACHE_DIR": str(tmp_path / "cache"),
           "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                    "task": {"type": "worker", "index": 0}})}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "graftkit.cli", "train", str(tiny_set["images"]), "--base",
                             str(tiny_set["base"]), "--out", str(tmp_path / "run"), "--distribute", "multi-worker"],
                            capture_output=True, text=True, timeout=DEADLINE, env=env, cwd=ROOT)
    assert result.returncode == -signal.SIGKILL  # TensorFlow's wait cannot be interrupted: the watcher ends it
    errors = [line for line in result.stderr.splitlines() if line.startswith("graft: error:")]
    assert len(errors) == 1 and f"worker 1 (127.0.0.1:{ports[1]}) did not join" in errors[0], result.stderr
    assert time.monotonic() - started < 40 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("tf_config, needle", [
    (None, "--distribute multi-worker needs TF_CONFIG set on every worker"),
    ("{cluster", "TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', 'TF_CONFIG needs a "cluster" and a "task" object'),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}', "is not in its cluster"),
    ('{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
     "has ps tasks"),
    ('{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}', '"host:port" addresses'),
])
def test_a_bad_tf_config_is_one_line_before_tensorflow_loads(tmp_path, tf_config, needle):
    (tmp_path / "data" / "a").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"} | ({"TF_CONFIG": tf_config} if tf_config else {})
    argv = ["train", str(tmp_path / "data"), "--base", "mobilenet_v2_0.35", "--distribute", "multi-worker"]
    code = ("import sys; from graftkit.cli import main; rc = main(%r); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; sys.exit(rc)" % argv)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                            cwd=ROOT)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("graft: error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in result.stderr, result.stderr


def test_the_chief_is_worker_0_or_the_chief_task():
    def cluster(text):
        return distribute.read_cluster({"TF_CONFIG": text})

    two = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": %d}}'
    assert [cluster(two % i).is_chief for i in (0, 1)] == [True, False]
    named = '{"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "%s", "index": 0}}'
    assert (cluster(named % "chief").position, cluster(named % "worker").position) == (0, 1)
    with pytest.raises(GraftError, match="more than one chief"):
        cluster('{"cluster": {"chief": ["c:0", "d:0"]}, "task": {"type": "chief", "index": 0}}')


def test_a_lost_worker_is_named_from_tensorflows_message():
    cluster = distribute.read_cluster({"TF_CONFIG": '{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222", '
                                                    '"10.0.0.3:2222"]}, "task": {"type": "worker", "index": 0}}'})
    heartbeat = ("{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/task:0/device:CPU:0}} "
                 "Collective ops is aborted by: Error reported from /job:worker/task:2: The following tasks are "
                 "unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:2\nThe tasks have crashed.")
    message = distribute.lost_worker(cluster, heartbeat, "runs/x")
    assert message.startswith("worker 2 (10.0.0.3:2222) stopped answering") and "\n" not in message
    assert message.endswith("graft train --resume runs/x")
    refused = ("Collective ops is aborted by: failed to connect to all addresses ... from remote target "
               "/job:worker/replica:0/task:1 while calling /tensorflow.WorkerService/CompleteInstance")
    assert distribute.lost_worker(cluster, refused).startswith("worker 1 (10.0.0.2:2222) stopped answering")


def test_devices_are_named_as_tensorflow_names_them(monkeypatch):
    assert distribute.parse_devices("GPU:0,/gpu:1, /device:CPU:0") == ["/gpu:0", "/gpu:1", "/cpu:0"]
    for bad, needle in (("gpu0", "names 'gpu0'"), ("GPU:0,gpu:0", "names a device twice")):
        with pytest.raises(GraftError, match=needle):
            distribute.parse_devices(bad)
    monkeypatch.setenv(distribute.JOIN_VARIABLE, "soon")
    with pytest.raises(GraftError, match="GRAFT_JOIN_TIMEOUT=soon is not a number"):
        distribute.join_seconds()


def test_distribute_is_an_option_like_the_others(tmp_path):
    from graftkit.config import TrainConfig

    (tmp_path / "a").mkdir()
    with pytest.raises(GraftError, match="--distribute 'mirored' is not one of none, mirrored, multi-worker"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2_0.35", distribute="mirored").validated()
    with pytest.raises(GraftError, match="--tensorboard does not work with --distribute"):
        distribute.check("mirrored", tensorboard=True)
    assert TrainConfig(data=str(tmp_path)).distribute == "none"
