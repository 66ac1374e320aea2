"""features.store: corrupt or partial cache files rebuilt, not trusted; disk and memory modes."""

from pathlib import Path

import numpy as np
import pytest

from graftkit import settings
from graftkit.bases.loader import load_base
from graftkit.features import extract

pytestmark = pytest.mark.usefixtures("empty_feature_cache")


def key_folder(stats) -> Path:
    return settings.cache_dir() / "features" / stats["key"]


def shards(stats) -> list[Path]:
    return sorted(key_folder(stats).glob("*.npy"))


@pytest.mark.parametrize("damage", ["truncate", "flip bytes", "garbage index", "missing array"])
def test_a_corrupt_or_partial_cache_file_is_rebuilt_not_trusted(personal, images, damage, computed):
    base = load_base(personal)
    stats = {}
    good = extract.extract_features(base, images, stats=stats)
    (array,) = shards(stats)
    index = array.with_suffix(".json")
    if damage == "truncate":
        array.write_bytes(array.read_bytes()[: array.stat().st_size // 2])
    elif damage == "flip bytes":
        data = bytearray(array.read_bytes())
        data[-100:-90] = bytes(b ^ 0xFF for b in data[-100:-90])  # the last row
        array.write_bytes(bytes(data))
    elif damage == "garbage index":
        index.write_text("{not json")
    else:
        array.unlink()
    again = {}
    result = extract.extract_features(base, images, stats=again)
    np.testing.assert_allclose(result, good, atol=1e-6)
    expected = 1 if damage == "flip bytes" else 10
    assert again["computed"] == expected and computed[-1] == expected
    assert again["dropped_shards"] == 1
    assert array not in shards(again) and len(shards(again)) == 1  # the bad shard is gone, a good one replaces it
    third = {}
    extract.extract_features(base, images, stats=third)
    assert third["computed"] == 0


def test_disk_mode_and_a_small_budget_return_a_memmap(personal, images):
    base = load_base(personal)
    in_memory = extract.extract_features(base, images)
    for options in ({"feature_cache": "disk"}, {"feature_memory_mb": 1e-6}):
        stats = {}
        mapped = extract.extract_features(base, images, stats=stats, **options)
        assert isinstance(mapped, np.memmap) and not stats["in_memory"]
        np.testing.assert_array_equal(mapped, in_memory)
    stats = {}
    subset = extract.extract_features(base, images[::2], feature_cache="disk", stats=stats)
    assert stats["computed"] == 0
    np.testing.assert_array_equal(subset, in_memory[::2])


def test_memory_mode_writes_nothing(personal, images):
    stats = {}
    extract.extract_features(load_base(personal), images, feature_cache="memory", stats=stats)
    assert not key_folder(stats).exists()
