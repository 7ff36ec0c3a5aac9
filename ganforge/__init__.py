"""ganforge: compose generative adversarial networks from YAML blueprints.

Importing ganforge is cheap: torch, components and plugins load only when used.
"""

__version__ = "0.1.0"
