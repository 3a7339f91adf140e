"""Network bodies for encoders and decoders."""

from vaelab.nets.conv import ConvDecoder, ConvEncoder
from vaelab.nets.mlp import MLPDecoder, MLPEncoder, activation, mlp

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "activation", "mlp"]
