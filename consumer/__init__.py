"""kafka-twilio: turn audience and journey events on Kafka into Twilio messages."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kafka-twilio")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
