"""Training on several devices or machines: tf.distribute strategies driving graftkit's own training loops.

``--distribute mirrored`` keeps a copy of the model on every local GPU (or on the devices named in
``GRAFT_DEVICES``) and splits each batch between them; ``--distribute multi-worker`` does the same
across machines, each started with the same command and a ``TF_CONFIG`` naming the cluster and its
own place in it, the tf.distribute convention that Kubernetes jobs, Slurm scripts and launchers set.

A training step is a tf.distribute custom-loop step (:func:`fit_epochs`): the dataset goes through
``experimental_distribute_dataset`` (every global batch split between the replicas), each replica
runs ``strategy.run(step)`` on its share with the loss averaged over the global batch, the Keras
optimizer sums the gradients of all replicas, and ``strategy.reduce`` gives every worker the same
epoch totals, so early stopping decides the same on each. Keras' ``fit`` is not used: in Keras 3.15 it
fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585).

Only the chief (task 0) writes the run folder and its checkpoints; the other workers keep their
checkpoints in a temporary folder that goes when the run ends, and print only warnings and errors.
The cold feature pass is split: each worker computes its share of the images into the feature cache,
which must be on storage every worker sees (``GRAFT_CACHE_DIR``), then every worker reads it whole
(:func:`split_pass`). A worker that dies stops the others with a one-line error naming it
(:func:`session`): at once when the chief dies, within about ten seconds for another worker
(TensorFlow's coordination service, on the chief, misses its heartbeats). A worker that never comes
is named after ``GRAFT_JOIN_TIMEOUT`` seconds.

Nothing here imports TensorFlow until a strategy is started, so options are checked in a moment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from graftkit import log
from graftkit.errors import GraftError

MODES = ("none", "mirrored", "multi-worker")
DEVICES_VARIABLE = "GRAFT_DEVICES"  # e.g. GPU:0,GPU:1; CPU:0,CPU:1 splits the CPU in two (a test set-up)
JOIN_VARIABLE = "GRAFT_JOIN_TIMEOUT"  # seconds to wait for every worker to start (default JOIN_SECONDS)
JOIN_SECONDS = 600
_DEVICE = re.compile(r"^(?:/(?:device:)?)?(cpu|gpu):(\d+)$", re.IGNORECASE)
_TASK = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")


@dataclass(frozen=True)
class Cluster:
    """The workers of a multi-worker run as ``TF_CONFIG`` lists them, and which of them this process is.

    Attributes:
        tasks: ``(job, index, address)`` of every worker, the chief first.
        job: this process's job, ``worker`` or ``chief``.
        index: this process's index in its job.

    Example:
        >>> cluster = read_cluster({"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:2"]}, '
        ...                                      '"task": {"type": "worker", "index": 1}}'})
        >>> cluster.position, cluster.is_chief, cluster.describe("worker", 0)
        (1, False, 'worker 0 (a:1)')
    """

    tasks: tuple
    job: str
    index: int

    @property
    def position(self) -> int:
        """This worker's place in :attr:`tasks` (0 for the chief): which share of the images it computes."""
        return [(job, index) for job, index, _ in self.tasks].index((self.job, self.index))

    @property
    def is_chief(self) -> bool:
        return self.position == 0

    def describe(self, job: str, index: int) -> str:
        """A worker as messages name it: ``worker 1 (10.0.0.2:2222)``."""
        address = next((a for j, i, a in self.tasks if (j, i) == (job, index)), "?")
        return f"{job} {index} ({address})"


def read_cluster(environ=None) -> Cluster:
    """The cluster of a multi-worker run, from ``TF_CONFIG``; a one-line error when it is missing or wrong.

    Example:
        >>> read_cluster({})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        graftkit.errors.GraftError: --distribute multi-worker needs TF_CONFIG set on every worker, e.g. TF_CONFIG=...
        >>> read_cluster({"TF_CONFIG": "{cluster"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        graftkit.errors.GraftError: TF_CONFIG is not JSON (Expecting property name enclosed in double quotes ...
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", '
               '"index": 0}}\' (index 1 on host2; docs/scaling.md)')
    if not text:
        raise GraftError(f"--distribute multi-worker needs TF_CONFIG set on every worker, e.g. {example}")
    try:
        config = json.loads(text)
    except ValueError as error:
        reason = getattr(error, "msg", str(error))
        raise GraftError(f"TF_CONFIG is not JSON ({reason} at character {getattr(error, 'pos', 0)}): set it as "
                         "docs/scaling.md shows") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise GraftError(f"TF_CONFIG needs a \"cluster\" and a \"task\" object, e.g. {example}")
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise GraftError(f"TF_CONFIG's cluster has {', '.join(other)} tasks: graftkit's multi-worker training "
                         "takes only chief and worker tasks")
    tasks = []
    for job in ("chief", "worker"):
        addresses = cluster.get(job, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise GraftError(f"TF_CONFIG's cluster \"{job}\" must be a list of \"host:port\" addresses")
        tasks += [(job, i, address) for i, address in enumerate(addresses)]
    if len([t for t in tasks if t[0] == "chief"]) > 1:
        raise GraftError("TF_CONFIG's cluster names more than one chief: name one, or none (worker 0 is then the "
                         "chief)")
    job, index = task.get("type"), task.get("index")
    if not isinstance(index, int) or (job, index) not in [(j, i) for j, i, _ in tasks]:
        raise GraftError(f"TF_CONFIG's task {json.dumps(task)} is not in its cluster: set \"type\" to chief or "
                         f"worker and \"index\" to this machine's place in that list")
    return Cluster(tuple(tasks), job, index)


def parse_devices(text: str | None) -> list[str] | None:
    """The devices named in ``GRAFT_DEVICES`` (``GPU:0,GPU:1``), as TensorFlow names them; None when unset.

    Example:
        >>> parse_devices("gpu:0, GPU:1"), parse_devices(None)
        (['/gpu:0', '/gpu:1'], None)
        >>> parse_devices("gpu0")
        Traceback (most recent call last):
        graftkit.errors.GraftError: GRAFT_DEVICES names 'gpu0': use device names such as GPU:0,GPU:1 (or CPU:0,CPU:1)
    """
    if not text or not text.strip():
        return None
    devices = []
    for name in (part.strip() for part in text.split(",")):
        match = _DEVICE.match(name)
        if match is None:
            raise GraftError(f"{DEVICES_VARIABLE} names '{name}': use device names such as GPU:0,GPU:1 "
                             "(or CPU:0,CPU:1)")
        devices.append(f"/{match.group(1).lower()}:{int(match.group(2))}")
    if len(set(devices)) != len(devices):
        raise GraftError(f"{DEVICES_VARIABLE} names a device twice ({text}): name each once")
    return devices


def check(mode: str, *, tensorboard: bool = False) -> None:
    """The checks of ``--distribute`` that need no TensorFlow: its environment, and the options it excludes.

    Example:
        >>> check("none"); check("mirrored")
        >>> check("mirrored", tensorboard=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        graftkit.errors.GraftError: --tensorboard does not work with --distribute (its logs come from Keras' fit, ...
    """
    if mode not in MODES:
        raise GraftError(f"--distribute {mode!r} is not one of {', '.join(MODES)}")
    if mode == "none":
        return
    if tensorboard:
        raise GraftError("--tensorboard does not work with --distribute (its logs come from Keras' fit, which "
                         "distributed training does not use): drop one of them")
    if mode == "mirrored":
        parse_devices(os.environ.get(DEVICES_VARIABLE))
    else:
        read_cluster()
        join_seconds()


def join_seconds() -> float:
    """How long a worker waits for all the others to start (``GRAFT_JOIN_TIMEOUT``, default 600 s)."""
    text = os.environ.get(JOIN_VARIABLE, "").strip()
    if not text:
        return JOIN_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value > 0:
        raise GraftError(f"{JOIN_VARIABLE}={text} is not a number of seconds above 0")
    return value


def writes_run(mode: str) -> bool:
    """Whether this process writes the run folder: always, except on a multi-worker run's workers but the chief.

    Example:
        >>> writes_run("none"), writes_run("mirrored")
        (True, True)
    """
    return mode != "multi-worker" or read_cluster().is_chief


_STARTED: dict = {}  # (mode, devices or TF_CONFIG) -> the strategy this process made for it


def start(mode: str):
    """The strategy for ``--distribute mode`` (None for ``none``), made once per process and set-up.

    Call it before anything else runs on TensorFlow: a multi-worker strategy and split CPU
    devices can only be set up in a process where TensorFlow has not started computing.

    Example:
        >>> start("none") is None
        True
        >>> start("mirrored").num_replicas_in_sync  # doctest: +SKIP
        2
    """
    check(mode)
    if mode == "none":
        return None
    key = (mode, os.environ.get(DEVICES_VARIABLE) if mode == "mirrored" else os.environ.get("TF_CONFIG"))
    if key not in _STARTED:
        _STARTED[key] = _mirrored() if mode == "mirrored" else _multi_worker()
    return _STARTED[key]


def _mirrored():
    import tensorflow as tf

    devices = parse_devices(os.environ.get(DEVICES_VARIABLE))
    if devices is not None:
        cpus = [int(d.split(":")[1]) for d in devices if d.startswith("/cpu:")]
        if cpus:
            _split_cpu(max(cpus) + 1)
        known = {d.name.lower().replace("/device:", "/") for d in tf.config.list_logical_devices()}
        missing = [d for d in devices if d not in known]
        if missing:
            raise GraftError(f"{DEVICES_VARIABLE} names {', '.join(missing)}, which this machine does not have "
                             f"(it has {', '.join(sorted(known))})")
    strategy = tf.distribute.MirroredStrategy(devices)
    names = ", ".join(d.split("device:")[-1] for d in strategy.extended.worker_devices)
    why = "" if devices or tf.config.list_physical_devices("GPU") else \
        f": no GPU found, so one replica (name devices in {DEVICES_VARIABLE})"
    log.info(f"distribute: mirrored over {strategy.num_replicas_in_sync} device(s) ({names}){why}; each batch "
             "is split between them")
    return strategy


def _split_cpu(count: int) -> None:
    """Make the CPU ``count`` logical devices (CPU:0 ... CPU:count-1), before TensorFlow starts; 0 or 1: leave it."""
    import tensorflow as tf

    if count < 2:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise GraftError(f"{DEVICES_VARIABLE} splits the CPU into {count} devices, which TensorFlow allows only "
                         "before it starts computing: start the training in a new process") from None


def _multi_worker():
    import tensorflow as tf

    cluster = read_cluster()
    wait = join_seconds()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    me = cluster.describe(cluster.job, cluster.index)
    log.info(f"distribute: multi-worker, this is {me} of {len(cluster.tasks)}; waiting up to {wait:g} s for "
             f"the others ({JOIN_VARIABLE})")
    watcher = _join_watcher(cluster, wait)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as error:
        if "startup" in str(error).lower():
            raise GraftError("--distribute multi-worker must start in a new process (TensorFlow has already "
                             "computed in this one): run one graft train per worker") from None
        raise GraftError(f"cannot start {me} ({_first_line(error)}): check TF_CONFIG and that its port is "
                         "free") from None
    except (ValueError, tf.errors.OpError) as error:
        raise GraftError(f"cannot start {me} ({_first_line(error)}): check TF_CONFIG and that its port is "
                         "free") from None
    finally:
        watcher.stdin.close()  # joined (or failed): the watcher goes
        watcher.wait()
    if not cluster.is_chief:
        log.info("workers other than the chief print only warnings and errors")
        log.set_quiet(True)
    log.info(f"distribute: {len(cluster.tasks)} workers, {strategy.num_replicas_in_sync} replicas in all; each "
             "batch is split between them")
    return strategy


# Run by a child process while TensorFlow waits for the other workers: that wait cannot be interrupted (it
# holds the interpreter), so when it lasts too long the child says who is missing and stops this process.
_WATCH = r"""
import os, select, signal, socket, sys
pid, wait, me, others = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
if select.select([sys.stdin], [], [], wait)[0]:
    sys.exit(0)
def listening(address):
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
        return True
    except (OSError, ValueError):
        return False
absent = [name for name in others if not listening(name.split("(")[1].rstrip(")"))]
print(f"graft: error: {', '.join(absent) or 'a worker'} did not join {me} within {wait:g} s: start it with the same "
      "command and its own TF_CONFIG task, and check its address and that the port is open (GRAFT_JOIN_TIMEOUT "
      "sets the wait)", file=sys.stderr, flush=True)
os.kill(pid, signal.SIGKILL)
"""


def _join_watcher(cluster: Cluster, wait: float):
    """A child process that stops this one, saying which workers are missing, if they have not all joined
    within ``wait`` seconds; it goes when its input is closed."""
    import subprocess
    import sys

    others = [cluster.describe(job, index) for job, index, _ in cluster.tasks if (job, index) != (cluster.job,
                                                                                                  cluster.index)]
    return subprocess.Popen([sys.executable, "-c", _WATCH, str(os.getpid()), str(wait),
                             cluster.describe(cluster.job, cluster.index), *others], stdin=subprocess.PIPE)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def cluster_of(strategy) -> Cluster | None:
    """The :class:`Cluster` of a multi-worker strategy; None for any other (one process)."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    return read_cluster()


def worker_share(strategy) -> tuple[int, int]:
    """``(this worker's position, number of workers)``: ``(0, 1)`` without a strategy or on one machine."""
    cluster = None if strategy is None else cluster_of(strategy)
    return (0, 1) if cluster is None else (cluster.position, len(cluster.tasks))


def agree(strategy, values):
    """The chief's ``values`` (an int32 array), on every worker: an all-reduce where only the first replica adds.

    It returns only when every worker has called it, so with any values it is a barrier.
    """
    import numpy as np
    import tensorflow as tf

    @tf.function(autograph=False)
    def everywhere(tensor):
        def replica(tensor):
            first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
            return tf.where(first, tensor, tf.zeros_like(tensor))

        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica, args=(tensor,)), axis=None)

    return everywhere(tf.constant(np.asarray(values, np.int32))).numpy()


def barrier(strategy) -> None:
    """Wait until every worker gets here."""
    agree(strategy, [0])


def chief_text(strategy, text: str | None) -> str:
    """The chief's ``text`` on every worker (what the others pass is ignored), e.g. the run folder it made."""
    import numpy as np

    data = (text or "").encode("utf-8", "surrogateescape")
    if len(data) > 4096:
        raise GraftError(f"'{text[:60]}...' is too long to share between the workers (over 4096 bytes)")
    values = np.zeros(4097, np.int32)
    values[0] = len(data)
    values[1:1 + len(data)] = np.frombuffer(data, np.uint8)
    shared = agree(strategy, values)
    return bytes(shared[1:1 + int(shared[0])].astype(np.uint8)).decode("utf-8", "surrogateescape")


def split_pass(strategy, extract, items: list, *, what: str = "features"):
    """Features of ``items`` computed once across the workers: each computes its share into the shared
    cache, then every one reads the whole (the chief first, so that the others find its rows filed once).

    Args:
        strategy: the run's strategy, or None.
        extract: ``extract(items) -> (array, how many of them it computed)``, through the feature cache.
        items: image paths (or texts), the same list on every worker.
        what: what the items' features are called in the log.

    Returns:
        ``(the features of every item in order, how many this worker computed)``.
    """
    position, workers = worker_share(strategy)
    if workers == 1:
        return extract(items)
    share = items[position::workers]
    _, computed = extract(share)
    barrier(strategy)  # every share is in the cache
    if position == 0:
        whole, again = extract(items)
        barrier(strategy)
    else:
        barrier(strategy)
        whole, again = extract(items)
    log.info(f"{what}: split across {workers} workers, {len(share)} of {len(items)} here")
    if again:
        log.warn(f"{what}: this worker computed {again} features another worker had computed: the feature cache "
                 "is not on storage all the workers share (point GRAFT_CACHE_DIR at one folder they all see)")
    return whole, computed + again


@dataclass
class Session:
    """What a run does differently under a strategy: its scope, who writes, and where a lost worker is told.

    Attributes:
        strategy: the strategy, or None for one process on one device.
        scratch: None when this process writes the run folder; on the other workers of a multi-worker
            run, the temporary folder that takes what they would write (removed when the run ends).
        run_dir: the run folder, once known: a lost worker's message says to resume it.
    """

    strategy: object = None
    scratch: Path | None = None
    run_dir: Path | None = None

    @property
    def writes(self) -> bool:
        """Whether this process writes the run folder (the chief, or the only process)."""
        return self.scratch is None

    def chief_folder(self, folder: Path | None) -> Path:
        """The run folder the chief made (``folder`` there; what the others pass is ignored), on every worker."""
        if cluster_of(self.strategy) is None:
            return folder
        return Path(chief_text(self.strategy, None if folder is None else str(Path(folder).resolve())))


@contextlib.contextmanager
def session(strategy):
    """Run inside ``strategy``'s scope (when there is one) as a :class:`Session`; on a worker that is not the
    chief, with a scratch folder removed on the way out; a lost worker raised as a one-line GraftError.

    Example:
        >>> with session(None) as run:
        ...     run.writes
        True
    """
    cluster = None if strategy is None else cluster_of(strategy)
    if strategy is None:
        yield Session()
        return
    import tensorflow as tf

    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError, tf.errors.FailedPreconditionError, tf.errors.InternalError)
    folder = None if cluster is None or cluster.is_chief else \
        Path(tempfile.mkdtemp(prefix=f"graftkit-worker{cluster.position}-"))
    state = Session(strategy, folder)
    try:
        with strategy.scope():
            yield state
    except lost as error:
        if cluster is None:
            raise
        raise GraftError(lost_worker(cluster, str(error), state.run_dir)) from None
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def lost_worker(cluster: Cluster, message: str, run_dir=None) -> str:
    """The one line saying which worker a collective operation lost (from TensorFlow's ``message``) and what to do.

    Example:
        >>> cluster = read_cluster({"TF_CONFIG": '{"cluster": {"worker": ["h:1", "h:2"]}, '
        ...                                      '"task": {"type": "worker", "index": 0}}'})
        >>> print(lost_worker(cluster, "unhealthy tasks: /job:worker/replica:0/task:1 ... device:CPU:0", "runs/a"))
        ... # doctest: +NORMALIZE_WHITESPACE
        worker 1 (h:2) stopped answering (it exited, was killed, or its machine or network failed), so this worker
        stopped too: start every worker again with graft train --resume runs/a
    """
    others = []
    for job, index in _TASK.findall(message):
        task = (job, int(index))
        if task != (cluster.job, cluster.index) and task not in others:
            others.append(task)
    who = ", ".join(cluster.describe(*task) for task in others) if others else "another worker"
    resume = f"graft train --resume {run_dir}" if run_dir else "the same command"
    return (f"{who} stopped answering (it exited, was killed, or its machine or network failed), so this worker "
            f"stopped too: start every worker again with {resume}")


def fit_epochs(strategy, model, train_data, val_data, *, epochs: int, first: int, stage, stopper, task,
               class_weight: dict | None = None, inputs=None) -> None:
    """What ``model.fit`` does for a training stage, as tf.distribute custom-loop steps on ``strategy``.

    Per epoch: each global batch of ``train_data`` is split between the replicas; each replica runs
    the model on its share, weights each example's loss by its class, divides the sum by the
    size of the global batch (so the gradients the optimizer sums over the replicas are those of
    the global batch's average loss, the last smaller batch included), and applies the update;
    then validation, the epoch's totals reduced over every replica, ``stopper`` and ``stage``.

    Args:
        strategy: a ``tf.distribute`` strategy whose scope made the model and its compiled optimizer.
        model: the compiled model; its optimizer is built here if it is not yet.
        train_data: a batched dataset of ``(x, y)`` of the global batch size, or ``epoch -> dataset``.
        val_data: the same for validation.
        epochs, first: run 0-based epochs ``first`` to ``epochs - 1`` (fewer when ``stopper`` stops).
        stage: the :class:`graftkit.training.stages.StageRun` to report to.
        stopper: the stage's :class:`graftkit.training.stages.Stopper`, set up (``on_train_begin`` done).
        task: the :class:`graftkit.model.task.Task` (its per-example loss and metric).
        class_weight: ``{class: weight}`` for a single-label task's loss, or None.
        inputs: ``(train, val)``: functions mapping a dataset element to ``(x, y)`` inside each
            replica (the head on cached features passes row numbers and gathers them); None: the
            elements are ``(x, y)``.

    Example:
        >>> fit_epochs(strategy, model, train, val, epochs=5, first=0, stage=stage, stopper=stopper,
        ...            task=Task())  # doctest: +SKIP
    """
    import tensorflow as tf

    sum_ = tf.distribute.ReduceOp.SUM
    optimizer = model.optimizer
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    variables = model.trainable_variables
    weights = None
    if class_weight and task.kind == "single":
        from graftkit.data.pipeline import weight_table

        weights = tf.constant(weight_table(class_weight, int(model.output.shape[-1])))
    to_train, to_val = inputs or (None, None)

    def replica_train(element):
        x, y = to_train(element) if to_train else element
        context = tf.distribute.get_replica_context()
        global_batch = tf.cast(context.all_reduce(sum_, tf.cast(tf.shape(y)[0], tf.float32)), tf.int64)
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            losses = tf.cast(task.per_example_loss(y, p), tf.float32)
            weighted = losses if weights is None else losses * tf.gather(weights, y)
            loss = tf.nn.compute_average_loss(weighted, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss)
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        hits = tf.cast(task.per_example_metric(y, p), tf.float32)
        return tf.reduce_sum(weighted), tf.reduce_sum(hits), tf.cast(tf.shape(y)[0], tf.float32)

    def replica_val(element):
        x, y = to_val(element) if to_val else element
        p = model(x, training=False)
        losses = tf.cast(task.per_example_loss(y, p), tf.float32)
        hits = tf.cast(task.per_example_metric(y, p), tf.float32)
        return tf.reduce_sum(losses), tf.reduce_sum(hits), tf.cast(tf.shape(y)[0], tf.float32)

    def totals(replica, batches):  # traced once: the spec leaves the batch size open (the last batch is smaller)
        @tf.function(input_signature=[batches.element_spec], autograph=False)
        def step(element):
            return [strategy.reduce(sum_, part, axis=None) for part in strategy.run(replica, args=(element,))]

        return step

    def distributed(epoch):
        data = train_data(epoch) if callable(train_data) else train_data
        return int(data.cardinality()), strategy.experimental_distribute_dataset(_split_batches(data))

    val_batches = strategy.experimental_distribute_dataset(_split_batches(val_data))
    val_step = totals(replica_val, val_batches)
    train_step, metric = None, task.metric
    for epoch in range(first, epochs):
        steps, batches = distributed(epoch)
        train_step = train_step or totals(replica_train, batches)
        stage.begin_epoch(epoch, steps=steps if steps > 0 else None)
        loss_sum = hit_sum = count = 0.0
        for batch, element in enumerate(batches):
            losses, hits, n = (float(v) for v in train_step(element))
            loss_sum, hit_sum, count = loss_sum + losses, hit_sum + hits, count + n
            stage.batch_done(batch, loss=loss_sum / max(count, 1))
        val_loss = val_hits = val_count = 0.0
        for element in val_batches:
            losses, hits, n = (float(v) for v in val_step(element))
            val_loss, val_hits, val_count = val_loss + losses, val_hits + hits, val_count + n
        logs = {metric: hit_sum / max(count, 1), "loss": loss_sum / max(count, 1),
                f"val_{metric}": val_hits / max(val_count, 1), "val_loss": val_loss / max(val_count, 1)}
        stopper.on_epoch_end(epoch, logs)
        stage.end_epoch(epoch, logs)
        if model.stop_training:
            break


def _split_batches(dataset):
    """``dataset`` set to be split batch by batch between the replicas (what any in-memory or file list needs)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
