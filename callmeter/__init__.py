"""callmeter: open, self-hosted SIP stress testing and VoIP quality monitoring.

The media hot path is compiled with mypyc (``callmeter._compiled`` lists the modules): an
extension older than its source is refused here, before any can be imported."""

from callmeter._compiled import check_fresh

check_fresh()

__version__ = "0.1.0"
