"""Conversational quality by the ITU-T G.107 E-model, and MOS from the rating factor R.

Theory of operation
-------------------
The E-model (ITU-T G.107 (06/2015), clause 7) rates a mouth-to-ear connection on the scale
``R = Ro - Is - Id - Ie,eff + A``: ``Ro`` is the basic signal-to-noise ratio (7.2), ``Is``
the impairments that come with the voice signal (7.3), ``Id`` the delay impairments (7.4),
``Ie,eff`` the codec and packet-loss impairment (7.5) and ``A`` the advantage factor (7.6,
always 0 here). A load test measures only four inputs per call direction: the codec (``Ie``,
``Bpl``), the packet-loss rate ``Ppl``, its burstiness ``BurstR`` and the one-way delay
``Ta``. Every other input stays at its G.107 Table 3 default (SLR 8, RLR 2, STMR 15, LSTR 18,
Ds 3, Dr 3, TELR 65, WEPL 110, qdu 1, Nc -70, Nfor -64, Ps 35, Pr 35), with the talker-echo
delay ``T = Ta`` and the listener-echo round trip ``Tr = 2 * Ta``: a VoIP path without
analogue hybrids, whose echo is what the terminal's TELR lets through.

The terms are kept as separate small functions named after their G.107 symbols so a reader
can hold each one against the Recommendation; ``r_budget`` returns them side by side so a user
sees *why* the MOS dropped.

Wideband
--------
G.722 and Opus carry 50-7000 Hz speech, which the narrowband scale cannot rate: ITU-T G.107.1
(06/2019) extends it to ``R = Ro,WB - Is,WB - Id,WB - Ie,eff,WB + A`` with ``Ro,WB = 129`` and
``Is,WB = 0`` (7.2, 7.3), wideband codec values ``Ie,wb`` / ``Bpl`` from ITU-T G.113
Appendix IV, and MOS from ``Rx = R / 1.29`` through the narrowband Annex B curve (G.107.1
Annex A), so R 129 is MOS 4.5 and a wideband and a narrowband call compare by MOS, never by
R. ``r_budget_wideband`` implements it with the same four inputs:

- ``Id,WB = Idte + Idle,WB + Idd,WB``: listener echo ``Idle`` on ``Ro,WB`` and the absolute
  delay ``Idd`` of G.107 times 1.29 (the delay curve stretched to the wider scale, G.107.1
  7.4). The talker echo keeps G.107's ``Idte`` with its default TELR: G.107.1 revises that
  term for wideband echo, and its revision is not reproduced here; the G.107 term rates echo
  at least as harshly (about 2 R points at 100 ms instead of under 0.5), so the choice can
  only understate the MOS.
- ``Ie,eff,WB = Ie,wb + (95 - Ie,wb) Ppl / (Ppl/BurstR + Bpl)``: G.107.1 7.5 keeps the
  narrowband constant 95 (not 129) and defines random loss only; the G.107 burst ratio is
  applied on top, as for narrowband, so bursty loss never rates as random. With ``BurstR``
  1 it is G.107.1's formula exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CODECS",
    "G711_PLC",
    "G722",
    "OPUS",
    "PCMA",
    "PCMU",
    "RO_WB",
    "R_MAX",
    "R_MAX_WB",
    "WB_SCALE",
    "WIDEBAND_CODECS",
    "CodecImpairment",
    "RBudget",
    "burst_ratio",
    "burst_ratio_from_runs",
    "codec_impairment",
    "ie_eff",
    "mos_from_r",
    "mos_from_r_wideband",
    "r_budget",
    "r_budget_wideband",
    "r_factor",
    "r_factor_wideband",
]

# G.107 (06/2015) Table 3 default values, named as in the Recommendation.
SLR_DB = 8.0  # send loudness rating
RLR_DB = 2.0  # receive loudness rating
STMR_DB = 15.0  # sidetone masking rating
LSTR_DB = 18.0  # listener sidetone rating
DS_DB = 3.0  # D-value of the telephone, send side
DR_DB = 3.0  # D-value of the telephone, receive side (enters only through LSTR here)
TELR_DB = 65.0  # talker echo loudness rating
WEPL_DB = 110.0  # weighted echo path loss
QDU = 1.0  # quantizing distortion units
NC_DBM0P = -70.0  # circuit noise referred to the 0 dBr point
NFOR_DBMP = -64.0  # noise floor at the receive side
PS_DBA = 35.0  # room noise at the send side
PR_DBA = 35.0  # room noise at the receive side
OLR_DB = SLR_DB + RLR_DB  # overall loudness rating (7.2)

# Annex B: the R scale of the narrowband model and its MOS anchors.
R_MAX = 100.0
MOS_MIN = 1.0
MOS_MAX = 4.5
# ITU-T G.107.1 (06/2019): the wideband scale. Ro,WB (7.2) is its top; 1.29 = 129 / 100 maps
# it onto the narrowband MOS curve (Annex A) and stretches the delay impairment Idd (7.4).
RO_WB = 129.0
R_MAX_WB = RO_WB
WB_SCALE = 1.29


@dataclass(frozen=True, slots=True)
class CodecImpairment:
    """Equipment impairment ``Ie`` and packet-loss robustness ``Bpl`` of a codec.

    Narrowband values (ITU-T G.113 Appendix I) rate on the G.107 scale; ``wideband`` ones are
    ``Ie,wb`` (G.113 Appendix IV) and rate on the G.107.1 scale with ``r_budget_wideband``.
    """

    ie: float
    bpl: float
    wideband: bool = False


# ITU-T G.113 (11/2007) Appendix I, Table I.3 (random loss): G.711 with the packet-loss
# concealment of G.711 Appendix I has Ie 0 and Bpl 25.1 (``r_factor`` defaults to the G.107
# Table 3 value Bpl 4.3).
G711_PLC = CodecImpairment(ie=0.0, bpl=25.1)
PCMU = G711_PLC
PCMA = G711_PLC
CODECS: dict[str, CodecImpairment] = {"PCMU": PCMU, "PCMA": PCMA}

# Wideband, keyed by upper-case codec name like ``CODECS``. G.722 at 64 kbit/s: Ie,wb 13, the
# provisional planning value of ITU-T G.113 Appendix IV (Table IV.1). Bpl 9.5 is the value
# quoted for G.722 *without* packet-loss concealment (G.113 Appendix IV; still to be checked
# against the current edition's table): we cannot see whether the peer conceals (G.722
# Appendix III/IV), and the value without concealment is the one that never flatters the
# system under test. Opus has no Ie,wb or Bpl in G.113: until one is published it is rated
# as G.722 at 64 kbit/s with the same values. That is an assumption, not a measurement, chosen
# to err low: it gives no credit for Opus's coding at the rates VoIP uses for wideband (about
# 20 kbit/s and up), nor for its concealment and in-band FEC. A very low-rate Opus stream may
# sound worse than this rates it.
G722 = CodecImpairment(ie=13.0, bpl=9.5, wideband=True)
OPUS = CodecImpairment(ie=13.0, bpl=9.5, wideband=True)
WIDEBAND_CODECS: dict[str, CodecImpairment] = {"G722": G722, "OPUS": OPUS}
# RFC 7587 section 6.1: Opus limited to under 16 kHz audio is narrowband, with no G.113 value.
_WIDEBAND_RATE_HZ = 16000
_OPUS_RATE_PARAMETERS = ("maxplaybackrate", "sprop-maxcapturerate")


def codec_impairment(codec: str, fmtp: str | None = None) -> CodecImpairment | None:
    """The E-model values of a negotiated codec (any case), or None when none are published.

    ``fmtp`` is the codec's a=fmtp parameters: an Opus stream whose ``maxplaybackrate`` or
    ``sprop-maxcapturerate`` is under 16000 Hz (RFC 7587 section 6.1) is not wideband, and
    narrowband Opus has no G.113 value, so it gets None like any codec without one.
    """
    name = codec.upper()
    if name == "OPUS" and fmtp and _opus_below_wideband(fmtp):
        return None
    return CODECS.get(name) or WIDEBAND_CODECS.get(name)


def _opus_below_wideband(fmtp: str) -> bool:
    for parameter in fmtp.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() in _OPUS_RATE_PARAMETERS and value.strip().isdigit():
            if int(value) < _WIDEBAND_RATE_HZ:
                return True
    return False


def _lg(x: float) -> float:
    return math.log10(x)


def _root(x: float, n: float) -> float:
    """The ``n``-th root of ``x`` (G.107 writes these as ``(...)^(1/n)``)."""
    return math.pow(x, 1.0 / n)


def _power_sum_db(*levels_db: float) -> float:
    """Level of uncorrelated sources added in power: ``10 lg(sum 10^(L/10))``."""
    return 10.0 * _lg(sum(10.0 ** (level / 10.0) for level in levels_db))


def _pre_dba() -> float:
    """Effective room noise ``Pre`` from ``Pr`` raised by the listener sidetone (G.107 7.2)."""
    return PR_DBA + 10.0 * _lg(1.0 + 10.0 ** ((10.0 - LSTR_DB) / 10.0))


def _no_dbm0p() -> float:
    """Total noise ``No`` at the 0 dBr point: ``Nc``, ``Nos``, ``Nor`` and ``Nfo`` (G.107 7.2)."""
    nos = PS_DBA - SLR_DB - DS_DB - 100.0 + 0.004 * (PS_DBA - OLR_DB - DS_DB - 14.0) ** 2
    pre = _pre_dba()
    nor = RLR_DB - 121.0 + pre + 0.008 * (pre - 35.0) ** 2
    nfo = NFOR_DBMP + RLR_DB
    return _power_sum_db(nos, nor, nfo, NC_DBM0P)


def _ro() -> float:
    """Basic signal-to-noise ratio ``Ro = 15 - 1.5 (SLR + No)`` (G.107 7.2)."""
    return 15.0 - 1.5 * (SLR_DB + _no_dbm0p())


def _is(t_ms: float) -> float:
    """Simultaneous impairment ``Is = Iolr + Ist + Iq`` (G.107 7.3)."""
    no = _no_dbm0p()
    xolr = OLR_DB + 0.2 * (64.0 + no - RLR_DB)
    iolr = 20.0 * (_root(1.0 + (xolr / 8.0) ** 8, 8) - xolr / 8.0)
    stmro = -10.0 * _lg(
        10.0 ** (-STMR_DB / 10.0) + math.exp(-t_ms / 4.0) * 10.0 ** (-TELR_DB / 10.0)
    )
    ist = (
        12.0 * _root(1.0 + ((stmro - 13.0) / 6.0) ** 8, 8)
        - 28.0 * _root(1.0 + ((stmro + 1.0) / 19.4) ** 35, 35)
        - 13.0 * _root(1.0 + ((stmro - 3.0) / 33.0) ** 13, 13)
        + 29.0
    )
    q = 37.0 - 15.0 * _lg(QDU)
    g = 1.07 + 0.258 * q + 0.0602 * q**2
    y = (_ro() - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0
    z = 46.0 / 30.0 - g / 40.0
    iq = 15.0 * _lg(1.0 + math.pow(10.0, y) + math.pow(10.0, z))
    return iolr + ist + iq


def _idte(t_ms: float) -> float:
    """Talker-echo impairment ``Idte`` (G.107 7.4); STMR 15 >= 9, so TERV needs no sidetone term."""
    roe = -1.5 * (_no_dbm0p() - RLR_DB)
    terv = TELR_DB - 40.0 * _lg((1.0 + t_ms / 10.0) / (1.0 + t_ms / 150.0))
    terv += 6.0 * math.exp(-0.3 * t_ms**2)
    re = 80.0 + 2.5 * (terv - 14.0)
    half = (roe - re) / 2.0
    return (half + math.sqrt(half**2 + 100.0) - 1.0) * (1.0 - math.exp(-t_ms))


def _idle(tr_ms: float, ro: float) -> float:
    """Listener-echo impairment ``Idle`` (G.107 7.4), ``Rle = 10.5 (WEPL + 7)(Tr + 1)^-0.25``;
    ``ro`` is ``Ro``, or ``Ro,WB`` on the wideband scale (G.107.1 7.4)."""
    rle = 10.5 * (WEPL_DB + 7.0) * math.pow(tr_ms + 1.0, -0.25)
    half = (ro - rle) / 2.0
    return half + math.sqrt(half**2 + 169.0)


def _idd(ta_ms: float) -> float:
    """Absolute-delay impairment ``Idd`` (G.107 7.4, mT 100 ms, sT 1): 0 up to 100 ms."""
    if ta_ms <= 100.0:
        return 0.0
    x = _lg(ta_ms / 100.0) / _lg(2.0)
    return 25.0 * (_root(1.0 + x**6, 6) - 3.0 * _root(1.0 + (x / 3.0) ** 6, 6) + 2.0)


def _id(ta_ms: float) -> float:
    """Delay impairment ``Id = Idte + Idle + Idd`` with ``T = Ta`` and ``Tr = 2 Ta``."""
    return _idte(ta_ms) + _idle(2.0 * ta_ms, _ro()) + _idd(ta_ms)


def _id_wb(ta_ms: float) -> float:
    """Wideband ``Id,WB = Idte + Idle,WB + 1.29 Idd`` (G.107.1 7.4; ``Idte`` as G.107, see the
    module docstring), with ``T = Ta`` and ``Tr = 2 Ta``."""
    return _idte(ta_ms) + _idle(2.0 * ta_ms, RO_WB) + WB_SCALE * _idd(ta_ms)


def ie_eff(*, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, burst_r: float = 1.0) -> float:
    """Effective equipment impairment (G.107 7.5): ``Ie + (95 - Ie) Ppl / (Ppl/BurstR + Bpl)``.

    ``ppl`` is the packet-loss probability in percent; ``burst_r`` is 1 for random loss and
    greater than 1 for bursty loss.
    """
    return ie + (95.0 - ie) * ppl / (ppl / burst_r + bpl)


@dataclass(frozen=True, slots=True)
class RBudget:
    """Where the rating went: ``ro - simultaneous_is - delay_id - codec_ie - loss_ie == r``.

    ``codec_ie`` is the codec's own ``Ie``; ``loss_ie`` is what packet loss adds on top of it
    (``Ie,eff - Ie``); ``delay_id`` is ``Id`` (echo plus absolute delay); ``simultaneous_is``
    is ``Is``, the part no network can fix. ``scale_max`` is the top of the scale the terms
    are on: 100 for G.107, 129 for the wideband G.107.1 (``mos`` is comparable across both).
    """

    r: float
    mos: float
    ro: float
    simultaneous_is: float
    delay_id: float
    codec_ie: float
    loss_ie: float
    scale_max: float = R_MAX


def r_budget(
    *, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, burst_r: float = 1.0, ta_ms: float = 0.0
) -> RBudget:
    """The E-model (G.107 7.1) term by term; ``A`` is 0."""
    ro = _ro()
    simultaneous_is = _is(ta_ms)
    delay_id = _id(ta_ms)
    loss_ie = ie_eff(ie=ie, bpl=bpl, ppl=ppl, burst_r=burst_r) - ie
    r = ro - simultaneous_is - delay_id - ie - loss_ie
    return RBudget(r, mos_from_r(r), ro, simultaneous_is, delay_id, ie, loss_ie)


def r_factor(
    *, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, burst_r: float = 1.0, ta_ms: float = 0.0
) -> float:
    """Transmission rating factor ``R = Ro - Is - Id - Ie,eff + A`` (G.107 7.1, ``A = 0``).

    ``ppl`` in percent, ``ta_ms`` the mean one-way (mouth-to-ear) delay; all other inputs at
    their G.107 defaults. With every default R is about 93.2.
    """
    return r_budget(ie=ie, bpl=bpl, ppl=ppl, burst_r=burst_r, ta_ms=ta_ms).r


def r_budget_wideband(
    *, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, burst_r: float = 1.0, ta_ms: float = 0.0
) -> RBudget:
    """The wideband E-model (ITU-T G.107.1 7.1) term by term, on the scale up to 129.

    ``ie`` and ``bpl`` are the wideband codec values (``WIDEBAND_CODECS``); the other inputs
    are as for ``r_budget``. ``Is,WB`` is 0 and ``A`` is 0; see the module docstring for the
    delay and loss terms.
    """
    delay_id = _id_wb(ta_ms)
    loss_ie = ie_eff(ie=ie, bpl=bpl, ppl=ppl, burst_r=burst_r) - ie
    r = RO_WB - delay_id - ie - loss_ie
    return RBudget(r, mos_from_r_wideband(r), RO_WB, 0.0, delay_id, ie, loss_ie, R_MAX_WB)


def r_factor_wideband(
    *, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, burst_r: float = 1.0, ta_ms: float = 0.0
) -> float:
    """Wideband rating ``R = Ro,WB - Is,WB - Id,WB - Ie,eff,WB + A`` (G.107.1 7.1, ``A = 0``).

    With every default only the listener echo remains: R is about 128.85.
    """
    return r_budget_wideband(ie=ie, bpl=bpl, ppl=ppl, burst_r=burst_r, ta_ms=ta_ms).r


def mos_from_r_wideband(r: float) -> float:
    """Conversational MOS from a wideband R (G.107.1 Annex A): ``mos_from_r(R / 1.29)``.

    R 129 gives 4.5; below R 0 it is 1. The Annex B cubic's dip under 1 (``Rx`` under 6.5,
    R under about 8.4) carries over unchanged.
    """
    return mos_from_r(r / WB_SCALE)


def mos_from_r(r: float) -> float:
    """Conversational MOS (MOS_CQE) from R, G.107 Annex B (B.4).

    1 below R 0, 4.5 above R 100, ``1 + 0.035 R + R (R - 60)(100 - R) 7e-6`` in between. The
    cubic dips to about 0.98 for R under 6.5; that is the Recommendation's curve, kept as is.
    """
    if r < 0.0:
        return MOS_MIN
    if r > R_MAX:
        return MOS_MAX
    return 1.0 + 0.035 * r + r * (r - 60.0) * (R_MAX - r) * 7e-6


def burst_ratio_from_runs(loss_runs: Sequence[int]) -> float:
    """Burst ratio from alternating run lengths ``[received, lost, received, lost, ...]``.

    ITU-T G.113 Appendix I / RFC 3611 section 4.7.2: the observed mean length of loss bursts
    divided by the mean burst length expected for random loss at the same loss rate ``p``,
    which is ``1 / (1 - p)``. Returns 1 when there is no loss or nothing was received (the
    ratio is undefined there, and 1 leaves ``Ie,eff`` at its random-loss value).
    """
    lost = sum(loss_runs[1::2])
    total = lost + sum(loss_runs[0::2])
    bursts = sum(1 for run in loss_runs[1::2] if run > 0)
    if lost == 0 or lost == total:
        return 1.0
    mean_burst = lost / bursts
    return mean_burst * (1.0 - lost / total)


def burst_ratio(loss_pattern: Iterable[bool]) -> float:
    """Burst ratio (see ``burst_ratio_from_runs``) of per-packet flags, ``True`` = lost."""
    runs = [0]
    for lost in loss_pattern:
        if (len(runs) % 2 == 0) != lost:  # odd-indexed runs are losses
            runs.append(0)
        runs[-1] += 1
    return burst_ratio_from_runs(runs)
