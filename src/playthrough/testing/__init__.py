"""Testing kit for playthrough users: a reference model, Hypothesis strategies, a pytest plugin.

- ``reference``: the reference semantics of a load, written as plainly as possible
  (every event once, in global order, from blank), to test the engine against
"""

from .reference import reference_states

__all__ = ["reference_states"]
