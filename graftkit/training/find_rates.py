"""``graft lr-find DATA``: the learning-rate sweeps of :mod:`graftkit.training.lr_find` on what ``graft train``
would build, without a run: the data, base, head and model made as the pipeline makes them, the head swept on
the cached features, trained as the head stage trains it, then fine-tuning swept; the curves written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graftkit import log
from graftkit.config import AUTO
from graftkit.errors import GraftError
from graftkit.training.lr_find import (LR_FIND_FILE, LRFind, fine_tune_sweep, head_sweep, solver_of,
                                       write_sweeps)


@dataclass
class Finding:
    """What ``graft lr-find`` found: the sweeps (``head``, and ``fine_tune`` unless ``--freeze all``) and where
    their curves are.

    Attributes:
        head: the head's sweep.
        fine_tune: fine-tuning's sweep (after the head was trained as ``graft train`` trains it), or None.
        folder: the folder of ``lr_find.png`` and ``lr_find.json``.
        plot: ``lr_find.png``.
        notes: lines about how the rates apply (e.g. a head fitted by L-BFGS).
    """

    head: LRFind
    fine_tune: LRFind | None
    folder: Path
    plot: Path
    notes: list = field(default_factory=list)

    def lines(self) -> list[str]:
        """The results, one line each, as ``graft train`` options.

        Example:
            >>> Finding(LRFind(suggestion=0.01), LRFind(suggestion=0.0003), Path("."), Path("p.png")).lines()
            ['--lr 0.01', '--fine-tune-lr 0.0003']
        """
        out = [f"--lr {self.head.suggestion:g}"]
        if self.fine_tune is not None:
            out.append(f"--fine-tune-lr {self.fine_tune.suggestion:g}")
        return out


def lr_find_config(config) -> Finding:
    """``graft lr-find``: both sweeps for a validated :class:`graftkit.config.TrainConfig`, the curves written.

    The data, base, head and model are made as ``graft train`` makes them. The head is swept on the cached
    features; then (unless ``--freeze all``) the head is trained as the head stage trains it (by L-BFGS, or
    by epochs at ``--lr``, or at the found rate when ``--lr`` is ``auto``, the default here) and fine-tuning
    is swept from there. Nothing of a run is written: only ``lr_find.png`` and ``lr_find.json``, into
    ``--out`` or a new ``runs/TIME-lr-find-BASE`` folder.

    Example:
        >>> from graftkit.config import TrainConfig
        >>> found = lr_find_config(TrainConfig(data="photos", lr="auto").validated())  # doctest: +SKIP
        >>> found.lines()  # doctest: +SKIP
        ['--lr 0.0112', '--fine-tune-lr 0.000316']
    """
    import keras

    from graftkit import runfolder
    from graftkit.bases.spec import TFIDF
    from graftkit.model.freeze import for_base, parse_freeze
    from graftkit.model.precision import policy_for, using
    from graftkit.training import pipeline
    from graftkit.training.distribute import Session

    if config.base == TFIDF:
        raise GraftError("--base tfidf is fitted in one go, without a learning rate: there is no rate to find")
    keras.utils.set_random_seed(config.seed)
    folder = runfolder.new_run_dir(config.out, f"lr-find-{Path(config.base).name}")
    notes = []
    with using(policy_for(config.precision)):
        run = pipeline._prepare(config, None, Session(scratch=folder))  # scratch: no run folder is written
        run.run_dir = folder

        def datasets():
            return pipeline._datasets(config, run)

        with log.counting(pipeline.examples(run.split)):
            run.base.model.trainable = False
            head = head_sweep(config, run, datasets, force=True)
            from graftkit.training.head_stage import after_pooling

            in_memory = config.feature_cache != "disk"  # "auto" keeps features that fit in memory
            if config.feature_cache != "off" and solver_of(config, after_pooling(run.head)[1], in_memory) == "lbfgs":
                note = (f"graft train fits this head by L-BFGS (--head-solver {config.head_solver}), which takes no "
                        "learning rate: the head's rate applies with --head-solver adam (or a head with --hidden)")
                notes.append(note)
                log.info(f"lr-find: {note}")
            fine_tune = None
            if for_base(parse_freeze(config.freeze), run.base).kind != "all":
                _train_head(config, run, head.suggestion if config.lr == AUTO else config.lr, datasets)
                fine_tune = fine_tune_sweep(config, run, datasets)
            else:
                log.info("lr-find: --freeze all: no fine-tuning, no fine-tuning sweep")
    sweeps = {"head": head, **({"fine_tune": fine_tune} if fine_tune else {})}
    plot = write_sweeps(folder, sweeps)
    log.info(f"lr-find: loss against learning rate in {plot} (curves in {folder / LR_FIND_FILE})")
    return Finding(head, fine_tune, folder, plot, notes)


def _train_head(config, run, learning_rate: float, datasets) -> None:
    """The head stage as ``graft train`` runs it (no checkpoint), so fine-tuning is swept from a trained head."""
    from graftkit.training.pipeline import head_stage

    if not config.epochs:
        log.info("lr-find: --epochs 0: fine-tuning is swept from the untrained head")
        return
    head_stage(config, run, lambda views: learning_rate, datasets)
