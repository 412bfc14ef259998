"""datagen: grow a small labeled image set into a larger, faithfully labeled one with SelfExGAN."""

__version__ = "0.1.0"
