"""What ResNet depths, widths and stems mean, shared by the trunk and the decoder."""

from dataclasses import dataclass

from torchvision.models.resnet import BasicBlock, Bottleneck

# depth -> (block, layers per stage, encoder order)
DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}
# below 1: narrow CPU-scale models (stages 64m/128m/256m/512m x expansion); 2 and 4: ResNet-50w2/w4
WIDTH_MULTIPLIERS = (0.125, 0.25, 0.5, 1, 2, 4)

# stem name -> (first conv kernel size, stride, has max-pool); the paper's three stems
STEMS = {
    "cifar": (3, 1, False),  # 32 px: conv 3x3 stride 1, no max-pool
    "stl10": (7, 2, False),  # 96 px: conv 7x7 stride 2, no max-pool
    "imagenet": (7, 2, True),  # 224 px: conv 7x7 stride 2 + max-pool
}


def normalise_width(value):
    """A width multiplier as written in a config (1, 2.0, 0.25, "0.25") -> int when whole, else float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else number


@dataclass(frozen=True)
class ResNetSpec:
    depth: int
    width_multiplier: float  # int when whole (1, 2, 4)
    stem: str

    def __post_init__(self):
        object.__setattr__(self, "width_multiplier", normalise_width(self.width_multiplier))
        check_choice("DEPTH", self.depth, tuple(DEPTHS))
        check_choice("WIDTH_MULTIPLIER", self.width_multiplier, WIDTH_MULTIPLIERS)
        check_choice("STEM", self.stem, tuple(STEMS))
        if self.width_multiplier > 1 and self.depth != 50:
            raise ValueError(
                f"WIDTH_MULTIPLIER={self.width_multiplier} is defined for DEPTH=50 only "
                f"(ResNet-50w2/w4), got DEPTH={self.depth}"
            )

    @property
    def block(self):
        return DEPTHS[self.depth][0]

    @property
    def layers(self):
        return DEPTHS[self.depth][1]

    @property
    def base_width(self) -> int:
        """Channels of the stem and of the first stage's blocks (64 x width multiplier)."""
        return int(64 * self.width_multiplier)

    @property
    def decoder_planes(self):
        """The reference decoder's stage widths (before the block expansion): it starts from
        512 x width and halves *before* each stage, so 256, 128, 64, 32 (x width multiplier)."""
        return tuple((4 * self.base_width) >> i for i in range(4))

    @property
    def feature_dim(self) -> int:
        """Channels of the pooled last stage: 512 (RN18/34), 2048 (RN50), x2/x4 when wide."""
        return 8 * self.base_width * self.block.expansion

    @property
    def downsampling(self) -> int:
        """Total stride of the encoder from the image to its last stage."""
        kernel, stride, maxpool = STEMS[self.stem]
        return 8 * stride * (2 if maxpool else 1)


def check_choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not supported; allowed values: {list(allowed)}")
