"""Network bodies for encoders and decoders, and the table (`BODIES`) that `model.body` picks from."""

from vaelab.nets.bodies import BODIES, make_bodies
from vaelab.nets.conv import ConvDecoder, ConvEncoder
from vaelab.nets.mlp import MLPDecoder, MLPEncoder, activation, mlp

__all__ = [
    "BODIES",
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "activation",
    "make_bodies",
    "mlp",
]
