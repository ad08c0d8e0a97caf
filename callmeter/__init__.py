"""callmeter: open, self-hosted SIP stress testing and VoIP quality monitoring."""

__version__ = "0.1.0"
