"""The networks of the notebooks. Every model is a `SkipNet`: its skip connections are switched
by one list of booleans, `model.skips` (`net.skips[3] = False`; `with net.skips_off(): ...`).

Where each model's forward pass is (the last method of its class):

| model          | file        | notebook | a skip is                                   |
|----------------|-------------|----------|---------------------------------------------|
| `PlainMLP`     | `mlp.py`    | 01, 03, 08 | (none)                                    |
| `ResidualMLP`  | `mlp.py`    | 01-04, 08 | the `+ x` of `ResidualBlock.forward`       |
| `TelescopeMLP` | `mlp.py`    | 05       | a hidden layer's path to the last one       |
| `SkipConvNet`  | `conv.py`   | 02       | the `+ shortcut(x)` of `SkipBlock1d`        |
| `ResNet1d`     | `conv.py`   | 06       | the `+ x` of `PreActBlock1d`                |
| `DenseNet1d`   | `beyond.py` | 07       | one concatenated input of a dense layer     |
| `HighwayMLP`   | `beyond.py` | 07       | the carry term `(1 - T) x` of `HighwayLayer` |
| `UNet1d`       | `beyond.py` | 07       | one level's encoder-to-decoder concatenation |
| `TinyTransformer` | `transformer.py` | 09 | the `x +` of one attention or MLP sublayer  |

Configuration: `model.config` is a frozen dataclass (`ResidualMLP.Config`, ...) checked once when
the model is built; `type(net).from_config(net.config)` builds a twin with the same weights (the
constructors draw from their own `seed`, leaving the global random state alone).
"""

from .beyond import (
    DenseLayer1d,
    DenseNet1d,
    DenseNet1dConfig,
    HighwayLayer,
    HighwayMLP,
    HighwayMLPConfig,
    UNet1d,
    UNet1dConfig,
)
from .conv import (
    PreActBlock1d,
    ResNet1d,
    ResNet1dConfig,
    SkipBlock1d,
    SkipConvNet,
    SkipConvNetConfig,
)
from .core import (
    ACTIVATIONS,
    BLOCKS,
    INITS,
    NORMS,
    PLAIN_ACTIVATIONS,
    PLAIN_INITS,
    SHORTCUTS,
    SPANS,
    CReLU,
    ModelConfig,
    SkipList,
    SkipNet,
    count_parameters,
    init_weights,
    make_activation,
)
from .mlp import (
    Dense,
    PlainMLP,
    PlainMLPConfig,
    ResidualBlock,
    ResidualMLP,
    ResidualMLPConfig,
    TelescopeMLP,
    TelescopeMLPConfig,
)
from .transformer import (
    PLACEMENTS,
    CausalSelfAttention,
    TinyTransformer,
    TinyTransformerConfig,
    TransformerBlock,
)

__all__ = ["ACTIVATIONS", "BLOCKS", "INITS", "NORMS", "PLACEMENTS", "PLAIN_ACTIVATIONS", "PLAIN_INITS",
           "SHORTCUTS", "SPANS", "CReLU", "CausalSelfAttention", "Dense", "DenseLayer1d",
           "DenseNet1d", "DenseNet1dConfig", "HighwayLayer", "HighwayMLP", "HighwayMLPConfig",
           "ModelConfig", "PlainMLP", "PlainMLPConfig", "PreActBlock1d", "ResNet1d", "ResNet1dConfig",
           "ResidualBlock", "ResidualMLP", "ResidualMLPConfig", "SkipBlock1d", "SkipConvNet",
           "SkipConvNetConfig", "SkipList", "SkipNet", "TelescopeMLP", "TelescopeMLPConfig", "TinyTransformer",
           "TinyTransformerConfig", "TransformerBlock", "UNet1d",
           "UNet1dConfig", "count_parameters", "init_weights", "make_activation"]
