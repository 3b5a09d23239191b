"""What the user watches, on tiny tensors: the running metrics and the within-class spread behind "diversity"."""

import math

import pytest
import torch

from trainer.monitor import AUX_ACCURACY, METRIC_NAMES, RunningMetrics, within_class_spread


def test_running_metrics_average_every_metric_the_step_returns_and_count_nonfinite_steps():
    metrics = RunningMetrics(torch.device("cpu"), (*METRIC_NAMES, AUX_ACCURACY))  # five with --aux-weight
    metrics.add(*map(torch.tensor, (1.0, 2.0, 0.5, 0.25, 0.0)))
    metrics.add(*map(torch.tensor, (3.0, 4.0, 0.5, 0.75, 1.0)))
    values, nonfinite = metrics.read(pixel_diversity=torch.tensor(0.8))
    assert values == pytest.approx({"loss_d": 2.0, "loss_g": 3.0, "d_x": 0.5, "d_gz": 0.5, AUX_ACCURACY: 0.5,
                                    "pixel_diversity": 0.8})
    assert nonfinite == 0
    metrics.add(*map(torch.tensor, (math.nan, 1.0, 0.5, 0.5, 0.5)))
    metrics.add(*map(torch.tensor, (1.0, 1.0, 0.5, 0.5, 0.5)))
    assert metrics.read()[1] == 1  # the NaN step is counted; the sums start again after each read


def test_within_class_spread_is_the_mean_per_class_pixel_std():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(20, 1, 4, 4, generator=g)
    labels = torch.tensor([0] * 6 + [1] * 5 + [2] * 8 + [3])  # class 3 has one image: left out
    expected = torch.stack([images[labels == c].flatten(1).std(dim=0).mean() for c in range(3)]).mean()
    torch.testing.assert_close(within_class_spread(images, labels, 10), expected)
    torch.testing.assert_close(within_class_spread(images, None), images.flatten(1).std(dim=0).mean())
    collapsed = images[:1].repeat(20, 1, 1, 1)  # one image per class: no spread at all
    assert float(within_class_spread(collapsed, labels, 10)) == pytest.approx(0.0, abs=1e-6)
