"""polycolor_core: data, the eight model variants, text encoders, the composite loss, training, checkpoints
and PyTorch inference. Depends on nothing else in the pack; ``export``, ``eval`` and ``nodes`` build on it.

Submodules are imported on demand (``from polycolor.polycolor_core import variants``) so that importing the
package stays cheap.
"""
