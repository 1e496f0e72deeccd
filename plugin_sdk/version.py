"""The SDK's own version, which a plugin's manifest names a range of (``sdk=">=1.0,<2"``)."""

SDK_VERSION = "1.0.0"
