"""The two architectures: the report's small CNN (with the variants it tried) and timm's ResNet-18."""
from __future__ import annotations

import torch
from torch import nn

from .errors import ModelError
from .labels import NUM_CLASSES
from .preprocess import SIZE

ARCHITECTURES = ("cnn", "resnet18")
# The default is the variant that measured best (BENCHMARKS.md, "CNN variants"): with batch norm the
# 16/32 net beat the 32/64 one on the held-out writers, and the 32/64 one diverged at lr 0.1 on a CPU.
CNN_DEFAULTS = {"filters": [16, 32], "pool": True, "batchnorm": True}
# The ResNet's stem divides the resolution by 4 at once; fed the 64x64 canonical image enlarged,
# its feature maps keep the detail that tells 千 from 十. The network itself is plain timm.
RESNET_DEFAULTS = {"input_size": SIZE}


class SimpleCNN(nn.Module):
    """Two 5x5 convolutions and one linear layer, as in the report.

    ``filters`` [16, 32] is the report's first version, [32, 64] its second; ``pool`` False is its
    experiment without max-pooling; ``batchnorm`` is ours.
    """

    def __init__(self, filters=(16, 32), pool: bool = True, batchnorm: bool = True, num_classes: int = NUM_CLASSES):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for cout in filters:
            layers.append(nn.Conv2d(cin, cout, 5, padding=2, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            if pool:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        side = SIZE // (2 ** len(filters)) if pool else SIZE
        self.num_features = cin * side * side
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def model_args_for(name: str, **options) -> dict:
    """The full argument set of an architecture: defaults, overridden by the options given."""
    if name == "cnn":
        args = dict(CNN_DEFAULTS)
        args.update({k: v for k, v in options.items() if v is not None})
        unknown = set(args) - set(CNN_DEFAULTS)
        if unknown:
            raise ModelError(f"unknown CNN options: {', '.join(sorted(unknown))}")
        args["filters"] = [int(f) for f in args["filters"]]
        if not args["filters"] or any(f < 1 for f in args["filters"]):
            raise ModelError("CNN filters must be positive whole numbers")
        return args
    if name == "resnet18":
        args = dict(RESNET_DEFAULTS)
        args.update({k: v for k, v in options.items() if v is not None})
        unknown = set(args) - set(RESNET_DEFAULTS)
        if unknown:
            raise ModelError(f"unknown resnet18 options: {', '.join(sorted(unknown))}")
        size = args["input_size"]
        if not isinstance(size, int) or isinstance(size, bool) or not 32 <= size <= 256 or size % 32:
            raise ModelError("resnet18 input_size must be a multiple of 32 from 32 to 256")
        return args
    raise ModelError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}")


def build_network(name: str, model_args: dict | None = None) -> nn.Module:
    """The bare network (no labels, no hub wrapper)."""
    args = model_args_for(name, **(model_args or {}))
    if name == "cnn":
        return SimpleCNN(filters=args["filters"], pool=args["pool"], batchnorm=args["batchnorm"])
    import timm  # imported here: only the ResNet needs it, and it is slow to import

    return timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=NUM_CLASSES)
