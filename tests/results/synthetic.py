"""Scores of a made-up classifier, for the tests of what is shown of many classes (no training)."""

import numpy as np

from graftkit.results.evaluate import score


def many_class_scores(classes: int = 101, images: int = 2020, seed: int = 0) -> dict:
    """``score`` of random labels and probabilities that are right about 90% of the time, on classes whose long
    names differ only at their end (so shortening them must keep the end)."""
    rng = np.random.default_rng(seed)
    names = [f"a_rather_long_class_name_of_a_species_number_{i:03d}" for i in range(classes)]
    labels = rng.integers(0, classes, images)
    probabilities = rng.random((images, classes))
    probabilities[np.arange(images), labels] += 0.9
    return score(labels, probabilities, names)
