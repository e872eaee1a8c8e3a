"""gradrun: numeric beside analytic gradients, from YAML specs."""
__version__ = "0.1.0"
