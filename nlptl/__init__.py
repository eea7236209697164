"""nlptl: transfer learning for NLP (and images) behind one encoder interface."""
from .config import TrainConfig
from .encoders import Encoder, EncoderOutput, infer_kind, list_encoders, load_encoder
from .model import TransferModel
from .strategies import STRATEGIES
from .evaluation import evaluate
from .training import FitResult, fit

__version__ = "0.1.0"

__all__ = ["Encoder", "EncoderOutput", "FitResult", "TrainConfig", "STRATEGIES", "TransferModel", "evaluate", "fit",
           "infer_kind", "list_encoders", "load_encoder", "__version__"]
