"""Held-out (image, caption) pairs (lzn/data/held_out.py): the seeded draw, composed captions with the
training thresholds that do not depend on the draw, the split's own captions, and the class prompts."""

import pytest
import torch

from lzn.data import DataConfig, ImageDataset, load_split
from lzn.data.captions import caption_dataset
from lzn.data.held_out import class_prompts, composed_pairs, own_pairs, pick_pairs


@pytest.fixture(scope="module")
def digits():
    cfg = DataConfig(name="digits")
    train = load_split(cfg, "train")
    return train, load_split(cfg, "test", class_names=train.class_names)


def test_the_draw_is_a_seeded_permutation_prefix():
    assert torch.equal(pick_pairs(10, 4, 3), torch.randperm(10, generator=torch.Generator().manual_seed(3))[:4])
    assert torch.equal(pick_pairs(10, 4, 3), pick_pairs(10, 4, 3)) and not torch.equal(pick_pairs(10, 4, 3),
                                                                                         pick_pairs(10, 4, 4))
    assert sorted(pick_pairs(5, 400, 0).tolist()) == [0, 1, 2, 3, 4]  # more pairs asked than items: all of them


def test_composed_pairs_are_the_splits_captions_at_the_draw(digits):
    train, test = digits
    thresholds = caption_dataset(train, seed=0).thresholds  # the training set's, not the test split's own
    images, labels, pairs = composed_pairs(test, thresholds, pairs=50, seed=1, caption_seed=2)
    pick = pick_pairs(len(test), 50, 1)
    full = caption_dataset(test, seed=2, thresholds=thresholds)
    assert torch.equal(images, test.images[pick]) and torch.equal(labels, test.labels[pick])
    assert pairs.captions == [full.captions[i] for i in pick.tolist()]
    assert torch.equal(pairs.levels, full.levels[pick]) and torch.equal(pairs.thresholds, thresholds)
    unlabelled = ImageDataset(test.images, None, 0, "u")
    with pytest.raises(ValueError, match="need labels"):
        composed_pairs(unlabelled, thresholds, pairs=5, seed=0, caption_seed=0)


def test_own_pairs_and_class_prompts():
    data = ImageDataset(torch.zeros(6, 3, 2, 2), None, 0, "own", captions=[f"c{i}" for i in range(6)])
    images, captions = own_pairs(data, pairs=4, seed=0)
    assert captions == [f"c{i}" for i in pick_pairs(6, 4, 0).tolist()] and images.shape == (4, 3, 2, 2)
    with pytest.raises(ValueError, match="no captions of its own"):
        own_pairs(ImageDataset(torch.zeros(2, 1, 2, 2), None, 0, "plain"), pairs=2, seed=0)
    assert class_prompts("the {kind} {cls}", [str(i) for i in range(10)], 10)[:2] == ["the digit zero", "the digit one"]
    assert class_prompts("a photo of a {cls}", ["Cat", "Dog"], 2) == ["a photo of a cat", "a photo of a dog"]
