"""ComfyUI nodes for polycolor (filled in by the nodes module)."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
