"""features.extract: features computed once, then read from the cache; only changed images recomputed."""

import os

import numpy as np
import pytest

from graftkit.bases.loader import load_base
from graftkit.features import extract
from graftkit.features.key import feature_key

pytestmark = pytest.mark.usefixtures("empty_feature_cache")


def test_second_extraction_reads_the_cache_without_running_the_base(personal, images, computed):
    base = load_base(personal)
    first, second = {}, {}
    a = extract.extract_features(base, images, stats=first)
    b = extract.extract_features(load_base(personal), images, stats=second)  # a new process would load anew
    assert computed == [10, 0]
    assert (first["computed"], first["cached"]) == (10, 0)
    assert (second["computed"], second["cached"]) == (0, 10)
    np.testing.assert_array_equal(a, b)
    fresh = extract.extract_features(base, images, feature_cache="memory")
    np.testing.assert_allclose(a, fresh, atol=1e-6)
    assert a.shape == (10, 24, 24, 8)


def test_a_changed_or_added_image_recomputes_only_itself(personal, images, tmp_path, computed):
    base = load_base(personal)
    extract.extract_features(base, images)
    from PIL import Image

    changed = images[3]
    Image.fromarray(np.full((24, 24, 3), 250, np.uint8)).save(changed)
    os.utime(changed, ns=(1_000_000_000, 1_000_000_000))  # a new mtime even on a coarse clock
    added = str(tmp_path / "imgs" / "red" / "red_new.png")
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(added)
    stats = {}
    result = extract.extract_features(base, images + [added], stats=stats)
    assert computed[-1] == 2 and (stats["computed"], stats["cached"]) == (2, 9)
    np.testing.assert_allclose(result, extract.extract_features(base, images + [added], feature_cache="memory"),
                               atol=1e-6)


def test_augmented_views_differ_from_the_exact_view_and_are_cached(personal, images, computed):
    base = load_base(personal)
    exact = extract.extract_features(base, images)
    view0 = extract.extract_features(base, images, view=0)
    view1 = extract.extract_features(base, images, view=1)
    assert not np.allclose(exact, view0) and not np.allclose(view0, view1)
    np.testing.assert_array_equal(extract.extract_features(base, images, view=0), view0)
    assert computed == [10, 10, 10, 0]


def test_pooled_features_are_the_pooled_base_outputs(personal, images):
    base = load_base(personal)
    raw = extract.extract_features(base, images)
    for pool, reduce in (("avg", np.mean), ("max", np.max)):
        stats = {}
        pooled = extract.extract_features(base, images, pool=pool, stats=stats)
        assert pooled.shape == (10, 8) and stats["computed"] == 10
        np.testing.assert_allclose(pooled, reduce(raw, axis=(1, 2)), atol=1e-5)
    keys = {feature_key(base, pool=pool)[0] for pool in (None, "avg", "max")}
    assert len(keys) == 3
