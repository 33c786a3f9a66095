"""polycolor_core.colour: Colour names: the canonical eight, CSS/XKCD/hex resolution, training palettes and the packaged colour tables."""
