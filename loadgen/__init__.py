"""loadgen: burst load generator for cloud sandbox providers, built on Locust and gevent."""

__version__ = "0.1.0"
