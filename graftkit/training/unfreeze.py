"""Gradual unfreezing (``--unfreeze-every E``): the base's trained layer groups open one at a time from the top.

ULMFiT's gradual unfreezing (Howard & Ruder 2018) and Lightning's ``BackboneFinetuning``: fine-tuning starts with
the head and the topmost layer group that ``--freeze`` trains (groups as for ``--lr-decay``:
:mod:`graftkit.model.groups`); the next group down opens ``E`` epochs later, and so on. Nothing is recompiled and
no ``trainable`` flag changes: the grouped optimizers (:class:`graftkit.training.schedules.GroupedAdamW`) multiply a
closed group's step and weight decay by 0, by their own step count, so the boundary cache, the schedule and a
resumed run (whose step count the checkpoint puts back) see the same model and the same steps throughout.
:class:`GradualUnfreezing` decides each group's place in that order and says in the log when each opens.
"""

from __future__ import annotations

from graftkit import log


class GradualUnfreezing:
    """When each of the base's trained layer groups opens, the grouped optimizer's options for it, and the log.

    Args:
        every: ``E``, epochs between two openings (above 0).

    Example:
        >>> unfreezing = GradualUnfreezing(2)
        >>> [unfreezing.opens_at(rank) for rank in (0, 1, 2, 3)]  # the head, the topmost trained group, ...
        [0, 0, 2, 4]
    """

    def __init__(self, every: int):
        self.every = every
        self._names: dict[int, str] = {}  # rank among the trained groups (1: the topmost) -> the group in words
        self._announced: int | None = None  # the last epoch announced

    def opens_at(self, rank: int) -> int:
        """The 0-based epoch from which the trained group ``rank`` from the top (the head 0, the topmost
        trained group 1) learns."""
        return max(0, rank - 1) * self.every

    def options(self, depths: dict, groups: list, *, steps_per_epoch: int, epochs: int, rule: str = "",
                freeze: str = "") -> dict:
        """The grouped optimizer's ``depth`` and ``steps_per_group`` (see :func:`graftkit.training.schedules.
        fine_tune_optimizer`), having logged when each group opens; ``{}`` (logged once) when ``--freeze``
        trains fewer than two groups of the base, so there is nothing to open one at a time.

        Args:
            depths: ``{id(variable): depth}`` of the trainable variables (:func:`graftkit.model.groups.
                variable_depths`; the head 0).
            groups: the base's layer groups, stem first (:func:`graftkit.model.groups.layer_groups`).
            steps_per_epoch: optimizer steps in an epoch.
            epochs: the stage's epochs (the log says when the lowest group opens after the last).
            rule, freeze: the groups' rule and the ``--freeze`` spec, in words for the log.

        Example:
            >>> import keras
            >>> groups = [[keras.layers.Dense(2, name=name)] for name in ("stem", "block1", "block2")]
            >>> head, top, below = (keras.Variable(0.0) for _ in range(3))
            >>> depths = {id(head): 0, id(top): 1, id(below): 2}
            >>> made = GradualUnfreezing(1).options(depths, groups, steps_per_epoch=5, epochs=3)
            >>> made["steps_per_group"], [made["depth"](v) for v in (head, top, below)]
            (5, [0, 1, 2])
        """
        trained = sorted({depth for depth in depths.values() if depth})
        how = f"gradual unfreezing (--unfreeze-every {self.every}"
        if len(trained) < 2:
            log.info(f"{how}): --freeze {freeze} trains {len(trained)} layer group"
                     f"{'' if len(trained) == 1 else 's'} of the base, nothing to open one at a time")
            return {}
        rank = {depth: i + 1 for i, depth in enumerate(trained)}  # a frozen top group would not delay the rest
        self._names = {rank[depth]: f"group {depth} from the top ('{groups[-depth][0].name}'...)" for depth in trained}
        opens = ", ".join(f"group {depth} ('{groups[-depth][0].name}'...) from epoch {self.opens_at(rank[depth]) + 1}"
                          for depth in trained)
        late = self.opens_at(len(trained)) >= epochs
        log.info(f"{how}; the base in {len(groups)} groups, {rule}): the head and {opens}"
                 + (f" (of {epochs} epoch{'s' * (epochs != 1)}: the lowest opens after the last)" if late else ""))
        return {"depth": lambda variable: rank.get(depths.get(id(variable), 0), 0),
                "steps_per_group": self.every * steps_per_epoch}

    def on_epoch_begin(self, epoch: int) -> None:
        """Log :meth:`openings` of 0-based ``epoch`` (what a stage calls as each epoch begins)."""
        for line in self.openings(epoch):
            log.info(line)

    def openings(self, epoch: int) -> list[str]:
        """A line for each group that opens at 0-based ``epoch``; the first epoch of a resumed stage also names
        those that opened before it. The head and the topmost trained group, open from the start, have none.

        Example:
            >>> import keras
            >>> groups = [[keras.layers.Dense(2, name=name)] for name in ("stem", "block1", "block2")]
            >>> unfreezing = GradualUnfreezing(1)
            >>> _ = unfreezing.options({1: 1, 2: 2, 3: 3}, groups, steps_per_epoch=5, epochs=3)
            >>> unfreezing.openings(0), unfreezing.openings(1)
            ([], ["gradual unfreezing: epoch 2: group 2 from the top ('block1'...) opens"])
            >>> GradualUnfreezing(1).openings(2)  # no trained groups known: nothing to say
            []
        """
        resumed = self._announced is None and epoch > 0
        self._announced = epoch
        lines = []
        for rank in sorted(self._names):
            start = self.opens_at(rank)
            if rank < 2 or start > epoch or (start < epoch and not resumed):
                continue
            state = "opens" if start == epoch else f"is open (since epoch {start + 1}, before the resume)"
            lines.append(f"gradual unfreezing: epoch {epoch + 1}: {self._names[rank]} {state}")
        return lines
