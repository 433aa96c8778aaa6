import pytest
import torch
from torch import nn

from skipviz import exercises, models


class ReferenceV2(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.first, self.second = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        return torch.relu(self.second(torch.relu(self.first(x)))) + x


class DefinedInOtherOrder(ReferenceV2):
    def __init__(self, width):
        super().__init__(width)
        self.second, self.first = nn.Linear(width, width), nn.Linear(width, width)


class MissingSkip(ReferenceV2):
    def forward(self, x):
        return torch.relu(self.second(torch.relu(self.first(x))))


class ReluAfterSum(ReferenceV2):  # a V1 block
    def forward(self, x):
        return torch.relu(self.second(torch.relu(self.first(x))) + x)


class NoLastRelu(ReferenceV2):
    def forward(self, x):
        return self.second(torch.relu(self.first(x))) + x


class WrongShape(ReferenceV2):
    def forward(self, x):
        return super().forward(x).sum(dim=1)


class OneLayer(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.only = nn.Linear(width, width)

    def forward(self, x):
        return torch.relu(self.only(x)) + x


def test_accepts_reference_in_either_definition_order():
    assert exercises.check_block(ReferenceV2).ok
    assert exercises.check_block(DefinedInOtherOrder).ok
    assert exercises.check_block(lambda w: models.ResidualBlock(w, "v2", span=2)).ok
    assert exercises.check_block(lambda w: models.ResidualBlock(w, "v1", span=2), block="v1").ok
    assert exercises.check_block(lambda w: models.ResidualBlock(w, "preact", span=2), block="preact").ok


@pytest.mark.parametrize("cls, words", [
    (MissingSkip, "skip is missing"),
    (ReluAfterSum, "ReLU comes after the addition"),
    (NoLastRelu, "no ReLU after the second layer"),
    (WrongShape, "must return the shape of its input"),
    (OneLayer, "exactly two nn.Linear"),
])
def test_rejects_wrong_blocks_and_says_why(cls, words):
    result = exercises.check_block(cls)
    assert not result.ok and not result
    assert words in result.message


def test_reports_constructor_errors():
    class Broken(nn.Module):
        def __init__(self, width):
            raise RuntimeError("forgot super().__init__")

    result = exercises.check_block(Broken)
    assert not result.ok and "RuntimeError" in result.message


def test_html_repr_escapes():
    assert "&lt;" in exercises.CheckResult(False, "<b>")._repr_html_()


def test_bad_arguments():
    with pytest.raises(ValueError, match="'v1', 'v2', 'preact'"):
        exercises.check_block(ReferenceV2, block="v3")
