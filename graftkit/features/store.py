"""The feature cache on disk and in memory: shards of rows checked by CRC, never trusted half-written.

Storage is plain NumPy: a folder holds shards, each a ``<id>.npy`` array of rows with a
``<id>.json`` index written after it (atomically, by rename) listing each row's image key
and CRC-32. A row is used only when its shard opens with the expected shape and dtype and
its CRC matches; anything else (a truncated, corrupt or half-written shard) is recomputed
and the shard dropped, never trusted. Shards whose rows all have newer copies are deleted.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import zlib
from pathlib import Path

import numpy as np

from graftkit import log, settings
from graftkit.errors import GraftError
from graftkit.features.key import FORMAT

CACHE_MODES = ("auto", "memory", "disk")


_ORPHAN_SECONDS = 3600  # a shard without an index this old was left by a crashed writer


def default_memory_budget_mb() -> int:
    """How many MB of features one data set may hold in memory by default: an eighth of RAM, at most 2 GiB.

    Example:
        >>> 0 < default_memory_budget_mb() <= 2048
        True
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(total // 8, 2 << 30) >> 20)


def clear_cache() -> int:
    """Delete the whole feature cache; returns the number of files removed.

    Example:
        >>> clear_cache()  # doctest: +SKIP
        12
    """
    root = settings.cache_dir() / "features"
    removed = 0
    if root.is_dir():
        for file in sorted(root.rglob("*"), reverse=True):
            if file.is_file():
                file.unlink(missing_ok=True)
                removed += 1
            else:
                file.rmdir()
    return removed


class Store:
    """The shards of one feature key: ``<id>.npy`` rows with a ``<id>.json`` index of keys and CRCs."""

    def __init__(self, folder: Path, shape: tuple, dtype: np.dtype, description: dict):
        self.folder, self.shape, self.dtype = folder, shape, dtype
        self.bad: set[str] = set()
        self.arrays: dict[str, np.ndarray] = {}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "key.json").is_file():
                from graftkit.files import atomic_write_json

                atomic_write_json(folder / "key.json", description)
        except (OSError, GraftError) as error:
            raise GraftError(f"cannot use the feature cache '{folder}' ({error}): set GRAFT_CACHE_DIR "
                             "to a writable folder or pass --feature-cache memory") from None
        self.shards = self._load_indices()

    def _load_indices(self) -> dict[str, dict]:
        """Shard id -> its index, oldest first; unreadable indices are dropped."""
        shards = {}
        for path in sorted(self.folder.glob("*.json")):
            if path.name == "key.json":
                continue
            try:
                index = json.loads(path.read_text())
                ok = (index.get("format") == FORMAT and len(index["keys"]) == len(index["crc32"])
                      == index["shape"][0] and tuple(index["shape"][1:]) == self.shape
                      and index["dtype"] == self.dtype.name)
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                ok = False
            if ok:
                shards[path.stem] = index
            else:
                self.bad.add(path.stem)
        return shards

    def lookup(self, keys: list[str]) -> dict[str, tuple[str, int]]:
        """Image key -> (shard, row) of its newest copy, for the keys asked for."""
        wanted = set(keys)
        found = {}
        for shard, index in self.shards.items():  # oldest first: newer copies win
            for row, key in enumerate(index["keys"]):
                if key in wanted:
                    found[key] = (shard, row)
        return found

    def _array(self, shard: str) -> np.ndarray | None:
        if shard in self.bad:
            return None
        if shard not in self.arrays:
            try:
                array = np.load(self.folder / f"{shard}.npy", mmap_mode="r", allow_pickle=False)
                if array.shape != tuple(self.shards[shard]["shape"]) or array.dtype != self.dtype:
                    raise ValueError("shape or dtype differ from the index")
            except (OSError, ValueError, EOFError):  # missing, truncated or not an .npy file
                self.bad.add(shard)
                return None
            self.arrays[shard] = array
        return self.arrays[shard]

    def read(self, keys, found, out) -> tuple[list[int], list[int]]:
        """Copy the cached rows into ``out``; returns the rows still missing and the rows saved from bad shards."""
        by_shard: dict[str, list[tuple[int, int]]] = {}
        missing = []
        for i, key in enumerate(keys):
            if key in found:
                shard, row = found[key]
                by_shard.setdefault(shard, []).append((i, row))
            else:
                missing.append(i)
        salvaged = []
        for shard, pairs in by_shard.items():
            array = self._array(shard)
            if array is None:
                missing += [i for i, _ in pairs]
                continue
            crcs = self.shards[shard]["crc32"]
            pairs.sort(key=lambda pair: pair[1])
            rows = np.array([row for _, row in pairs])
            targets = np.array([i for i, _ in pairs])
            out[targets] = array[rows]
            failed = {i for i, row in pairs if zlib.crc32(out[i]) != crcs[row]}
            if failed:  # the rows that check out are kept and filed again; the shard is dropped
                self.bad.add(shard)
                missing += sorted(failed)
                salvaged += [i for i, _ in pairs if i not in failed]
        return sorted(missing), sorted(salvaged)

    def whole_shard(self, keys, found) -> np.ndarray | None:
        """The cached rows as one read-only memmap when one shard holds exactly ``keys`` in order, checked."""
        if not keys or any(k not in found for k in keys):
            return None
        shard, start = found[keys[0]]
        index = self.shards[shard]
        if index["keys"][start:start + len(keys)] != keys or any(found[k][0] != shard for k in keys):
            return None
        array = self._array(shard)
        if array is None:
            return None
        crcs = index["crc32"]
        for row in range(start, start + len(keys)):
            if zlib.crc32(np.ascontiguousarray(array[row])) != crcs[row]:
                self.bad.add(shard)
                return None
        return array[start:start + len(keys)]

    def _new_id(self) -> str:
        return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"

    def new_shard(self, count: int) -> np.memmap:
        """An empty shard file to fill, under a temporary name until :meth:`commit_shard`."""
        self._pending = self.folder / f".{self._new_id()}.npy.tmp"
        return np.lib.format.open_memmap(self._pending, mode="w+", dtype=self.dtype, shape=(count, *self.shape))

    def abandon_shard(self) -> None:
        """Remove the shard being filled through :meth:`new_shard`, if any (the work failed)."""
        pending = getattr(self, "_pending", None)
        if pending is not None:
            pending.unlink(missing_ok=True)
            self._pending = None

    def commit_shard(self, array: np.memmap, keys: list[str]) -> np.ndarray:
        """Index a shard filled through :meth:`new_shard`; returns it reopened read-only."""
        array.flush()
        crcs = [zlib.crc32(np.ascontiguousarray(row)) for row in array]
        del array
        shard = self._new_id()
        target = self.folder / f"{shard}.npy"
        os.replace(self._pending, target)
        self._write_index(shard, keys, crcs)
        return np.load(target, mmap_mode="r", allow_pickle=False)

    def write_rows(self, keys: list[str], rows: np.ndarray) -> None:
        """File ``rows`` (features of the images ``keys``) as a new shard."""
        from graftkit.files import temporary_beside

        shard = self._new_id()
        try:
            with temporary_beside(self.folder / f"{shard}.npy", suffix=".npy.tmp") as tmp, open(tmp, "wb") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(rows, self.dtype), allow_pickle=False)
        except GraftError as error:
            log.info(f"{error}: features kept in memory only")
            return
        self._write_index(shard, keys, [zlib.crc32(np.ascontiguousarray(row)) for row in rows])

    def _write_index(self, shard: str, keys: list[str], crcs: list[int]) -> None:
        from graftkit.files import atomic_write_json

        index = {"format": FORMAT, "keys": list(keys), "crc32": [int(c) for c in crcs],
                 "shape": [len(keys), *self.shape], "dtype": self.dtype.name}
        atomic_write_json(self.folder / f"{shard}.json", index)
        self.shards[shard] = index

    def drop_bad(self) -> int:
        """Delete the shards found corrupt (their rows were recomputed); index first, so none is half-trusted."""
        for shard in self.bad:
            (self.folder / f"{shard}.json").unlink(missing_ok=True)
            (self.folder / f"{shard}.npy").unlink(missing_ok=True)
            self.shards.pop(shard, None)
            self.arrays.pop(shard, None)
        count = len(self.bad)
        self.bad = set()
        return count

    def collect_garbage(self) -> None:
        """Delete shards all of whose rows have newer copies, and files abandoned by crashed writers."""
        newest = {}
        for shard, index in self.shards.items():
            for key in index["keys"]:
                newest[key] = shard
        for shard, index in list(self.shards.items()):
            if not any(newest[key] == shard for key in index["keys"]):
                (self.folder / f"{shard}.json").unlink(missing_ok=True)
                (self.folder / f"{shard}.npy").unlink(missing_ok=True)
                self.shards.pop(shard)
        now = time.time()
        for path in self.folder.iterdir():
            orphan = path.suffix == ".tmp" or (path.suffix == ".npy" and path.stem not in self.shards)
            try:
                if orphan and now - path.stat().st_mtime > _ORPHAN_SECONDS:
                    path.unlink()
            except OSError:
                pass
