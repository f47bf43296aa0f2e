"""SIPp-based end-to-end harness for voicebot.

* :mod:`.pcap` -- RFC 4733 DTMF captures for SIPp's ``play_pcap_audio``
  (a new RTP timestamp per press, unlike the stock dtmf_2833_N.pcap files);
* :mod:`.runner` -- :class:`Sipp` wrapper (sync + asyncio), per-test INFO scenarios;
* :mod:`.rtp_probe` -- :class:`RtpProbe`, a test-owned RTP endpoint that
  measures the bot's stream and sends DTMF/silence like a phone;
* ``scenarios/`` -- UAC scenarios (SIPp calls the bot), see each file's header.
"""

from .pcap import build_dtmf_packets, decode_dtmf_presses, parse_rtp, read_pcap_udp, write_dtmf_pcap
from .rtp_probe import ProbeStats, RtpProbe, RtpRecord
from .runner import (
    DEFAULT_KEYS,
    SCENARIOS_DIR,
    Sipp,
    SippNotFoundError,
    SippResult,
    SippRun,
    build_info_scenario,
    can_play_pcap,
    require_sipp,
    scenario_path,
)

__all__ = [
    "DEFAULT_KEYS",
    "SCENARIOS_DIR",
    "ProbeStats",
    "RtpProbe",
    "RtpRecord",
    "Sipp",
    "SippNotFoundError",
    "SippResult",
    "SippRun",
    "build_dtmf_packets",
    "build_info_scenario",
    "can_play_pcap",
    "decode_dtmf_presses",
    "parse_rtp",
    "read_pcap_udp",
    "require_sipp",
    "scenario_path",
    "write_dtmf_pcap",
]
