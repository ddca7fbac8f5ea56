"""mnistcls: train and compare image classifiers on MNIST and Fashion-MNIST from YAML specs."""

__version__ = "0.1.0"
