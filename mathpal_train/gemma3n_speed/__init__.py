"""Gemma-3n speed plugin for Axolotl: the training loss without full-vocabulary logits.

Recipes name it as ``plugins: [mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin]``.
"""

from mathpal_train.gemma3n_speed.args import Gemma3nSpeedArgs
from mathpal_train.gemma3n_speed.plugin import Gemma3nSpeedPlugin

__all__ = ["Gemma3nSpeedArgs", "Gemma3nSpeedPlugin"]
