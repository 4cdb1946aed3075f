"""InvisPose: human poses, tracks and presence from WiFi channel state information."""

__version__ = "0.1.0"
