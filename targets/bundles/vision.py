"""``vision``: a ResNet-like image classifier on 3x224x224 input, compute-heavy on purpose.

Built in plain torch (ResNet-18's layout: a 7x7 stem, four stages of two basic blocks)
with seeded random weights: the numbers it produces are deterministic but meaningless as
labels. It is here to show where serving overhead stops mattering: one batch-1 inference
costs tens of milliseconds on one core (``deploybench bundles`` prints the figure).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from targets.bundles.protocol import TorchClassifier

if TYPE_CHECKING:
    import torch

SEED = 1234
CLASSES = 10
WIDTHS = (64, 128, 256, 512)
N_EXAMPLES = 8
#: The drift reference: this many images like the examples, from their own seed.
REFERENCE_SEED = 4321
REFERENCE_IMAGES = 1000
#: Summary drift features: a GRID x GRID grid of brightness means.
GRID = 4
CHANNELS = ("R", "G", "B")
#: ImageNet channel statistics, the usual normalisation for 0..255 RGB input.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _build_net() -> torch.nn.Module:
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut: nn.Module = nn.Identity()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + self.shortcut(x))

    layers: list[nn.Module] = [
        nn.Conv2d(3, WIDTHS[0], 7, 2, 3, bias=False),
        nn.BatchNorm2d(WIDTHS[0]),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = WIDTHS[0]
    for i, width in enumerate(WIDTHS):
        stride = 1 if i == 0 else 2
        layers += [BasicBlock(cin, width, stride), BasicBlock(width, width, 1)]
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, CLASSES)]
    net = nn.Sequential(*layers)
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                fan_in = module.weight[0].numel()
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                # Random affine and running statistics near identity: activations stay
                # in range through 8 residual blocks, so logits are finite and distinct.
                gamma = torch.rand(module.weight.shape, generator=generator)
                module.weight.copy_(0.5 + 0.5 * gamma)
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
                if module.running_mean is not None and module.running_var is not None:
                    module.running_mean.zero_()
                    module.running_var.fill_(2.0)
    return net.eval()


def _image(rng: np.random.Generator) -> np.ndarray:
    """A smooth random image: low-resolution noise upsampled, as 0..255 RGB floats."""
    low = rng.uniform(0, 255, size=(1, 3, 28, 28)).astype(np.float32)
    return np.ascontiguousarray(low.repeat(8, axis=2).repeat(8, axis=3))


class VisionBundle(TorchClassifier):
    name = "vision"
    description = "ResNet-18-like CNN, 3x224x224 input, seeded random weights (compute-heavy)"
    input_shape: tuple[int, ...] = (3, 224, 224)
    default_encoding = "binary"
    classes = CLASSES
    preprocessing = "server side: normalise 0..255 RGB with ImageNet mean and std"

    def __init__(self) -> None:
        super().__init__()
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None

    def prepare(self) -> None:
        """Nothing to train or cache: the weights come from a seed."""

    def load(self) -> None:
        import torch

        self._net = _build_net()
        self._mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(STD).view(1, 3, 1, 1) * 255.0

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        import torch

        assert self._mean is not None, "call load() first"
        assert self._std is not None
        return (torch.from_numpy(batch) - self._mean) / self._std

    def example_requests(self) -> list[np.ndarray]:
        rng = np.random.default_rng(SEED)
        return [_image(rng) for _ in range(N_EXAMPLES)]

    # -- the drift check (deploybench drift) ------------------------------------------
    def drift_features(self, batch: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Summaries, not 150,528 pixels (a pixel's own distribution says little about an
        image): each channel's mean and standard deviation, and the brightness (mean of
        the channels) of a 4x4 grid of 56x56 blocks, ``bright[row,col]``."""
        n = len(batch)
        flat = batch.reshape(n, 3, -1)
        side = self.input_shape[1] // GRID
        # Summed in float64 without a float64 copy of the batch (8 bytes a value).
        blocks = batch.reshape(n, 3, GRID, side, GRID, side).mean(axis=(1, 3, 5),
                                                                    dtype=np.float64)
        names = ([f"{c}.mean" for c in CHANNELS] + [f"{c}.std" for c in CHANNELS]
                 + [f"bright[{r},{c}]" for r in range(GRID) for c in range(GRID)])
        return names, np.concatenate([flat.mean(axis=2, dtype=np.float64),
                                      flat.std(axis=2, dtype=np.float64),
                                      blocks.reshape(n, GRID * GRID)], axis=1)

    def drift_reference_inputs(self) -> tuple[str, Iterable[np.ndarray]]:
        """No training set (the weights are random): images from the examples' generator,
        more of them, from their own seed, made 50 at a time."""
        def batches() -> Iterator[np.ndarray]:
            rng = np.random.default_rng(REFERENCE_SEED)
            for _ in range(REFERENCE_IMAGES // 50):
                yield np.concatenate([_image(rng) for _ in range(50)])

        return (f"{REFERENCE_IMAGES} images from the example requests' generator "
                f"(seed {REFERENCE_SEED})", batches())

    def info(self) -> dict[str, Any]:
        return {**super().info(), "examples": N_EXAMPLES}
