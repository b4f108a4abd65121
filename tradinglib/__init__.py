"""tradinglib: observation validation, locked inference, risk, brokers, journal and runs
for a notebook-driven reinforcement-learning trading workflow.

Heavy modules (torch, stable-baselines3) are imported only by the modules that need them,
so ``import tradinglib`` stays light.
"""

from tradinglib.exceptions import (
    ConfigError,
    DataError,
    InputError,
    ModelError,
    ObservationError,
    RetryableError,
    StopError,
    TradingLibError,
)
from tradinglib.types import Action, Decision

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ConfigError",
    "DataError",
    "Decision",
    "InputError",
    "ModelError",
    "ObservationError",
    "RetryableError",
    "StopError",
    "TradingLibError",
    "__version__",
]
